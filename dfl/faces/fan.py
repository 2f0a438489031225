"""2DFAN-4 landmarks: the ``face-alignment`` package's FAN with DeepFaceLab's crop and second pass.

DFL crops a square of side ``200 * (w + h) / 195`` around the box centre (integer corners, black outside
the frame, bilinear resize to 256), reads each of the 68 heatmaps at its maximum nudged a quarter pixel
toward the higher neighbour, then (second pass) warps the face to a 256 px full-face square, re-detects
it there and, if exactly one face is found, averages the predictions of five crops shifted by a pixel.
Weights are a local ``2DFAN4-*.pth.tar`` state dict, the package's TorchScript ``2DFAN4-*.zip`` or
DeepFaceLab's own ``2DFAN.npy`` (same network and input, its variables named by :func:`fan_leras_name`).
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch

from dfl.errors import DflError
from dfl.faces.backends import Detector

CROP = 256
HEATMAP = 64
REFERENCE_SCALE = 195.0
MULTI_SAMPLE_OFFSETS = np.array([[0, 0], [-1, -1], [1, -1], [1, 1], [-1, 1]], np.float64)


def box_center_scale(box: np.ndarray) -> tuple[np.ndarray, float]:
    """DFL's crop centre and scale for a ``l, t, r, b`` box."""
    l, t, r, b = (float(v) for v in box[:4])
    return np.array([(l + r) / 2.0, (t + b) / 2.0]), (r - l + b - t) / REFERENCE_SCALE


def crop_to_image(points: np.ndarray, center: np.ndarray, scale: float, resolution: float) -> np.ndarray:
    """Map points of a ``resolution``-sized crop back to image pixels (inverse of DFL's transform)."""
    h = 200.0 * scale
    return np.asarray(points, np.float64) * (h / resolution) + (np.asarray(center) - h / 2.0)


def crop(image: np.ndarray, center: np.ndarray, scale: float, resolution: int = CROP) -> np.ndarray:
    """DFL's FAN crop: integer corners, zero padding outside the image, bilinear resize."""
    ul = np.trunc(crop_to_image([1.0, 1.0], center, scale, resolution)).astype(np.int64)
    br = np.trunc(crop_to_image([float(resolution)] * 2, center, scale, resolution)).astype(np.int64)
    ht, wd = image.shape[:2]
    out = np.zeros((max(br[1] - ul[1], 1), max(br[0] - ul[0], 1), image.shape[2]), np.uint8)
    new_x = (max(1, -ul[0] + 1), min(br[0], wd) - ul[0])
    new_y = (max(1, -ul[1] + 1), min(br[1], ht) - ul[1])
    old_x = (max(1, ul[0] + 1), min(br[0], wd))
    old_y = (max(1, ul[1] + 1), min(br[1], ht))
    if new_x[1] >= new_x[0] and new_y[1] >= new_y[0]:
        out[new_y[0] - 1:new_y[1], new_x[0] - 1:new_x[1]] = image[old_y[0] - 1:old_y[1], old_x[0] - 1:old_x[1]]
    return cv2.resize(out, (resolution, resolution), interpolation=cv2.INTER_LINEAR)


def heatmap_points(heatmaps: np.ndarray) -> np.ndarray:
    """``(N, 68, H, W)`` heatmaps -> ``(N, 68, 2)`` sub-pixel peak positions in heatmap pixels."""
    n, k, hh, ww = heatmaps.shape
    flat = heatmaps.reshape(n, k, hh * ww)
    idx = flat.argmax(axis=2)
    px, py = idx % ww, idx // ww
    pts = np.stack([px, py], axis=2).astype(np.float64)
    inner = (px > 0) & (px < ww - 1) & (py > 0) & (py < hh - 1)
    ni, ki = np.nonzero(inner)
    x, y = px[ni, ki], py[ni, ki]
    dx = heatmaps[ni, ki, y, x + 1] - heatmaps[ni, ki, y, x - 1]
    dy = heatmaps[ni, ki, y + 1, x] - heatmaps[ni, ki, y - 1, x]
    pts[ni, ki, 0] += np.sign(dx) * 0.25
    pts[ni, ki, 1] += np.sign(dy) * 0.25
    return pts + 0.5


_FAN_STACK = re.compile(r"(conv_last|bn_end|bl|al|l|m)(\d+)$")
_HOURGLASS_BLOCK = re.compile(r"(b1|b2|b3|b2_plus)_(\d)$")
HOURGLASS_DEPTH = 4


def fan_leras_name(key: str) -> str | None:
    """DFL's ``2DFAN.npy`` variable for a key of ``face_alignment``'s FAN (None: no such variable).

    face_alignment numbers a stack's modules ``m0``/``conv_last0`` and flattens each hourglass into
    ``b1_4 .. b1_1``, ``b2_plus_1``; DFL's leras names them ``m_0``/``conv_last_0`` and nests the hourglass
    (``b2_plus/b2_plus/b1``: level ``L`` sits under ``4 - L`` ``b2_plus``); a ConvBlock's ``downsample.0``
    and ``.2`` are DFL's ``down_bn1`` and ``down_conv1``.
    """
    parts = key.split(".")
    if parts[-1] == "num_batches_tracked":
        return None
    out: list[str] = []
    i = 0
    while i < len(parts) - 1:
        p = parts[i]
        stack, block = _FAN_STACK.match(p), _HOURGLASS_BLOCK.match(p)
        if i == 0 and stack:
            out.append(f"{stack.group(1)}_{stack.group(2)}")
        elif i == 1 and out[0].startswith("m_") and block:
            depth = HOURGLASS_DEPTH - int(block.group(2))
            out.extend(["b2_plus"] * depth + [block.group(1)])
        elif p == "downsample":
            out.append({"0": "down_bn1", "2": "down_conv1"}[parts[i + 1]])
            i += 1
        else:
            out.append(p)
        i += 1
    return "/".join(out + [parts[-1]]) + ":0"


