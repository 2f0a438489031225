"""DeepFaceLab's interactive merger: tune settings on the merged frame, per frame, with DFL's keys.

Three parts kept apart so the behaviour can be tested without a window:

* :class:`MergeSession` — a pure state machine: frames, the settings of each, the current frame, help
  and zoom.  :meth:`MergeSession.handle_key` takes one key (a character, upper case meaning Shift) and
  returns what changed.  Saved as JSON beside the model (DFL's ``merger_session.dat``).
* :func:`render_screen` / :func:`help_screen` — OpenCV drawing of the merged frame and the settings.
* :func:`run_loop` — the event loop between a renderer and a UI (an OpenCV window, or a test's feeder).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol, Sequence

import cv2
import numpy as np

from dfl.atomic import atomic_write_text
from dfl.errors import DflError
from dfl.merge.config import MergeConfig

SESSION_NAME = "merger_session.json"

# key -> (method, step, step with Shift); DFL's masked-merger keys
ADJUST_KEYS: dict[str, tuple[str, int, int]] = {
    "q": ("add_hist_match_threshold", 1, 5), "a": ("add_hist_match_threshold", -1, -5),
    "w": ("add_erode_mask_modifier", 1, 5), "s": ("add_erode_mask_modifier", -1, -5),
    "e": ("add_blur_mask_modifier", 1, 5), "d": ("add_blur_mask_modifier", -1, -5),
    "r": ("add_motion_blur_power", 1, 5), "f": ("add_motion_blur_power", -1, -5),
    "y": ("add_blursharpen_amount", 1, 5), "h": ("add_blursharpen_amount", -1, -5),
    "u": ("add_output_face_scale", 1, 5), "j": ("add_output_face_scale", -1, -5),
    "t": ("add_super_resolution_power", 1, 5), "g": ("add_super_resolution_power", -1, -5),
    "i": ("add_image_denoise_power", 1, 5), "k": ("add_image_denoise_power", -1, -5),
    "o": ("add_bicubic_degrade_power", 1, 5), "l": ("add_bicubic_degrade_power", -1, -5),
    "p": ("add_color_degrade_power", 1, 5), ";": ("add_color_degrade_power", -1, -1),
    ":": ("add_color_degrade_power", -5, -5),
}
TOGGLE_KEYS = {"z": "toggle_masked_hist_match", "c": "toggle_color_transfer_mode",
               "n": "toggle_sharpen_mode"}     # and "x", the mask mode: apply_setting_key
MODE_KEYS = {"`": 0, "1": 1, "2": 2, "3": 3, "4": 4, "5": 5, "6": 6}
SHIFTED = {"<": ",", ">": ".", "?": "/", "~": "`", "!": "1", "@": "2", "#": "3", "$": "4", "%": "5", "^": "6"}
TAB, ESC = "\t", "\x1b"

HELP_LINES = [
    "dfl interactive merger - keys (Shift = bigger step)",
    "` 1 2 3 4 5 6   mode: original overlay hist-match seamless seamless-hist raw-rgb raw-predict",
    "x  mask mode (XSeg-*: needs an XSeg model)   c  colour transfer   n  sharpen mode   z  masked hist-match",
    "w/s erode +/-       e/d blur +/-           r/f motion blur +/-",
    "q/a hist-match threshold +/-               u/j output face scale +/-",
    "y/h sharpen (+) / blur (-)                 t/g super resolution +/- (DFL's FaceEnhancer.npy)",
    "i/k denoise +/-     o/l bicubic degrade +/-   p/; colour degrade +/- (: -5)",
    "[ ]  AMP morph value -/+",
    ". next frame     , previous frame     < first frame     > merge the remaining frames",
    "/ next frame with these settings      ? these settings for all following frames",
    "m previous frame with these settings  M these settings back to the first frame",
    "- = zoom out/in   v checkerboard background   Tab this help   Esc save and finish",
]


@dataclass
class KeyResult:
    """What one key did: ``changed`` settings (re-merge), ``moved`` frame, ``redraw`` only, ``quit``."""

    changed: bool = False
    moved: bool = False
    redraw: bool = False
    quit: bool = False
    message: str = ""


def split_key(key: str) -> tuple[bool, str]:
    """(Shift held, the unshifted key): ``"W"`` -> (True, "w"), ``"<"`` -> (True, ",")."""
    return key in SHIFTED or (key.isalpha() and key.isupper()), SHIFTED.get(key, key.lower())


XSegReady = Callable[[], str]
"""'' when an XSeg model is loaded (loading it if need be), else why there is none (one line)."""


def apply_setting_key(cfg: MergeConfig, key: str, xseg_ready: XSegReady | None = None) -> tuple[bool, str]:
    """Apply one of DFL's merger setting keys (modes, mask, erode, blur, colour, ... and ``[`` ``]`` for
    AMP's morph value) to ``cfg`` in place.  Returns (whether ``key`` is a settings key, a message for the
    screen).  The interactive merger and ``dfl live`` share these keys.

    ``x`` cycles the mask modes as DFL does, the XSeg ones included when ``xseg_ready`` says a model is
    there (asked only when the cycle reaches them, so a lazy model loads when first chosen); without one
    they are skipped and the message says why."""
    shift, base = split_key(key)
    if base == "x":
        cfg.toggle_mask_mode()
        if cfg.needs_xseg:
            why = xseg_ready() if xseg_ready is not None else "no XSeg model loaded"
            if why:
                cfg.toggle_mask_mode(xseg=False)
                return True, f"XSeg mask modes skipped: {why}"
        return True, ""
    if base in MODE_KEYS:
        cfg.set_mode(MODE_KEYS[base])
    elif base in ADJUST_KEYS:
        name, step, big = ADJUST_KEYS[base]
        getattr(cfg, name)(big if shift else step)
    elif base in TOGGLE_KEYS:
        getattr(cfg, TOGGLE_KEYS[base])()
    elif base in ("[", "]"):
        if cfg.morph_value is None:
            return True, "morph value applies to AMP models only"
        cfg.add_morph_value(0.05 if base == "]" else -0.05)
    else:
        return False, ""
    return True, ""


@dataclass
class MergeSession:
    """Per-frame settings and the position of the interactive merger.  No drawing, no I/O but JSON."""

    stems: list[str]
    default: MergeConfig
    configs: list[MergeConfig | None] = field(default_factory=list)
    index: int = 0
    show_help: bool = False
    zoom: float = 1.0
    checkerboard: bool = False
    process_remaining: bool = False
    message: str = ""
    xseg_ready: XSegReady | None = None
    """Whether the XSeg mask modes can be offered (see :func:`apply_setting_key`); None: they cannot."""

    def __post_init__(self) -> None:
        if len(self.configs) != len(self.stems):
            self.configs = [None] * len(self.stems)
        if self.stems and self.configs[0] is None:
            self.configs[0] = self.default.copy()

    # -- settings per frame -------------------------------------------------------------------
    @property
    def cfg(self) -> MergeConfig:
        """The current frame's settings (inherited from the previous frame until changed, as DFL)."""
        c = self.configs[self.index]
        if c is None:
            c = self.resolved(self.index).copy()
            self.configs[self.index] = c
        return c

    def resolved(self, i: int) -> MergeConfig:
        """Settings frame ``i`` is merged with: its own, else the nearest earlier frame's."""
        for j in range(i, -1, -1):
            if self.configs[j] is not None:
                return self.configs[j]  # type: ignore[return-value]
        return self.default

    def all_configs(self) -> dict[str, MergeConfig]:
        return {stem: self.resolved(i) for i, stem in enumerate(self.stems)}

    # -- keys ------------------------------------------------------------------------------
    def handle_key(self, key: str) -> KeyResult:
        """Apply one key: a character as typed (``"W"`` is Shift+w), ``"\\t"`` Tab, ``"\\x1b"`` Esc."""
        if not key:
            return KeyResult()
        if key == TAB:
            self.show_help = not self.show_help
            return KeyResult(redraw=True)
        if key == ESC:
            return KeyResult(quit=True)
        if self.show_help:          # DFL: the help screen takes no other keys
            return KeyResult()
        shift, base = split_key(key)
        if not self.stems:
            return KeyResult()
        cfg = self.cfg
        before = cfg.to_dict()
        handled, msg = apply_setting_key(cfg, key, self.xseg_ready)
        if not handled:
            if base in (",", "m", ".", "/"):
                return self._navigate(base, shift)
            if base == "-":
                self.zoom = max(0.1, round(self.zoom - 0.1, 2))
            elif base == "=":
                self.zoom = min(4.0, round(self.zoom + 0.1, 2))
            elif base == "v":
                self.checkerboard = not self.checkerboard
            else:
                return KeyResult()
            return KeyResult(redraw=True)
        self.message = msg
        changed = cfg.to_dict() != before
        if changed:
            self.process_remaining = False
        return KeyResult(changed=changed, redraw=bool(msg), message=msg)

    def _navigate(self, base: str, shift: bool) -> KeyResult:
        n = len(self.stems)
        old = self.index
        cur = self.cfg
        if base == ",":                       # previous / first
            self.index = 0 if shift else max(0, old - 1)
        elif base == "m":                     # previous (or back to the first) with these settings
            target = 0 if shift else max(0, old - 1)
            for i in range(target, old):
                self.configs[i] = cur.copy()
            self.index = target
        elif base == ".":
            if shift:                         # merge all remaining frames with their settings
                self.process_remaining = not self.process_remaining
                return KeyResult(redraw=True)
            self.index = min(n - 1, old + 1)
        elif base == "/":
            if shift:                         # these settings for every following frame
                for i in range(old + 1, n):
                    self.configs[i] = None
                self.index = min(n - 1, old + 1)
                if self.index != old:
                    self.configs[self.index] = cur.copy()
            else:
                self.index = min(n - 1, old + 1)
                if self.index != old:
                    self.configs[self.index] = cur.copy()
        self.process_remaining = False
        _ = self.cfg                          # materialise the new frame's settings
        return KeyResult(moved=self.index != old, changed=base in ("m", "/"), redraw=True)

    # -- persistence --------------------------------------------------------------------------
    def to_json(self) -> dict:
        return {"index": self.index, "frames": {s: (c.to_dict() if c is not None else None)
                                                for s, c in zip(self.stems, self.configs)}}

    def save(self, path: Path) -> None:
        try:
            atomic_write_text(path, json.dumps(self.to_json(), indent=1) + "\n")
        except OSError as exc:
            raise DflError(f"{path}: cannot save the per-frame settings ({exc.strerror or exc})") from None

    @classmethod
    def load_or_new(cls, path: Path | None, stems: Sequence[str], default: MergeConfig) -> "MergeSession":
        """A saved session when it covers exactly these frames, else a new one from ``default``."""
        if path is not None and Path(path).is_file():
            try:
                data = json.loads(Path(path).read_text(encoding="utf-8"))
                frames = data["frames"]
                if list(frames) == list(stems):
                    configs = [MergeConfig.from_dict(v, str(path)) if v is not None else None for v in frames.values()]
                    s = cls(list(stems), default, configs, index=min(int(data.get("index", 0)), max(0, len(stems) - 1)))
                    s.message = f"using the saved session {Path(path).name}"
                    return s
            except Exception:  # noqa: BLE001 - an unreadable or old session is not fatal
                pass
            kept = set_aside_session(Path(path))
            s = cls(list(stems), default)
            s.message = f"the saved session is for other frames: kept as {kept.name}, starting afresh"
            return s
        return cls(list(stems), default)


