"""``dfl faceset debug``: debug images from a faceset (DFL's "add landmarks debug images").

For each source frame of the faceset that is still in the frames folder, the frame with every face of
the faceset drawn on it (landmarks, source rect, aligned square: the extractor's ``aligned_debug``
picture), so a cleaned or sorted faceset can be checked against its frames, and debug images deleted to
mark frames for ``dfl extract-faces --fix``.  A face whose frame is not there (a faceset without its
frames) gets DFL's picture instead: its landmarks drawn on the aligned face, as ``<face>_debug.jpg``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from dfl.atomic import atomic_write_bytes
from dfl.errors import DflError
from dfl.faces.align import FaceType, draw_landmarks, draw_rect_landmarks
from dfl.faceset.io import read_face
from dfl.faceset.parallel import map_faces
from dfl.faceset.source import Face, load_faces
from dfl.text import plural

DEBUG_JPEG_QUALITY = 50           # DFL's (and the extractor's) debug image quality


@dataclass
class DebugSummary:
    output: Path
    frames: int = 0
    faces_alone: int = 0

    def line(self) -> str:
        alone = (f", {plural(self.faces_alone, 'face')} drawn on {'itself' if self.faces_alone == 1 else 'themselves'} "
                 "(frame not found)" if self.faces_alone else "")
        return f"debug: {plural(self.frames, 'frame')} with their faces drawn{alone} -> {self.output}"


def _write_jpeg(path: Path, img: np.ndarray) -> None:
    ok, buf = cv2.imencode(".jpg", img, [int(cv2.IMWRITE_JPEG_QUALITY), DEBUG_JPEG_QUALITY])
    if not ok:
        raise DflError(f"{path}: cannot encode the debug image")
    atomic_write_bytes(path, buf.tobytes())


def _draw_frame(frame_path: Path, faces: list[Face], out: Path) -> None:
    img = cv2.imdecode(np.fromfile(str(frame_path), np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise DflError(f"{frame_path}: frame does not decode")
    for f in faces:
        r = f.record
        draw_rect_landmarks(img, r.source_rect, r.source_landmarks, f.width, r.face_type_enum, transparent_mask=True)
    _write_jpeg(out / f"{frame_path.stem}.jpg", img)


def _draw_face(face: Face, out: Path) -> None:
    img, rec = read_face(face.path)
    if rec.face_type_enum == FaceType.MARK_ONLY and rec.source_rect is not None:
        draw_rect_landmarks(img, rec.source_rect, rec.landmarks, face.width, FaceType.FULL)
    else:
        draw_landmarks(img, rec.landmarks, transparent_mask=True)
    _write_jpeg(out / f"{face.path.stem}_debug.jpg", img)


def write_debug_images(folder: str | os.PathLike, frames_dir: str | os.PathLike | None = None,
                       output: str | os.PathLike | None = None, progress: bool = True) -> DebugSummary:
    """Debug images of the faces in ``folder`` into ``output`` (default ``<folder>_debug``, the
    extractor's ``aligned_debug``), drawn on the frames of ``frames_dir`` where found."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DflError(f"{folder}: no such folder")
    out = Path(output) if output is not None else folder.parent / f"{folder.name}_debug"
    faces = load_faces(folder, progress)
    frames: dict[Path, list[Face]] = {}
    alone: list[Face] = []
    for f in faces:
        r = f.record
        frame = Path(frames_dir) / r.source_filename if frames_dir and r.source_filename else None
        if frame is not None and frame.is_file() and r.source_rect is not None and r.source_landmarks is not None:
            frames.setdefault(frame, []).append(f)
        else:
            alone.append(f)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(_draw_frame, (p, fs, out)) for p, fs in sorted(frames.items())] + [(_draw_face, (f, out)) for f in alone]
    map_faces(lambda job: job[0](*job[1]), jobs, "debug images", progress, unit="image")
    return DebugSummary(out, frames=len(frames), faces_alone=len(alone))
