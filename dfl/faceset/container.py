"""Where DFL hides face metadata inside image files: a JPEG APP15 segment, or (old DFL) a PNG chunk.

Only the bytes around the metadata are parsed; pixels are never decoded here, so listing or
inspecting a faceset of thousands of faces stays cheap.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

APP15 = 0xEF
_MAX_SEGMENT_PAYLOAD = 0xFFFF - 2          # a JPEG segment's length field is 16 bits and counts itself
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_DFL_CHUNK = b"fcWp"                   # the chunk type old DFL (DFLPNG) used


@dataclass
class ImageMeta:
    """What the header says: DFL's pickled metadata (or None) and the image size."""

    payload: bytes | None
    width: int | None
    height: int | None


class ContainerError(ValueError):
    """The file is not a well-formed JPEG/PNG as far as the metadata is concerned."""


def _jpeg_segments(data: bytes) -> list[tuple[int, int, int]]:
    """(marker, start, end) of every header segment from SOI up to and including SOS's header.

    ``start`` is the offset of the 0xFF byte; ``end`` the offset after the segment.
    """
    if data[:2] != b"\xff\xd8":
        raise ContainerError("not a JPEG (no SOI marker)")
    out = [(0xD8, 0, 2)]
    pos = 2
    n = len(data)
    while pos < n:
        if data[pos] != 0xFF:
            raise ContainerError(f"bad JPEG marker at byte {pos}")
        while pos + 1 < n and data[pos + 1] == 0xFF:   # fill bytes
            pos += 1
        if pos + 1 >= n:
            raise ContainerError("truncated JPEG header")
        marker = data[pos + 1]
        if marker == 0xD9:
            out.append((marker, pos, pos + 2))
            return out
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            out.append((marker, pos, pos + 2))
            pos += 2
            continue
        if pos + 4 > n:
            raise ContainerError("truncated JPEG segment")
        length = struct.unpack(">H", data[pos + 2:pos + 4])[0]
        end = pos + 2 + length
        if length < 2 or end > n:
            raise ContainerError(f"JPEG segment at byte {pos} runs past the end of the file")
        out.append((marker, pos, end))
        if marker == 0xDA:  # start of scan: entropy-coded data follows, the header is over
            return out
        pos = end
    raise ContainerError("JPEG has no image data (no SOS marker)")


def read_jpeg_meta(data: bytes) -> ImageMeta:
    """DFL's APP15 payload (the last one, as DFL reads) and the frame size from SOF."""
    payload = None
    width = height = None
    for marker, start, end in _jpeg_segments(data):
        if marker == APP15:
            payload = data[start + 4:end]
        elif marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            if end - start >= 9:
                height, width = struct.unpack(">HH", data[start + 5:start + 9])
    return ImageMeta(payload, width, height)


def write_jpeg_meta(data: bytes, payload: bytes) -> bytes:
    """The JPEG ``data`` with every APP15 removed and one holding ``payload`` placed after the last
    APPn segment (where DFL puts it)."""
    if len(payload) > _MAX_SEGMENT_PAYLOAD:
        raise ContainerError(f"face metadata is {len(payload)} bytes; a JPEG segment holds at most "
                             f"{_MAX_SEGMENT_PAYLOAD} (is the xseg mask too large?)")
    segs = _jpeg_segments(data)
    kept = [s for s in segs if s[0] != APP15]
    insert_after = 0
    for i, (marker, _, _) in enumerate(kept):
        if 0xE0 <= marker <= 0xEF:
            insert_after = i
    header_end = segs[-1][2]
    parts = []
    for i, (_, start, end) in enumerate(kept):
        parts.append(data[start:end])
        if i == insert_after:
            parts.append(b"\xff\xef" + struct.pack(">H", len(payload) + 2) + payload)
    parts.append(data[header_end:])
    return b"".join(parts)


def _png_chunks(data: bytes) -> list[tuple[bytes, int, int]]:
    """(type, start, end) of every PNG chunk."""
    if data[:8] != _PNG_SIGNATURE:
        raise ContainerError("not a PNG")
    out = []
    pos = 8
    while pos + 12 <= len(data):
        length = struct.unpack(">I", data[pos:pos + 4])[0]
        ctype = data[pos + 4:pos + 8]
        end = pos + 12 + length
        if end > len(data):
            raise ContainerError("truncated PNG chunk")
        out.append((ctype, pos, end))
        pos = end
        if ctype == b"IEND":
            break
    return out


def read_png_meta(data: bytes) -> ImageMeta:
    """Old DFL's ``fcWp`` chunk payload and the size from IHDR."""
    payload = None
    width = height = None
    for ctype, start, end in _png_chunks(data):
        if ctype == b"IHDR":
            width, height = struct.unpack(">II", data[start + 8:start + 16])
        elif ctype == _PNG_DFL_CHUNK:
            payload = data[start + 8:end - 4]
    return ImageMeta(payload, width, height)


def write_png_meta(data: bytes, payload: bytes) -> bytes:
    """The PNG ``data`` with its ``fcWp`` chunk replaced by one holding ``payload``, before IEND."""
    chunks = _png_chunks(data)
    parts = [data[:8]]
    for ctype, start, end in chunks:
        if ctype == _PNG_DFL_CHUNK:
            continue
        if ctype == b"IEND":
            body = _PNG_DFL_CHUNK + payload
            parts.append(struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body)))
        parts.append(data[start:end])
    return b"".join(parts)


def is_png(data: bytes) -> bool:
    return data[:8] == _PNG_SIGNATURE


def is_complete(data: bytes) -> bool:
    """Whether the image's data runs to its end marker (JPEG EOI after the scan, PNG IEND): a file cut
    short by a failed copy or download decodes in OpenCV with its missing part grey."""
    try:
        if is_png(data):
            return any(ctype == b"IEND" for ctype, _, _ in _png_chunks(data))
        scan_start = _jpeg_segments(data)[-1][2]
    except ContainerError:
        return False
    return data.find(b"\xff\xd9", scan_start) >= 0


def read_meta(data: bytes) -> ImageMeta:
    return read_png_meta(data) if is_png(data) else read_jpeg_meta(data)


def write_meta(data: bytes, payload: bytes) -> bytes:
    return write_png_meta(data, payload) if is_png(data) else write_jpeg_meta(data, payload)
