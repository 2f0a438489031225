"""S3FD face detector: the ``face-alignment`` package's network with DeepFaceLab's pre/post-processing.

DFL's extractor used S3FD for every faceset in existence, so matching its boxes matters: the frame is
scaled so its long side is half its size but at most 640 px (at least 64), anchors are decoded with
variances 0.1/0.2, greedy NMS at IoU 0.3 keeps boxes scoring 0.5 or more, faces under 40 px on a side
are dropped and the bottom edge is pushed down 10% so 2DFAN-4 sees the chin.  The network itself is
imported from ``face_alignment`` (not copied) and loads the widely published ``s3fd-619a316812.pth`` or
DeepFaceLab's own ``S3FD.npy``.  DFL feeds its ``S3FD.npy`` the frame in RGB order minus (104, 117, 123);
with that file the detector does the same, so boxes are DFL's.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from dfl.errors import DflError
from dfl.faces.backends import empty_boxes, nms, sort_by_area

MEAN_BGR = (104.0, 117.0, 123.0)
CANDIDATE_SCORE = 0.05
NMS_IOU = 0.3
SCORE_THRESHOLD = 0.5
MIN_FACE_PX = 40
CHIN_EXTENSION = 0.1


def input_scale(height: int, width: int) -> float:
    """Factor the frame is divided by before the network (DFL: long side -> min(640, side/2), >= 64)."""
    d = max(height, width)
    target = 640.0 if d >= 1280 else d / 2.0
    return d / max(64.0, target)


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A plain state dict from a ``.pth`` file (also unwraps ``{"state_dict": ...}`` and ``module.``).

    Only torch's ``weights_only`` loader is used; DFL's ``.npy`` files go through :mod:`dfl.leras`."""
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt or foreign file
        raise DflError(f"{path}: cannot read weights ({type(exc).__name__}: {exc})") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise DflError(f"{path}: not a state dict (found {type(obj).__name__})")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def decode(outputs: list[np.ndarray]) -> np.ndarray:
    """Candidate boxes ``(M, 5)`` (network-input pixels) from one image's 12 outputs.

    ``outputs`` alternates per level ``cls (2, H, W)`` softmax scores and ``reg (4, H, W)`` offsets;
    level ``i`` has stride ``2**(i+2)`` and square anchors of ``4*stride``.
    """
    found = []
    for level, (cls, reg) in enumerate(zip(outputs[0::2], outputs[1::2])):
        stride = 2 ** (level + 2)
        ys, xs = np.nonzero(cls[1] > CANDIDATE_SCORE)
        if len(ys) == 0:
            continue
        score = cls[1, ys, xs].astype(np.float64)
        loc = reg[:, ys, xs].T.astype(np.float64)  # (M, 4)
        anchor = 4.0 * stride
        cx = xs * stride + stride / 2.0 + loc[:, 0] * 0.1 * anchor
        cy = ys * stride + stride / 2.0 + loc[:, 1] * 0.1 * anchor
        w = anchor * np.exp(loc[:, 2] * 0.2)
        h = anchor * np.exp(loc[:, 3] * 0.2)
        l, t = cx - w / 2.0, cy - h / 2.0
        found.append(np.stack([l, t, l + w, t + h, score], axis=1))
    if not found:
        return np.zeros((0, 5), np.float64)
    return np.concatenate(found, axis=0)


def postprocess(candidates: np.ndarray, scale: float, score_threshold: float = SCORE_THRESHOLD,
                min_face_px: int = MIN_FACE_PX) -> np.ndarray:
    """DFL's refinement: NMS, score filter, back to frame pixels, drop small faces, extend the chin.

    Returns ``(K, 5)`` float32 ``l, t, r, b, score`` in frame pixels, largest first.  Coordinates are
    truncated to integers at the same two points DFL truncates them, so boxes equal DFL's.
    """
    if len(candidates) == 0:
        return empty_boxes()
    kept = candidates[nms(candidates, NMS_IOU)]
    kept = kept[kept[:, 4] >= score_threshold]
    out = []
    for l, t, r, b, s in kept:
        l, t, r, b = (float(int(v)) * scale for v in (l, t, r, b))  # DFL: astype(int) at network scale
        if min(r - l, b - t) < min_face_px:
            continue
        b += (b - t) * CHIN_EXTENSION
        out.append([int(l), int(t), int(r), int(b), s])
    if not out:
        return empty_boxes()
    return sort_by_area(np.asarray(out, np.float32))


class S3FDDetector:
    """Batched S3FD on any torch device; frames of equal size share one forward pass."""

    name = "s3fd"
    thread_safe = True   # stateless inference: extraction's runs call it at once

    def __init__(self, weights: Path | None, device: torch.device | str = "cpu", *,
                 score_threshold: float = SCORE_THRESHOLD, min_face_px: int = MIN_FACE_PX,
                 max_batch: int = 8) -> None:
        from face_alignment.detection.sfd.net_s3fd import s3fd  # the package's module, not a copy

        self.device = torch.device(device)
        self.score_threshold = score_threshold
        self.min_face_px = min_face_px
        self.max_batch = max_batch
        self.net = s3fd()
        self.rgb = weights is not None and Path(weights).suffix == ".npy"   # DFL's file, DFL's channel order
        if self.rgb:
            from dfl.leras import load_leras

            load_leras(self.net, Path(weights))
        elif weights is not None:
            try:
                self.net.load_state_dict(load_state_dict(Path(weights)))
            except RuntimeError as exc:
                raise DflError(f"{weights}: not S3FD weights ({str(exc).splitlines()[0]})") from None
        self.net.eval().to(self.device)
        self._mean = torch.tensor(MEAN_BGR, device=self.device).view(1, 3, 1, 1)

    @torch.inference_mode()
    def _forward(self, batch: np.ndarray) -> list[np.ndarray]:
        """Raw outputs for a ``(N, H, W, 3)`` uint8 BGR batch: per level cls (softmax) and reg."""
        x = torch.from_numpy(batch).to(self.device).permute(0, 3, 1, 2).float()
        if self.rgb:
            x = x.flip(1)
        x = x - self._mean
        outs = self.net(x)
        result = []
        for i, o in enumerate(outs):
            if i % 2 == 0:
                o = F.softmax(o, dim=1)
            result.append(o.float().cpu().numpy())
        return result

    def detect(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """Per image ``(K, 5)`` boxes in its own pixels (see module docstring for DFL's rules)."""
        results: list[np.ndarray] = [empty_boxes() for _ in images]
        groups: dict[tuple[int, int], list[int]] = {}
        scaled: dict[int, np.ndarray] = {}
        scales: dict[int, float] = {}
        for i, img in enumerate(images):
            h, w = img.shape[:2]
            s = input_scale(h, w)
            size = (int(w / s), int(h / s))
            scaled[i] = img if size == (w, h) else cv2.resize(img, size, interpolation=cv2.INTER_LINEAR)
            scales[i] = s
            groups.setdefault((size[1], size[0]), []).append(i)
        for idxs in groups.values():
            for start in range(0, len(idxs), self.max_batch):
                chunk = idxs[start:start + self.max_batch]
                outs = self._forward(np.stack([scaled[i] for i in chunk]))
                for j, i in enumerate(chunk):
                    cand = decode([o[j] for o in outs])
                    results[i] = postprocess(cand, scales[i], self.score_threshold, self.min_face_px)
        return results
