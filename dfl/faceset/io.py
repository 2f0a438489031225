"""Reading and writing aligned-face files (DFL's ``aligned/*.jpg``), atomically and safely."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from dfl.atomic import atomic_write_bytes
from dfl.errors import DflError
from dfl.faceset.container import ContainerError, ImageMeta, is_complete, read_meta, write_meta
from dfl.faceset.pakfile import PackedFace
from dfl.faceset.record import FaceRecord
from dfl.faceset.safe_pickle import dfl_dumps, safe_loads

FACE_EXTENSIONS = (".jpg", ".jpeg", ".png")
FaceFile = Path | PackedFace          # a face on disk, or one inside a faceset.pak


def list_faces(folder: str | os.PathLike) -> list[Path]:
    """Face files (*.jpg, *.jpeg, *.png) in ``folder``, sorted by name; DflError if it is not a folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DflError(f"{folder}: no such folder")
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in FACE_EXTENSIONS and not p.name.startswith("."))


def _as_file(path: str | os.PathLike | PackedFace) -> FaceFile:
    return path if isinstance(path, PackedFace) else Path(path)


def _read_bytes(path: FaceFile) -> bytes:
    if isinstance(path, PackedFace):
        return path.read_bytes()
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DflError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DflError(f"{path}: is a folder, not a face file") from None
    except OSError as exc:
        raise DflError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _meta(path: FaceFile, data: bytes) -> ImageMeta:
    try:
        return read_meta(data)
    except ContainerError as exc:
        raise DflError(f"{path}: not a valid face image ({exc})") from None


def _record(path: FaceFile, meta: ImageMeta) -> FaceRecord:
    if not meta.payload:
        raise DflError(f"{path}: no DFL face metadata (not an aligned face from extract-faces/DFL)")
    return FaceRecord.from_dfl_dict(safe_loads(meta.payload, str(path)), str(path))


def read_record(path: str | os.PathLike | PackedFace) -> FaceRecord:
    """The face's metadata without decoding its pixels."""
    path = _as_file(path)
    data = _read_bytes(path)
    return _record(path, _meta(path, data))


def inspect_face(path: str | os.PathLike | PackedFace) -> tuple[FaceRecord, tuple[int | None, int | None]]:
    """Metadata and the image's (height, width) from its header, without decoding pixels."""
    path = _as_file(path)
    data = _read_bytes(path)
    meta = _meta(path, data)
    return _record(path, meta), (meta.height, meta.width)


def read_raw_dict(path: str | os.PathLike | PackedFace) -> dict:
    """The metadata dict exactly as stored (safely unpickled), for tools that show every key."""
    path = _as_file(path)
    data = _read_bytes(path)
    meta = _meta(path, data)
    if not meta.payload:
        raise DflError(f"{path}: no DFL face metadata")
    d = safe_loads(meta.payload, str(path))
    if not isinstance(d, dict):
        raise DflError(f"{path}: face metadata is a {type(d).__name__}, not a dict")
    return d


def read_face(path: str | os.PathLike | PackedFace) -> tuple[np.ndarray, FaceRecord]:
    """BGR uint8 image and metadata; DflError when the file is unreadable, cut short or carries no
    metadata.  ``path`` may also be a face inside a faceset.pak (:class:`PackedFace`)."""
    path = _as_file(path)
    data = _read_bytes(path)
    record = _record(path, _meta(path, data))
    return decode_pixels(path, data), record


def decode_pixels(path: str | os.PathLike | PackedFace, data: bytes) -> np.ndarray:
    """BGR uint8 pixels of a face file's bytes; DflError for data that does not decode or is cut short
    (OpenCV would return a truncated JPEG with its missing rows grey)."""
    if not is_complete(data):
        raise DflError(f"{path}: image data is truncated")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise DflError(f"{path}: image data does not decode")
    return img


def _payload(record: FaceRecord) -> bytes:
    return dfl_dumps(record.to_dfl_dict())


def write_face(path: str | os.PathLike, image: np.ndarray, record: FaceRecord, quality: int = 90) -> None:
    """Encode ``image`` (BGR uint8; .jpg at ``quality``, or .png) with ``record`` embedded, atomically."""
    path = Path(path)
    img = np.asarray(image)
    if img.dtype != np.uint8:
        raise ValueError(f"write_face wants a uint8 image, got {img.dtype}")
    ext = path.suffix.lower()
    if ext in (".jpg", ".jpeg"):
        ok, buf = cv2.imencode(".jpg", img, [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    elif ext == ".png":
        ok, buf = cv2.imencode(".png", img)
    else:
        raise DflError(f"{path}: faces are written as .jpg (or .png), not {path.suffix or 'no extension'}")
    if not ok:
        raise DflError(f"{path}: cannot encode the face image")
    try:
        data = write_meta(buf.tobytes(), _payload(record))
    except ContainerError as exc:
        raise DflError(f"{path}: {exc}") from None
    try:
        atomic_write_bytes(path, data)
    except OSError as exc:
        raise DflError(f"{path}: cannot write ({exc.strerror or exc})") from None


def write_record(path: str | os.PathLike, record: FaceRecord) -> None:
    """Replace the metadata of an existing face file, keeping its pixels byte for byte (atomic)."""
    path = Path(path)
    data = _read_bytes(path)
    _meta(path, data)   # validates the container
    try:
        new = write_meta(data, _payload(record))
    except ContainerError as exc:
        raise DflError(f"{path}: {exc}") from None
    try:
        atomic_write_bytes(path, new)
    except OSError as exc:
        raise DflError(f"{path}: cannot write ({exc.strerror or exc})") from None
