"""A JSON-ready description of one face file, for ``dfl faceset info`` and scripts."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from dfl.faceset.io import _as_file, _meta, _read_bytes, _record
from dfl.faceset.pakfile import PackedFace
from dfl.faceset.record import FaceRecord
from dfl.faceset.safe_pickle import safe_loads


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (bytes, bytearray)):
        return {"bytes": len(v)}
    return v


def _mask_format(buf: Any) -> str:
    head = np.asarray(buf, np.uint8).reshape(-1)[:8].tobytes()
    if head.startswith(b"\x89PNG"):
        return "png"
    if head.startswith(b"\xff\xd8"):
        return "jpg"
    return "unknown"


def face_info(path: str | os.PathLike | PackedFace) -> tuple[dict, FaceRecord]:
    """Every stored key (arrays as lists; the encoded xseg mask summarised) plus file, width, height.

    Also returns the parsed record, so callers can format without parsing twice.
    """
    path = _as_file(path)
    data = _read_bytes(path)
    meta = _meta(path, data)
    record = _record(path, meta)                       # validates and decodes (DflError if bad)
    raw = safe_loads(meta.payload, str(path))
    out: dict[str, Any] = {"file": str(path), "width": meta.width, "height": meta.height}
    for key, value in raw.items():
        if key == "xseg_mask" and value is not None:
            mask = record.xseg_mask
            out[key] = {"format": _mask_format(value), "encoded_bytes": int(np.asarray(value).size),
                        "height": int(mask.shape[0]), "width": int(mask.shape[1]),
                        "mean": float(mask.mean(dtype=np.float64))}
        else:
            out[key] = _jsonable(value)
    return out, record
