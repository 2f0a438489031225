"""``dfl faceset metadata save|restore``: DFL's way of editing faces in an image editor.

Editors drop the APP15 segment that holds a face's metadata.  ``save`` writes every face's metadata
to ``<folder>/meta.dat`` (DFL's file: a pickled ``{file name: ((h, w, c), metadata dict)}``); the user
edits the images (same names; saving them as PNG or at another size is fine); ``restore`` puts the
metadata back: an image of another size is resized back (Lanczos) and re-encoded, a PNG becomes the
faceset JPEG of its name (the PNG goes to the trash), a JPEG of the right size keeps its pixels byte for
byte.  Every image is checked before any is written; ``meta.dat`` goes to the trash when all is done.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from dfl.atomic import atomic_write_bytes
from dfl.errors import DflError
from dfl.faceset.container import ContainerError, is_complete, is_png, write_meta
from dfl.faceset.io import _meta, _read_bytes, decode_pixels, list_faces
from dfl.faceset.record import FaceRecord
from dfl.faceset.safe_pickle import dfl_dumps, safe_loads
from dfl.faceset.trash import move_to_trash
from dfl.faceset.parallel import bar
from dfl.text import plural

META_NAME = "meta.dat"
RESTORED_JPEG_QUALITY = 100                  # DFL re-encodes edited faces at 100


@dataclass
class SaveSummary:
    path: Path
    faces: int

    def line(self) -> str:
        return (f"metadata save: {plural(self.faces, 'face')} -> {self.path}; edit the images (keep their names), "
                f"then run  dfl faceset metadata restore")


def save_metadata(folder: str | os.PathLike, progress: bool = True) -> SaveSummary:
    """Write the metadata of every face in ``folder`` to ``folder/meta.dat`` (atomically)."""
    folder = Path(folder)
    files = list_faces(folder)
    if not files:
        raise DflError(f"{folder}: no faces")
    entries = {}
    for path in bar(files, desc="reading metadata", progress=progress, leave=False):
        data = _read_bytes(path)
        meta = _meta(path, data)
        if not meta.payload:
            raise DflError(f"{path}: no DFL face metadata (not an aligned face from extract-faces/DFL)")
        raw = safe_loads(meta.payload, str(path))
        FaceRecord.from_dfl_dict(raw, str(path))          # refuses metadata that is not a face's
        entries[path.name] = ((int(meta.height), int(meta.width), 3), raw)
    out = folder / META_NAME
    atomic_write_bytes(out, dfl_dumps(entries))
    return SaveSummary(out, len(entries))


@dataclass
class RestoreSummary:
    folder: Path
    restored: int = 0
    resized: int = 0
    from_png: int = 0
    without_metadata: list[str] | None = None
    missing: int = 0

    def line(self) -> str:
        extra = []
        if self.resized:
            extra.append(f"{self.resized} resized back")
        if self.from_png:
            extra.append(f"{plural(self.from_png, 'PNG')} turned into faceset JPEGs")
        if self.without_metadata:
            extra.append(f"{plural(len(self.without_metadata), 'image')} not in meta.dat left as they are")
        if self.missing:
            extra.append(f"{plural(self.missing, 'saved face')} {'has' if self.missing == 1 else 'have'} no image")
        tail = f" ({'; '.join(extra)})" if extra else ""
        return f"metadata restore: {plural(self.restored, 'face')} in {self.folder}{tail}"


def load_saved(path: Path) -> dict[str, tuple[tuple[int, int, int], dict]]:
    """``meta.dat`` as a dict, checked; DflError (one line) for a missing or foreign file."""
    if not path.is_file():
        raise DflError(f"{path}: no such file; run  dfl faceset metadata save  before editing the faces")
    d = safe_loads(path.read_bytes(), str(path))
    if not isinstance(d, dict):
        raise DflError(f"{path}: not a DFL metadata file (no dict of faces)")
    for name, entry in d.items():
        if (not isinstance(name, str) or not isinstance(entry, (tuple, list)) or len(entry) != 2
                or not isinstance(entry[1], dict) or len(entry[0]) < 2):
            raise DflError(f"{path}: not a DFL metadata file (entry {name!r} is not (shape, metadata))")
    return d


def _plan(folder: Path, saved: dict) -> tuple[list[tuple[Path, str]], list[str]]:
    """(image, saved name) pairs: the image of that name, else an edited copy with the same stem."""
    images = list_faces(folder)
    by_name = {p.name: p for p in images}
    by_stem: dict[str, list[Path]] = {}
    for p in images:
        by_stem.setdefault(p.stem, []).append(p)
    pairs, used = [], set()
    for name in saved:
        if name in by_name:
            path = by_name[name]
        else:
            alternatives = by_stem.get(Path(name).stem, [])
            if not alternatives:
                continue
            path = alternatives[0]
        pairs.append((path, name))
        used.add(path)
    return pairs, [p.name for p in images if p not in used]


def restore_metadata(folder: str | os.PathLike, progress: bool = True) -> RestoreSummary:
    """Put the metadata saved in ``folder/meta.dat`` back into the (edited) images of ``folder``."""
    folder = Path(folder)
    meta_path = folder / META_NAME
    saved = load_saved(meta_path)
    pairs, unknown = _plan(folder, saved)
    summary = RestoreSummary(folder, without_metadata=unknown, missing=len(saved) - len(pairs))
    for path, _ in bar(pairs, desc="checking images", progress=progress, leave=False):
        data = _read_bytes(path)
        if not is_complete(data) or cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_REDUCED_GRAYSCALE_8) is None:
            raise DflError(f"{path}: image data does not decode or is truncated; nothing was restored")
    pngs = []
    for path, name in bar(pairs, desc="restoring", progress=progress):
        shape, raw = saved[name]
        data = _read_bytes(path)
        target = folder / name
        same_file = path == target and Path(name).suffix.lower() in (".jpg", ".jpeg") and not is_png(data)
        img = None
        if same_file:
            hw = _meta(path, data)
            if (hw.height, hw.width) != (shape[0], shape[1]):
                img = decode_pixels(path, data)
        else:
            img = decode_pixels(path, data)
        if img is not None:
            if img.shape[:2] != (shape[0], shape[1]):
                img = cv2.resize(img, (int(shape[1]), int(shape[0])), interpolation=cv2.INTER_LANCZOS4)
                summary.resized += 1
            ok, buf = cv2.imencode(".jpg", img, [int(cv2.IMWRITE_JPEG_QUALITY), RESTORED_JPEG_QUALITY])
            if not ok:
                raise DflError(f"{path}: cannot encode as JPEG")
            data = buf.tobytes()
        try:
            atomic_write_bytes(target, write_meta(data, dfl_dumps(raw)))
        except ContainerError as exc:
            raise DflError(f"{path}: {exc}") from None
        if path != target:
            pngs.append(path)
        summary.restored += 1
    summary.from_png = len(pngs)
    move_to_trash(pngs + [meta_path], folder)
    return summary
