"""PNG for frames: a fast writer for merged frames and masks, and a reader 2-3x faster than OpenCV for
the PNGs dfl writes.

Writing (:func:`encode_png`): encoding is the merger's largest cost after the model; OpenCV's PNG writer
spends about 35 ms on a 720p frame at its fastest useful settings, almost all of it in zlib.  Here each row
gets PNG's "up" filter (one vectorised subtraction) and the stream is deflated by ISA-L (the ``isal``
package), about four times faster than zlib at level 1 and as small; without it the standard zlib module is
used (run-length strategy, level 1).

Reading (:func:`decode_color`): extraction and merging read every frame of a video, and a 720x1364 frame took
OpenCV 21-26 ms to decode, a third of extraction's CPU time.  ``dfl extract-frames`` (``dfl.video.PNG_PRED``)
and :func:`encode_png` write 8-bit PNGs whose rows use the *up* filter: one zlib stream (inflated by ISA-L)
and a running sum of the rows, which numpy does a row at a time: 11 ms for that frame (Sapphire Rapids Xeon).
Anything else (paeth/average rows, palettes, 16 bits, interlacing, a damaged or truncated file) goes to
``cv2.imdecode`` unchanged, so the result is always OpenCV's: the same BGR pixels, or None.
"""

from __future__ import annotations

import struct
import zlib
from typing import Mapping

import cv2
import numpy as np

from dfl.errors import DflError

try:  # a dfl dependency; the standard zlib module only when it is missing (same streams, slower)
    from isal import isal_zlib as _isal
except ImportError:  # pragma: no cover - depends on the environment
    _isal = None

_SIG = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 6: 4}         # colour type -> samples per pixel (grey, RGB, RGBA) on the fast path
_TO_BGR = {1: cv2.COLOR_GRAY2BGR, 3: cv2.COLOR_RGB2BGR, 4: cv2.COLOR_RGBA2BGR}
_FAST_FILTERS = (0, 1, 2)              # none, sub, up: a row depends only on itself and the row above
_PEEK = 8192                           # compressed bytes inflated first to see the leading rows' filters


# ----------------------------------------------------------------------------------- writing
def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(data, zlib.crc32(kind)) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def _deflate(data: bytes | memoryview) -> bytes:
    if _isal is not None:
        return _isal.compress(data, 1)
    c = zlib.compressobj(1, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
    return c.compress(data) + c.flush()


def _filtered_rows(img: np.ndarray) -> np.ndarray:
    """PNG scanlines with filter type 2 ("up"): each row minus the one above, modulo 256."""
    h = img.shape[0]
    if img.ndim == 3:       # BGR -> RGB as PNG stores it (cvtColor: a strided numpy view is 30x slower)
        img = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_BGR2RGB)
    rows = np.ascontiguousarray(img).reshape(h, -1)
    out = np.empty((h, 1 + rows.shape[1]), np.uint8)
    out[:, 0] = 2
    out[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=out[1:, 1:])    # uint8 arithmetic wraps, as the filter wants
    return out


def encode_png(img: np.ndarray, text: Mapping[str, str] | None = None) -> bytes:
    """Encode a uint8 BGR (HxWx3) or grey (HxW) image as PNG, with ``text`` as tEXt chunks before the
    pixels (so :func:`dfl.imageops.synthetic_label.read_png_text` finds them without decoding)."""
    if img.dtype != np.uint8 or img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] != 3) \
            or img.shape[0] == 0 or img.shape[1] == 0:
        raise DflError(f"PNG encoding: expected a non-empty uint8 BGR or grey image, got {img.dtype} {img.shape}")
    h, w = img.shape[:2]
    colour_type = 2 if img.ndim == 3 else 0
    parts = [_SIG, _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, colour_type, 0, 0, 0))]
    for key, val in (text or {}).items():
        parts.append(_chunk(b"tEXt", key.encode("latin-1") + b"\x00" + val.encode("latin-1", "replace")))
    parts.append(_chunk(b"IDAT", _deflate(memoryview(_filtered_rows(img)).cast("B"))))
    parts.append(_chunk(b"IEND", b""))
    return b"".join(parts)


# ----------------------------------------------------------------------------------- reading
def decode_color(data: np.ndarray | bytes) -> np.ndarray | None:
    """``cv2.imdecode(data, cv2.IMREAD_COLOR)``: uint8 BGR, or None when the data is not a readable image."""
    buf = np.frombuffer(data, np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else data
    if buf.size == 0:
        return None
    img = _fast_png(buf) if buf[:8].tobytes() == _SIG else None
    if img is None:
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return img if img is not None and img.size else None


def _fast_png(buf: np.ndarray) -> np.ndarray | None:
    """The image when the file is one the fast path handles whole, else None (then OpenCV decides)."""
    parsed = _chunks(buf.tobytes())
    if parsed is None:
        return None
    width, height, channels, stream = parsed
    stride = width * channels
    try:
        head = zlib.decompressobj().decompress(stream[:_PEEK], (stride + 1) * 64)
        if any(head[i] not in _FAST_FILTERS for i in range(0, len(head), stride + 1)):
            return None  # paeth / average rows: OpenCV's job
        raw = _isal.decompress(stream, bufsize=height * (stride + 1)) if _isal is not None else zlib.decompress(stream)
    except zlib.error:
        return None
    if len(raw) != height * (stride + 1):
        return None
    rows = np.frombuffer(raw, np.uint8).reshape(height, stride + 1)
    filters = rows[:, 0]
    if not np.isin(filters, _FAST_FILTERS).all():
        return None
    pixels = _unfilter(rows[:, 1:], filters, channels)
    return cv2.cvtColor(pixels.reshape(height, width, channels), _TO_BGR[channels])


def _chunks(data: bytes) -> tuple[int, int, int, bytes] | None:
    """(width, height, channels, concatenated IDAT) of an 8-bit grey/RGB/RGBA non-interlaced PNG with every chunk
    whole (CRC checked, as libpng does) and an IEND; None for anything else."""
    pos, size = 8, len(data)
    header, idat, ended = None, [], False
    crc32 = _isal.crc32 if _isal is not None else zlib.crc32
    while pos + 12 <= size:
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        end = pos + 12 + length
        if end > size:
            return None
        body = data[pos + 8:pos + 8 + length]
        if crc32(body, crc32(kind)) != struct.unpack(">I", data[end - 4:end])[0]:
            return None  # a damaged chunk: OpenCV reports it (None) or reads what it can
        if kind == b"IHDR":
            if length != 13:
                return None
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"PLTE":
            return None
        elif kind == b"IEND":
            ended = True
            break
        pos = end
    if header is None or not idat or not ended:
        return None
    width, height, depth, colour, compression, filtering, interlace = header
    if depth != 8 or colour not in _CHANNELS or compression or filtering or interlace or not width or not height:
        return None
    return width, height, _CHANNELS[colour], b"".join(idat)


def _unfilter(rows: np.ndarray, filters: np.ndarray, channels: int) -> np.ndarray:
    """Undo the none / sub / up row filters (PNG spec section 9): each row from the one above, in place order."""
    out = np.empty_like(rows)
    previous = np.zeros(rows.shape[1], np.uint8)   # the row above the first
    for i, f in enumerate(filters.tolist()):
        row = out[i]
        if f == 2:
            np.add(previous, rows[i], out=row)
        elif f == 1:
            np.cumsum(rows[i].reshape(-1, channels), axis=0, dtype=np.uint8, out=row.reshape(-1, channels))
        else:
            row[:] = rows[i]
        previous = row
    return out
