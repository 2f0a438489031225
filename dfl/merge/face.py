"""Merging one face into its frame, as DeepFaceLab's masked merger does it.

Steps per face: cut the dst face out of the frame with the model's alignment, predict the swapped face
and its masks, build the working mask (mask mode, erode, blur, at 4x the model resolution so the edge
stays smooth), colour-match, warp the face and mask back with the inverse matrix and blend by mode.

The work is done on the smallest rectangle of the frame that the face touches, so a 720p or 4K frame
costs about the same as the face, and pixels outside the mask are copied from the input bit for bit.
Prediction is separate from blending (:func:`prepare_face` -> predictor -> :func:`blend_face`) so
the folder merger can batch predictions of many faces on a GPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

import cv2
import numpy as np

from dfl.errors import DflError
from dfl.faces.align import FaceType, hull_mask, transform_matrix, transform_points
from dfl.imageops import filters
from dfl.imageops.color_transfer import color_transfer
from dfl.merge.config import MergeConfig

XSEG_INPUT_SIZE = 256
_NOISE = 1.0 / 255.0

XSegFunc = Callable[[np.ndarray], np.ndarray]
"""XSeg segmenter: N x 256 x 256 x 3 float32 BGR faces -> N x 256 x 256 float32 masks (DFL's ``extract``:
clipped, below 0.1 set to 0).  One with a ``resolution`` attribute gets faces of that size instead."""
XSEG_PRD_MODES = ("XSeg-prd", "XSeg-prd*XSeg-dst", "learned-prd*learned-dst*XSeg-prd*XSeg-dst")
XSEG_DST_MODES = ("XSeg-dst", "XSeg-prd*XSeg-dst", "learned-prd*learned-dst*XSeg-prd*XSeg-dst")
XSegMasks = tuple["np.ndarray | None", "np.ndarray | None"]
"""(XSeg-prd, XSeg-dst) masks of one face at the XSeg model's resolution; None where the mode needs none."""

SUPER_RESOLUTION_SCALE = 4   # DFL's FaceEnhancer upscales 4x; with super resolution the merge works at 4x


class FaceEnhancerFunc(Protocol):
    """DFL's face enhancer as the merger calls it (:class:`dfl.faces.enhancer.FaceEnhancer`)."""

    def enhance(self, image: np.ndarray, is_tanh: bool = False, preserve_size: bool = True) -> np.ndarray: ...


