"""OpenCV windows for the interactive tools (manual extractor, XSeg editor): events in, pictures out.

Each tool is a state machine fed with :class:`MouseEvent` / :class:`KeyEvent` and a drawing function;
this module is the thin part between them and OpenCV, shared so every window decodes keys and mouse
buttons the same way.  Tests replace :class:`OpenCVWindow` by any object with the :class:`EventUI`
methods that plays scripted events.

OpenCV's backends report keys differently (``waitKeyEx``): GTK gives X keysyms with the modifier state in
the high bits, Windows gives characters (Ctrl+Z as 26) and virtual keys shifted by 16 bits, Qt (the pip
wheels) gives lower-case letters and no Ctrl+key at all.  :func:`decode_key` maps them to one set of
names; tools therefore bind every action to a plain key too.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Protocol, Sequence

import cv2
import numpy as np

from dfl.errors import DflError


@dataclass
class MouseEvent:
    """``kind``: move, left, left_up, right, right_up, middle, middle_up or wheel (``delta`` > 0 up);
    ``x, y`` in view pixels; ``ctrl`` / ``shift``: keys held during the event."""

    kind: str
    x: float = 0.0
    y: float = 0.0
    delta: int = 0
    ctrl: bool = False
    shift: bool = False


@dataclass
class KeyEvent:
    """One key: a character ("\\r" Enter, "\\t" Tab, "\\x1b" Esc, "\\b" Backspace, upper case with Shift where
    the window reports it), or a name: "delete", "left", "right", "up", "down", "ctrl+z", "ctrl+shift+z"."""

    key: str


Event = MouseEvent | KeyEvent


class EventUI(Protocol):
    """What a tool's session needs from a window."""

    def show(self, image: np.ndarray) -> None: ...
    def events(self) -> list[Event] | None: ...     # None: the window was closed
    def close(self) -> None: ...


def display_available() -> tuple[bool, str]:
    """Whether an OpenCV window can open here, and why not.  Checked before opening one: OpenCV's Qt
    backend aborts the whole process when there is no display."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False, "no display (DISPLAY is not set)"
    gui = [ln for ln in cv2.getBuildInformation().splitlines() if ln.strip().startswith("GUI:")]
    if gui and "NONE" in gui[0].upper():
        return False, "this OpenCV build has no GUI support"
    return True, ""


def require_display(what: str) -> None:
    """DflError ("<what> needs a window: <why>") where no OpenCV window can open."""
    ok, why = display_available()
    if not ok:
        raise DflError(f"{what} needs a window: {why}")


# X keysyms (GTK, and Qt's native codes on Linux), Qt key codes, Windows virtual keys (<< 16)
_NAMED = {
    0xFFFF: "delete", 0x1000007: "delete", 0x2E0000: "delete", 127: "delete",
    0xFF51: "left", 0x1000012: "left", 0x250000: "left",
    0xFF52: "up", 0x1000013: "up", 0x260000: "up",
    0xFF53: "right", 0x1000014: "right", 0x270000: "right",
    0xFF54: "down", 0x1000015: "down", 0x280000: "down",
    0xFF08: "\b", 0x1000003: "\b", 8: "\b",
    0xFF0D: "\r", 0xFF8D: "\r", 0x1000004: "\r", 0x1000005: "\r", 10: "\r", 13: "\r",
    0xFF09: "\t", 0x1000001: "\t", 9: "\t",
    0xFF1B: "\x1b", 0x1000000: "\x1b", 27: "\x1b",
}
_GTK_SHIFT, _GTK_CTRL = 0x1, 0x4          # GDK modifier state bits, reported above bit 16


def decode_key(code: int) -> str | None:
    """A key code from ``cv2.waitKeyEx`` as a :class:`KeyEvent` key, or None (no key, or one no tool uses)."""
    if code is None or code < 0:
        return None
    if code in _NAMED:
        return _NAMED[code]
    low, state = code & 0xFFFF, code >> 16
    if code > 0xFFFF and code < 0x1000000 and low and (low in _NAMED or 32 <= low < 127):
        name = _NAMED.get(low, chr(low))                 # GTK: keysym | modifiers << 16
        if state & _GTK_CTRL and len(name) == 1 and name.isalpha():
            return ("ctrl+shift+" if state & _GTK_SHIFT else "ctrl+") + name.lower()
        return name
    if 1 <= code <= 26:                                  # Windows: Ctrl+A .. Ctrl+Z as control characters
        return "ctrl+" + chr(ord("a") + code - 1)
    if 32 <= code < 127:
        return chr(code)
    return None


class OpenCVWindow:
    """A real window showing pictures at their own size; mouse events come from OpenCV's callback, keys
    from ``waitKeyEx`` (polled every ``poll_ms``)."""

    def __init__(self, name: str, poll_ms: int = 15) -> None:
        self.cv2 = cv2
        self.name = name
        self.poll_ms = poll_ms
        self._queue: list[Event] = []
        self._mouse = {cv2.EVENT_MOUSEMOVE: "move", cv2.EVENT_LBUTTONDOWN: "left", cv2.EVENT_LBUTTONUP: "left_up",
                       cv2.EVENT_RBUTTONDOWN: "right", cv2.EVENT_RBUTTONUP: "right_up",
                       cv2.EVENT_MBUTTONDOWN: "middle", cv2.EVENT_MBUTTONUP: "middle_up",
                       cv2.EVENT_MOUSEWHEEL: "wheel"}
        cv2.namedWindow(name, cv2.WINDOW_AUTOSIZE | cv2.WINDOW_GUI_NORMAL)
        cv2.setMouseCallback(name, self._on_mouse)

    def _on_mouse(self, event: int, x: int, y: int, flags: int, _param: object) -> None:
        kind = self._mouse.get(event)
        if kind is None:
            return
        delta = cv2.getMouseWheelDelta(flags) if kind == "wheel" else 0
        self._queue.append(MouseEvent(kind, float(x), float(y), int(delta),
                                      ctrl=bool(flags & cv2.EVENT_FLAG_CTRLKEY),
                                      shift=bool(flags & cv2.EVENT_FLAG_SHIFTKEY)))

    def show(self, image: np.ndarray) -> None:
        self.cv2.imshow(self.name, image)

    def events(self) -> list[Event] | None:
        code = self.cv2.waitKeyEx(self.poll_ms)
        if self.cv2.getWindowProperty(self.name, self.cv2.WND_PROP_VISIBLE) < 1:
            return None
        out, self._queue = self._queue, []
        key = decode_key(code)
        if key is not None:
            out.append(KeyEvent(key))
        return out

    def close(self) -> None:
        self.cv2.destroyWindow(self.name)


def text_band(img: np.ndarray, lines: Sequence[str], top: int | None = 4, scale: float = 0.5) -> None:
    """White lines of text on a darkened band across ``img`` (in place), from ``top``, or ending at the
    bottom edge when ``top`` is None."""
    step = int(22 * scale / 0.5)
    height = step * len(lines) + 6
    if top is None:
        top = max(0, img.shape[0] - height)
    band = img[top:min(img.shape[0], top + height)]
    band[:] = (band.astype(np.uint16) * 2 // 5).astype(np.uint8)
    for i, line in enumerate(lines):
        cv2.putText(img, line, (6, top + step * (i + 1)), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1,
                    cv2.LINE_AA)
