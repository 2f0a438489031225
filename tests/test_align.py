"""Alignment must match DeepFaceLab's numbers: facesets and models carry over only if it does."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from dfl.faces.align import (
    FaceType,
    averaged_yaw,
    draw_landmarks,
    draw_rect_landmarks,
    expand_eyebrows,
    eyes_mask,
    eyes_mouth_mask,
    hull_mask,
    mouth_mask,
    pitch_yaw_roll,
    rect_from_landmarks,
    transform_matrix,
    transform_points,
)

SHARED = Path(__file__).resolve().parents[2] / "shared"
ALIGNMENT_JSON = SHARED / "conformance" / "alignment.json"


@pytest.fixture(scope="module")
def cases() -> list[dict]:
    if not ALIGNMENT_JSON.is_file():
        pytest.skip("shared conformance vectors not available")
    return json.loads(ALIGNMENT_JSON.read_text())["cases"]


def _frontal_landmarks(cx: float = 320.0, cy: float = 240.0, s: float = 2.0, roll_deg: float = 0.0) -> np.ndarray:
    """A plausible frontal face: the 3D mean face projected orthographically, scaled and rolled."""
    from dfl.faces.align import _MEAN_FACE_3D

    pts = _MEAN_FACE_3D[:, :2].astype(np.float64) * s
    a = math.radians(roll_deg)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return (pts @ rot.T + [cx, cy]).astype(np.float32)


# ------------------------------------------------------------------------------------- FaceType
def test_face_type_names_and_values_match_dfl() -> None:
    assert FaceType.WHOLE_FACE == 4 and FaceType.HEAD == 10 and FaceType.MARK_ONLY == 100
    for ft in FaceType:
        assert FaceType.from_string(ft.to_string()) is ft
    assert FaceType.from_string("WF") is FaceType.WHOLE_FACE
    assert FaceType.from_string("mf") is FaceType.MID_FULL
    assert FaceType.from_string("head") is FaceType.HEAD
    assert FaceType.FULL_NO_ALIGN.to_string() == "full_face_no_align"
    with pytest.raises(ValueError):
        FaceType.from_string("body")


# ----------------------------------------------------------------------------- conformance
def test_transform_matrices_match_dfl(cases: list[dict]) -> None:
    worst = 0.0
    for case in cases:
        lm = np.array(case["landmarks"])
        for key, expected in case["transform"].items():
            name, size = key.split("@")
            mat = transform_matrix(lm, int(size), FaceType.from_string(name))
            assert mat.shape == (2, 3) and mat.dtype == np.float64
            worst = max(worst, float(np.abs(mat - np.array(expected)).max()))
    assert worst < 1e-3


def test_aligned_landmarks_hull_area_pose_and_yaw_match_dfl(cases: list[dict]) -> None:
    for i, case in enumerate(cases):
        lm = np.array(case["landmarks"])
        aligned = np.array(case["aligned_whole_face_256"])
        ours = transform_points(lm, transform_matrix(lm, 256, FaceType.WHOLE_FACE))
        assert np.abs(ours - aligned).max() < 1e-2, i

        area = float(hull_mask((256, 256), aligned).sum())
        expected = case["hull_mask_area_256"]
        assert abs(area - expected) <= 0.005 * max(expected, 1.0), (i, area, expected)

        pyr = pitch_yaw_roll(aligned, 256)
        assert np.abs(np.array(pyr) - np.array(case["pitch_yaw_roll_256"])).max() < 1e-3, i
        assert abs(averaged_yaw(aligned) - case["averaged_yaw"]) < 1e-6, i


# ------------------------------------------------------------------------ geometric behaviour
def test_transform_points_inverse_round_trip_and_dtype() -> None:
    lm = _frontal_landmarks(roll_deg=17)
    mat = transform_matrix(lm, 256, FaceType.FULL)
    aligned = transform_points(lm, mat)
    assert aligned.dtype == np.float32 and aligned.shape == (68, 2)
    back = transform_points(aligned, mat, invert=True)
    assert np.abs(back - lm).max() < 1e-3
    single = transform_points(np.array([1.0, 2.0]), mat)
    assert single.shape == (2,)


def test_alignment_removes_roll_and_no_align_keeps_it_upright() -> None:
    upright = _frontal_landmarks(roll_deg=0)
    rolled = _frontal_landmarks(roll_deg=30)
    a = transform_points(upright, transform_matrix(upright, 256, FaceType.WHOLE_FACE))
    b = transform_points(rolled, transform_matrix(rolled, 256, FaceType.WHOLE_FACE))
    assert np.abs(a - b).max() < 0.05                      # aligned faces look the same
    # eyes level and face centred horizontally in the aligned face
    assert abs(b[36, 1] - b[45, 1]) < 0.05
    assert abs((b[36, 0] + b[45, 0]) / 2 - 128) < 3
    m = transform_matrix(rolled, 256, FaceType.HEAD_NO_ALIGN)
    assert abs(m[0, 1]) < 1e-9 and abs(m[1, 0]) < 1e-9   # no rotation


def test_bigger_face_types_cover_more_and_scale_zooms() -> None:
    lm = _frontal_landmarks()
    scales = [transform_matrix(lm, 256, ft)[0, 0] for ft in
              (FaceType.HALF, FaceType.MID_FULL, FaceType.FULL, FaceType.WHOLE_FACE, FaceType.HEAD)]
    assert all(x > y for x, y in zip(scales, scales[1:]))   # fewer pixels of face per frame pixel
    assert math.isclose(transform_matrix(lm, 256, FaceType.FULL, scale=2.0)[0, 0], 2 * scales[2], rel_tol=1e-5)
    with pytest.raises(ValueError):
        transform_matrix(lm, 256, FaceType.MARK_ONLY)
    l, t, r, b = rect_from_landmarks(lm)
    assert l < lm[:, 0].mean() < r and t < lm[:, 1].mean() < b


# --------------------------------------------------------------------------------- masks
def test_hull_mask_covers_face_and_eyebrow_expansion_grows_it() -> None:
    lm = transform_points(_frontal_landmarks(), transform_matrix(_frontal_landmarks(), 128, FaceType.WHOLE_FACE))
    m1 = hull_mask((128, 128), lm)
    assert m1.shape == (128, 128, 1) and m1.dtype == np.float32
    assert set(np.unique(m1)) <= {0.0, 1.0}
    nose = lm[30].astype(int)
    assert m1[nose[1], nose[0], 0] == 1.0 and m1[0, 0, 0] == 0.0
    m2 = hull_mask((128, 128), lm, eyebrows_expand_mod=2.0)
    m0 = hull_mask((128, 128), lm, eyebrows_expand_mod=0.0)
    assert m0.sum() < m1.sum() < m2.sum()
    brows = expand_eyebrows(lm, 1.0)
    assert brows.dtype.kind == "i" and (brows[17:27, 1] <= lm[17:27, 1] + 1).all()


def test_eye_and_mouth_masks_sit_on_eyes_and_mouth() -> None:
    lm = transform_points(_frontal_landmarks(), transform_matrix(_frontal_landmarks(), 128, FaceType.WHOLE_FACE))
    eyes = eyes_mask((128, 128, 3), lm)
    mouth = mouth_mask((128, 128), lm)
    both = eyes_mouth_mask((128, 128), lm)
    assert eyes.shape == mouth.shape == both.shape == (128, 128, 1)
    eye = lm[36:42].mean(0).astype(int)
    mc = lm[60:68].mean(0).astype(int)
    assert eyes[eye[1], eye[0], 0] > 0.5 and eyes[mc[1], mc[0], 0] < 0.05
    assert mouth[mc[1], mc[0], 0] > 0.5
    assert both.max() <= 1.0 and both[eye[1], eye[0], 0] > 0.5 and both[mc[1], mc[0], 0] > 0.5


def _projected_head(yaw_deg: float = 0.0, pitch_deg: float = 0.0, size: int = 256) -> np.ndarray:
    """The 3D mean head turned and seen by a pinhole camera of focal length ``size``."""
    from dfl.faces.align import _MEAN_FACE_3D

    a, b = math.radians(yaw_deg), math.radians(pitch_deg)
    ry = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    rx = np.array([[1, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]])
    p = _MEAN_FACE_3D.astype(np.float64) @ (rx @ ry).T
    p[:, 2] += 600
    return (size * p[:, :2] / p[:, 2:3] + size / 2).astype(np.float32)


def test_pose_recovers_known_rotations_and_yaw_sign() -> None:
    assert np.abs(pitch_yaw_roll(_projected_head(), 256)).max() < 1e-3
    _, yaw, _ = pitch_yaw_roll(_projected_head(yaw_deg=20), 256)
    assert abs(yaw - math.radians(20)) < 1e-3
    pitch, _, _ = pitch_yaw_roll(_projected_head(pitch_deg=15), 256)
    assert abs(pitch + math.radians(15)) < 1e-3            # DFL reports -pitch
    assert averaged_yaw(_projected_head(yaw_deg=20)) > 0 > averaged_yaw(_projected_head(yaw_deg=-20))


# ------------------------------------------------------------------------------ drawing
def test_debug_drawing_marks_landmarks_rect_and_square() -> None:
    img = np.zeros((480, 640, 3), np.uint8)
    lm = _frontal_landmarks(roll_deg=10)
    l, t, r, b = (int(v) for v in rect_from_landmarks(lm))
    draw_rect_landmarks(img, (l, t, r, b), lm, 256, FaceType.WHOLE_FACE, transparent_mask=True)
    assert img[..., 1].max() == 255                        # green landmarks
    assert img[t, (l + r) // 2, 0] == 255                  # blue detector box
    assert img[..., 2].max() == 255                        # red aligned square
    small = np.zeros((64, 64), np.uint8)
    draw_landmarks(small, _frontal_landmarks(32, 32, 0.3), color=255, draw_circles=False)
    assert small.max() == 255