def load_fan(path: Path, device: torch.device) -> torch.nn.Module:
    """The FAN network from a state dict (``.pth.tar``/``.pth``), a TorchScript archive (``.zip``) or
    DFL's ``2DFAN.npy``."""
    path = Path(path)
    if path.suffix == ".npy":
        from face_alignment.models import FAN

        from dfl.leras import load_leras

        return load_leras(FAN(4), path, name=fan_leras_name).eval().to(device)
    if path.suffix == ".zip":
        try:
            with warnings.catch_warnings():  # TorchScript is deprecated in torch 2.13 but loads fine
                warnings.simplefilter("ignore", DeprecationWarning)
                net = torch.jit.load(str(path), map_location=device)
        except Exception as exc:
            raise DflError(f"{path}: not a TorchScript FAN archive ({type(exc).__name__}: {exc})") from None
        return net.eval()
    from face_alignment.models import FAN  # the package's module, not a copy

    from dfl.faces.s3fd import load_state_dict

    net = FAN(4)
    try:
        net.load_state_dict(load_state_dict(path))
    except RuntimeError as exc:
        raise DflError(f"{path}: not 2DFAN-4 weights ({str(exc).splitlines()[0]})") from None
    return net.eval().to(device)


class FANLandmarker:
    """Batched 2DFAN-4: every crop of a batch (all faces, all second-pass samples) in one forward pass."""

    name = "fan"
    thread_safe = True   # stateless inference: extraction's runs call it at once

    def __init__(self, weights: Path | None, device: torch.device | str = "cpu", *,
                 second_pass: Detector | None = None, max_batch: int = 16,
                 net: torch.nn.Module | None = None) -> None:
        self.device = torch.device(device)
        if net is None:
            if weights is None:
                raise DflError("2DFAN-4: no weights file given")
            net = load_fan(Path(weights), self.device)
        self.net = net.eval().to(self.device)
        self.second_pass = second_pass
        self.max_batch = max_batch

    @torch.inference_mode()
    def _heatmaps(self, crops: list[np.ndarray]) -> np.ndarray:
        """``(N, 68, 64, 64)`` heatmaps for BGR uint8 256x256 crops (the net wants RGB in [0, 1])."""
        outs = []
        for start in range(0, len(crops), self.max_batch):
            chunk = np.stack(crops[start:start + self.max_batch])[..., ::-1]
            x = torch.from_numpy(np.ascontiguousarray(chunk)).to(self.device).permute(0, 3, 1, 2).float() / 255.0
            out = self.net(x)
            if isinstance(out, (list, tuple)):
                out = out[-1]
            outs.append(out.float().cpu().numpy())
        return np.concatenate(outs, axis=0)

    def _predict(self, jobs: list[tuple[np.ndarray, np.ndarray, bool]]) -> list[np.ndarray]:
        """Landmarks for ``(image, box, multi_sample)`` jobs, all crops in one batched pass."""
        crops, metas, owners = [], [], []
        for j, (image, box, multi) in enumerate(jobs):
            center, scale = box_center_scale(box)
            for off in (MULTI_SAMPLE_OFFSETS if multi else MULTI_SAMPLE_OFFSETS[:1]):
                c = center + off
                crops.append(crop(image, c, scale))
                metas.append((c, scale))
                owners.append(j)
        if not crops:
            return []
        pts = heatmap_points(self._heatmaps(crops))
        sums = [np.zeros((68, 2)) for _ in jobs]
        counts = [0] * len(jobs)
        for p, (c, s), j in zip(pts, metas, owners):
            sums[j] += crop_to_image(p, c, s, HEATMAP)
            counts[j] += 1
        return [sm / n for sm, n in zip(sums, counts)]

    def _refine(self, images: list[np.ndarray], flat: list[tuple[int, int]], first: list[np.ndarray]) -> list[np.ndarray]:
        """DFL's second pass: re-detect on the aligned full face and average five shifted crops."""
        from dfl.faces.align import FaceType, transform_matrix, transform_points

        mats, faces = [], []
        for (i, _), lm in zip(flat, first):
            mat = transform_matrix(lm, CROP, FaceType.FULL)
            mats.append(mat)
            faces.append(cv2.warpAffine(images[i], mat, (CROP, CROP), flags=cv2.INTER_LINEAR))
        rects = self.second_pass.detect(faces)
        jobs, which = [], []
        for f, (face, r) in enumerate(zip(faces, rects)):
            if len(r) == 1:  # DFL keeps the first pass when the crop shows no face or several
                jobs.append((face, r[0], True))
                which.append(f)
        refined = list(first)
        for f, lm in zip(which, self._predict(jobs)):
            refined[f] = transform_points(lm, mats[f], invert=True)
        return refined

    def landmarks(self, images: list[np.ndarray], boxes: list[np.ndarray]) -> list[np.ndarray]:
        """Per image ``(K, 68, 2)`` landmarks in image pixels for its ``K`` boxes."""
        flat = [(i, k) for i, b in enumerate(boxes) for k in range(len(b))]
        first = self._predict([(images[i], boxes[i][k], False) for i, k in flat])
        if self.second_pass is not None and flat:
            first = self._refine(images, flat, first)
        out = [np.zeros((len(b), 68, 2), np.float32) for b in boxes]
        for (i, k), lm in zip(flat, first):
            out[i][k] = lm
        return out
