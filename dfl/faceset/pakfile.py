"""DFL's packed faceset, ``aligned/faceset.pak``: every face file of a folder in one file.

Layout (little-endian 8-byte unsigned ints), as DFL's ``PackedFaceset`` writes it:

    version (1) | n_bytes | pickle of a list of sample configs (n_bytes) | n + 1 offsets | face files

Each config is a dict (``sample_type``, ``filename``, ``face_type``, ``shape``, ``landmarks``,
``seg_ie_polys``, ``xseg_mask``, ``xseg_mask_compressed``, ``eyebrows_expand_mod``,
``source_filename``, ``person_name``); ``sample_type`` and ``face_type`` are pickled as DFL's IntEnums.
The face files are stored byte for byte, so their own metadata travels with them.  Offsets are relative
to the first face file, except the last one, which DFL writes as the absolute end of the file; a reader
therefore ends the last face at the end of the file.

Only the index is read here; the faces are read on demand (:meth:`PackedFace.read_bytes`).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterable

from dfl.errors import DflError
from dfl.faceset.safe_pickle import dfl_dumps, dfl_enum, safe_loads

PAK_NAME = "faceset.pak"
PAK_VERSION = 1
_Q = struct.Struct("<Q")
SAMPLE_TYPE_FACE = 1          # DFL's SampleType.FACE


@dataclass(frozen=True)
class PackedFace:
    """One face file inside a ``faceset.pak``: its name and where its bytes are."""

    pak: Path
    name: str
    offset: int               # absolute position in the pak
    size: int
    person: str | None = None

    @property
    def stem(self) -> str:
        return Path(self.name).stem

    @property
    def suffix(self) -> str:
        return Path(self.name).suffix

    def read_bytes(self) -> bytes:
        """The face file's bytes; DflError when the pak is gone or cut short."""
        try:
            with open(self.pak, "rb") as f:
                f.seek(self.offset)
                data = f.read(self.size)
        except OSError as exc:
            raise DflError(f"{self}: cannot read ({exc.strerror or exc})") from None
        if len(data) != self.size:
            raise DflError(f"{self}: the pak is truncated")
        return data

    def __str__(self) -> str:
        return f"{self.pak}:{self.name}"


def _truncated(path: Path, what: str) -> DflError:
    return DflError(f"{path}: truncated or damaged faceset.pak ({what}); nothing was changed")


def read_index(path: str | os.PathLike) -> list[PackedFace]:
    """The faces listed in a pak, checked against its size; DflError (one line) for anything odd."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(16)
            if len(head) < 16:
                raise _truncated(path, "no header")
            version, n_bytes = _Q.unpack(head[:8])[0], _Q.unpack(head[8:])[0]
            if version != PAK_VERSION:
                raise DflError(f"{path}: faceset.pak version {version}; only version {PAK_VERSION} (DFL 2.0) is known")
            if n_bytes > size - 16:
                raise _truncated(path, "index runs past the end")
            configs = _configs(path, f.read(n_bytes))
            n = len(configs)
            table = f.read(8 * (n + 1))
    except OSError as exc:
        raise DflError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(table) != 8 * (n + 1):
        raise _truncated(path, "offset table cut short")
    offsets = [_Q.unpack_from(table, 8 * i)[0] for i in range(n + 1)]
    start = 16 + n_bytes + 8 * (n + 1)
    ends = offsets[1:n] + [min(offsets[n], size - start) if n else 0]
    if offsets[n] > size:                            # DFL's last offset is the absolute end of file
        raise _truncated(path, f"{size} bytes, the index says {offsets[n]}")
    faces = []
    for i, cfg in enumerate(configs):
        begin, end = offsets[i], ends[i]
        if end < begin or start + end > size:
            raise _truncated(path, f"{cfg['filename']} runs past the end")
        faces.append(PackedFace(path, cfg["filename"], start + begin, end - begin, cfg.get("person_name")))
    return faces


def _configs(path: Path, data: bytes) -> list[dict]:
    try:
        configs = safe_loads(data, str(path))
    except DflError as exc:
        raise _truncated(path, f"index does not load: {str(exc).split(': ', 1)[-1]}") from None
    if not isinstance(configs, list) or not all(isinstance(c, dict) and isinstance(c.get("filename"), str)
                                                 for c in configs):
        raise DflError(f"{path}: not a DFL faceset.pak (its index is not a list of samples)")
    for c in configs:
        name = c["filename"]
        if not name or Path(name).name != name or name in (".", ".."):
            raise DflError(f"{path}: unsafe file name {name!r} in the pak")
        person = c.get("person_name")
        if person is not None and (not isinstance(person, str) or Path(person).name != person or person in ("", ".", "..")):
            raise DflError(f"{path}: unsafe person name {person!r} in the pak")
    return configs


def sample_config(name: str, raw: dict, shape: tuple[int, int, int], face_type: int,
                  person: str | None = None) -> dict:
    """The config DFL's ``Sample.get_config()`` gives for a face file whose metadata dict is ``raw``."""
    import numpy as np
    from dfl.faceset.record import _polys_from_dfl

    polys = _polys_from_dfl(raw.get("seg_ie_polys")) or []
    polys = [p for p in polys if p["type"] == 1] + [p for p in polys if p["type"] != 1]   # DFL sorts them
    ebm = raw.get("eyebrows_expand_mod")
    return {
        "sample_type": dfl_enum("samplelib.Sample", "SampleType", SAMPLE_TYPE_FACE),
        "filename": name,
        "face_type": dfl_enum("facelib.FaceType", "FaceType", face_type),
        "shape": tuple(int(v) for v in shape),
        "landmarks": np.array(raw["landmarks"]).tolist(),
        "seg_ie_polys": {"polys": [{"type": int(p["type"]), "pts": p["pts"]} for p in polys]},
        "xseg_mask": None,
        "xseg_mask_compressed": raw.get("xseg_mask"),
        "eyebrows_expand_mod": 1.0 if ebm is None else ebm,
        "source_filename": raw.get("source_filename"),
        "person_name": person,
    }


def write_pak(out: BinaryIO, configs: list[dict], files: Iterable[bytes]) -> None:
    """Write a pak to the seekable ``out``: the configs, then each file of ``files`` in the same order."""
    index = dfl_dumps(configs)
    out.write(_Q.pack(PAK_VERSION))
    out.write(_Q.pack(len(index)))
    out.write(index)
    table_at = out.tell()
    out.write(bytes(8 * (len(configs) + 1)))
    start = out.tell()
    offsets = []
    for data in files:
        offsets.append(out.tell() - start)
        out.write(data)
    if len(offsets) != len(configs):
        raise ValueError(f"{len(configs)} configs but {len(offsets)} files")
    offsets.append(out.tell())                       # absolute, as DFL writes it
    end = out.tell()
    out.seek(table_at)
    out.write(b"".join(_Q.pack(o) for o in offsets))
    out.seek(end)
