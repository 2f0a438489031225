"""A drawn stand-in face with 68 landmarks, for benchmarks and tests that must run without media."""

from __future__ import annotations

import math

import cv2
import numpy as np


def template_landmarks(cx: float, cy: float, width: float) -> np.ndarray:
    """68 iBUG-ordered points of an upright, frontal face ``width`` px wide centred at (cx, cy)."""
    pts: list[tuple[float, float]] = []
    for i in range(17):                                   # jaw, ear to ear through the chin
        t = math.pi * i / 16
        pts.append((-0.5 * math.cos(t), 0.62 * math.sin(t) - 0.02))
    for side in (-1, 1):                                  # eyebrows
        xs = np.linspace(0.40, 0.10, 5) if side < 0 else np.linspace(0.10, 0.40, 5)
        for x in xs:
            pts.append((side * x if side > 0 else -x, -0.22 - 0.05 * math.sin(math.pi * (x - 0.1) / 0.3)))
    for k in range(4):                                    # nose bridge
        pts.append((0.0, -0.12 + 0.1 * k))
    for x in np.linspace(-0.1, 0.1, 5):                   # nostrils
        pts.append((float(x), 0.25 - 0.02 * (1 - abs(x) / 0.1)))
    for cxe in (-0.22, 0.22):                             # eyes, 6 points each
        for a in (180, 135, 45, 0, 315, 225):
            r = math.radians(a)
            pts.append((cxe + 0.08 * math.cos(r), -0.05 - 0.03 * math.sin(r)))
    for k in range(12):                                   # outer lip
        r = math.pi - 2 * math.pi * k / 12
        pts.append((0.2 * math.cos(r), 0.42 - 0.08 * math.sin(r)))
    for k in range(8):                                    # inner lip
        r = math.pi - 2 * math.pi * k / 8
        pts.append((0.12 * math.cos(r), 0.42 - 0.03 * math.sin(r)))
    lm = np.array(pts, np.float64)
    return lm * width + np.array([cx, cy])


def draw_face(img: np.ndarray, landmarks: np.ndarray, skin=(120, 150, 200)) -> np.ndarray:
    """Paint a crude face (skin hull, eyes, mouth) under ``landmarks`` into uint8 ``img``, in place."""
    lm = landmarks.astype(np.int32)
    cv2.fillConvexPoly(img, cv2.convexHull(np.concatenate([lm[0:17], lm[17:27]])), skin, cv2.LINE_AA)
    for a, b in ((36, 42), (42, 48)):
        cv2.fillPoly(img, [lm[a:b]], (40, 40, 40), cv2.LINE_AA)
    cv2.fillPoly(img, [lm[48:60]], (60, 60, 170), cv2.LINE_AA)
    return img