def set_aside_session(path: Path) -> Path:
    """Rename a saved session that will not be used to ``<name>.bak`` (replacing an older one) instead
    of writing over the user's per-frame settings."""
    kept = Path(path).with_name(Path(path).name + ".bak")
    os.replace(path, kept)
    return kept


# -- drawing ---------------------------------------------------------------------------------------
def _text_block(img: np.ndarray, lines: Sequence[str], org=(8, 8), scale: float = 0.5) -> None:
    """White lines of text on a darkened panel (readable on any frame), drawn in place."""
    sizes = [cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, scale, 1) for line in lines]
    step = max((th + base for (_, th), base in sizes), default=0) + 3
    width = max((tw for (tw, _), _ in sizes), default=0)
    x0, y0 = org
    x1, y1 = min(img.shape[1], x0 + width + 8), min(img.shape[0], y0 + step * len(lines) + 6)
    panel = img[y0:y1, x0:x1]
    panel[:] = (panel.astype(np.uint16) * 2 // 7).astype(np.uint8)
    for i, line in enumerate(lines):
        y = y0 + step * (i + 1)
        cv2.putText(img, line, (x0 + 4, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)


def help_screen(width: int = 900, height: int = 420) -> np.ndarray:
    img = np.full((height, width, 3), 32, np.uint8)
    _text_block(img, HELP_LINES, (12, 10), 0.5)
    return img


def render_screen(session: MergeSession, merged: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """The window's picture: the merged frame (zoomed, optional checkerboard where masked out) and the
    current settings."""
    if session.show_help:
        return help_screen()
    img = merged
    if session.checkerboard and mask is not None and mask.shape[:2] == img.shape[:2]:
        yy, xx = np.mgrid[0:img.shape[0], 0:img.shape[1]]
        board = np.where(((yy // 16 + xx // 16) % 2)[..., None] == 0, 200, 120).astype(np.float32)
        m = mask.reshape(img.shape[:2] + (1,)).astype(np.float32)
        img = (img * m + board * (1 - m)).astype(np.uint8)
    if session.zoom != 1.0:
        img = cv2.resize(img, None, fx=session.zoom, fy=session.zoom, interpolation=cv2.INTER_AREA)
    img = np.ascontiguousarray(img).copy()
    cfg = session.resolved(session.index)
    head = [f"{session.stems[session.index]}  ({session.index + 1}/{len(session.stems)})   Tab: help"]
    tail = [session.message] if session.message else []
    if session.process_remaining:
        tail.append("merging the remaining frames...")
    _text_block(img, head + cfg.summary().splitlines() + tail, (8, 4), 0.45)
    return img


# -- the loop ----------------------------------------------------------------------------------------
class UI(Protocol):
    def show(self, image: np.ndarray) -> None: ...
    def next_key(self) -> str | None: ...
    def close(self) -> None: ...


class OpenCVWindow:
    """A real window; keys are read with ``waitKeyEx`` and turned into characters."""

    name = "dfl merge"

    def __init__(self) -> None:
        cv2.namedWindow(self.name, cv2.WINDOW_NORMAL)

    def show(self, image: np.ndarray) -> None:
        cv2.imshow(self.name, image)

    def next_key(self) -> str | None:
        k = cv2.waitKeyEx(30)
        if k < 0:
            return None
        k &= 0xFFFF if k > 0xFFFF else 0xFFFFFFFF
        if k in (9, 27):
            return chr(k)
        return chr(k & 0xFF) if 32 <= (k & 0xFF) < 127 else None

    def close(self) -> None:
        cv2.destroyWindow(self.name)


def display_available() -> tuple[bool, str]:
    """Whether an OpenCV window can open here, and why not."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False, "no display (DISPLAY is not set)"
    info = cv2.getBuildInformation()
    gui = [ln for ln in info.splitlines() if ln.strip().startswith("GUI:")]
    if gui and "NONE" in gui[0].upper():
        return False, "this OpenCV build has no GUI support"
    return True, ""


Renderer = Callable[[int, MergeConfig], tuple[np.ndarray, np.ndarray]]


def run_loop(session: MergeSession, render: Renderer, ui: UI,
             on_change: Callable[[MergeSession], None] | None = None, max_idle: int | None = None) -> MergeSession:
    """Show frames and apply keys until Esc (or the UI runs out of keys: ``next_key`` -> ``""``).

    ``render(index, cfg)`` merges one frame; results are cached per frame and settings.  ``max_idle``
    stops after that many polls without a key (tests).
    """
    cache: dict[tuple[int, str], tuple[np.ndarray, np.ndarray]] = {}
    idle = 0

    def current() -> tuple[np.ndarray, np.ndarray]:
        cfg = session.resolved(session.index)
        key = (session.index, cfg.settings_hash())
        if key not in cache:
            if len(cache) > 16:
                cache.clear()
            cache[key] = render(session.index, cfg)
        return cache[key]

    if not session.stems:
        return session
    ui.show(render_screen(session, *current()))
    while True:
        if session.process_remaining:
            if session.index >= len(session.stems) - 1:
                session.process_remaining = False
            else:
                session._navigate(".", False)
                ui.show(render_screen(session, *current()))
        key = ui.next_key()
        if key is None:
            idle += 1
            if max_idle is not None and idle >= max_idle:
                break
            continue
        if key == "":
            break
        idle = 0
        res = session.handle_key(key)
        if res.quit:
            break
        if res.changed or res.moved or res.redraw:
            if on_change is not None and (res.changed or res.moved):
                on_change(session)
            ui.show(render_screen(session, *current()))
    return session


def merge_interactive(ctx, cfg: MergeConfig, ui: UI | None = None, session_path: Path | None = None,
                      xseg=None, enhancer=None, **merge_kwargs):
    """Tune settings in a window, save the session beside the model, then merge every frame with its
    settings (frames already merged identically are skipped).  Returns the merge summary."""
    from dfl.merge.face import merge_frame
    from dfl.merge.frames import _read, merge_context

    cfg = cfg.copy().validate().fill_unset(ctx.defaults)
    stems = [i.path.stem for i in ctx.infos]
    session = MergeSession.load_or_new(session_path, stems, cfg)
    if xseg is not None:
        session.xseg_ready = getattr(xseg, "ready", lambda: "")

    def render(i: int, c: MergeConfig) -> tuple[np.ndarray, np.ndarray]:
        info = ctx.infos[i]
        frame = _read(info.path)
        try:
            return merge_frame(frame, info.landmarks, ctx.predictor, c, xseg,
                               [info.motion] * len(info.landmarks), enhancer=enhancer)
        except Exception as exc:  # noqa: BLE001 - show the problem (e.g. XSeg missing), keep the session
            session.message = str(exc).splitlines()[0][:160]
            return frame, np.zeros(frame.shape[:2], np.float32)

    def save(s: MergeSession) -> None:
        if session_path is not None:
            s.save(session_path)

    own_ui = ui is None
    ui = ui or OpenCVWindow()
    try:
        run_loop(session, render, ui, on_change=save)
    finally:
        if own_ui:
            ui.close()
    save(session)
    return merge_context(ctx, cfg, frame_configs=session.all_configs(), xseg=xseg, enhancer=enhancer, **merge_kwargs)