class Predictor(Protocol):
    """The swap model as the merger sees it (numpy in and out, batched)."""

    resolution: int
    face_type: FaceType

    def __call__(self, faces: np.ndarray, morph_value: float | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """N x R x R x 3 float32 BGR dst faces -> (swapped faces NxRxRx3, src mask NxRxR, dst mask NxRxR)."""
        ...


class ModelPredictor:
    """Wraps a :class:`~dfl.models.base.SwapModel` (torch, NCHW) as a numpy :class:`Predictor`."""

    def __init__(self, model, device=None, batch_limit: int = 64, channels_last: bool = True) -> None:
        import torch

        self.model = model
        self.channels_last = channels_last
        if channels_last:       # oneDNN / cuDNN convolutions run faster in NHWC
            model.to(memory_format=torch.channels_last)
        self.device = device if device is not None else next(model.parameters()).device
        self.resolution = int(model.resolution)
        self.face_type = FaceType(model.face_type) if not isinstance(model.face_type, str) \
            else FaceType.from_string(model.face_type)
        self.batch_limit = batch_limit
        self.dtype = next(model.parameters()).dtype   # a model cast to bf16/fp16 (dfl live) gets faces in that type
        self._torch = torch
        self._kernels: dict = {}  # Winograd-transformed kernels, computed once: the weights never change here

    def __call__(self, faces: np.ndarray, morph_value: float | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        torch = self._torch
        outs: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        from dfl.models.runtime import frozen_weights

        with torch.inference_mode(), frozen_weights(self._kernels):
            for i in range(0, len(faces), self.batch_limit):
                x = torch.from_numpy(np.ascontiguousarray(faces[i:i + self.batch_limit])).permute(0, 3, 1, 2)
                x = x.to(self.device, dtype=self.dtype)
                if self.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                prd, prd_m, dst_m = self.model.swap(x, morph_value=morph_value)
                outs.append((prd.permute(0, 2, 3, 1).float().cpu().numpy(),
                             prd_m[:, 0].float().cpu().numpy(), dst_m[:, 0].float().cpu().numpy()))
        return tuple(np.concatenate([o[k] for o in outs]) for k in range(3))  # type: ignore[return-value]


@dataclass
class FaceJob:
    """One face cut out of a frame, ready for prediction."""

    landmarks: np.ndarray        # (68,2) in the frame
    face_mat: np.ndarray         # frame -> model-resolution face
    dst_face: np.ndarray         # RxRx3 float32, the predictor's input
    motion: tuple[float, float] | None = None  # (power px, angle deg) from the neighbouring frames
    hires: tuple[np.ndarray, np.ndarray] | None = None  # (matrix, face) cut at 4x R for super resolution
    model_size: int | None = None  # R when this job is the 4x one: mask work stays at 4x R, as in DFL


@dataclass
class FaceResult:
    """One face blended into a rectangle of the frame (or a raw face for raw-predict)."""

    roi: tuple[int, int, int, int]   # x0, y0, x1, y1 in the frame
    image: np.ndarray                # float32 BGR of the rectangle
    mask: np.ndarray                 # float32 HxW [0,1]: the merging mask (DFL's merged_mask)
    changed: np.ndarray              # bool HxW: pixels that differ from the input by design
    whole_image: bool = False        # raw-predict: ``image`` replaces the frame


def _cut(frame: np.ndarray, landmarks: np.ndarray, size: int, face_type: FaceType) -> tuple[np.ndarray, np.ndarray]:
    mat = transform_matrix(landmarks, size, face_type)
    face = cv2.warpAffine(frame, mat, (size, size), flags=cv2.INTER_CUBIC)
    return mat, face.astype(np.float32) / 255.0 if face.dtype == np.uint8 else np.clip(face, 0, 1).astype(np.float32)


def prepare_face(frame: np.ndarray, landmarks: np.ndarray, resolution: int, face_type: FaceType,
                 motion: tuple[float, float] | None = None, super_resolution: bool = False) -> FaceJob:
    """Cut the dst face at the model's resolution and face type (uint8 or float frame).

    With ``super_resolution`` the face is cut at 4x (kept for the blend) and the predictor gets that cut
    scaled down, as DFL's merger does when its super resolution power is on.
    """
    lm = np.asarray(landmarks, np.float64)
    if super_resolution:
        big = resolution * SUPER_RESOLUTION_SCALE
        mat4, face4 = _cut(frame, lm, big, face_type)
        small = cv2.resize(face4, (resolution, resolution))
        return FaceJob(lm, transform_matrix(lm, resolution, face_type), small, motion, hires=(mat4, face4))
    mat, face = _cut(frame, lm, resolution, face_type)
    return FaceJob(lm, mat, face, motion)


def super_resolve(frame: np.ndarray, job: FaceJob, prediction: Sequence[np.ndarray], power: int,
                  enhancer: FaceEnhancerFunc, face_type: FaceType) -> tuple[FaceJob, tuple[np.ndarray, ...]]:
    """DFL's super resolution: the predicted face enhanced to 4x and mixed in at ``power`` / 100, the masks
    scaled up, and the job at 4x, so masks, colour transfer and blending all work at 4x the model size.

    As in DFL, the enhancer gets the [0, 1] face with ``is_tanh=True`` (no [-1, 1] mapping either way).
    """
    res = job.dst_face.shape[0]
    big = res * SUPER_RESOLUTION_SCALE
    prd = np.clip(prediction[0], 0, 1).astype(np.float32)
    enhanced = enhancer.enhance(prd, is_tanh=True, preserve_size=False)
    mod = power / 100.0
    prd = np.clip(cv2.resize(prd, (big, big)) * (1.0 - mod) + enhanced * mod, 0, 1).astype(np.float32)
    masks = [cv2.resize(np.clip(np.asarray(m, np.float32).reshape(res, res), 0, 1), (big, big),
                        interpolation=cv2.INTER_CUBIC) for m in prediction[1:3]]
    mat4, face4 = job.hires if job.hires is not None else _cut(frame, job.landmarks, big, face_type)
    return FaceJob(job.landmarks, mat4, face4, job.motion, model_size=res), (prd, *masks)


def _shift(mat: np.ndarray, x0: int, y0: int) -> np.ndarray:
    """The same frame->face matrix for a crop whose origin is (x0, y0) in the frame."""
    out = mat.copy()
    out[:, 2] += mat[:, 0] * x0 + mat[:, 1] * y0
    return out


def _square_bounds(mat: np.ndarray, size: int) -> np.ndarray:
    corners = np.float64([(0, 0), (size, 0), (size, size), (0, size)])
    return transform_points(corners, mat, invert=True)


def _roi(frame_hw: tuple[int, int], pts: np.ndarray, pad: int = 8) -> tuple[int, int, int, int]:
    h, w = frame_hw
    x0 = int(max(0, math.floor(pts[:, 0].min()) - pad))
    y0 = int(max(0, math.floor(pts[:, 1].min()) - pad))
    x1 = int(min(w, math.ceil(pts[:, 0].max()) + pad))
    y1 = int(min(h, math.ceil(pts[:, 1].max()) + pad))
    return x0, y0, max(x0, x1), max(y0, y1)


def _warp_back(img: np.ndarray, mat: np.ndarray, wh: tuple[int, int], border: np.ndarray | None = None) -> np.ndarray:
    if border is not None:
        return cv2.warpAffine(img, mat, wh, border.copy(), flags=cv2.WARP_INVERSE_MAP | cv2.INTER_CUBIC,
                              borderMode=cv2.BORDER_TRANSPARENT)
    return cv2.warpAffine(img, mat, wh, flags=cv2.WARP_INVERSE_MAP | cv2.INTER_CUBIC)


NO_XSEG = ("mask mode {mode}: XSeg mask modes need an XSeg model (none loaded); train one (`dfl train --model "
           "XSeg`), put DFL's XSeg_256.npy in the model folder, or use a learned-* mask mode")


def xseg_inputs(frame: np.ndarray, job: FaceJob, prd_face: np.ndarray, mode: str, face_type: FaceType,
                size: int = XSEG_INPUT_SIZE) -> XSegMasks:
    """What DFL's merger gives its XSeg for one face: the predicted face resized (bicubic) to the XSeg
    resolution, and the dst face cut from the frame at that resolution with the swap model's face type
    (DFL's merger runs XSeg on the swap model's cut whatever face type the XSeg was trained on)."""
    prd = cv2.resize(np.clip(prd_face, 0, 1).astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC) \
        if mode in XSEG_PRD_MODES else None
    dst = _cut(frame, job.landmarks, size, face_type)[1] if mode in XSEG_DST_MODES else None
    return prd, dst


def run_xseg(xseg: XSegFunc, faces: Sequence[tuple[np.ndarray, FaceJob, np.ndarray, str]],
             face_type: FaceType) -> list[XSegMasks]:
    """XSeg masks for many faces in one network batch: ``faces`` are (frame, job, predicted face, mask mode)."""
    size = int(getattr(xseg, "resolution", XSEG_INPUT_SIZE))
    inputs = [xseg_inputs(frame, job, prd, mode, face_type, size) for frame, job, prd, mode in faces]
    flat = [x for pair in inputs for x in pair if x is not None]
    if not flat:
        return [(None, None) for _ in faces]
    masks = iter(np.asarray(xseg(np.stack(flat)), np.float32).reshape(len(flat), size, size))
    return [tuple(None if x is None else next(masks) for x in pair) for pair in inputs]  # type: ignore[misc]


def _work_mask(job: FaceJob, prd_face: np.ndarray, prd_mask: np.ndarray, dst_mask: np.ndarray,
               cfg: MergeConfig, face_type: FaceType, frame: np.ndarray, xseg: XSegFunc | None,
               xseg_masks: XSegMasks | None = None) -> np.ndarray:
    """The mask in face space at model resolution, per ``cfg.mask_mode``; the XSeg modes use ``xseg_masks``
    (from :func:`run_xseg`) or run ``xseg`` on this face."""
    size = prd_face.shape[0]
    mode = cfg.mask_mode
    if mode == "full":
        return np.ones((size, size), np.float32)
    if mode == "dst":
        pts = transform_points(job.landmarks, job.face_mat)
        return hull_mask((size, size), pts)[..., 0].astype(np.float32)
    if mode == "learned-prd":
        return prd_mask
    if mode == "learned-dst":
        return dst_mask
    if mode == "learned-prd*learned-dst":
        return prd_mask * dst_mask
    if mode == "learned-prd+learned-dst":
        return np.clip(prd_mask + dst_mask, 0, 1)
    if xseg_masks is None:
        if xseg is None:
            raise DflError(NO_XSEG.format(mode=mode))
        xseg_masks = run_xseg(xseg, [(frame, job, prd_face, mode)], face_type)[0]
    x_prd, x_dst = (None if m is None else cv2.resize(np.asarray(m, np.float32), (size, size),
                                                      interpolation=cv2.INTER_CUBIC) for m in xseg_masks)
    if mode == "XSeg-prd":
        return x_prd
    if mode == "XSeg-dst":
        return x_dst
    if mode == "XSeg-prd*XSeg-dst":
        return x_prd * x_dst
    return prd_mask * dst_mask * x_prd * x_dst


def _shape_mask(mask: np.ndarray, size: int, cfg: MergeConfig) -> np.ndarray:
    """Denoise, upscale to 4x and (unless raw) erode/dilate and feather inside the predicted square."""
    mask = mask.astype(np.float32, copy=True)
    mask[mask < _NOISE] = 0.0
    sub = size * 4
    if mask.shape[0] != sub:
        mask = cv2.resize(mask, (sub, sub), interpolation=cv2.INTER_CUBIC)
    if cfg.is_raw:
        return mask
    pad = size
    mask = np.pad(mask, pad)
    mask = filters.erode_dilate(mask, int(cfg.erode_mask_modifier))
    blur = int(cfg.blur_mask_modifier)
    clip = pad + blur // 2            # fade to zero at the square's edge, not beyond it
    mask[:clip, :] = 0
    mask[-clip:, :] = 0
    mask[:, :clip] = 0
    mask[:, -clip:] = 0
    mask = filters.feather(mask, blur)
    return np.clip(mask[pad:-pad, pad:-pad], 0, 1)


def _transfer(cfg: MergeConfig, face: np.ndarray, dst_face: np.ndarray, area: np.ndarray,
              rng: np.random.Generator | None) -> np.ndarray:
    if cfg.color_transfer_mode == "none":
        return face
    return np.clip(color_transfer(cfg.color_transfer_mode, face, dst_face, mask=area, rng=rng), 0, 1)


def blend_face(frame: np.ndarray, job: FaceJob, prediction: Sequence[np.ndarray], cfg: MergeConfig,
               face_type: FaceType, xseg: XSegFunc | None = None,
               rng: np.random.Generator | None = None, enhancer: FaceEnhancerFunc | None = None,
               xseg_masks: XSegMasks | None = None) -> FaceResult:
    """Blend one predicted face into ``frame`` (uint8 BGR, not modified) per ``cfg``.  The XSeg mask modes
    take ``xseg_masks`` when the caller ran XSeg over a batch (:func:`batch_xseg`), else run ``xseg``."""
    if cfg.super_resolution_power:
        if enhancer is None:
            raise DflError("super resolution: needs DFL's face enhancer (FaceEnhancer.npy in the weights folder)")
        job, prediction = super_resolve(frame, job, prediction, cfg.super_resolution_power, enhancer, face_type)
    h, w = frame.shape[:2]
    prd_face = np.clip(prediction[0], 0, 1).astype(np.float32)
    prd_mask = np.clip(prediction[1], 0, 1).astype(np.float32).reshape(prd_face.shape[:2])
    dst_mask = np.clip(prediction[2], 0, 1).astype(np.float32).reshape(prd_face.shape[:2])
    size = prd_face.shape[0]
    model_size = job.model_size or size     # masks are shaped at 4x the model size, super-resolved or not
    dst_face = job.dst_face

    scale = 1.0 + 0.01 * cfg.output_face_scale
    out_mat = transform_matrix(job.landmarks, size, face_type, scale=scale) if cfg.output_face_scale else job.face_mat
    mask_mat = transform_matrix(job.landmarks, model_size * 4, face_type, scale=scale)

    wrk = _shape_mask(_work_mask(job, prd_face, prd_mask, dst_mask, cfg, face_type, frame, xseg, xseg_masks),
                      model_size, cfg)

    whole_frame = not cfg.is_raw and cfg.mode != "original" and (
        cfg.image_denoise_power or cfg.bicubic_degrade_power or cfg.color_degrade_power)
    if whole_frame:     # DFL degrades the whole frame with these, not just the face
        x0, y0, x1, y1 = 0, 0, w, h
    else:
        pts = np.concatenate([_square_bounds(job.face_mat, size), _square_bounds(out_mat, size)])
        x0, y0, x1, y1 = _roi((h, w), pts)
    rw, rh = x1 - x0, y1 - y0
    img_u8 = frame[y0:y1, x0:x1]
    img = img_u8.astype(np.float32) / 255.0
    face_mat_r = _shift(job.face_mat, x0, y0)
    out_mat_r = _shift(out_mat, x0, y0)
    mask_mat_r = _shift(mask_mat, x0, y0)

    img_mask = _warp_back(wrk, mask_mat_r, (rw, rh)) if rw and rh else np.zeros((rh, rw), np.float32)
    img_mask = np.clip(img_mask, 0, 1)
    img_mask[img_mask < _NOISE] = 0.0
    wrk_small = np.clip(cv2.resize(wrk, (size, size), interpolation=cv2.INTER_CUBIC), 0, 1)[..., None]
    roi = (x0, y0, x1, y1)

    if cfg.mode == "original":
        return FaceResult(roi, img, img_mask, np.zeros((rh, rw), bool))
    if cfg.mode == "raw-rgb":
        face_back = _warp_back(prd_face, out_mat_r, (rw, rh))
        cover = np.clip(_warp_back(np.ones((size, size), np.float32), out_mat_r, (rw, rh)), 0, 1)[..., None]
        out = np.clip(img * (1 - cover) + face_back * cover, 0, 1)
        return FaceResult(roi, out, img_mask, cover[..., 0] > 0)
    if cfg.mode == "raw-predict":
        return FaceResult((0, 0, size, size), prd_face, wrk_small[..., 0], np.ones((size, size), bool), True)

    ys, xs = np.nonzero(img_mask >= 0.1)
    if len(ys) == 0 or min(xs.max() - xs.min(), ys.max() - ys.min()) < 4:
        return FaceResult(roi, img, img_mask, np.zeros((rh, rw), bool))

    area = (wrk_small > 0).astype(np.float32)
    seamless = "seamless" in cfg.mode
    if not seamless:
        prd_face = _transfer(cfg, prd_face, dst_face, area, rng)
    if cfg.mode == "hist-match":
        hm = area if cfg.masked_hist_match else np.ones_like(area)
        white = 1.0 - hm
        a = np.minimum(prd_face * hm + white, 1.0)
        b = np.minimum(dst_face * hm + white, 1.0)
        prd_face = filters.hist_match(a, b, cfg.hist_match_threshold).astype(np.float32)

    out = np.clip(_warp_back(prd_face, out_mat_r, (rw, rh)), 0, 1)
    mask3 = img_mask[..., None]

    if seamless:
        s_mask = None
        for i in range(1, 10):      # DFL: a hard mask at the lowest level that still has pixels
            above = img_mask > i / 10.0
            if above.any():
                s_mask = np.where(above, 1.0, 0.0).astype(np.float32)
                break
        if s_mask is not None:
            m8 = (s_mask * 255).astype(np.uint8)
            bx, by, bw, bh = cv2.boundingRect(m8)
            centre = (int(bx + bw / 2), int(by + bh / 2))
            try:
                out = cv2.seamlessClone((out * 255).astype(np.uint8), np.ascontiguousarray(img_u8), m8, centre,
                                        cv2.NORMAL_CLONE).astype(np.float32) / 255.0
            except cv2.error:
                pass        # DFL also carries on with the plain overlay when cloning fails

    out = img * (1 - mask3) + out * mask3

    mp = cfg.motion_blur_power / 100.0
    post = (seamless and cfg.color_transfer_mode != "none") or cfg.mode == "seamless-hist-match" or mp != 0 \
        or cfg.blursharpen_amount != 0 or cfg.image_denoise_power != 0 or cfg.bicubic_degrade_power != 0
    if post:
        out_face = cv2.warpAffine(out, face_mat_r, (size, size), flags=cv2.INTER_CUBIC)
        if seamless and cfg.color_transfer_mode != "none":
            out_face = _transfer(cfg, out_face, dst_face, area, rng)
        if cfg.mode == "seamless-hist-match":
            out_face = filters.hist_match(out_face, dst_face, cfg.hist_match_threshold).astype(np.float32)
        if mp != 0 and job.motion is not None:
            k = int(job.motion[0] * mp)
            if k >= 1:
                k = int(np.clip(k + 1, 2, 50)) * (2 if job.model_size else 1)   # DFL doubles it at 4x
                out_face = filters.motion_blur(out_face, k, job.motion[1])
        if cfg.blursharpen_amount != 0:
            out_face = filters.blursharpen(out_face, cfg.sharpen_mode, int(cfg.blursharpen_amount), 3)
        if cfg.image_denoise_power != 0:
            img = filters.denoise(img, int(cfg.image_denoise_power))
        if cfg.bicubic_degrade_power != 0:
            img = filters.bicubic_degrade(img, int(cfg.bicubic_degrade_power))
        new_out = _warp_back(out_face, face_mat_r, (rw, rh))
        out = np.clip(img * (1 - mask3) + new_out * mask3, 0, 1)
    if cfg.color_degrade_power != 0:
        out = filters.color_degrade(out, int(cfg.color_degrade_power))
    changed = np.ones((rh, rw), bool) if whole_frame else img_mask > 0
    return FaceResult(roi, np.clip(out, 0, 1).astype(np.float32), img_mask, changed)


def _to_u8(img: np.ndarray) -> np.ndarray:
    """float [0,1] -> uint8 rounded to nearest, with one temporary instead of three."""
    t = img * np.float32(255.0)
    t += np.float32(0.5)
    np.clip(t, 0, 255, out=t)
    return t.astype(np.uint8)


def compose_rois(frame: np.ndarray, results: Sequence[FaceResult]
                 ) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int] | None]:
    """:func:`compose`, plus the rectangle outside which the mask is zero (None: no face touched it).

    Only the faces' rectangles are converted and written, so a 720p frame costs about as much as
    its faces; the folder merger converts the mask to 8 bits inside that rectangle only.
    """
    if results and results[0].whole_image:
        r = results[0]
        m = r.mask.astype(np.float32)
        return _to_u8(r.image), m, (0, 0, m.shape[1], m.shape[0])
    out = frame.copy()
    total = np.zeros(frame.shape[:2], np.float32)
    box: list[int] | None = None
    for k, r in enumerate(results):
        x0, y0, x1, y1 = r.roi
        if x1 <= x0 or y1 <= y0:
            continue
        region = out[y0:y1, x0:x1]
        m = r.mask
        if k == 0:
            merged, where = r.image, r.changed
        else:
            cur = region.astype(np.float32) / 255.0
            merged = cur * (1 - m[..., None]) + r.image * m[..., None]
            where = m > 0
        np.copyto(region, _to_u8(merged), where=where[..., None])
        t = total[y0:y1, x0:x1]
        t += m
        np.clip(t, 0, 1, out=t)
        box = [x0, y0, x1, y1] if box is None else [min(box[0], x0), min(box[1], y0), max(box[2], x1), max(box[3], y1)]
    return out, total, (tuple(box) if box is not None else None)  # type: ignore[return-value]


