"""DFL's training augmentation warps: a random grid warp plus a random affine, shared by training and merge.

DFL teaches the autoencoder to undo a smooth random distortion (the "random warp"): the input face is
remapped through a coarse grid whose inner points are jittered, the target is the same face under the
same affine but without the grid.  The numbers here (grid cell sizes of w/2, w/4 or w/8, jitter of 0.24
of a cell from a truncated normal, work at 64 px at least, flip with probability 0.4) follow DFL so that
training behaves as users know it.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

MIN_WARP_SIZE = 64  # DFL warps small faces at 64 px and resizes back, so the grid keeps some cells


@dataclass
class WarpParams:
    """One sample's random augmentation; applying it to image and masks keeps them aligned."""

    mapx: np.ndarray        # (w, w) float32 remap tables of the grid warp
    mapy: np.ndarray
    affine: np.ndarray      # (2, 3) float64 rotation/scale/shift about the centre
    size: int               # working size (>= 64)
    out_size: int           # size of the images the params were made for
    flip: bool


def truncated_normal(rng: np.random.Generator, shape: tuple[int, ...], trunc: float = 2.5) -> np.ndarray:
    """Standard normal values redrawn until inside +-trunc, scaled to [-1, 1] (DFL's random_normal)."""
    out = rng.standard_normal(shape)
    bad = np.abs(out) > trunc
    while bad.any():
        out[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(out) > trunc
    return (out / trunc).astype(np.float32)


def random_warp_grid(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Remap tables (mapx, mapy) of DFL's random grid warp for a ``size`` x ``size`` image."""
    cell = [size // 2, size // 4, size // 8][int(rng.integers(3))]
    count = size // cell + 1
    pts = np.linspace(0, size, count, dtype=np.float32)
    mapx = np.broadcast_to(pts, (count, count)).copy()
    mapy = mapx.T.copy()
    if count > 2:
        mapx[1:-1, 1:-1] += truncated_normal(rng, (count - 2, count - 2)) * (cell * 0.24)
        mapy[1:-1, 1:-1] += truncated_normal(rng, (count - 2, count - 2)) * (cell * 0.24)
    half = cell // 2
    big = size + cell
    mapx = cv2.resize(mapx, (big, big))[half:half + size, half:half + size].astype(np.float32)
    mapy = cv2.resize(mapy, (big, big))[half:half + size, half:half + size].astype(np.float32)
    return np.ascontiguousarray(mapx), np.ascontiguousarray(mapy)


def gen_warp_params(size: int, rng: np.random.Generator, flip: bool = False,
                    rotation_range: tuple[float, float] = (-10.0, 10.0),
                    scale_range: tuple[float, float] = (-0.15, 0.15),
                    tx_range: tuple[float, float] = (-0.05, 0.05),
                    ty_range: tuple[float, float] = (-0.05, 0.05)) -> WarpParams:
    """Draw one sample's augmentation: grid warp, rotation (deg), scale 1+s, shift (fraction of size), flip.

    ``flip`` allows a horizontal flip, which then happens with probability 0.4 as in DFL.
    """
    out_size = size
    w = max(size, MIN_WARP_SIZE)
    rotation = rng.uniform(*rotation_range)
    scale = rng.uniform(1 + scale_range[0], 1 + scale_range[1])
    tx = rng.uniform(*tx_range)
    ty = rng.uniform(*ty_range)
    do_flip = bool(flip and rng.integers(10) < 4)
    mapx, mapy = random_warp_grid(w, rng)
    affine = cv2.getRotationMatrix2D((w // 2, w // 2), rotation, scale)
    affine[:, 2] += (tx * w, ty * w)
    return WarpParams(mapx, mapy, affine, w, out_size, do_flip)


def warp_affine(img: np.ndarray, mat: np.ndarray, size: int, border_replicate: bool = True,
                interpolation: int = cv2.INTER_CUBIC) -> np.ndarray:
    """``cv2.warpAffine`` to a ``size`` square keeping a trailing channel axis of 1 when given."""
    border = cv2.BORDER_REPLICATE if border_replicate else cv2.BORDER_CONSTANT
    out = cv2.warpAffine(img, mat, (size, size), borderMode=border, flags=interpolation)
    if img.ndim == 3 and out.ndim == 2:
        out = out[..., None]
    return out


def warp_by_params(params: WarpParams, img: np.ndarray, can_warp: bool, can_transform: bool,
                   can_flip: bool, border_replicate: bool = True,
                   interpolation: int = cv2.INTER_CUBIC) -> np.ndarray:
    """Apply ``params`` to an image or mask (HxW or HxWxC) of the size the params were drawn for."""
    keep_channel = img.ndim == 3 and img.shape[2] == 1
    w = params.size
    resized = img.shape[0] != w
    if resized:
        img = cv2.resize(img, (w, w), interpolation=interpolation)
    if can_warp:
        img = cv2.remap(img, params.mapx, params.mapy, interpolation)
    if can_transform:
        border = cv2.BORDER_REPLICATE if border_replicate else cv2.BORDER_CONSTANT
        img = cv2.warpAffine(img, params.affine, (w, w), borderMode=border, flags=interpolation)
    if resized:
        img = cv2.resize(img, (params.out_size, params.out_size), interpolation=interpolation)
    if keep_channel and img.ndim == 2:
        img = img[..., None]
    if can_flip and params.flip:
        img = img[:, ::-1]
    return np.ascontiguousarray(img)
