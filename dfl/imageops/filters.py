"""Small image filters the merger applies to the predicted face and the frame.

Each follows DeepFaceLab's merger so a setting such as "sharpen 20" or "bicubic degrade 30" looks the
same as users know it.  Images are float32 BGR in [0, 1] unless stated.
"""

from __future__ import annotations

import cv2
import numpy as np

SHARPEN_MODES = ("none", "box", "gaussian")


def erode_dilate(mask: np.ndarray, amount: int) -> np.ndarray:
    """Shrink (``amount`` > 0) or grow (< 0) a float mask with an elliptic kernel of ``|amount|`` px."""
    if amount == 0:
        return mask
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (abs(amount), abs(amount)))
    return cv2.erode(mask, k, iterations=1) if amount > 0 else cv2.dilate(mask, k, iterations=1)


def feather(mask: np.ndarray, blur: int) -> np.ndarray:
    """Gaussian-soften a mask edge over about ``blur`` pixels (kernel made odd)."""
    if blur <= 0:
        return mask
    blur = blur + (1 - blur % 2)
    return cv2.GaussianBlur(mask, (blur, blur), 0)


def motion_blur(img: np.ndarray, size: int, angle_deg: float) -> np.ndarray:
    """Blur along one direction: a line kernel of ``size`` px rotated by ``angle_deg``."""
    if size < 2:
        return img
    k = np.zeros((size, size), dtype=np.float32)
    k[(size - 1) // 2, :] = 1.0
    rot = cv2.getRotationMatrix2D((size / 2 - 0.5, size / 2 - 0.5), angle_deg, 1.0)
    k = cv2.warpAffine(k, rot, (size, size))
    k /= max(float(k.sum()), 1e-8)
    return cv2.filter2D(img, -1, k)


def _median(img: np.ndarray) -> np.ndarray:
    return cv2.medianBlur(np.ascontiguousarray(img, dtype=np.float32), 5)


def blursharpen(img: np.ndarray, sharpen_mode: str | int, amount: int, kernel_size: int = 3) -> np.ndarray:
    """Sharpen (``amount`` > 0, box or gaussian unsharp mask) or blur (< 0, repeated median passes)."""
    if isinstance(sharpen_mode, int):
        sharpen_mode = SHARPEN_MODES[sharpen_mode]
    kernel_size += 1 - kernel_size % 2
    if amount > 0:
        if sharpen_mode == "box":
            k = np.zeros((kernel_size, kernel_size), dtype=np.float32)
            k[kernel_size // 2, kernel_size // 2] = 1.0
            box = np.full((kernel_size, kernel_size), 1.0 / kernel_size ** 2, dtype=np.float32)
            return cv2.filter2D(img, -1, k + (k - box) * amount)
        if sharpen_mode == "gaussian":
            blur = cv2.GaussianBlur(img, (kernel_size, kernel_size), 0)
            return cv2.addWeighted(img, 1.0 + 0.5 * amount, blur, -0.5 * amount, 0)
        return img
    if amount < 0:
        return _median_passes(img, -amount, 10)
    return img


def _median_passes(img: np.ndarray, n: int, per_pass: int) -> np.ndarray:
    """Whole median passes for every ``per_pass`` units of ``n``, then a partial blend for the rest."""
    while n > 0:
        blurred = _median(img)
        if n // per_pass != 0:
            img = blurred
        else:
            p = (n % per_pass) / per_pass
            img = img * (1.0 - p) + blurred * p
        n = max(n - 10, 0)
    return img


def denoise(img: np.ndarray, power: int) -> np.ndarray:
    """DFL's "image degrade by denoise": median passes, 100 units per full pass (0..500)."""
    return _median_passes(img, power, 100) if power > 0 else img


def bicubic_degrade(img: np.ndarray, power: int) -> np.ndarray:
    """Lose detail by a bicubic down- and up-scale; ``power`` 0..100 is how far down."""
    if power <= 0:
        return img
    h, w = img.shape[:2]
    p = 1.0 - power / 101.0
    small = cv2.resize(img, (max(1, int(w * p)), max(1, int(h * p))), interpolation=cv2.INTER_CUBIC)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def reduce_colors(img: np.ndarray, n_colors: int = 256) -> np.ndarray:
    """Quantise to an adaptive palette of ``n_colors`` (the "colour degrade" look of old video)."""
    from PIL import Image

    rgb = (np.clip(img[..., ::-1], 0, 1) * 255.0).astype(np.uint8)
    pal = Image.fromarray(np.ascontiguousarray(rgb)).convert("P", palette=Image.Palette.ADAPTIVE, colors=n_colors)
    out = np.asarray(pal.convert("RGB"), dtype=np.float32) / 255.0
    return np.ascontiguousarray(out[..., ::-1])


def color_degrade(img: np.ndarray, power: int) -> np.ndarray:
    """Blend towards the 256-colour version by ``power`` percent."""
    if power <= 0:
        return img
    reduced = reduce_colors(img, 256)
    a = power / 100.0
    return reduced if power >= 100 else img * (1.0 - a) + reduced * a


def _channel_hist_match(src: np.ndarray, ref: np.ndarray, threshold: float) -> np.ndarray:
    s_vals, s_idx, s_counts = np.unique(src.ravel(), return_inverse=True, return_counts=True)
    r_vals, r_counts = np.unique(ref.ravel(), return_counts=True)
    s_q = np.cumsum(s_counts).astype(np.float64)
    s_q = threshold * s_q / s_q[-1]
    r_q = np.cumsum(r_counts).astype(np.float64)
    r_q = 255.0 * r_q / r_q[-1]
    return np.interp(s_q, r_q, r_vals)[s_idx].reshape(src.shape)


def hist_match(src: np.ndarray, ref: np.ndarray, threshold: float = 255) -> np.ndarray:
    """Per-channel histogram matching of ``src`` to ``ref``; ``threshold`` < 255 stops short of the
    brightest quantiles (DFL's hist-match threshold)."""
    out = np.empty_like(src, dtype=np.float32)
    for c in range(src.shape[-1]):
        out[..., c] = _channel_hist_match(src[..., c], ref[..., c], threshold)
    return out
