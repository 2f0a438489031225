"""DFL's XSeg editor as a state machine: mouse and key events in, polygons and view state out.

No drawing and no files here: :mod:`dfl.xseg.draw` paints the state, :mod:`dfl.xseg.session` loads and
saves faces and runs the window.  DFL's editor (``XSegEditor/XSegEditor.py``, a Qt app) is the model:

* left click on empty space starts a polygon of the current kind (``q`` include, ``w`` exclude) and
  each further click adds a point; clicking the first point (3+ points) or Enter closes it;
* a click on a polygon's outline selects it for editing: drag its points to move them; with Ctrl held
  (or ``e`` toggled) a click on a point deletes it and a click on an edge inserts one there; a click on
  empty space ends editing; Delete (or Backspace) deletes the selected polygon;
* ``z`` undoes and ``y`` redoes (Ctrl+Z / Ctrl+Shift+Z where the window reports them): points while
  drawing, as DFL, and here also moves, inserted or deleted points and deleted polygons;
* the wheel zooms around the mouse, the middle (or right) button drags the view;
* ``1`` ``2`` ``3`` red / green / blue outlines, ``4`` the labels' mask, ``5`` the XSeg mask, `````
  the XSeg mask over the face;
* ``a`` / ``d`` previous / next face (Shift: 5 at a time), ``n`` / ``N`` next / previous face without
  labels, ``l`` / ``L`` next / previous labelled face (DFL: Ctrl+D / Ctrl+A), ``x`` moves the face to
  the trash, Esc stops editing a polygon, else quits; the session saves a face when leaving it.

Mouse positions are view pixels; polygons are kept in face pixels.  Polygons with fewer than 3 points
never survive leaving the drawing mode, as in DFL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

from dfl.faceset.record import EXCLUDE, INCLUDE, polys_mask
from dfl.ui import Event, MouseEvent
from dfl.xseg.polygons import Polygon, edge_under, from_record, near_outline, point_under, sort_polys, to_record

PT_RADIUS = 4                  # DFL's CanvasConfig: drawn point size and
PT_SELECT_RADIUS = 8           # how near (view pixels) the mouse must be to pick a point or an edge
ZOOM_MAX = 20.0
FACE_JUMP = 5                  # faces per Shift+A / Shift+D

HELP_LINES = (
    "[Left click] add point / select polygon   [Ctrl+click or e] delete point / insert point on edge",
    "[q] include  [w] exclude  [Enter] close polygon  [Del] delete polygon  [z] undo  [y] redo",
    "[a] [d] previous / next face (Shift: 5)  [n] next unlabelled  [l] next labelled  [x] face to trash",
    "[1 2 3] colours  [4] labels' mask  [5] XSeg mask  [`] XSeg overlay  [wheel] zoom  [middle/right drag] pan",
    "[Esc] stop editing / save and quit   [h] hide help",
)


class Mode(IntEnum):
    NONE = 0          # nothing selected
    DRAW = 1          # adding points to ``op``
    EDIT = 2          # ``op`` selected: move, insert or delete its points


class View(IntEnum):
    FACE = 0          # the face with the polygons
    LABELS = 1        # the labels' mask (DFL's "baked" view)
    XSEG = 2          # the XSeg mask (stored, or the model's)


@dataclass
class Nav:
    """Where the user asked to go: ``step`` faces (signed), or the next face (``step`` +1 / -1 the
    direction) that is ``labelled`` / ``unlabelled``."""

    kind: str
    step: int


@dataclass
class Result:
    """What one event asks of the session."""

    redraw: bool = False
    nav: Nav | None = None
    quit: bool = False
    trash: bool = False


@dataclass
class _Snapshot:
    polys: list[Polygon]
    mode: Mode
    op: int | None


@dataclass
class XSegEditor:
    """The labels of the face on screen and how it is viewed.  ``canvas``: the view's (width, height)."""

    canvas: tuple[int, int] = (800, 800)
    polys: list[Polygon] = field(default_factory=list)
    image_size: tuple[int, int] = (1, 1)          # face (width, height)
    mode: Mode = Mode.NONE
    op: int | None = None                           # index of the polygon drawn or edited
    include_type: int = INCLUDE
    add_del: bool = False                           # ``e``: point add/delete mode without holding Ctrl
    ctrl: bool = False                              # Ctrl held at the last mouse event
    color: int = 1                                  # 0 red, 1 green (DFL's default), 2 blue
    view: View = View.FACE
    overlay: bool = False
    show_help: bool = True
    scale: float | None = None                      # view pixels per face pixel; None: fit the canvas
    look: np.ndarray | None = None                  # face point at the view's centre; None: the middle
    mouse: np.ndarray = field(default_factory=lambda: np.zeros(2))
    _drag: str | None = None                        # "pan" or "point"
    _drag_from: np.ndarray | None = None
    _drag_look: np.ndarray | None = None
    _drag_pt: tuple[int, np.ndarray] | None = None
    _drag_before: _Snapshot | None = None
    _undo: list[_Snapshot] = field(default_factory=list)
    _redo: list[_Snapshot] = field(default_factory=list)

    # -- faces --------------------------------------------------------------------------------------------
    def start_face(self, polys: list | None, height: int, width: int) -> None:
        """Show a face of that size with its labels (``seg_ie_polys`` dicts).  Colours and the mask view
        carry over from the previous face, as in DFL; the rest starts afresh."""
        self.polys = from_record(polys)
        self.image_size = (int(width), int(height))
        self.mode, self.op = Mode.NONE, None
        self.include_type, self.add_del = INCLUDE, False
        self.scale, self.look = None, None
        self._drag = self._drag_before = None
        self._undo, self._redo = [], []

    def finish(self) -> list[dict]:
        """The face's labels as ``seg_ie_polys`` dicts, for saving when leaving it (an open polygon of 3+
        points is kept, a shorter one dropped, as DFL does)."""
        self._set_mode(Mode.NONE)
        self._drag = None
        return to_record(self.polys)

    # -- view geometry -------------------------------------------------------------------------------------
    @property
    def fit_scale(self) -> float:
        return min(self.canvas) / max(self.image_size)

    @property
    def view_scale(self) -> float:
        return self.fit_scale if self.scale is None else self.scale

    def look_at(self) -> np.ndarray:
        return np.array(self.image_size, np.float64) / 2 if self.look is None else self.look

    def _center(self) -> np.ndarray:
        return np.round(np.array(self.canvas, np.float64) / 2)

    def to_view(self, pts: np.ndarray) -> np.ndarray:
        """Face pixels -> view pixels."""
        return (np.asarray(pts, np.float64) - self.look_at()) * self.view_scale + self._center()

    def to_face(self, pts: np.ndarray) -> np.ndarray:
        """View pixels -> face pixels."""
        return (np.asarray(pts, np.float64) - self._center()) / self.view_scale + self.look_at()

    def view_matrix(self) -> np.ndarray:
        """The (2, 3) affine matrix face -> view, for drawing."""
        s, (lx, ly), (cx, cy) = self.view_scale, self.look_at(), self._center()
        return np.array([[s, 0, cx - lx * s], [0, s, cy - ly * s]], np.float64)

    # -- what is under the mouse ---------------------------------------------------------------------------
    def hover_polygon(self) -> int | None:
        """The polygon whose outline the mouse is on (topmost: last drawn first), as DFL picks it."""
        for i in range(len(self.polys) - 1, -1, -1):
            if near_outline(self.to_view(self.polys[i].pts), self.mouse, PT_SELECT_RADIUS):
                return i
        return None

    def hover_point(self) -> int | None:
        """The point of the drawn / edited polygon under the mouse."""
        if self.op is None:
            return None
        return point_under(self.to_view(self.polys[self.op].pts), self.mouse, PT_SELECT_RADIUS)

    def hover_edge(self) -> tuple[int | None, np.ndarray | None]:
        """(edge, nearest point in view pixels) of the edited polygon under the mouse."""
        if self.op is None:
            return None, None
        return edge_under(self.to_view(self.polys[self.op].pts), self.mouse, PT_SELECT_RADIUS)

    @property
    def point_edit(self) -> bool:
        """Whether clicks delete / insert points (Ctrl held, or ``e``) rather than drag them."""
        return self.add_del or self.ctrl

    @property
    def can_close(self) -> bool:
        return self.mode == Mode.DRAW and len(self.polys[self.op].pts) >= 3

    # -- undo ----------------------------------------------------------------------------------------------
    def _snapshot(self) -> _Snapshot:
        return _Snapshot([p.copy() for p in self.polys], self.mode, self.op)

    def _changing(self) -> None:
        """Call before every change of the polygons: it can be undone, and redo history ends here."""
        self._undo.append(self._snapshot())
        self._redo.clear()

    def _restore(self, s: _Snapshot) -> None:
        self.polys, self.mode, self.op = [p.copy() for p in s.polys], s.mode, s.op
        self._drag = None

    def undo(self) -> bool:
        if not self._undo or self._drag is not None:
            return False
        self._redo.append(self._snapshot())
        self._restore(self._undo.pop())
        return True

    def redo(self) -> bool:
        if not self._redo or self._drag is not None:
            return False
        self._undo.append(self._snapshot())
        self._restore(self._redo.pop())
        return True

    # -- modes ---------------------------------------------------------------------------------------------
    def _set_mode(self, mode: Mode, op: int | None = None) -> None:
        if self.mode == Mode.DRAW and mode != Mode.DRAW and self.op is not None \
                and len(self.polys[self.op].pts) < 3:
            del self.polys[self.op]                       # an unfinished polygon does not survive
            op = None
        self.mode = mode
        self.op = op if mode != Mode.NONE else None

    def _new_polygon(self, pt: np.ndarray) -> None:
        poly = Polygon(self.include_type, np.array([pt], np.float32))
        self.polys = sort_polys(self.polys + [poly])
        self._set_mode(Mode.DRAW, next(i for i, p in enumerate(self.polys) if p is poly))

    def _delete_polygon(self) -> None:
        del self.polys[self.op]
        self.mode, self.op = Mode.NONE, None

    # -- events --------------------------------------------------------------------------------------------
    def handle(self, ev: Event) -> Result:
        return self._mouse(ev) if isinstance(ev, MouseEvent) else self._key(ev.key)

    def _mouse(self, ev: MouseEvent) -> Result:
        self.mouse = np.array([ev.x, ev.y], np.float64)
        self.ctrl = ev.ctrl
        kind = ev.kind
        if kind == "move":
            self._drag_to()
        elif kind == "left" and self.view == View.FACE:
            self._left_click()
        elif kind == "left_up" and self._drag == "point":
            if self._drag_before is not None and not _same_points(self._drag_before.polys, self.polys):
                self._undo.append(self._drag_before)
                self._redo.clear()
            self._drag, self._drag_before = None, None
        elif kind in ("middle", "right") and self._drag is None:
            self._drag, self._drag_from, self._drag_look = "pan", self.mouse.copy(), self.look_at().copy()
        elif kind in ("middle_up", "right_up") and self._drag == "pan":
            self._drag = None
        elif kind == "wheel" and self._drag is None and ev.delta:
            self._zoom(1 if ev.delta > 0 else -1)
        return Result(redraw=True)

    def _drag_to(self) -> None:
        if self._drag == "pan":
            self.look = self._drag_look - (self.mouse - self._drag_from) / self.view_scale
        elif self._drag == "point":
            i, start = self._drag_pt
            self.polys[self.op].pts[i] = start + (self.mouse - self._drag_from) / self.view_scale

    def _zoom(self, sign: int) -> None:
        """DFL's wheel step (0.2 plus a tenth of the scale), keeping the face point under the mouse."""
        before = self.to_face(self.mouse)
        s = self.view_scale
        self.scale = float(np.clip(s + sign * (0.2 + s / 10.0), min(1.0, self.fit_scale), ZOOM_MAX))
        self.look = self.look_at() + (before - self.to_face(self.mouse))

    def _left_click(self) -> None:
        pt = self.to_face(self.mouse).astype(np.float32)
        if self.mode == Mode.NONE:
            hit = self.hover_polygon()
            if hit is not None:
                self._set_mode(Mode.EDIT, hit)
            else:
                self._changing()
                self._new_polygon(pt)
        elif self.mode == Mode.DRAW:
            if self.can_close and self.hover_point() == 0:
                self._set_mode(Mode.EDIT, self.op)
            else:
                self._changing()
                poly = self.polys[self.op]
                poly.pts = np.concatenate([poly.pts, pt[None]]).astype(np.float32)
        elif self.mode == Mode.EDIT:
            self._edit_click()

    def _edit_click(self) -> None:
        poly = self.polys[self.op]
        i = self.hover_point()
        if i is not None:
            if self.point_edit:
                self._changing()
                poly.pts = np.delete(poly.pts, i, axis=0)
                if len(poly.pts) < 3:
                    self._delete_polygon()
            elif self._drag is None:
                self._drag, self._drag_from = "point", self.mouse.copy()
                self._drag_pt = (i, poly.pts[i].astype(np.float64).copy())
                self._drag_before = self._snapshot()
            return
        edge, at = self.hover_edge()
        if edge is not None:
            if self.point_edit:
                self._changing()
                poly.pts = np.insert(poly.pts, edge + 1, self.to_face(at).astype(np.float32), axis=0)
            return
        self._set_mode(Mode.NONE)

    def _key(self, key: str) -> Result:
        res = Result(redraw=True)
        nav = {"d": Nav("step", 1), "a": Nav("step", -1), "right": Nav("step", 1), "left": Nav("step", -1),
               "D": Nav("step", FACE_JUMP), "A": Nav("step", -FACE_JUMP),
               "n": Nav("unlabelled", 1), "N": Nav("unlabelled", -1),
               "l": Nav("labelled", 1), "L": Nav("labelled", -1)}
        if key in nav:
            res.nav = nav[key]
        elif key in ("q", "w"):
            if self.mode != Mode.DRAW:
                self.include_type = INCLUDE if key == "q" else EXCLUDE
        elif key in ("z", "ctrl+z"):
            self.undo()
        elif key in ("y", "Z", "ctrl+y", "ctrl+shift+z"):
            self.redo()
        elif key == "\r":
            if self.can_close:
                self._set_mode(Mode.EDIT, self.op)
        elif key in ("delete", "\b"):
            if self.mode == Mode.EDIT and self._drag is None:
                self._changing()
                self._delete_polygon()
        elif key == "e":
            self.add_del = not self.add_del
        elif key in ("1", "2", "3"):
            self.color = int(key) - 1
            self.view = View.FACE
        elif key in ("4", "5"):
            view = View.LABELS if key == "4" else View.XSEG
            self.view = View.FACE if self.view == view else view
            self._set_mode(Mode.NONE)
        elif key == "`":
            self.overlay = not self.overlay
        elif key == "h":
            self.show_help = not self.show_help
        elif key == "x":
            res.trash = True
        elif key == "\x1b":
            if self.mode != Mode.NONE:
                self._set_mode(Mode.NONE)
            else:
                res.quit = True
        else:
            res.redraw = False
        return res


def _same_points(a: list[Polygon], b: list[Polygon]) -> bool:
    return len(a) == len(b) and all(np.array_equal(p.pts, q.pts) for p, q in zip(a, b))


def label_mask_of(editor: XSegEditor) -> np.ndarray:
    """The labels' mask at the face's size (DFL's baked view), from the polygons being edited."""
    w, h = editor.image_size
    return polys_mask(to_record(editor.polys), (h, w))
