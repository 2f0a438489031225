"""DFL's manual face extractor, as a state machine: mouse and keys in, what to do out.  No drawing, no I/O.

DFL's habits (``mainscripts/Extractor.py``, the "Manual pass" window):

* the face square follows the mouse; the wheel grows or shrinks it; landmarks are found inside it live;
* left click locks the square where it is (click again to unlock);
* right click starts a square by hand: the square is centred where the right click was, and the
  mouse sets its size and rotation (a mean face is placed along that direction); a left click fixes it;
* Enter accepts the face and goes to the next frame; Space skips the frame (no face);
* ``.`` next frame, keeping the face only if the square is locked; ``,`` previous frame;
* ``q`` stops (the current face kept if locked, remaining frames left as they are);
* ``a`` toggles accurate landmarks (a second pass), ``h`` hides the help.

Events are :mod:`dfl.ui`'s (the kinds used here: move, left, right, wheel).  Mouse coordinates arrive in view pixels (the frame scaled to the window); the editor keeps everything in
frame pixels.  The session (``dfl.manual_extract``) feeds events, computes landmarks when asked
(:attr:`Result.landmarks_needed`), and writes the faces the editor reports done.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from dfl.faces.align import _MEAN_FACE_3D, _MEAN_FACE_UNIT, _similarity_fit, transform_points
from dfl.ui import Event, KeyEvent, MouseEvent

__all__ = ["Event", "FaceMark", "KeyEvent", "ManualEditor", "MEAN_FACE_68", "MouseEvent", "Result"]

WINDOW_SIZE = 1368            # DFL's --manual-window-size default: a 16:9 view this wide
MIN_HALF_SIZE = 5
ZOOM_BELOW = 40               # half-sizes up to this are shown zoomed in

HELP_LINES = (
    "[Left click] lock/unlock the square   [Wheel] square size",
    "[Right click] square by hand (mouse: size and rotation, left click: fix)",
    "[Enter] accept face   [Space] skip frame (no face)",
    "[,] previous frame   [.] next frame   [q] stop (remaining frames untouched)",
    "[a] accurate landmarks on/off   [h] hide this help",
)


def _mean_face_68() -> np.ndarray:
    """68 points of a frontal mean face in the unit square DFL aligns to, nose tip (30) at the origin."""
    pts = _MEAN_FACE_3D[:, :2].astype(np.float64)
    fit = _similarity_fit(np.concatenate([pts[17:49], pts[54:55]]), _MEAN_FACE_UNIT)
    unit = transform_points(pts, fit)
    return unit - unit[30]


MEAN_FACE_68 = _mean_face_68()



@dataclass
class FaceMark:
    """A face placed by hand: its square ``l, t, r, b`` and 68 landmarks, in frame pixels."""

    rect: tuple[int, int, int, int]
    landmarks: np.ndarray


@dataclass
class Result:
    """What one event did.  ``done``: frames finished, each with its face or None (no face)."""

    redraw: bool = False
    landmarks_needed: bool = False
    moved: bool = False
    quit: bool = False
    done: list[tuple[int, FaceMark | None]] = field(default_factory=list)


@dataclass
class ManualEditor:
    """Where the square is, what is locked, which frame is shown, and the faces kept so far."""

    n_frames: int
    window_size: int = WINDOW_SIZE
    index: int = 0
    x: float = 0.0
    y: float = 0.0
    half_size: float = 100.0
    locked: bool = False
    by_hand: bool = False                     # right-click mode: the mouse sets size and rotation
    hand_x: float = 0.0
    hand_y: float = 0.0
    accurate: bool = True
    show_help: bool = True
    landmarks: np.ndarray | None = None
    view_scale: float = 1.0
    frame_hw: tuple[int, int] = (0, 0)
    marks: dict[int, FaceMark] = field(default_factory=dict)    # faces of frames done or left locked
    finished: set[int] = field(default_factory=set)

    # -- frames ---------------------------------------------------------------------------------
    def start_frame(self, height: int, width: int) -> None:
        """Show frame ``index`` (of that size): a face kept for it comes back locked."""
        self.frame_hw = (height, width)
        self.view_scale = 1.0 if self.window_size <= 0 else self.window_size / (height * 16.0 / 9.0)
        self.by_hand = False
        mark = self.marks.pop(self.index, None)
        if mark is not None:
            l, t, r, b = mark.rect
            self.x, self.y, self.half_size = (l + r) / 2, (t + b) / 2, max((r - l) / 2, MIN_HALF_SIZE)
            self.landmarks, self.locked = np.asarray(mark.landmarks, np.float32), True
        else:
            self.locked = False

    @property
    def rect(self) -> tuple[int, int, int, int]:
        s = self.half_size
        return int(self.x - s), int(self.y - s), int(self.x + s), int(self.y + s)

    def mark(self) -> FaceMark | None:
        return None if self.landmarks is None else FaceMark(self.rect, np.asarray(self.landmarks, np.float32).copy())

    def set_landmarks(self, landmarks: np.ndarray | None) -> None:
        if not self.locked and not self.by_hand:
            self.landmarks = None if landmarks is None else np.asarray(landmarks, np.float32)

    def _finish(self, res: Result, mark: FaceMark | None) -> None:
        res.done.append((self.index, mark))
        if mark is not None:
            self.marks[self.index] = mark          # shown again, locked, if the user comes back with ,
        self.finished.add(self.index)
        self.index += 1
        self.locked = False
        res.moved = res.redraw = res.landmarks_needed = True

    # -- events ---------------------------------------------------------------------------------
    def handle(self, ev: Event) -> Result:
        return self._mouse(ev) if isinstance(ev, MouseEvent) else self._key(ev.key)

    def _to_frame(self, vx: float, vy: float) -> tuple[float, float]:
        h, w = self.frame_hw
        vw, vh = int(w * self.view_scale), int(h * self.view_scale)
        return float(np.clip(vx, 0, max(vw - 1, 0))) / self.view_scale, float(np.clip(vy, 0, max(vh - 1, 0))) / self.view_scale

    def _mouse(self, ev: MouseEvent) -> Result:
        res = Result()
        if ev.kind == "wheel":
            if not self.locked and not self.by_hand:
                step = 1.0 if self.half_size <= ZOOM_BELOW else float(np.clip(self.half_size / 10, 1, 10))
                self.half_size = max(MIN_HALF_SIZE, self.half_size + (step if ev.delta > 0 else -step))
                res.redraw = res.landmarks_needed = True
        elif ev.kind == "left":
            if self.by_hand:                       # fix the hand-made square
                self.by_hand, self.locked = False, True
            else:
                self.locked = not self.locked
                res.landmarks_needed = not self.locked
            res.redraw = True
        elif ev.kind == "right":
            self.by_hand = not self.by_hand
            if self.by_hand:
                self.locked = False
                self.hand_x, self.hand_y = self._to_frame(ev.x, ev.y)
                self.x, self.y = self.hand_x, self.hand_y
            res.redraw = True
        elif ev.kind == "move":
            fx, fy = self._to_frame(ev.x, ev.y)
            if self.by_hand:
                self._place_by_hand(fx, fy)
                res.redraw = True
            elif not self.locked and (fx, fy) != (self.x, self.y):
                self.x, self.y = fx, fy
                res.redraw = res.landmarks_needed = True
        return res

    def _place_by_hand(self, fx: float, fy: float) -> None:
        """DFL's hand-made face: the square centred at the right click, half size = distance to the
        mouse, a mean face turned along the click-to-mouse direction (pointing right = upright)."""
        vx, vy = fx - self.hand_x, fy - self.hand_y
        length = math.hypot(vx, vy)
        self.x, self.y, self.half_size = self.hand_x, self.hand_y, max(length, 1.0)
        if length > 0:
            c, s = vx / length, vy / length
            rot = np.array([[c, -s], [s, c]]) * length
            self.landmarks = (MEAN_FACE_68 @ rot.T + [self.hand_x, self.hand_y]).astype(np.float32)

    def _key(self, key: str) -> Result:
        res = Result()
        key = key.lower() if len(key) == 1 else key
        if key in ("\r", "\n"):
            self._finish(res, self.mark())
        elif key == " ":
            self._finish(res, None)
        elif key == ".":
            self._finish(res, self.mark() if self.locked else None)
        elif key == ",":
            if self.index > 0:
                if self.locked and self.landmarks is not None:
                    self.marks[self.index] = self.mark()
                self.index -= 1
                self.finished.discard(self.index)
                self.locked = False
                res.moved = res.redraw = res.landmarks_needed = True
        elif key == "q":
            if self.locked and self.landmarks is not None:
                res.done.append((self.index, self.mark()))
                self.finished.add(self.index)
            res.quit = True
        elif key == "h":
            self.show_help = not self.show_help
            res.redraw = True
        elif key == "a":
            self.accurate = not self.accurate
            res.redraw = res.landmarks_needed = True
        return res

    @property
    def zoomed(self) -> bool:
        return self.half_size <= ZOOM_BELOW
