"""Where a faceset's faces are: loose files in a folder, or packed in its ``faceset.pak``.

Readers (training, tools) ask :func:`face_files` and pass what it returns to ``read_face`` /
``read_record``, so they work on either kind.  As in DFL, a folder holding a ``faceset.pak`` is read
from the pak: the pak is what the user made to train from.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


from dfl.errors import DflError
from dfl.faceset.io import FaceFile, inspect_face, list_faces
from dfl.faceset.pakfile import PAK_NAME, read_index
from dfl.faceset.record import FaceRecord
from dfl.faceset.parallel import bar


def pak_path(folder: str | os.PathLike) -> Path | None:
    """``folder/faceset.pak`` when it exists (or ``folder`` itself when it is a .pak file)."""
    folder = Path(folder)
    if folder.is_file() and folder.suffix.lower() == ".pak":
        return folder
    pak = folder / PAK_NAME
    return pak if pak.is_file() else None


def face_files(path: str | os.PathLike) -> list[FaceFile]:
    """The faces of a faceset folder (its pak's faces when it has a ``faceset.pak``), or of a .pak
    file, in name order.  DflError for a missing path or a damaged pak."""
    path = Path(path)
    pak = pak_path(path)
    if pak is not None:
        return sorted(read_index(pak), key=lambda f: (f.person or "", f.name))
    if not path.exists():
        raise DflError(f"{path}: no such folder")
    return list(list_faces(path))


@dataclass
class Face:
    """One face file of a faceset folder: its path, metadata and size (from the header), for the tools."""

    path: Path
    record: FaceRecord
    height: int
    width: int

    def source_rect_area(self) -> float:
        """The area of the face's rectangle in its frame (DFL's face-size sort key); DflError without one."""
        r = self.record.source_rect
        if r is None:
            raise DflError(f"{self.path}: no source_rect in its metadata (needed to sort by face size)")
        left, top, right, bottom = (float(v) for v in r)
        return abs((right - left) * (bottom - top))


def load_faces(folder: Path, progress: bool = True) -> list[Face]:
    """Every face of ``folder`` with its metadata and size, read from the headers; DflError naming the
    first file that is not a readable DFL face."""
    files = list_faces(folder)
    if not files:
        hint = " (it holds a faceset.pak: unpack it first)" if (folder / PAK_NAME).is_file() else ""
        raise DflError(f"{folder}: no faces{hint}")
    faces = []
    for path in bar(files, desc="reading faces", progress=progress, leave=False):
        record, (height, width) = inspect_face(path)
        if height is None or width is None:
            raise DflError(f"{path}: image header gives no size")
        faces.append(Face(path, record, int(height), int(width)))
    return faces
