"""Colour transfer: DFL's numbers for rct/lct/mkl, and what each mode is for."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dfl.imageops.color_transfer import MERGE_MODES, color_transfer, idt, lct, mkl, rct, sot

CONFORMANCE = Path(__file__).resolve().parents[2] / "shared" / "conformance"


def _pair(seed: int = 0, size: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """A bluish and a reddish image with texture, values well inside [0, 1] so nothing clips."""
    rng = np.random.default_rng(seed)
    base = rng.random((size, size, 1), dtype=np.float32) * 0.3
    src = np.clip(base + np.float32([0.45, 0.35, 0.25]) + rng.normal(0, 0.03, (size, size, 3)), 0, 1)
    trg = np.clip(base * 0.7 + np.float32([0.25, 0.35, 0.5]) + rng.normal(0, 0.05, (size, size, 3)), 0, 1)
    return src.astype(np.float32), trg.astype(np.float32)


@pytest.mark.shared
@pytest.mark.parametrize("mode,fn", [("rct", rct), ("lct", lct), ("mkl", mkl)])
def test_matches_dfl_conformance_vectors(mode, fn):
    cases = sorted(CONFORMANCE.glob(f"ct_*_{mode}.npy")) if CONFORMANCE.is_dir() else []
    if not cases:
        pytest.skip("../shared/conformance is not available")
    for expected_path in cases:
        i = expected_path.name.split("_")[1]
        src = np.load(CONFORMANCE / f"ct_{i}_src.npy")
        trg = np.load(CONFORMANCE / f"ct_{i}_trg.npy")
        out = fn(src, trg)
        assert out.dtype == np.float32 and out.shape == src.shape
        assert np.abs(out - np.load(expected_path)).max() < 1e-3, f"case {i}"
        assert np.abs(color_transfer(mode, src, trg) - out).max() < 1e-6


def test_linear_modes_take_the_target_colour_statistics():
    src, trg = _pair()
    for fn in (lct, mkl):
        out = fn(src, trg).reshape(-1, 3).astype(np.float64)
        t = trg.reshape(-1, 3).astype(np.float64)
        assert np.allclose(out.mean(0), t.mean(0), atol=2e-3)
        assert np.allclose(np.cov(out.T), np.cov(t.T), atol=2e-4)


def test_rct_matches_lab_statistics_and_masks_focus_them():
    import cv2

    src, trg = _pair(1)
    out = rct(src, trg)
    lab_o = cv2.cvtColor(out, cv2.COLOR_BGR2LAB).reshape(-1, 3)
    lab_t = cv2.cvtColor(trg, cv2.COLOR_BGR2LAB).reshape(-1, 3)
    assert np.allclose(lab_o.mean(0), lab_t.mean(0), atol=0.5)
    # a mask changes the statistics (DFL zeroes masked-out pixels before measuring)
    mask = np.zeros(src.shape[:2] + (1,), np.float32)
    mask[8:40, 8:40] = 1
    assert np.abs(rct(src, trg, mask, mask) - out).max() > 1e-3
    # an image transferred onto itself stays itself
    assert np.abs(rct(src, src) - src).max() < 2e-3


def test_stochastic_modes_move_colours_towards_the_target_and_repeat_with_a_seed():
    src, trg = _pair(2, 32)
    before = np.abs(src.mean((0, 1)) - trg.mean((0, 1))).sum()
    for fn in (idt, sot):
        a = fn(src, trg, rng=np.random.default_rng(5))
        b = fn(src, trg, rng=np.random.default_rng(5))
        assert np.array_equal(a, b)
        assert np.abs(a.mean((0, 1)) - trg.mean((0, 1))).sum() < 0.5 * before
        assert a.min() >= 0 and a.max() <= 1


def test_every_merge_mode_runs_and_masked_modes_need_a_mask():
    src, trg = _pair(3, 32)
    mask = np.zeros((32, 32), np.float32)
    mask[4:28, 6:26] = 1
    for mode in MERGE_MODES:
        out = color_transfer(mode, src, trg, mask=mask, rng=np.random.default_rng(0))
        assert out.shape == src.shape and out.dtype == np.float32
        assert 0 <= out.min() and out.max() <= 1
        assert np.abs(out - src).mean() > 0.01, mode
    with pytest.raises(ValueError):
        color_transfer("mkl-m", src, trg)
    with pytest.raises(ValueError):
        color_transfer("nope", src, trg)
