"""Drawing the XSeg editor's window from an :class:`~dfl.xseg.editor.XSegEditor` (no events here).

As DFL's editor paints it: the face (or the labels' mask, or the XSeg mask; the XSeg mask can also darken
what lies outside it by half), include polygons as solid outlines and exclude polygons dashed in the
chosen colour, the polygon under the mouse filled lightly, crosses on the points of the polygon being
drawn or edited, the rubber band to the mouse while drawing and a ring on the first point when a click
there would close the polygon.
"""

from __future__ import annotations

import cv2
import numpy as np

from dfl.ui import text_band
from dfl.xseg.editor import HELP_LINES, PT_RADIUS, Mode, View, XSegEditor, label_mask_of
from dfl.xseg.polygons import type_name

COLORS = ((0, 0, 192), (0, 192, 0), (192, 0, 0))     # BGR: DFL's red, green and blue schemes
FILL_ALPHA = 72 / 255                                  # DFL's selected-polygon brush
BACKGROUND = (32, 32, 32)
DASH, GAP = 6, 4


def face_mask_view(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """An XSeg mask (any size, stored 256 px) at the face's size, as DFL's editor scales it (cubic)."""
    m = np.asarray(mask, np.float32)
    if m.ndim == 3:
        m = m[..., 0]
    if m.shape != (height, width):
        m = cv2.resize(m, (width, height), interpolation=cv2.INTER_CUBIC)
    return np.clip(m, 0.0, 1.0)


def _base(editor: XSegEditor, face: np.ndarray, xseg: np.ndarray | None) -> np.ndarray:
    h, w = face.shape[:2]
    if editor.view == View.LABELS:
        return cv2.cvtColor((label_mask_of(editor) * 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)
    if editor.view == View.XSEG:
        m = np.zeros((h, w), np.float32) if xseg is None else face_mask_view(xseg, h, w)
        return cv2.cvtColor((m * 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)
    if editor.overlay and xseg is not None:
        m = face_mask_view(xseg, h, w)[..., None]
        f = face.astype(np.float32) / 255.0
        return np.clip((f * (1 - m) * 0.5 + f * m) * 255, 0, 255).astype(np.uint8)
    return face


def _dashed(img: np.ndarray, pts: np.ndarray, closed: bool, color: tuple, thickness: int) -> None:
    ends = np.concatenate([pts, pts[:1]]) if closed else pts
    for a, b in zip(ends[:-1], ends[1:]):
        length = float(np.hypot(*(b - a)))
        if length == 0:
            continue
        d = (b - a) / length
        for s in np.arange(0.0, length, DASH + GAP):
            p, q = a + d * s, a + d * min(s + DASH, length)
            cv2.line(img, tuple(np.round(p).astype(int)), tuple(np.round(q).astype(int)), color, thickness,
                     cv2.LINE_AA)


def _cross(img: np.ndarray, p: np.ndarray, color: tuple, r: int = PT_RADIUS, x: bool = False) -> None:
    c = np.round(p).astype(int)
    if x:
        cv2.line(img, tuple(c - 2 * r), tuple(c + 2 * r), color, 1, cv2.LINE_AA)
        cv2.line(img, (c[0] - 2 * r, c[1] + 2 * r), (c[0] + 2 * r, c[1] - 2 * r), color, 1, cv2.LINE_AA)
    cv2.line(img, (c[0], c[1] - r), (c[0], c[1] + r), color, 1, cv2.LINE_AA)
    cv2.line(img, (c[0] - r, c[1]), (c[0] + r, c[1]), color, 1, cv2.LINE_AA)


def _polygons(img: np.ndarray, editor: XSegEditor) -> None:
    color = COLORS[editor.color]
    hover = editor.hover_polygon() if editor.mode == Mode.NONE else None
    hover_pt = editor.hover_point()
    for i, poly in enumerate(editor.polys):
        pts = editor.to_view(poly.pts)
        is_op = i == editor.op
        if i == hover:
            layer = img.copy()
            cv2.fillPoly(layer, [np.round(pts).astype(np.int32)], color, cv2.LINE_AA)
            cv2.addWeighted(layer, FILL_ALPHA, img, 1 - FILL_ALPHA, 0, dst=img)
        line = np.concatenate([pts, editor.mouse[None]]) if is_op and editor.mode == Mode.DRAW else pts
        if poly.type == 1:
            if len(line) >= 2:
                cv2.polylines(img, [np.round(line).astype(np.int32)], True, color, 2, cv2.LINE_AA)
        elif len(line) >= 2:
            _dashed(img, line, True, color, 2)
        if not is_op:
            continue
        for j, p in enumerate(pts):
            if editor.mode == Mode.DRAW or not editor.point_edit:
                _cross(img, p, color)
            elif j == hover_pt:
                _cross(img, p, color, x=True)
        if editor.can_close and hover_pt == 0:
            cv2.circle(img, tuple(np.round(pts[0]).astype(int)), 2 * PT_RADIUS, (255, 255, 255), 1, cv2.LINE_AA)
        if editor.mode == Mode.EDIT and editor.point_edit and hover_pt is None:
            edge, at = editor.hover_edge()
            if edge is not None:
                _cross(img, at, color)


def state_line(editor: XSegEditor) -> str:
    mode = {Mode.NONE: "", Mode.DRAW: "drawing", Mode.EDIT: "editing"}[editor.mode]
    if editor.mode == Mode.EDIT and editor.point_edit:
        mode += " (add/delete points)"
    view = {View.FACE: "", View.LABELS: "labels' mask", View.XSEG: "XSeg mask"}[editor.view]
    parts = [f"new: {type_name(editor.include_type)}", mode, view, "overlay" if editor.overlay else ""]
    return "  ".join(p for p in parts if p)


def render(editor: XSegEditor, face: np.ndarray, xseg: np.ndarray | None = None, status: str = "") -> np.ndarray:
    """The window's picture (``editor.canvas`` sized): ``face`` BGR uint8, ``xseg`` the XSeg mask shown by
    ``5`` and ````` (None: none), ``status`` the session's line (file, position, counts)."""
    w, h = editor.canvas
    base = _base(editor, face, xseg)
    flags = cv2.INTER_NEAREST if editor.view_scale >= 4 else cv2.INTER_LINEAR   # pixels stay sharp zoomed in
    img = cv2.warpAffine(base, editor.view_matrix(), (w, h), flags=flags, borderMode=cv2.BORDER_CONSTANT,
                         borderValue=BACKGROUND)
    if editor.view == View.FACE:
        _polygons(img, editor)
    if editor.show_help:
        text_band(img, HELP_LINES, scale=0.42)
    text_band(img, [f"{status}  {state_line(editor)}" + ("" if editor.show_help else "  [h] help")], top=None,
              scale=0.45)
    return img
