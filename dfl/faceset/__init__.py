"""Facesets: aligned face images with DFL's metadata, read and written compatibly and safely.

A face file is a JPEG (or an old DFL PNG) whose APP15 segment holds a pickled dict; see
:mod:`dfl.faceset.record` for the keys and :mod:`dfl.faceset.safe_pickle` for why loading is restricted.
"""

from __future__ import annotations

from dfl.faceset.io import (
    FACE_EXTENSIONS,
    inspect_face,
    list_faces,
    read_face,
    read_raw_dict,
    read_record,
    write_face,
    write_record,
)
from dfl.faceset.record import FaceRecord, encode_mask, polygons_mask

__all__ = [
    "FACE_EXTENSIONS", "FaceRecord", "encode_mask", "inspect_face", "list_faces", "polygons_mask",
    "read_face", "read_raw_dict", "read_record", "write_face", "write_record",
]
