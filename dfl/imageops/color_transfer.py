"""Colour transfer: make one image's colours look like another's.

The merger uses these to match the predicted face to the lighting of the dst frame, and the trainer uses
them (``ct_mode``) to randomise src colours towards dst samples.  ``rct``, ``lct`` and ``mkl`` reproduce
DeepFaceLab's numbers (checked against ``../shared/conformance/ct_*``), including DFL's quirks such as
masked Reinhard statistics that count the zeroed-out pixels, so old settings look the same here.

All functions take float32 BGR images in [0, 1], ``HxWx3``, and return a new float32 image of the
shape of ``src``; ``src`` is the image that changes, ``trg`` the one whose colours are copied.
"""

from __future__ import annotations

import cv2
import numpy as np

MODES = ("rct", "lct", "mkl", "idt", "sot")
"""Modes of :func:`color_transfer` (the trainer's ``ct_mode`` choices)."""

MERGE_MODES = ("rct", "lct", "mkl", "mkl-m", "idt", "idt-m", "sot-m", "mix-m")
"""The merger's colour-transfer modes; ``-m`` variants look only at pixels inside the face mask."""

_EPS = float(np.finfo(float).eps)


def _as_float(img: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(img, dtype=np.float32)


def rct(src: np.ndarray, trg: np.ndarray, src_mask: np.ndarray | None = None,
        trg_mask: np.ndarray | None = None, mask_cutoff: float = 0.5) -> np.ndarray:
    """Reinhard transfer in L*a*b*: match each channel's mean and spread to ``trg``'s.

    With masks, pixels under ``mask_cutoff`` are set to 0 before the statistics are taken (as DFL does;
    they still count), so the face's statistics dominate without changing DFL's results.
    """
    src_lab = cv2.cvtColor(_as_float(src), cv2.COLOR_BGR2LAB)
    trg_lab = cv2.cvtColor(_as_float(trg), cv2.COLOR_BGR2LAB)

    def stats(lab: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        if mask is not None:
            lab = lab.copy()
            lab[np.asarray(mask).reshape(lab.shape[:2]) < mask_cutoff] = 0
        flat = lab.reshape(-1, 3)
        return flat.mean(axis=0), flat.std(axis=0)

    s_mean, s_std = stats(src_lab, src_mask)
    t_mean, t_std = stats(trg_lab, trg_mask)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (src_lab - s_mean) * (t_std / s_std) + t_mean
    out = np.nan_to_num(out.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    np.clip(out[..., 0], 0, 100, out=out[..., 0])
    np.clip(out[..., 1:], -127, 127, out=out[..., 1:])
    return cv2.cvtColor(out, cv2.COLOR_LAB2BGR)


def _sqrtm_sym(c: np.ndarray) -> np.ndarray:
    vals, vecs = np.linalg.eigh(c)
    return (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T


def lct(src: np.ndarray, trg: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """Linear (PCA-basis) transfer: map ``src``'s colour covariance onto ``trg``'s."""
    src = _as_float(src)
    trg = _as_float(trg)
    c = src.shape[-1]
    s = src.reshape(-1, c)
    t = trg.reshape(-1, c)
    mu_s = s.mean(axis=0)
    mu_t = t.mean(axis=0)
    ds = (s - mu_s).T
    dt = (t - mu_t).T
    cov_s = ds @ ds.T / ds.shape[1] + eps * np.eye(c)
    cov_t = dt @ dt.T / dt.shape[1] + eps * np.eye(c)
    q_s = _sqrtm_sym(cov_s)
    q_t = _sqrtm_sym(cov_t)
    out = (q_t @ np.linalg.inv(q_s) @ ds).T + mu_t
    return np.clip(out.reshape(src.shape), 0, 1).astype(np.float32)


def mkl(src: np.ndarray, trg: np.ndarray) -> np.ndarray:
    """Monge-Kantorovich linear transfer: the optimal linear map between the two colour Gaussians."""
    src = _as_float(src)
    trg = _as_float(trg)
    c = src.shape[-1]
    x0 = src.reshape(-1, c).astype(np.float64)
    x1 = trg.reshape(-1, c).astype(np.float64)
    a = np.cov(x0.T)
    b = np.cov(x1.T)
    va, ua = np.linalg.eigh(a)
    da = np.sqrt(np.clip(va, _EPS, None))
    a_half = (ua * da)                       # Ua Da
    inner = a_half.T @ b @ a_half            # Da Ua^T B Ua Da
    vc, uc = np.linalg.eigh(inner)
    inner_sqrt = (uc * np.sqrt(np.clip(vc, _EPS, None))) @ uc.T
    a_inv_half = ua / da                     # Ua Da^-1
    t = a_inv_half @ inner_sqrt @ a_inv_half.T
    out = (x0 - x0.mean(axis=0)) @ t + x1.mean(axis=0)
    return np.clip(out.reshape(src.shape).astype(np.float32), 0, 1)


def _random_rotation(n: int, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random rotation (det +1), from the QR decomposition of a Gaussian matrix."""
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def idt(src: np.ndarray, trg: np.ndarray, bins: int = 256, n_rot: int = 20,
        rng: np.random.Generator | None = None) -> np.ndarray:
    """Iterative distribution transfer: match 1-D histograms along random rotations, relaxed.

    Stochastic like DFL's; pass ``rng`` for repeatable results.
    """
    rng = rng if rng is not None else np.random.default_rng()
    src = _as_float(src)
    c = src.shape[-1]
    d0 = src.reshape(-1, c).T.astype(np.float32)
    d1 = _as_float(trg).reshape(-1, c).T
    relaxation = 1.0 / n_rot
    for _ in range(n_rot):
        r = _random_rotation(c, rng).astype(np.float32)
        d0r = r @ d0
        d1r = r @ d1
        d_r = np.empty_like(d0)
        for j in range(c):
            lo = min(d0r[j].min(), d1r[j].min())
            hi = max(d0r[j].max(), d1r[j].max())
            p0, edges = np.histogram(d0r[j], bins=bins, range=(lo, hi))
            p1, _ = np.histogram(d1r[j], bins=bins, range=(lo, hi))
            cp0 = p0.cumsum().astype(np.float32)
            cp0 /= max(cp0[-1], 1.0)
            cp1 = p1.cumsum().astype(np.float32)
            cp1 /= max(cp1[-1], 1.0)
            f = np.interp(cp0, cp1, edges[1:])
            d_r[j] = np.interp(d0r[j], edges[1:], f, left=0, right=bins)
        d0 = relaxation * np.linalg.solve(r, d_r - d0r) + d0
    return np.clip(d0.T.reshape(src.shape), 0, 1).astype(np.float32)


def sot(src: np.ndarray, trg: np.ndarray, steps: int = 10, batch_size: int = 5, reg_sigma_xy: float = 16.0,
        reg_sigma_v: float = 5.0, rng: np.random.Generator | None = None, clip: bool = True) -> np.ndarray:
    """Sliced optimal transport: move sorted projections of ``src`` onto ``trg``'s along random
    directions, then smooth the change with a bilateral filter so edges stay put.

    Works on any value range when ``clip`` is False (mix-m uses 0..255)."""
    rng = rng if rng is not None else np.random.default_rng()
    src = _as_float(src)
    trg = _as_float(trg)
    if src.shape != trg.shape:
        raise ValueError("sot: src and trg must have the same shape")
    h, w, c = src.shape
    cur = src.reshape(-1, c).copy()
    t = trg.reshape(-1, c)
    for _ in range(steps):
        advect = np.zeros_like(cur)
        for _ in range(batch_size):
            d = rng.standard_normal(c).astype(np.float32)
            d /= np.linalg.norm(d)
            ps = cur @ d
            pt = t @ d
            ids = np.argsort(ps)
            idt_ = np.argsort(pt)
            advect[ids] += np.outer(pt[idt_] - ps[ids], d)
        cur += advect / batch_size
    out = cur.reshape(h, w, c)
    if reg_sigma_xy != 0.0:
        diff = cv2.bilateralFilter(out - src, 0, reg_sigma_v, reg_sigma_xy)
        out = src + diff.reshape(h, w, c)
    return np.clip(out, 0, 1) if clip else out


def mix(src: np.ndarray, trg: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    """DFL's mix-m: lightness by linear transfer, colour (a*b* at fixed lightness) by sliced OT."""
    s8 = np.clip(src * 255.0, 0, 255).astype(np.uint8)
    t8 = np.clip(trg * 255.0, 0, 255).astype(np.uint8)
    s_lab = cv2.cvtColor(s8, cv2.COLOR_BGR2LAB)
    t_lab = cv2.cvtColor(t8, cv2.COLOR_BGR2LAB)
    light = lct(s_lab[..., 0:1].astype(np.float32) / 255.0, t_lab[..., 0:1].astype(np.float32) / 255.0)
    light = np.clip(light[..., 0] * 255.0, 0, 255).astype(np.uint8)
    s_lab[..., 0] = 100
    t_lab[..., 0] = 100
    s_col = cv2.cvtColor(s_lab, cv2.COLOR_LAB2BGR).astype(np.float32)
    t_col = cv2.cvtColor(t_lab, cv2.COLOR_LAB2BGR).astype(np.float32)
    moved = np.clip(sot(s_col, t_col, rng=rng, clip=False), 0, 255).astype(np.uint8)
    moved = cv2.cvtColor(moved, cv2.COLOR_BGR2LAB)
    moved[..., 0] = light
    return (cv2.cvtColor(moved, cv2.COLOR_LAB2BGR) / 255.0).astype(np.float32)


def color_transfer(mode: str, src: np.ndarray, trg: np.ndarray, mask: np.ndarray | None = None,
                   rng: np.random.Generator | None = None) -> np.ndarray:
    """Dispatch by name: the trainer's ``rct/lct/mkl/idt/sot`` and the merger's masked variants.

    ``mask`` (HxW or HxWx1, 0..1) is used by ``rct`` (statistics) and by the ``-m`` modes, which
    transfer between the masked images (pixels outside become black), as DFL's merger does.
    """
    src = _as_float(src)
    trg = _as_float(trg)
    m = None if mask is None else np.asarray(mask, dtype=np.float32).reshape(src.shape[:2] + (1,))
    if mode.endswith("-m"):
        if m is None:
            raise ValueError(f"colour transfer {mode} needs a mask")
        src, trg = src * m, trg * m
        mode = mode[:-2]
        if mode == "sot":
            return sot(src, trg, steps=10, batch_size=30, rng=rng)
        if mode == "mix":
            return mix(src, trg, rng=rng)
    if mode == "rct":
        return rct(src, trg, m, m)
    if mode == "lct":
        return lct(src, trg)
    if mode == "mkl":
        return mkl(src, trg)
    if mode == "idt":
        return idt(src, trg, rng=rng)
    if mode == "sot":
        return sot(src, trg, rng=rng)
    raise ValueError(f"unknown colour transfer mode {mode!r} (choose from {', '.join(MERGE_MODES + ('sot',))})")
