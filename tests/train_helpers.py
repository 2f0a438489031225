"""Synthetic facesets for the training tests: drawn faces with exact 68-point landmarks.

Two "identities" differ in skin colour, face shape and features; each face varies in pose and
expression (mouth opening, eye openness), then goes through the real alignment and faceset writer, so
the trainer reads exactly what an extraction would produce.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def _landmarks(rng: np.random.Generator, ident: int) -> np.ndarray:
    """68 iBUG-ordered points of a frontal face in a unit square (before pose jitter)."""
    wide = 0.36 if ident == 0 else 0.31
    s = np.linspace(-0.05 * np.pi, 1.05 * np.pi, 17)
    jaw = np.stack([0.5 - wide * np.cos(s), 0.42 + 0.48 * np.clip(np.sin(s), -0.2, None)], 1)
    brow_l = np.stack([np.linspace(0.24, 0.44, 5), 0.36 - 0.03 * np.sin(np.linspace(0, np.pi, 5))], 1)
    brow_r = brow_l.copy()
    brow_r[:, 0] = 1.0 - brow_l[::-1, 0]
    brow_r[:, 1] = brow_l[::-1, 1]
    nose_bridge = np.stack([np.full(4, 0.5), np.linspace(0.42, 0.58, 4)], 1)
    nose_low = np.stack([np.linspace(0.44, 0.56, 5), 0.62 + 0.015 * np.sin(np.linspace(0, np.pi, 5))], 1)
    open_eye = rng.uniform(0.3, 1.0)

    def eye(cx: float) -> np.ndarray:
        a = np.linspace(0, 2 * np.pi, 7)[:-1]
        return np.stack([cx - 0.07 * np.cos(a), 0.45 - 0.025 * open_eye * np.sin(a)], 1)

    eye_l, eye_r = eye(0.34), eye(0.66)
    mouth_open = rng.uniform(0.0, 1.0)
    mw = 0.13 if ident == 0 else 0.11
    a = np.linspace(0, 2 * np.pi, 13)[:-1]
    mouth_out = np.stack([0.5 - mw * np.cos(a), 0.76 - (0.03 + 0.04 * mouth_open) * np.sin(a)], 1)
    a = np.linspace(0, 2 * np.pi, 9)[:-1]
    mouth_in = np.stack([0.5 - 0.7 * mw * np.cos(a), 0.76 - 0.035 * mouth_open * np.sin(a)], 1)
    return np.concatenate([jaw, brow_l, brow_r, nose_bridge, nose_low, eye_l, eye_r, mouth_out, mouth_in]).astype(np.float32)


def draw_face(rng: np.random.Generator, ident: int, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(BGR uint8 frame, 68x2 landmarks in it) of one posed face of identity 0 or 1."""
    lm = _landmarks(rng, ident)
    ang = np.deg2rad(rng.uniform(-12, 12))
    scale = size * rng.uniform(0.5, 0.6)
    rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    centre = np.array([size / 2, size / 2]) + rng.uniform(-0.05, 0.05, 2) * size
    pts = ((lm - 0.5) @ rot.T) * scale + centre
    bg = np.array([rng.uniform(40, 90), rng.uniform(60, 110), rng.uniform(40, 90)])
    img = np.empty((size, size, 3), np.float32)
    img[:] = bg
    yy, xx = np.mgrid[:size, :size]
    img += (np.sin(xx / 9.0) * 10)[..., None]
    skin = (70, 120, 200) if ident == 0 else (150, 170, 120)
    hair = (30, 30, 40) if ident == 0 else (60, 140, 200)
    forehead_top = pts[19] + (pts[19] - pts[8]) * 0.35
    hull = np.concatenate([pts[:17], [forehead_top + (pts[26] - pts[17]) * 0.3, forehead_top - (pts[26] - pts[17]) * 0.3]])
    hull = cv2.convexHull(hull.astype(np.float32)).reshape(-1, 2)
    cv2.fillPoly(img, [np.round(hull * 16).astype(np.int32)], hair, lineType=cv2.LINE_AA, shift=4)
    face = cv2.convexHull(np.concatenate([pts[:17], pts[17:27] - (pts[8] - pts[27]) * 0.1]).astype(np.float32)).reshape(-1, 2)
    cv2.fillPoly(img, [np.round(face * 16).astype(np.int32)], skin, lineType=cv2.LINE_AA, shift=4)

    def poly(idx, color, closed=True, thick=-1):
        p = np.round(pts[idx] * 16).astype(np.int32)
        if thick < 0:
            cv2.fillPoly(img, [p], color, lineType=cv2.LINE_AA, shift=4)
        else:
            cv2.polylines(img, [p], closed, color, thick, lineType=cv2.LINE_AA, shift=4)

    eye_col = (200, 120, 40) if ident == 0 else (40, 90, 40)
    poly(list(range(36, 42)), (245, 245, 245))
    poly(list(range(42, 48)), (245, 245, 245))
    for c in (pts[36:42].mean(0), pts[42:48].mean(0)):
        cv2.circle(img, tuple(int(v) for v in c), max(2, int(scale * 0.025)), eye_col, -1, lineType=cv2.LINE_AA)
    poly(list(range(17, 22)), hair, closed=False, thick=3)
    poly(list(range(22, 27)), hair, closed=False, thick=3)
    poly(list(range(27, 31)) + list(range(35, 30, -1)), tuple(s * 0.8 for s in skin), closed=False, thick=2)
    poly(list(range(48, 60)), (60, 60, 190) if ident == 0 else (90, 80, 150))
    poly(list(range(60, 68)), (30, 20, 40))
    img += rng.normal(0, 3, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), pts.astype(np.float32)


def write_faceset(folder: Path, n: int, ident: int, seed: int, size: int = 128, face_type: str = "whole_face") -> list[Path]:
    """Write ``n`` aligned faces of identity ``ident`` into ``folder`` (real alignment + DFL metadata)."""
    from dfl.faces.align import FaceType, transform_matrix, transform_points
    from dfl.faceset import FaceRecord, write_face

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    ft = FaceType.from_string(face_type)
    for i in range(n):
        frame, lm = draw_face(rng, ident)
        mat = transform_matrix(lm, size, ft)
        face = cv2.warpAffine(frame, mat, (size, size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
        rec = FaceRecord(face_type=ft.to_string(), landmarks=transform_points(lm, mat).astype(np.float32),
                         source_filename=f"{i:05d}.png", source_landmarks=lm, image_to_face_mat=mat)
        p = folder / f"{i:05d}_0.jpg"
        write_face(p, face, rec)
        paths.append(p)
    return paths


def make_workspace(root: Path, n: int = 12, size: int = 128, face_type: str = "whole_face") -> Path:
    """A workspace with data_src/aligned (identity 0) and data_dst/aligned (identity 1)."""
    root = Path(root)
    write_faceset(root / "data_src" / "aligned", n, 0, seed=1, size=size, face_type=face_type)
    write_faceset(root / "data_dst" / "aligned", n, 1, seed=2, size=size, face_type=face_type)
    (root / "model").mkdir(parents=True, exist_ok=True)
    return root
