"""The fast PNG reader (dfl.imageops.png.decode_color) gives exactly what cv2.imdecode gives, for the frames
dfl writes (its fast path) and for every other file (OpenCV's path), damaged ones included."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from dfl.imageops import png


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))


def _paeth(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    a, b, c = (x.astype(np.int16) for x in (a, b, c))
    p = a + b - c
    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
    return np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c)).astype(np.uint8)


def make_png(pixels: np.ndarray, filters: list[int], colour: int) -> bytes:
    """An 8-bit PNG of ``pixels`` (H x W x C in PNG order, RGB/RGBA/grey) with the given filter per row."""
    h = pixels.shape[0]
    c = 1 if pixels.ndim == 2 else pixels.shape[2]
    rows = pixels.reshape(h, -1)
    out = bytearray()
    for i, f in enumerate(filters):
        x = rows[i]
        up = rows[i - 1] if i else np.zeros_like(x)
        left = np.concatenate([np.zeros(c, np.uint8), x[:-c]])
        upleft = np.concatenate([np.zeros(c, np.uint8), up[:-c]])
        filtered = {0: x, 1: x - left, 2: x - up, 3: x - ((left.astype(np.uint16) + up) // 2).astype(np.uint8),
                    4: x - _paeth(left, up, upleft)}[f]
        out += bytes([f]) + filtered.astype(np.uint8).tobytes()
    ihdr = struct.pack(">IIBBBBB", pixels.shape[1], h, 8, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(bytes(out))) + _chunk(b"IEND", b"")


def same_as_opencv(data: bytes) -> np.ndarray | None:
    want = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    got = png.decode_color(data)
    assert (got is None) == (want is None)
    if want is not None:
        assert got.dtype == np.uint8 and got.shape == want.shape and np.array_equal(got, want)
    return got


RNG = np.random.default_rng(7)
IMAGE = RNG.integers(0, 256, (23, 31, 3), dtype=np.uint8)
IMAGE[5:9] = 77                               # flat rows and wrap-around in the sums


@pytest.mark.parametrize("filters", ["up", "sub", "none", "mixed"])
@pytest.mark.parametrize("colour", [2, 6, 0], ids=["rgb", "rgba", "grey"])
def test_fast_path_matches_opencv(filters: str, colour: int) -> None:
    pixels = {2: IMAGE, 6: np.dstack([IMAGE, IMAGE[:, :, 0]]), 0: IMAGE[:, :, 1]}[colour]
    rows = {"up": [1] + [2] * 22, "sub": [1] * 23, "none": [0] * 23, "mixed": [0, 1, 2] * 7 + [2, 1]}[filters]
    data = make_png(pixels, rows, colour)
    assert png._fast_png(np.frombuffer(data, np.uint8)) is not None      # these take the fast path
    same_as_opencv(data)


@pytest.mark.parametrize("bad_row", [3, 4], ids=["average", "paeth"])
def test_average_and_paeth_rows_go_to_opencv(bad_row: int) -> None:
    for where in (0, 20):                      # in the leading rows (seen early) or further down
        rows = [2] * 23
        rows[where] = bad_row
        data = make_png(IMAGE, rows, 2)
        assert png._fast_png(np.frombuffer(data, np.uint8)) is None
        same_as_opencv(data)


def test_frames_from_extract_frames_and_merge_take_the_fast_path(tmp_path: Path) -> None:
    from dfl.video import extract_frames

    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 48))
    for i in range(3):
        writer.write(np.roll(np.tile(IMAGE[:, :, ::-1], (3, 3, 1))[:48, :64], i * 5, axis=1).copy())
    writer.release()
    assert extract_frames(video, tmp_path / "frames", desc=None) == 3
    for p in sorted((tmp_path / "frames").glob("*.png")):
        data = p.read_bytes()
        assert png._fast_png(np.frombuffer(data, np.uint8)) is not None
        same_as_opencv(data)
    for img in (IMAGE, IMAGE[:, :, 0]):       # the merger's frames and masks
        data = png.encode_png(np.ascontiguousarray(img), {"Comment": "x"})
        assert png._fast_png(np.frombuffer(data, np.uint8)) is not None
        same_as_opencv(data)


def test_other_images_and_damaged_files_read_as_opencv_reads_them() -> None:
    good = make_png(IMAGE, [2] * 23, 2)
    deep = cv2.imencode(".png", (IMAGE.astype(np.uint16) * 257))[1].tobytes()   # 16 bits
    jpeg = cv2.imencode(".jpg", IMAGE)[1].tobytes()
    flipped = bytearray(good)
    flipped[60] ^= 0x40                        # a flipped bit inside the pixel data: its CRC no longer holds
    for data in (deep, jpeg, good[:len(good) // 2], good[:-12], bytes(flipped), b"\x89PNG\r\n\x1a\n"):
        same_as_opencv(data)
    assert png.decode_color(good[:len(good) // 2]) is None and png.decode_color(bytes(flipped)) is None
    assert png.decode_color(b"") is None       # where cv2.imdecode raises
