"""``dfl faceset pack|unpack``: a faceset folder to DFL's ``faceset.pak`` and back.

Packing checks every face, writes the pak atomically, reads it back and compares every face byte for
byte; only then are the loose faces moved to ``<folder>_trash/`` (DFL deletes them; training reads the
pak either way, see :mod:`dfl.faceset.source`).  Unpacking writes every face back (refusing to replace a
different file of the same name), checks them, then moves the pak to the trash.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path


from dfl.atomic import atomic_open, atomic_write_bytes
from dfl.errors import DflError
from dfl.faceset.container import is_complete
from dfl.faceset.io import _meta, _read_bytes, _record, list_faces
from dfl.faceset.pakfile import PAK_NAME, read_index, sample_config, write_pak
from dfl.faceset.safe_pickle import safe_loads
from dfl.faceset.trash import free_name, move_to_trash, rename_no_clobber, trash_dir
from dfl.faceset.parallel import bar
from dfl.text import plural


@dataclass
class PackSummary:
    folder: Path
    pak: Path
    faces: int = 0
    bytes: int = 0
    trashed: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        moved = f"; the loose faces moved to {trash_dir(self.folder)}" if self.trashed else "; loose faces kept"
        return f"pack: {plural(self.faces, 'face')} -> {self.pak} ({self.bytes / 1e6:.1f} MB){moved}"


def pack_faceset(folder: str | os.PathLike, trash_loose: bool = True, overwrite: bool = False,
                 progress: bool = True) -> PackSummary:
    """Pack the faces of ``folder`` into ``folder/faceset.pak``; see the module docstring."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DflError(f"{folder}: no such folder")
    pak = folder / PAK_NAME
    if pak.exists() and not overwrite:
        raise DflError(f"{pak}: already exists (unpack it first, or pass --overwrite to replace it; "
                       "the old one goes to the trash)")
    files = list_faces(folder)
    if not files:
        raise DflError(f"{folder}: no faces to pack")
    start = time.perf_counter()
    configs = []
    for path in bar(files, desc="checking faces", progress=progress, leave=False):
        data = _read_bytes(path)
        meta = _meta(path, data)
        rec = _record(path, meta)                 # refuses files that are not DFL faces
        if meta.height is None or meta.width is None:
            raise DflError(f"{path}: image header gives no size")
        if not is_complete(data):
            raise DflError(f"{path}: image data is truncated")
        configs.append(sample_config(path.name, safe_loads(meta.payload, str(path)),
                                     (meta.height, meta.width, 3), int(rec.face_type_enum)))
    summary = PackSummary(folder, pak, faces=len(files))
    if pak.exists():
        move_to_trash([pak], folder)

    def contents():
        for path in bar(files, desc="packing", progress=progress):
            yield _read_bytes(path)

    with atomic_open(pak, "wb") as out:
        write_pak(out, configs, contents())
    summary.bytes = pak.stat().st_size
    packed = read_index(pak)
    for path, face in zip(files, packed):
        if face.name != path.name or face.read_bytes() != _read_bytes(path):
            raise DflError(f"{pak}: {path.name} did not read back identically; the loose faces were kept")
    if trash_loose:
        move_to_trash(files, folder)
        summary.trashed = len(files)
    summary.seconds = time.perf_counter() - start
    return summary


@dataclass
class UnpackSummary:
    folder: Path
    faces: int = 0
    already: int = 0

    def line(self) -> str:
        were = "was" if self.already == 1 else "were"
        same = f" ({self.already} {were} already there, identical)" if self.already else ""
        return (f"unpack: {plural(self.faces, 'face')} -> {self.folder}{same}; faceset.pak moved to "
                f"{trash_dir(self.folder)}")


def unpack_faceset(folder: str | os.PathLike, progress: bool = True) -> UnpackSummary:
    """Write the faces of ``folder/faceset.pak`` (or of a .pak file, into its folder) as files."""
    folder = Path(folder)
    pak = folder if folder.suffix.lower() == ".pak" and folder.is_file() else folder / PAK_NAME
    folder = pak.parent
    if not pak.is_file():
        raise DflError(f"{pak}: no such file (nothing to unpack)")
    faces = read_index(pak)
    targets = [folder / f.person / f.name if f.person else folder / f.name for f in faces]
    if len(set(targets)) != len(targets):
        raise DflError(f"{pak}: two faces have the same name; nothing was unpacked")
    summary = UnpackSummary(folder)
    todo = []
    for face, target in bar(list(zip(faces, targets)), desc="checking", progress=progress, leave=False):
        data = face.read_bytes()
        _record(face, _meta(face, data))          # every face is checked before anything is written
        if not is_complete(data):
            raise DflError(f"{face}: image data is truncated; nothing was unpacked")
        if target.exists():
            if not target.is_file() or target.read_bytes() != data:
                raise DflError(f"{target}: exists and differs from the face in the pak; nothing was unpacked "
                               "(move it away first)")
            summary.already += 1
        else:
            todo.append((face, target))
    for face, target in bar(todo, desc="unpacking", progress=progress):
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(target, face.read_bytes())
    summary.faces = len(faces)
    trash = trash_dir(folder)
    trash.mkdir(exist_ok=True)
    rename_no_clobber(pak, free_name(trash, pak.name))
    return summary
