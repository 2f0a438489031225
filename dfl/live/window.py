"""The live window, in three parts kept apart so tests drive it without a display:

* :class:`LiveControls` — what the keys do (a state machine, no drawing): the interactive merger's
  setting keys (:func:`dfl.merge.interactive.apply_setting_key`: 1-6 mode, x mask (no XSeg modes
  live), w/s erode, e/d blur, c colour transfer, ``[`` ``]`` AMP morph, ...), Space swap on/off, Tab help,
  Esc quit;
* :func:`draw_overlay` — the frame with the achieved frames/s and the settings drawn on it;
* :class:`OpenCVLiveWindow` — a real window (``show`` and ``next_key``), or any object with those methods.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

import cv2
import numpy as np

from dfl.merge.config import MergeConfig
from dfl.merge.interactive import ESC, TAB, apply_setting_key

SPACE = " "
NO_XSEG_LIVE = ("dfl live does not run XSeg (the XSeg model costs more per frame than the swap); "
                "use a learned-* mask mode, or `dfl merge` for XSeg masks")
HELP_LINES = [
    "dfl live - keys (Shift = bigger step)",
    "Space  swap on/off      Tab  this help      Esc  stop",
    "` 1 2 3 4 5 6  mode: original overlay hist-match seamless seamless-hist raw-rgb raw-predict",
    "x mask mode   c colour transfer   n sharpen mode   w/s erode   e/d blur   u/j face scale",
    "y/h sharpen/blur   i/k denoise   o/l bicubic degrade   p/; colour degrade   [ ] AMP morph",
]


@dataclass
class LiveControls:
    """What the live window's keys change.  ``cfg`` is replaced (never mutated) on a change, so the
    pipeline can read it from other threads."""

    cfg: MergeConfig
    swap: bool = True
    show_help: bool = False
    quit: bool = False
    message: str = ""

    def handle_key(self, key: str | None) -> bool:
        """Apply one key (``"W"`` is Shift+w); True when the swap or its settings changed."""
        if not key:
            return False
        if key == ESC:
            self.quit = True
            return False
        if key == TAB:
            self.show_help = not self.show_help
            return False
        if key == SPACE:
            self.swap = not self.swap
            self.message = "swap on" if self.swap else "swap off (the stream as it comes)"
            return True
        cfg = self.cfg.copy()
        handled, msg = apply_setting_key(cfg, key, lambda: NO_XSEG_LIVE)   # x skips the XSeg modes
        self.message = msg
        if not handled or cfg.to_dict() == self.cfg.to_dict():
            return False
        self.cfg = cfg
        return True


@dataclass
class RateMeter:
    """Frames per second over the last ``window`` seconds (what the window shows)."""

    window: float = 1.0
    stamps: deque = field(default_factory=deque)

    def tick(self, now: float | None = None) -> float:
        now = time.perf_counter() if now is None else now
        self.stamps.append(now)
        while len(self.stamps) > 2 and now - self.stamps[0] > self.window:
            self.stamps.popleft()
        return self.rate

    @property
    def rate(self) -> float:
        if len(self.stamps) < 2:
            return 0.0
        span = self.stamps[-1] - self.stamps[0]
        return (len(self.stamps) - 1) / span if span > 0 else 0.0


def _text(img: np.ndarray, lines: list[str], org: tuple[int, int], scale: float) -> None:
    h = int(22 * scale / 0.5)
    width = max(cv2.getTextSize(ln, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] for ln in lines) + 10
    x0, y0 = org
    y1, x1 = min(img.shape[0], y0 + h * len(lines) + 6), min(img.shape[1], x0 + width)
    img[y0:y1, x0:x1] = (img[y0:y1, x0:x1] * 0.35).astype(np.uint8)
    for i, line in enumerate(lines):
        y = y0 + h * (i + 1) - 4
        cv2.putText(img, line, (x0 + 5, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)


def draw_overlay(frame: np.ndarray, controls: LiveControls, fps: float, faces: int, latency_ms: float = 0.0
                 ) -> np.ndarray:
    """A copy of ``frame`` with the achieved frames/s, the latency (decoded to shown), the face count and the
    settings (or the help)."""
    img = np.ascontiguousarray(frame).copy()
    scale = max(0.4, min(1.0, img.shape[0] / 1440))
    if controls.show_help:
        _text(img, HELP_LINES, (8, 8), scale)
        return img
    head = (f"{fps:5.1f} frames/s   latency {latency_ms:4.0f} ms   faces {faces}   "
            + ("swap on" if controls.swap else "swap OFF") + "   Tab: keys")
    lines = [head] + controls.cfg.summary().splitlines()[:3] + ([controls.message] if controls.message else [])
    _text(img, lines, (8, 8), scale)
    return img


class LiveUI(Protocol):
    def show(self, image: np.ndarray) -> None: ...
    def next_key(self) -> str | None: ...   # None: no key; "": the window was closed
    def close(self) -> None: ...


class OpenCVLiveWindow:
    """A real window; keys come from ``waitKeyEx(1)`` (which also paints the window)."""

    name = "dfl live"

    def __init__(self) -> None:
        cv2.namedWindow(self.name, cv2.WINDOW_NORMAL)
        self._shown = False

    def show(self, image: np.ndarray) -> None:
        cv2.imshow(self.name, image)
        self._shown = True

    def next_key(self) -> str | None:
        k = cv2.waitKeyEx(1)
        if self._shown and cv2.getWindowProperty(self.name, cv2.WND_PROP_VISIBLE) < 1:
            return ""
        if k < 0:
            return None
        k &= 0xFFFF if k > 0xFFFF else 0xFFFFFFFF
        if k in (9, 27, 32):
            return chr(k)
        return chr(k & 0xFF) if 32 <= (k & 0xFF) < 127 else None

    def close(self) -> None:
        cv2.destroyWindow(self.name)
