"""A demo workspace made offline from two public-domain portraits that pip packages ship.

``data_src.mp4`` animates scikit-image's astronaut photo (Eileen Collins, NASA) and ``data_dst.mp4``
matplotlib's ``grace_hopper.jpg`` (US Navy).  Both get smooth head motion (rotation, scale, shift) and a
lighting change so face detection, alignment and colour transfer have something real to do; the dst
carries an audio tone so the final video's audio carry-over can be checked.  Everything is generated
deterministically, small and short, so the whole pipeline runs on it in tests.
"""

from __future__ import annotations

import json
import math
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from dfl.atomic import atomic_write_text
from dfl.errors import DflError
from dfl.trash import move_to_trash
from dfl.video import encode_arrays
from dfl.workspace import Workspace

DEMO_FPS = 25
DEMO_SECONDS = 3.0
TONE_HZ = 440.0
MARKER_NAME = "dfl_demo.json"
"""Written beside the demo videos so ``dfl demo --run`` knows it may replace them and clear the folder."""


@dataclass(frozen=True)
class Portrait:
    """A still photo and where its face is, so the animation keeps the face in frame."""

    name: str
    image: np.ndarray            # BGR uint8
    face_center: tuple[float, float]
    face_width: float            # pixels in ``image``


def astronaut() -> Portrait:
    """scikit-image's astronaut (public domain, NASA); bundled with the package, no download."""
    from skimage import data
    rgb = data.astronaut()
    return Portrait("astronaut", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), (224.0, 125.0), 95.0)


def grace_hopper() -> Portrait:
    """matplotlib's sample ``grace_hopper.jpg`` (public domain, US Navy)."""
    import matplotlib
    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    image = cv2.imread(str(path))
    if image is None:
        raise DflError(f"{path}: matplotlib's sample image is missing; reinstall matplotlib")
    return Portrait("grace_hopper", image, (256.0, 240.0), 140.0)


def animate(portrait: Portrait, size: tuple[int, int], n_frames: int, *, phase: float = 0.0,
            face_fraction: float = 0.36) -> Iterator[np.ndarray]:
    """Frames of ``portrait`` with a slowly turning, zooming, drifting head and changing light.

    One smooth cycle of each motion over the clip (different frequencies and ``phase`` per video), so
    consecutive frames are close, as in real footage.
    """
    width, height = size
    base_scale = face_fraction * min(width, height) / portrait.face_width
    cx, cy = portrait.face_center
    xs = np.linspace(-1.0, 1.0, width, dtype=np.float32)[None, :, None]
    ys = np.linspace(-1.0, 1.0, height, dtype=np.float32)[:, None, None]
    for i in range(n_frames):
        t = i / max(1, n_frames - 1)
        a = 2 * math.pi * t
        angle = 12.0 * math.sin(a + phase)                       # degrees, head roll
        scale = base_scale * (1.0 + 0.12 * math.sin(2 * a + phase))
        dx = 0.08 * width * math.sin(a + 0.7 + phase)
        dy = 0.06 * height * math.sin(2 * a + 1.3 + phase)
        mat = cv2.getRotationMatrix2D((cx, cy), angle, scale)
        mat[0, 2] += width / 2 + dx - cx
        mat[1, 2] += height / 2 + dy - cy
        frame = cv2.warpAffine(portrait.image, mat, (width, height), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
        gain = 0.8 + 0.35 * (0.5 + 0.5 * math.sin(a - math.pi / 2 + phase))   # dim -> bright -> dim
        side = 0.3 * math.sin(a + phase)                                       # light sweeps sideways
        light = gain * (1.0 + side * xs + 0.1 * math.cos(a) * ys)
        tint = np.array([1.0 - 0.06 * math.sin(a), 1.0, 1.0 + 0.06 * math.sin(a)], np.float32)  # warm/cool
        yield np.clip(frame * light * tint, 0, 255).astype(np.uint8)


def write_tone(path: Path, seconds: float, hz: float = TONE_HZ, rate: int = 44100) -> None:
    """A quiet sine tone with a fade in/out, as a 16-bit mono wav."""
    t = np.arange(int(seconds * rate)) / rate
    envelope = np.minimum(1.0, np.minimum(t, seconds - t) / 0.05)
    samples = (0.3 * 32767 * envelope * np.sin(2 * np.pi * hz * t)).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())


def make_demo_workspace(root: Path, *, seconds: float = DEMO_SECONDS, fps: int = DEMO_FPS,
                        src_size: tuple[int, int] = (320, 320), dst_size: tuple[int, int] = (384, 288),
                        overwrite: bool = False) -> Workspace:
    """Write ``data_src.mp4`` (astronaut) and ``data_dst.mp4`` (Grace Hopper, with a tone) into ``root``.

    Refuses to replace existing ``data_src.*``/``data_dst.*`` videos unless ``overwrite``: they may be the
    user's own footage, so even then they are moved to ``trash/`` unless they are an earlier demo's.
    Creates the empty folders of a DFL workspace.
    """
    ws = Workspace(root)
    ws.check_usable()
    if not overwrite:
        for side in ("src", "dst"):
            existing = ws.video(side)
            if existing is not None:
                raise DflError(f"{existing}: a video is already there; pass --overwrite to replace it with the demo")
    elif not is_demo_workspace(ws.root):
        move_to_trash(ws.input_videos(), ws.root, ws.trash_dir)
    try:
        for folder in (ws.aligned_dir("src"), ws.aligned_dir("dst"), ws.model_dir):
            folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DflError(f"{ws.root}: cannot create the workspace ({exc.strerror or exc})") from None
    n = max(2, round(seconds * fps))
    encode_arrays(animate(astronaut(), src_size, n, phase=0.0), ws.root / "data_src.mp4", fps=fps,
                  size=src_size, total=n, desc="Demo data_src")
    with tempfile.TemporaryDirectory(prefix="dfl-demo-") as tmp:
        tone = Path(tmp) / "tone.wav"
        write_tone(tone, n / fps)
        encode_arrays(animate(grace_hopper(), dst_size, n, phase=1.0), ws.root / "data_dst.mp4", fps=fps,
                      size=dst_size, audio=tone, total=n, desc="Demo data_dst")
    sizes = {f"data_{side}.mp4": (ws.root / f"data_{side}.mp4").stat().st_size for side in ("src", "dst")}
    atomic_write_text(ws.root / MARKER_NAME, json.dumps({"dfl_demo": 1, "frames": n, "fps": fps, "videos": sizes}))
    ws.mark()
    return ws


def is_demo_workspace(root: Path) -> bool:
    """True when ``root``'s videos are still the ones :func:`make_demo_workspace` wrote (marker, same sizes).

    Lets ``dfl demo --run`` start over in its own workspace without asking, while footage a user put
    there instead is never replaced or cleared without ``--overwrite``.
    """
    try:
        info = json.loads((Path(root) / MARKER_NAME).read_text())
        videos = info["videos"]
        return all(Path(root, name).stat().st_size == size for name, size in videos.items()) and all(
            Workspace(root).video(side) == Path(root, f"data_{side}.mp4") for side in ("src", "dst"))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False
