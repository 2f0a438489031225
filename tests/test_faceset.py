"""Facesets: DFL's own files load exactly, ours load in DFL, hostile pickles never run."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import struct
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from dfl.cli import cli
from dfl.errors import DflError
from dfl.faceset import (
    FaceRecord,
    inspect_face,
    list_faces,
    polygons_mask,
    read_face,
    read_raw_dict,
    read_record,
    write_face,
    write_record,
)
from dfl.faceset.container import read_meta
from dfl.faceset.safe_pickle import safe_loads

SHARED = Path(__file__).resolve().parents[2] / "shared"
CONFORMANCE = SHARED / "conformance"


@pytest.fixture(scope="module")
def expected() -> list[dict]:
    path = CONFORMANCE / "dfljpg_expected.json"
    if not path.is_file():
        pytest.skip("shared conformance files not available")
    return json.loads(path.read_text())


def _face_image(size: int = 64) -> np.ndarray:
    rng = np.random.default_rng(0)
    img = cv2.resize(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), (size, size))
    return img


def _full_record(size: int = 64) -> FaceRecord:
    rng = np.random.default_rng(1)
    mask = np.zeros((size, size), np.float32)
    cv2.circle(mask, (size // 2, size // 2), size // 3, 1.0, -1)
    mask[0, :8] = np.arange(8) / 255.0                    # odd grey levels must survive exactly
    return FaceRecord(
        face_type="whole_face",
        landmarks=(rng.random((68, 2)) * size).astype(np.float32),
        source_filename="00042.png",
        source_rect=(10, -20, 300, 310),
        source_landmarks=(rng.random((68, 2)) * 500).astype(np.float32),
        image_to_face_mat=rng.random((2, 3)),
        eyebrows_expand_mod=1.5,
        seg_ie_polys=[{"type": 1, "pts": np.float32([[1, 2], [30, 4], [20, 40]])},
                      {"type": 0, "pts": np.float32([[5, 5], [9, 5], [9, 9], [5, 9]])}],
        xseg_mask=mask,
        extra={"custom_key": [1, 2, "three"], "ie_polys": [(1, [[0.0, 0.0], [1.0, 1.0], [0.0, 1.0]])]},
    )


def _jpeg_with_app15(payload: bytes) -> bytes:
    ok, buf = cv2.imencode(".jpg", _face_image(16))
    data = buf.tobytes()
    return data[:2] + b"\xff\xef" + struct.pack(">H", len(payload) + 2) + payload + data[2:]


# ---------------------------------------------------------------------------- DFL's own files
def test_dfl_written_faces_load_with_exact_values(expected: list[dict]) -> None:
    for exp in expected:
        path = CONFORMANCE / exp["file"]
        img, rec = read_face(path)
        assert img.shape == (exp["size"], exp["size"], 3) and img.dtype == np.uint8
        assert rec.face_type == exp["face_type"]
        assert rec.landmarks.dtype == np.float32 and rec.landmarks.shape == (68, 2)
        assert np.array_equal(rec.landmarks.astype(np.float64), np.array(exp["landmarks"]))
        assert rec.source_filename == exp["source_filename"]
        assert list(rec.source_rect) == exp["source_rect"]
        assert np.array_equal(rec.source_landmarks.astype(np.float64), np.array(exp["source_landmarks"]))
        assert np.array_equal(rec.image_to_face_mat, np.array(exp["image_to_face_mat"]))
        assert rec.has_polys == exp["has_polys"]
        assert (rec.xseg_mask is not None) == exp["has_xseg_mask"]
        if exp["has_xseg_mask"]:
            assert rec.xseg_mask.dtype == np.float32 and rec.xseg_mask.ndim == 2
            assert abs(float(rec.xseg_mask.mean(dtype=np.float64)) - exp["xseg_mask_mean"]) < 1e-6
        meta_only = read_record(path)
        assert np.array_equal(meta_only.landmarks, rec.landmarks)
        _, (h, w) = inspect_face(path)
        assert (h, w) == (exp["size"], exp["size"])


def test_rewriting_a_dfl_face_keeps_every_stored_key_identical(expected: list[dict], tmp_path: Path) -> None:
    for exp in expected:
        src = CONFORMANCE / exp["file"]
        img, rec = read_face(src)
        out = tmp_path / exp["file"]
        write_face(out, img, rec)
        a, b = read_raw_dict(src), read_raw_dict(out)
        assert list(a) == list(b)
        for key in a:
            va, vb = a[key], b[key]
            assert type(va) is type(vb), key
            if key == "seg_ie_polys":
                for pa, pb in zip(va["polys"], vb["polys"], strict=True):
                    assert pa["type"] == pb["type"] and pa["pts"].dtype == pb["pts"].dtype
                    assert np.array_equal(pa["pts"], pb["pts"])
            elif isinstance(va, np.ndarray):
                assert va.dtype == vb.dtype and np.array_equal(va, vb), key
            else:
                assert va == vb, key


# ------------------------------------------------------------------------------ our files
def test_round_trip_every_key(tmp_path: Path) -> None:
    rec = _full_record()
    path = tmp_path / "00042_0.jpg"
    write_face(path, _face_image(), rec, quality=95)
    img, back = read_face(path)
    assert img.shape == (64, 64, 3)
    assert back.face_type == rec.face_type and back.source_filename == rec.source_filename
    assert back.source_rect == rec.source_rect
    assert np.array_equal(back.landmarks, rec.landmarks)
    assert np.array_equal(back.source_landmarks, rec.source_landmarks)
    assert np.array_equal(back.image_to_face_mat, rec.image_to_face_mat)
    assert back.eyebrows_expand_mod == 1.5
    assert [p["type"] for p in back.seg_ie_polys] == [1, 0]
    assert all(np.array_equal(p["pts"], q["pts"]) for p, q in zip(back.seg_ie_polys, rec.seg_ie_polys))
    assert np.array_equal(back.xseg_mask, rec.xseg_mask)
    assert back.extra == rec.extra
    # and a second trip is byte-identical
    path2 = tmp_path / "again.jpg"
    write_face(path2, img, back)
    assert read_meta(path.read_bytes()).payload == read_meta(path2.read_bytes()).payload


def test_written_metadata_has_dfl_types_and_loads_with_plain_pickle(tmp_path: Path) -> None:
    path = tmp_path / "f.jpg"
    write_face(path, _face_image(), _full_record())
    payload = read_meta(path.read_bytes()).payload
    assert payload[:2] == b"\x80\x04"                           # protocol 4, like DFL
    assert b"numpy.core.multiarray" in payload and b"numpy._core" not in payload   # numpy 1.x can import it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = pickle.loads(payload)                               # what DFL itself does
    assert isinstance(d["landmarks"], list) and isinstance(d["landmarks"][0], list)
    assert isinstance(d["source_landmarks"], list)
    assert isinstance(d["source_rect"], np.ndarray) and d["source_rect"].dtype == np.int64
    assert isinstance(d["image_to_face_mat"], np.ndarray) and d["image_to_face_mat"].shape == (2, 3)
    assert isinstance(d["seg_ie_polys"], dict) and d["seg_ie_polys"]["polys"][0]["pts"].dtype == np.float32
    mask_buf = d["xseg_mask"]
    assert isinstance(mask_buf, np.ndarray) and mask_buf.dtype == np.uint8
    assert cv2.imdecode(mask_buf, cv2.IMREAD_UNCHANGED).shape == (64, 64)
    # the APP15 segment sits after APP0 and the JPEG still decodes everywhere
    data = path.read_bytes()
    assert data[2:4] == b"\xff\xe0" and data[4 + struct.unpack(">H", data[4:6])[0]:][:2] == b"\xff\xef"
    assert cv2.imread(str(path)) is not None


def test_write_record_keeps_pixels_and_png_faces_work(tmp_path: Path) -> None:
    path = tmp_path / "f.jpg"
    write_face(path, _face_image(), _full_record())
    before = path.read_bytes()
    rec = read_record(path)
    rec.face_type = "head"
    rec.xseg_mask = None
    rec.seg_ie_polys = None
    write_record(path, rec)
    after = path.read_bytes()
    sos = before.index(b"\xff\xda")
    assert after.endswith(before[sos:])                          # scan data untouched
    assert read_record(path).face_type == "head" and read_record(path).xseg_mask is None
    png = tmp_path / "f.png"
    write_face(png, _face_image(), _full_record())
    img, back = read_face(png)
    assert back.face_type == "whole_face" and img.shape == (64, 64, 3)
    assert cv2.imread(str(png)) is not None


def test_polygons_mask_includes_then_excludes() -> None:
    m = polygons_mask(_full_record(), (64, 64))
    assert m[20, 20] == 1.0 and m[7, 7] == 0.0 and m[60, 60] == 0.0


# ------------------------------------------------------------------------------ security
class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # what an attacker would ship
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payloads = [
        pickle.dumps({"landmarks": [[0.0, 0.0]] * 68, "x": _Evil(marker)}, protocol=4),
        pickle.dumps(_Evil(marker), protocol=0),
        f"cbuiltins\neval\n(V__import__('os').system('touch {marker}')\ntR.".encode(),
        b"\x80\x04cnumpy\nload\n.",                             # numpy globals outside the list too
        b"\x80\x04c_codecs\nencode\n(Vx\nVrot13\ntR.",             # codecs other than latin-1
    ]
    for i, payload in enumerate(payloads):
        path = tmp_path / f"evil{i}.jpg"
        path.write_bytes(_jpeg_with_app15(payload))
        with pytest.raises(DflError, match="evil"):
            read_face(path)
        with pytest.raises(DflError):
            read_record(path)
    assert not marker.exists()
    with pytest.raises(DflError, match="refused"):
        safe_loads(pickle.dumps(np.array([1, "a"], dtype=object)))


def test_plain_metadata_of_every_pickle_protocol_loads() -> None:
    d = {"landmarks": [[1.0, 2.0]] * 68, "mat": np.eye(2, 3), "empty": b"", "raw": b"\x00\xff",
         "rect": np.arange(4), "mod": np.float32(1.5), "t": (1, "a", None, True)}
    for proto in range(pickle.HIGHEST_PROTOCOL + 1):
        back = safe_loads(pickle.dumps(d, protocol=proto))
        assert np.array_equal(back["mat"], d["mat"]) and back["rect"].dtype == d["rect"].dtype
        assert back["empty"] == b"" and back["raw"] == d["raw"] and back["mod"] == 1.5 and back["t"] == d["t"]


def test_broken_inputs_give_one_line_errors(tmp_path: Path) -> None:
    plain = tmp_path / "plain.jpg"
    cv2.imwrite(str(plain), _face_image())
    with pytest.raises(DflError, match="no DFL face metadata"):
        read_face(plain)
    with pytest.raises(DflError, match="no such file"):
        read_record(tmp_path / "missing.jpg")
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"hello")
    with pytest.raises(DflError, match="not a valid face image"):
        read_record(junk)
    good = tmp_path / "good.jpg"
    write_face(good, _face_image(), _full_record())
    truncated = tmp_path / "trunc.jpg"
    data = good.read_bytes()
    truncated.write_bytes(data[:300])
    with pytest.raises(DflError):
        read_record(truncated)
    no_lm = tmp_path / "nolm.jpg"
    no_lm.write_bytes(_jpeg_with_app15(pickle.dumps({"face_type": "full_face"})))
    with pytest.raises(DflError, match="no landmarks"):
        read_record(no_lm)
    # an impossible write leaves the old file alone and no temp files behind
    huge = _full_record()
    huge.extra["blob"] = np.zeros(70000, np.uint8)
    with pytest.raises(DflError, match="segment"):
        write_face(good, _face_image(), huge)
    assert good.read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    with pytest.raises(DflError):
        write_face(tmp_path / "face.bmp", _face_image(), _full_record())


def test_list_faces_sorted_and_filtered(tmp_path: Path) -> None:
    for name in ("00002_0.jpg", "00001_1.jpg", "00001_0.png", "notes.txt", ".hidden.jpg"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub.jpg").mkdir()
    assert [p.name for p in list_faces(tmp_path)] == ["00001_0.png", "00001_1.jpg", "00002_0.jpg"]
    with pytest.raises(DflError):
        list_faces(tmp_path / "nope")


# ------------------------------------------------------------------------------------ CLI
def test_cli_faceset_info_text_and_json(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    aligned = ws / "data_src" / "aligned"
    aligned.mkdir(parents=True)
    write_face(aligned / "00001_0.jpg", _face_image(), _full_record())
    rec = _full_record()
    rec.xseg_mask = None
    rec.seg_ie_polys = None
    write_face(aligned / "00002_0.jpg", _face_image(), rec)
    runner = CliRunner()
    res = runner.invoke(cli, ["faceset", "info", "src", "--workspace", str(ws)])
    assert res.exit_code == 0, res.output
    assert "00001_0.jpg: whole_face 64x64, 68 landmarks" in res.output
    assert "1 include, 1 exclude" in res.output and "xseg mask yes (64x64 png" in res.output
    assert "2 faces in" in res.output and "1 with polygons, 1 with xseg masks" in res.output

    res = runner.invoke(cli, ["faceset", "info", str(aligned), "--json"])
    assert res.exit_code == 0, res.output
    objs = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    assert len(objs) == 2
    first = objs[0]
    for key in ("face_type", "landmarks", "source_filename", "source_rect", "source_landmarks",
                "image_to_face_mat", "eyebrows_expand_mod", "seg_ie_polys", "xseg_mask", "custom_key"):
        assert key in first, key
    assert first["width"] == 64 and len(first["landmarks"]) == 68 and first["source_rect"] == [10, -20, 300, 310]
    assert first["xseg_mask"]["format"] == "png" and first["xseg_mask"]["height"] == 64

    (aligned / "00003_0.jpg").write_bytes(b"garbage")
    res = runner.invoke(cli, ["faceset", "info", str(aligned)])
    assert res.exit_code == 1 and "1 unreadable" in res.output


def test_cli_faceset_info_on_dfl_files(expected: list[dict], tmp_path: Path) -> None:
    shutil.copy(CONFORMANCE / "00001_0.jpg", tmp_path / "00001_0.jpg")
    res = CliRunner().invoke(cli, ["faceset", "info", str(tmp_path / "00001_0.jpg"), "--json"])
    assert res.exit_code == 0, res.output
    obj = json.loads(res.stdout)
    assert obj["source_rect"] == expected[1]["source_rect"]
    assert abs(obj["xseg_mask"]["mean"] - expected[1]["xseg_mask_mean"]) < 1e-6
