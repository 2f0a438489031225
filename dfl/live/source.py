"""Where live frames come from: a video file or a camera, through OpenCV's capture (FFmpeg inside).

A ``--source`` that is a whole number is a camera index, anything else a file.  A source that cannot
open is one DflError line (OpenCV's own log lines are silenced while it tries).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from dfl.errors import DflError


@dataclass(frozen=True)
class StreamInfo:
    """What the capture reports about a stream."""

    name: str
    width: int
    height: int
    fps: float | None          # None when the source does not say (many webcams)
    frames: int | None         # None for cameras and containers that do not say
    camera: bool
    path: Path | None = None


@contextlib.contextmanager
def _quiet_opencv() -> Iterator[None]:
    """OpenCV prints several warning lines for a camera index that does not exist; the user gets ours."""
    logging = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging is None:
        yield
        return
    before = logging.getLogLevel()
    logging.setLogLevel(logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        logging.setLogLevel(before)


def camera_index(spec: str) -> int | None:
    """The camera index ``spec`` names ("0", "1", ...), or None for a file."""
    spec = str(spec).strip()
    return int(spec) if spec.isdigit() else None


class FrameSource:
    """Frames of one stream in order: :meth:`read` -> uint8 BGR HxWx3, None at the end."""

    def __init__(self, spec: str | Path) -> None:
        index = camera_index(str(spec))
        if index is None:
            path = Path(spec)
            if not path.is_file():
                raise DflError(f"{path}: no such video file")
            with _quiet_opencv():
                cap = cv2.VideoCapture(str(path))
            name, ok_msg = str(path), f"{path}: cannot decode this video"
        else:
            with _quiet_opencv():
                cap = cv2.VideoCapture(index)
            path, name, ok_msg = None, f"camera {index}", f"camera {index}: cannot open it (no such camera, or in use)"
        if not cap.isOpened():
            cap.release()
            raise DflError(ok_msg)
        with _quiet_opencv():
            ok, first = cap.read()
        if not ok or first is None:
            cap.release()
            raise DflError(f"{name}: no frame could be read")
        fps = cap.get(cv2.CAP_PROP_FPS)
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if index is None else 0
        self.info = StreamInfo(name, first.shape[1], first.shape[0], fps if fps and 0 < fps < 1000 else None,
                               count if count > 0 else None, index is not None, path)
        self._cap, self._pending = cap, first

    def read(self) -> np.ndarray | None:
        """The next frame, or None at the end of the stream (or when the camera stops)."""
        if self._pending is not None:
            frame, self._pending = self._pending, None
            return frame
        if self._cap is None:
            return None
        ok, frame = self._cap.read()
        return frame if ok and frame is not None else None

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def __enter__(self) -> "FrameSource":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