def compose(frame: np.ndarray, results: Sequence[FaceResult]) -> tuple[np.ndarray, np.ndarray]:
    """Combine the faces of one frame as DFL does -> (uint8 BGR frame, float32 HxW merged mask).

    Pixels no face changed keep the input's exact values.
    """
    image, mask, _ = compose_rois(frame, results)
    return image, mask


def merge_frame(frame: np.ndarray, landmarks_list: Sequence[np.ndarray], predictor: Predictor,
                cfg: MergeConfig, xseg: XSegFunc | None = None,
                motions: Sequence[tuple[float, float] | None] | None = None,
                rng: np.random.Generator | None = None,
                enhancer: FaceEnhancerFunc | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Merge every face of one frame -> (uint8 frame, float32 mask); no faces: the frame unchanged."""
    if not landmarks_list:
        if cfg.mode == "raw-predict":
            r = predictor.resolution
            return np.zeros((r, r, 3), np.uint8), np.zeros((r, r), np.float32)
        return frame.copy(), np.zeros(frame.shape[:2], np.float32)
    jobs = [prepare_face(frame, lm, predictor.resolution, predictor.face_type,
                         motions[i] if motions else None, bool(cfg.super_resolution_power))
            for i, lm in enumerate(landmarks_list)]
    prd, pm, dm = predictor(np.stack([j.dst_face for j in jobs]), morph_value=cfg.morph_value)
    xms = batch_xseg(xseg, [(frame, j, prd[i], cfg) for i, j in enumerate(jobs)], predictor.face_type)
    results = [blend_face(frame, j, (prd[i], pm[i], dm[i]), cfg, predictor.face_type, xseg, rng, enhancer, xms[i])
               for i, j in enumerate(jobs)]
    return compose(frame, results)


def batch_xseg(xseg: XSegFunc | None, faces: Sequence[tuple[np.ndarray, FaceJob, np.ndarray, MergeConfig]],
               face_type: FaceType) -> list[XSegMasks | None]:
    """The XSeg masks of every face whose settings use an XSeg mode, in one network batch; None for the
    others and for faces merged with super resolution (DFL runs XSeg-prd on the enhanced face, which only
    exists inside :func:`blend_face`)."""
    out: list[XSegMasks | None] = [None] * len(faces)
    want = [i for i, (_, _, _, c) in enumerate(faces) if c.needs_xseg and not c.super_resolution_power]
    if not want:
        return out
    if xseg is None:
        raise DflError(NO_XSEG.format(mode=faces[want[0]][3].mask_mode))
    masks = run_xseg(xseg, [(faces[i][0], faces[i][1], faces[i][2], faces[i][3].mask_mode) for i in want], face_type)
    for i, m in zip(want, masks):
        out[i] = m
    return out

