"""Marks that say "this picture was made by AI", machine-readable and visible.

Face swaps must be recognisable as synthetic (the EU AI Act's Article 50 asks that of such tools), so
merged PNGs carry text chunks and videos a container comment by default.  Kept in the lowest layer so the
merger, the video writer and the CLI all use the same words.
"""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np

COMMENT = "synthetic face: AI-modified (face swap) by dfl"
"""The wording of the mark; contains "dfl" and "synthetic face" so a simple search finds it."""

DIGITAL_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia"
"""IPTC's term for an image that combines real footage with AI-generated content."""

VISIBLE_TEXT = "AI-modified (synthetic face)"

_PNG_SIG = b"\x89PNG\r\n\x1a\n"


def video_metadata() -> dict[str, str]:
    """Container tags for ``dfl.video.frames_to_video(..., metadata=...)``."""
    return {"comment": COMMENT, "description": COMMENT}


def png_text_chunks(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The tEXt key/values a merged PNG carries (the mark plus any ``extra``)."""
    chunks = {"Comment": COMMENT, "Software": "dfl", "DigitalSourceType": DIGITAL_SOURCE_TYPE, "AI-Modified": "true"}
    chunks.update(extra or {})
    return chunks


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def add_png_text(png: bytes, text: dict[str, str]) -> bytes:
    """Insert tEXt chunks right after IHDR of an encoded PNG (Latin-1 keys and values)."""
    if not png.startswith(_PNG_SIG):
        raise ValueError("not a PNG")
    ihdr_len = struct.unpack(">I", png[8:12])[0]
    cut = 8 + 12 + ihdr_len
    extra = b"".join(_chunk(b"tEXt", k.encode("latin-1") + b"\x00" + v.encode("latin-1", "replace"))
                     for k, v in text.items())
    return png[:cut] + extra + png[cut:]


def read_png_text(data: bytes) -> dict[str, str]:
    """tEXt chunks of a PNG, read up to the first image data (cheap: no pixel decode)."""
    out: dict[str, str] = {}
    if not data.startswith(_PNG_SIG):
        return out
    pos = 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind in (b"IDAT", b"IEND"):
            break
        if kind == b"tEXt":
            key, _, val = data[pos + 8:pos + 8 + length].partition(b"\x00")
            out[key.decode("latin-1")] = val.decode("latin-1")
        pos += 12 + length
    return out


def read_png_text_file(path, limit: int = 65536) -> dict[str, str]:
    """:func:`read_png_text` on the head of a file."""
    try:
        with open(path, "rb") as f:
            return read_png_text(f.read(limit))
    except OSError:
        return {}


def encode_png(img: np.ndarray, text: dict[str, str] | None = None, compression: int = 1) -> bytes:
    """Encode uint8 ``img`` as PNG carrying ``text`` chunks.

    Fast settings (level 1, run-length strategy): merge writes thousands of frames and PNG encoding is
    its largest cost after the model; files are about 5% larger than OpenCV's default.
    """
    ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, compression,
                                         cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE])
    if not ok:
        raise ValueError("PNG encoding failed")
    data = buf.tobytes()
    return add_png_text(data, text) if text else data


def draw_visible_label(img: np.ndarray, text: str = VISIBLE_TEXT) -> np.ndarray:
    """Draw a small notice in the bottom-left corner of a uint8 BGR frame, in place; returns it."""
    h, w = img.shape[:2]
    scale = max(0.35, h / 1400.0)
    thick = max(1, int(round(scale * 1.5)))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    x, y = max(2, int(h * 0.015)), h - max(4, int(h * 0.02))
    x0, y0, x1, y1 = x - 3, y - th - 4, min(w - 1, x + tw + 3), min(h - 1, y + base + 2)
    roi = img[max(0, y0):y1, max(0, x0):x1]
    roi[:] = (roi.astype(np.uint16) // 3).astype(np.uint8)
    cv2.putText(img, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA)
    return img
