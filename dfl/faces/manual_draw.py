"""Drawing the manual extractor's window from a :class:`~dfl.faces.manual.ManualEditor` (no events here)."""

from __future__ import annotations

import cv2
import numpy as np

from dfl.faces.align import FaceType, draw_rect_landmarks, transform_points
from dfl.faces.manual import HELP_LINES, ManualEditor
from dfl.ui import text_band

LOCKED_COLOR = (255, 255, 0)          # DFL: landmarks cyan when the square is locked, green while it follows
FREE_COLOR = (0, 255, 0)


def view_image(frame: np.ndarray, scale: float) -> np.ndarray:
    """The frame at the window's scale."""
    h, w = frame.shape[:2]
    if scale == 1.0:
        return frame.copy()
    return cv2.resize(frame, (max(1, int(w * scale)), max(1, int(h * scale))), interpolation=cv2.INTER_LINEAR)


def render(editor: ManualEditor, view: np.ndarray, face_type: FaceType, face_size: int,
           title: str = "") -> np.ndarray:
    """The window's picture: the frame, the square and landmarks (zoomed in on small squares, as DFL
    does), help and a status line."""
    img = view.copy()
    h, w = img.shape[:2]
    s = editor.view_scale
    rect = np.array(editor.rect, np.float64) * s
    lm = None if editor.landmarks is None else np.asarray(editor.landmarks, np.float64) * s
    if editor.zoomed:                                   # map the small square onto half the window
        x, y, r = editor.x * s, editor.y * s, editor.half_size * s
        wh = min(h, w)
        src = np.float32([(x - r, y - r), (x + r, y - r), (x - r, y + r)])
        dst = np.float32([(w / 2 - wh / 4, h / 2 - wh / 4), (w / 2 + wh / 4, h / 2 - wh / 4),
                          (w / 2 - wh / 4, h / 2 + wh / 4)])
        mat = cv2.getAffineTransform(src, dst)
        img = cv2.warpAffine(img, mat, (w, h))
        corners = transform_points(rect.reshape(2, 2), mat).reshape(-1)
        rect = corners
        lm = None if lm is None else transform_points(lm, mat)
    if lm is not None:
        color = LOCKED_COLOR if editor.locked else FREE_COLOR
        draw_rect_landmarks(img, rect, lm, face_size, face_type, landmarks_color=color)
    else:
        l, t, r, b = (int(v) for v in rect)
        cv2.rectangle(img, (l, t), (r, b), (255, 0, 0), 2)
    lines = list(HELP_LINES) if editor.show_help else []
    state = "square by hand" if editor.by_hand else ("locked" if editor.locked else "following the mouse")
    lines.append(f"{title}  frame {editor.index + 1}/{editor.n_frames}  {state}  "
                 f"accurate {'on' if editor.accurate else 'off'}" + ("" if editor.show_help else "  [h] help"))
    text_band(img, lines)
    return img
