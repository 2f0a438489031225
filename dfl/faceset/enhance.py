"""``dfl faceset enhance``: DFL's faceset enhancer (its FaceEnhancer network over every aligned face).

As DFL does it: each face is enhanced at its own size (4x super-resolution, then back down), written as a
JPEG at quality 100 into ``<faceset>_enhanced/`` under the same name with the original metadata kept byte
for byte; afterwards the enhanced faces may replace the originals.  Unlike DFL, nothing is deleted: an
interrupted run resumes (faces already in the output are skipped) and replaced originals are moved to
the workspace's trash (:mod:`dfl.trash`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
from tqdm import tqdm

from dfl.atomic import atomic_write_bytes
from dfl.errors import DflError
from dfl.faceset.container import ContainerError, read_meta, write_meta
from dfl.faceset.io import list_faces, read_record
from dfl.progress import progress_bar
from dfl.text import plural
from dfl.trash import move_to_trash

JPEG_QUALITY = 100    # DFL writes enhanced faces at quality 100


class Enhancer(Protocol):
    def enhance(self, image: np.ndarray, is_tanh: bool = False, preserve_size: bool = True) -> np.ndarray: ...


@dataclass
class EnhanceSummary:
    enhanced: int = 0
    skipped: int = 0                       # already in the output folder (a resumed run)
    failed: list[str] | None = None        # "<file>: <problem>" for faces that could not be read

    def line(self, out_dir: Path) -> str:
        bad = f", {len(self.failed)} unreadable" if self.failed else ""
        return f"Enhanced {plural(self.enhanced, 'face')}, {self.skipped} already done{bad} -> {out_dir}"


def enhanced_dir(folder: Path) -> Path:
    """DFL's output folder: ``aligned`` -> ``aligned_enhanced`` beside it."""
    return Path(folder).parent / f"{Path(folder).name}_enhanced"


def enhance_face(path: Path, out_path: Path, enhancer: Enhancer) -> None:
    """One face enhanced into ``out_path`` (atomic), its metadata copied unchanged."""
    read_record(path)                       # a DFL face (restricted unpickler), or a one-line DflError
    data = path.read_bytes()
    try:
        payload = read_meta(data).payload
    except ContainerError as exc:
        raise DflError(f"{path}: not a valid face image ({exc})") from None
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise DflError(f"{path}: image data does not decode")
    out = enhancer.enhance(img.astype(np.float32) / 255.0)
    out = np.clip(out * 255, 0, 255).astype(np.uint8)
    ext = ".png" if out_path.suffix.lower() == ".png" else ".jpg"
    params = [] if ext == ".png" else [int(cv2.IMWRITE_JPEG_QUALITY), JPEG_QUALITY]
    ok, buf = cv2.imencode(ext, out, params)
    if not ok:
        raise DflError(f"{out_path}: cannot encode the enhanced face")
    atomic_write_bytes(out_path, write_meta(buf.tobytes(), payload or b""))


def enhance_faceset(folder: Path, enhancer: Enhancer, out_dir: Path | None = None,
                    progress: bool = True) -> EnhanceSummary:
    """Enhance every face of ``folder`` into ``out_dir`` (default ``<folder>_enhanced``); resumable."""
    folder = Path(folder)
    out_dir = Path(out_dir) if out_dir is not None else enhanced_dir(folder)
    faces = list_faces(folder)
    if not faces:
        raise DflError(f"{folder}: no faces to enhance")
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = EnhanceSummary(failed=[])
    for path in progress_bar(faces, desc="Enhancing", unit="face", progress=progress):
        target = out_dir / path.name
        if target.is_file():
            summary.skipped += 1
            continue
        try:
            enhance_face(path, target, enhancer)
        except DflError as exc:
            summary.failed.append(str(exc))
            tqdm.write(f"Skipping {exc}")
            continue
        summary.enhanced += 1
    return summary


def replace_with_enhanced(folder: Path, trash_root: Path, base: Path,
                          out_dir: Path | None = None) -> tuple[int, Path | None]:
    """Put the enhanced faces in place of the originals (DFL's "merge" answer); the originals move to a
    new ``<trash_root>/<date_time>/`` keeping their path below ``base``.  Returns (faces replaced, that
    trash folder).  Resumable: a face whose original already went to the trash is just put in place."""
    folder = Path(folder)
    out_dir = Path(out_dir) if out_dir is not None else enhanced_dir(folder)
    enhanced = list_faces(out_dir)
    trash = move_to_trash([folder / e.name for e in enhanced], Path(base), Path(trash_root))
    for e in enhanced:
        os.replace(e, folder / e.name)
    if not any(out_dir.iterdir()):
        out_dir.rmdir()
    return len(enhanced), trash
