"""Faceset tools (#17): sort, recover-names, resize, pack/unpack, metadata save/restore, debug images.

Three kinds of facesets: synthetic faces written by the extractor's own writer (always run), the DFL-written
conformance faces and a faceset extracted from the shared HDTF clips (skipped without ../shared).
"""

from __future__ import annotations

import json
import os
import pickle
import pickletools
import shutil
import struct
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from dfl.errors import DflError
from dfl.extract import ExtractOptions, FrameFaces, write_frame_faces
from dfl.faces.align import _MEAN_FACE_3D, FaceType, pitch_yaw_roll, transform_matrix, transform_points
from dfl.faceset import list_faces, read_face, read_raw_dict, read_record, write_face
from dfl.faceset.container import read_meta
from dfl.faceset.debug import write_debug_images
from dfl.faceset.metadata import restore_metadata, save_metadata
from dfl.faceset.pack import pack_faceset, unpack_faceset
from dfl.faceset.pakfile import PAK_NAME, read_index
from dfl.faceset.resize import ResizeOptions, resize_faceset
from dfl.faceset.safe_pickle import safe_loads
from dfl.faceset.sort import SORT_METHODS, SortOptions, recover_names, sort_faceset
from dfl.faceset.source import face_files
from dfl.imageops.sharpness import cpbd

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------- facesets
def _write_frame(frames: Path, name: str, frame: np.ndarray, lm: np.ndarray, size: int,
                 face_type: FaceType = FaceType.WHOLE_FACE) -> None:
    """Save a frame and extract its one face (known landmarks) with the extractor's own writer."""
    (frames / "aligned").mkdir(parents=True, exist_ok=True)
    path = frames / name
    cv2.imwrite(str(path), frame)
    lo, hi = lm.min(axis=0), lm.max(axis=0)
    rect = np.array([lo[0], lo[1], hi[0], hi[1], 1.0], np.float32)
    n = write_frame_faces(path, frame, FrameFaces([rect], [lm.astype(np.float32)]), frames / "aligned",
                          ExtractOptions(face_type=face_type, image_size=size), None, [])
    assert n == 1


def synthetic_faceset(root: Path, n: int = 6, size: int = 128) -> Path:
    """data_src/ with n drawn frames and data_src/aligned with their faces; returns the aligned folder."""
    from train_helpers import draw_face

    rng = np.random.default_rng(7)
    for i in range(n):
        frame, lm = draw_face(rng, i % 2, size=256)
        _write_frame(root / "data_src", f"{i + 1:05d}.png", frame, lm, size)
    return root / "data_src" / "aligned"


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")}


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in list_faces(folder))


def _untrash(folder: Path) -> None:
    trash = folder.parent / f"{folder.name}_trash"
    if trash.is_dir():
        for p in trash.iterdir():
            p.rename(folder / p.name)
        trash.rmdir()


@pytest.fixture(scope="session")
def hdtf_workspace(shared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace with 3 frames of each shared HDTF clip and their faces (whole_face, 256), extracted
    once per session.  READ ONLY: copy it first."""
    from dfl.extract import extract_faces
    from dfl.faces import registry

    clips = sorted((shared_dir / "media/video/hdtf").glob("*.mp4"))
    if not clips:
        pytest.skip("no HDTF clips in ../shared")
    ws = tmp_path_factory.mktemp("hdtf") / "workspace"
    frames = ws / "data_src"
    frames.mkdir(parents=True)
    n = 0
    for clip in clips:
        cap = cv2.VideoCapture(str(clip))
        for k in range(3):
            cap.set(cv2.CAP_PROP_POS_FRAMES, 40 * k)
            ok, img = cap.read()
            if ok:
                n += 1
                cv2.imwrite(str(frames / f"{n:05d}.png"), img)
        cap.release()
    if n < 4:
        pytest.skip("HDTF clips do not decode here")
    b = registry.get_backends("auto", "auto", "cpu", Path("/nonexistent-weights"))
    s = extract_faces(frames, frames / "aligned", b.detector, b.landmarker,
                      ExtractOptions(image_size=256, jpeg_quality=95), progress=False)
    assert s.faces == n
    return ws


@pytest.fixture
def hdtf_faces(hdtf_workspace: Path, tmp_path: Path) -> Path:
    """A private copy of the HDTF workspace; returns its data_src/aligned."""
    shutil.copytree(hdtf_workspace, tmp_path / "ws")
    return tmp_path / "ws" / "data_src" / "aligned"


@pytest.fixture
def conformance_faces(shared_dir: Path, tmp_path: Path) -> Path:
    """The four DFL-written conformance faces in a private folder."""
    folder = tmp_path / "conf" / "aligned"
    folder.mkdir(parents=True)
    for p in sorted((shared_dir / "conformance").glob("0000*_0.jpg")):
        shutil.copy(p, folder / p.name)
    return folder


def _add_blurred_copies(folder: Path) -> dict[str, str]:
    """A blurred copy beside each face (same metadata, its own source name); original -> copy name."""
    pairs = {}
    for p in list_faces(folder):
        img, rec = read_face(p)
        rec.source_filename = f"blurred{Path(rec.source_filename).stem}.png"
        copy = folder / f"blurred{p.stem}.jpg"
        write_face(copy, cv2.GaussianBlur(img, (0, 0), 2.5), rec)
        pairs[p.name] = copy.name
    return pairs


def _check_blur_order(folder: Path) -> None:
    pairs = _add_blurred_copies(folder)
    src = {read_record(p).source_filename: p.name for p in list_faces(folder)}
    sort_faceset(folder, "blur", SortOptions(progress=False))
    position = {read_record(p).source_filename: i for i, p in enumerate(list_faces(folder))}
    assert [p.name for p in list_faces(folder)] == [f"{i:05d}.jpg" for i in range(len(position))]
    by_name = {v: k for k, v in src.items()}
    for orig, copy in pairs.items():
        assert position[by_name[orig]] < position[by_name[copy]], orig


# ----------------------------------------------------------------------------------- sort
def test_cpbd_matches_dfls_estimate_sharpness_on_the_conformance_faces(shared_dir: Path) -> None:
    """Values computed by DFL's own core/imagelib/estimate_sharpness.py on these files."""
    conf = shared_dir / "conformance"
    expected = {"00000_0.jpg": 1.0, "00001_0.jpg": 1.0, "00002_0.jpg": 0.75, "00003_0.jpg": 0.8103448275862069}
    for name, value in expected.items():
        assert cpbd(cv2.imread(str(conf / name))) == pytest.approx(value, abs=1e-12), name
    blurred = cv2.GaussianBlur(cv2.imread(str(conf / "00003_0.jpg")), (0, 0), 1.5)
    assert cpbd(blurred) == pytest.approx(0.2857142857142857, abs=1e-12)


def test_sort_by_blur_puts_a_blurred_copy_after_its_original(tmp_path: Path) -> None:
    _check_blur_order(synthetic_faceset(tmp_path, n=4))


def test_sort_by_blur_on_real_faces(hdtf_faces: Path) -> None:
    _check_blur_order(hdtf_faces)


def _posed_faceset(root: Path, yaws_deg: list[float], size: int = 96) -> Path:
    """Faces whose landmarks are the mean 3D head turned by known yaws (and a plain drawn image)."""
    frames = root / "data_src"
    for i, deg in enumerate(yaws_deg):
        t = np.deg2rad(deg)
        rot = np.array([[np.cos(t), 0, np.sin(t)], [0, 1, 0], [-np.sin(t), 0, np.cos(t)]])
        lm = (_MEAN_FACE_3D @ rot.T)[:, :2] * 1.5 + 200
        frame = np.full((400, 400, 3), 90, np.uint8)
        cv2.fillConvexPoly(frame, cv2.convexHull(lm.astype(np.int32)), (120, 150, 200))
        _write_frame(frames, f"{i + 1:05d}.png", frame, lm, size)
    return frames / "aligned"


def test_sort_by_face_yaw_orders_faces_of_known_yaw(tmp_path: Path) -> None:
    yaws = [10.0, -35.0, 25.0, 0.0, -15.0, 40.0, -5.0]
    folder = _posed_faceset(tmp_path, yaws)
    s = sort_faceset(folder, "face-yaw", SortOptions(progress=False))
    assert (s.kept, s.trashed) == (len(yaws), 0)
    got = [yaws[int(Path(read_record(p).source_filename).stem) - 1] for p in list_faces(folder)]
    assert got == sorted(yaws, reverse=True)           # DFL: largest yaw first
    est = [pitch_yaw_roll(read_record(p).landmarks, 96)[1] for p in list_faces(folder)]
    assert est == sorted(est, reverse=True)


def test_final_by_blur_keeps_target_then_recover_names_restores_every_name(tmp_path: Path) -> None:
    folder = synthetic_faceset(tmp_path, n=8)
    original = _names(folder)
    s = sort_faceset(folder, "final-by-blur", SortOptions(target=5, progress=False))
    assert (s.kept, s.trashed) == (5, 3)
    assert _names(folder) == [f"{i:05d}.jpg" for i in range(5)]
    trash = folder.parent / "aligned_trash"
    assert len(list_faces(trash)) == 3
    assert recover_names(folder, progress=False).renamed == 5
    _untrash(folder)
    recover_names(folder, progress=False)
    assert _names(folder) == original


def test_every_method_on_real_faces_then_recover_names(hdtf_faces: Path) -> None:
    original = {n: (hdtf_faces / n).read_bytes() for n in _names(hdtf_faces)}
    for method in SORT_METHODS:
        s = sort_faceset(hdtf_faces, method, SortOptions(target=4, progress=False))
        assert s.kept + s.trashed == len(original), method
        if method.startswith("final"):
            assert s.kept == 4, method
        _untrash(hdtf_faces)
        recover_names(hdtf_faces, progress=False)
        assert {n: (hdtf_faces / n).read_bytes() for n in _names(hdtf_faces)} == original, method


def test_every_method_runs_on_dfl_written_faces(conformance_faces: Path) -> None:
    original = _snapshot(conformance_faces)
    for method in SORT_METHODS:
        if method == "absdiff":          # compares faces of one size; these are 256, 384 and 512
            with pytest.raises(DflError, match="one size"):
                sort_faceset(conformance_faces, method, SortOptions(progress=False))
            assert _snapshot(conformance_faces) == original
            continue
        sort_faceset(conformance_faces, method, SortOptions(target=2, progress=False))
        _untrash(conformance_faces)
        recover_names(conformance_faces, progress=False)
        assert _snapshot(conformance_faces) == original, method


def test_oneface_moves_faces_of_crowded_frames(tmp_path: Path) -> None:
    folder = synthetic_faceset(tmp_path, n=3)
    img, rec = read_face(folder / "00002_0.jpg")
    write_face(folder / "00002_1.jpg", img, rec)
    s = sort_faceset(folder, "oneface", SortOptions(progress=False))
    assert (s.kept, s.trashed) == (2, 2)
    assert sorted(p.name for p in list_faces(folder.parent / "aligned_trash")) == ["00002_0.jpg", "00002_1.jpg"]


# ----------------------------------------------------------------------------------- resize
def _fresh(ws: Path, size: int, face_type: str) -> Path:
    """The same frames extracted again at this size and type (the resize's reference)."""
    from dfl.extract import extract_faces
    from dfl.faces import registry

    b = registry.get_backends("auto", "auto", "cpu", Path("/nonexistent-weights"))
    out = ws / f"fresh_{size}_{face_type}"
    extract_faces(ws / "data_src", out, b.detector, b.landmarker,
                  ExtractOptions(face_type=FaceType.from_string(face_type), image_size=size, jpeg_quality=100),
                  progress=False)
    return out


@pytest.mark.parametrize("size,face_type", [(128, None), (192, "full_face")])
def test_resize_matches_a_fresh_extraction(hdtf_faces: Path, size: int, face_type: str | None) -> None:
    ws = hdtf_faces.parent.parent
    fresh = _fresh(ws, size, face_type or "whole_face")
    before = _snapshot(hdtf_faces)
    s = resize_faceset(hdtf_faces, ResizeOptions(image_size=size, face_type=face_type, progress=False))
    assert s.faces == len(before) and s.merged
    assert _snapshot(hdtf_faces.parent / "aligned_trash") == before          # originals kept, in the trash
    assert not (hdtf_faces.parent / "aligned_resized").exists()
    for p in list_faces(hdtf_faces):
        img, rec = read_face(p)
        ref_img, ref = read_face(fresh / p.name)
        assert img.shape == (size, size, 3) and rec.face_type == ref.face_type
        assert np.abs(img.astype(float) - ref_img).mean() < 8.0
        assert np.abs(rec.landmarks - ref.landmarks).max() < 1.0
        assert np.allclose(rec.image_to_face_mat, ref.image_to_face_mat, atol=1e-3)
        assert rec.source_filename == ref.source_filename


def test_resize_from_frames_is_a_fresh_extraction_even_for_a_wider_type(hdtf_faces: Path) -> None:
    ws = hdtf_faces.parent.parent
    fresh = _fresh(ws, 160, "head")
    opts = ResizeOptions(image_size=160, face_type="head", merge=False, frames_dir=ws / "data_src",
                         jpeg_quality=100, progress=False)
    s = resize_faceset(hdtf_faces, opts)
    assert s.from_frames == s.faces and not s.merged
    for p in list_faces(ws / "data_src" / "aligned_resized"):
        img, rec = read_face(p)
        ref_img, ref = read_face(fresh / p.name)
        assert np.abs(img.astype(float) - ref_img).mean() < 1.0
        assert np.abs(rec.landmarks - ref.landmarks).max() < 0.01


def test_resize_moves_polygons_and_xseg_mask_with_the_face(conformance_faces: Path) -> None:
    before = {p.name: read_face(p) for p in list_faces(conformance_faces)}
    resize_faceset(conformance_faces, ResizeOptions(image_size=256, face_type="full_face", progress=False))
    for name, (img, old) in before.items():
        new = read_record(conformance_faces / name)
        w = img.shape[0]
        if old.face_type_enum == FaceType.FULL:
            continue
        mat = transform_matrix(old.landmarks, 256, FaceType.FULL)
        assert np.abs(new.landmarks - transform_points(old.landmarks, mat)).max() < 1e-3
        for p_old, p_new in zip(old.seg_ie_polys or [], new.seg_ie_polys or []):
            assert p_new["type"] == p_old["type"]
            assert np.abs(p_new["pts"] - transform_points(p_old["pts"], mat)).max() < 1e-3
        if old.xseg_mask is not None:
            m = old.xseg_mask.shape[0]
            mmat = transform_matrix(old.landmarks.astype(np.float64) * (m / w), m, FaceType.FULL)
            want = cv2.warpAffine(old.xseg_mask, mmat, (m, m), flags=cv2.INTER_LANCZOS4) >= 0.5
            assert set(np.unique(new.xseg_mask)) <= {0.0, 1.0}
            assert np.mean(want == (new.xseg_mask > 0.5)) > 0.99


# ----------------------------------------------------------------------------------- pack / unpack
def test_pack_unpack_round_trip_and_training_reads_the_pak(hdtf_faces: Path) -> None:
    from dfl.samples import SampleOptions, load_faceset

    original = _snapshot(hdtf_faces)
    opts = SampleOptions(resolution=64, face_type=FaceType.WHOLE_FACE)
    loose = load_faceset(hdtf_faces, opts)
    s = pack_faceset(hdtf_faces, progress=False)
    assert s.faces == len(original) and s.trashed == len(original)
    assert list(_snapshot(hdtf_faces)) == [PAK_NAME]
    assert _snapshot(hdtf_faces.parent / "aligned_trash") == original          # loose faces kept in the trash
    packed = load_faceset(hdtf_faces, opts)                                    # train from the .pak
    assert len(packed) == len(loose)
    assert np.array_equal(packed.images.numpy(), loose.images.numpy()) and np.allclose(packed.yaws, loose.yaws)
    shutil.rmtree(hdtf_faces.parent / "aligned_trash")
    u = unpack_faceset(hdtf_faces, progress=False)
    assert u.faces == len(original)
    assert {k: v for k, v in _snapshot(hdtf_faces).items()} == original
    assert (hdtf_faces.parent / "aligned_trash" / PAK_NAME).is_file()


def test_pak_is_dfls_format(tmp_path: Path) -> None:
    folder = synthetic_faceset(tmp_path, n=3)
    files = {p.name: p.read_bytes() for p in list_faces(folder)}
    pack_faceset(folder, trash_loose=False, progress=False)
    data = (folder / PAK_NAME).read_bytes()
    version, n_bytes = struct.unpack("<QQ", data[:16])
    assert version == 1
    index = data[16:16 + n_bytes]
    names = {arg for op, arg, _ in pickletools.genops(index) if op.name in ("SHORT_BINUNICODE", "BINUNICODE")}
    assert {"samplelib.Sample", "SampleType", "facelib.FaceType", "FaceType"} <= names  # DFL's own enums
    assert not any(n.startswith("dfl") for n in names)                  # nothing of ours is named
    offsets = struct.unpack(f"<{len(files) + 1}Q", data[16 + n_bytes:16 + n_bytes + 8 * (len(files) + 1)])
    assert offsets[-1] == len(data)                     # DFL writes the last offset as the file's end
    faces = read_index(folder / PAK_NAME)
    assert {f.name: f.read_bytes() for f in faces} == files
    assert all(read_record(f).face_type == "whole_face" for f in faces)
    configs = safe_loads(index)
    assert set(configs[0]) == {"sample_type", "filename", "face_type", "shape", "landmarks", "seg_ie_polys",
                               "xseg_mask", "xseg_mask_compressed", "eyebrows_expand_mod", "source_filename",
                               "person_name"}                     # DFL's Sample.get_config()
    assert configs[0]["sample_type"] == 1 and configs[0]["face_type"] == int(FaceType.WHOLE_FACE)
    assert configs[0]["shape"] == (128, 128, 3) and configs[0]["seg_ie_polys"] == {"polys": []}


def test_training_refuses_a_truncated_pak_with_one_line(tmp_path: Path) -> None:
    from dfl.samples import SampleOptions, load_faceset

    folder = synthetic_faceset(tmp_path, n=3)
    pack_faceset(folder, progress=False)
    pak = folder / PAK_NAME
    pak.write_bytes(pak.read_bytes()[:-500])
    with pytest.raises(DflError, match="truncated") as err:
        load_faceset(folder, SampleOptions(resolution=64, face_type=FaceType.WHOLE_FACE))
    assert str(pak) in str(err.value) and "\n" not in str(err.value)


# ----------------------------------------------------------------------------------- metadata
def test_metadata_save_edit_restore(tmp_path: Path) -> None:
    folder = synthetic_faceset(tmp_path, n=4)
    records = {p.name: read_record(p) for p in list_faces(folder)}
    s = save_metadata(folder, progress=False)
    assert s.faces == 4 and (folder / "meta.dat").is_file()
    # an image editor: metadata dropped, one face upscaled, one saved as PNG instead
    names = sorted(records)
    for name in names:
        img = cv2.imread(str(folder / name))
        assert read_meta((folder / name).read_bytes()).payload
        cv2.imwrite(str(folder / name), img)                  # no APP15 any more
    big = cv2.resize(cv2.imread(str(folder / names[1])), (256, 256))
    cv2.imwrite(str(folder / names[1]), big)
    cv2.imwrite(str(folder / (Path(names[2]).stem + ".png")), cv2.imread(str(folder / names[2])))
    (folder / names[2]).unlink()
    with pytest.raises(DflError, match="no DFL face metadata"):
        read_record(folder / names[0])
    r = restore_metadata(folder, progress=False)
    assert (r.restored, r.resized, r.from_png) == (4, 1, 1)
    assert _names(folder) == names
    for name, rec in records.items():
        img, got = read_face(folder / name)
        assert img.shape == (128, 128, 3)
        assert np.array_equal(got.landmarks, rec.landmarks) and got.source_filename == rec.source_filename
    trash = folder.parent / "aligned_trash"
    assert sorted(p.name for p in trash.iterdir()) == sorted(["meta.dat", Path(names[2]).stem + ".png"])


def test_meta_dat_is_dfls_pickle(tmp_path: Path) -> None:
    folder = synthetic_faceset(tmp_path, n=2)
    save_metadata(folder, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = pickle.loads((folder / "meta.dat").read_bytes())          # what DFL does
    name = _names(folder)[0]
    shape, raw = d[name]
    assert tuple(shape) == (128, 128, 3) and set(raw) == set(read_raw_dict(folder / name))
    assert isinstance(raw["landmarks"], list) and isinstance(raw["image_to_face_mat"], np.ndarray)


@pytest.mark.parametrize("which", ["conformance", "hdtf"])
def test_metadata_and_debug_on_dfl_and_real_facesets(which: str, request: pytest.FixtureRequest) -> None:
    folder = request.getfixturevalue(f"{which}_faces")
    raws = {p.name: read_raw_dict(p) for p in list_faces(folder)}
    save_metadata(folder, progress=False)
    for p in list_faces(folder):                               # an editor: pixels kept, metadata dropped
        cv2.imwrite(str(p), cv2.imread(str(p)), [int(cv2.IMWRITE_JPEG_QUALITY), 98])
    assert restore_metadata(folder, progress=False).restored == len(raws)
    for name, raw in raws.items():
        got = read_raw_dict(folder / name)
        assert set(got) == set(raw)
        assert pickle.dumps(got) == pickle.dumps(raw), name    # every value back exactly
    frames = folder.parent if which == "hdtf" else None
    s = write_debug_images(folder, frames, progress=False)
    if which == "hdtf":
        assert (s.frames, s.faces_alone) == (len(raws), 0)     # drawn on the frames
    else:
        assert (s.frames, s.faces_alone) == (0, len(raws))     # no frames: on the faces, as DFL
    assert len(list((folder.parent / "aligned_debug").iterdir())) == len(raws)


# ----------------------------------------------------------------------------------- debug images
def test_debug_images_on_frames_and_on_faces_without_frames(tmp_path: Path) -> None:
    folder = synthetic_faceset(tmp_path, n=3)
    frames = folder.parent
    s = write_debug_images(folder, frames, progress=False)
    out = frames / "aligned_debug"
    assert s.frames == 3 and s.faces_alone == 0
    assert sorted(p.name for p in out.iterdir()) == ["00001.jpg", "00002.jpg", "00003.jpg"]
    drawn = cv2.imread(str(out / "00001.jpg")).astype(int)
    plain = cv2.imread(str(frames / "00001.png")).astype(int)
    assert drawn.shape == plain.shape and np.abs(drawn - plain).mean() > 1.0   # something was drawn
    (frames / "00002.png").unlink()
    s = write_debug_images(folder, frames, tmp_path / "dbg", progress=False)
    assert (s.frames, s.faces_alone) == (2, 1) and (tmp_path / "dbg" / "00002_0_debug.jpg").is_file()


# ----------------------------------------------------------------------------------- the whole chain
def test_sort_resize_pack_unpack_still_loads_as_dfl_wrote_it(conformance_faces: Path, shared_dir: Path) -> None:
    expected = {e["file"]: e for e in json.loads((shared_dir / "conformance/dfljpg_expected.json").read_text())}
    sort_faceset(conformance_faces, "hist", SortOptions(progress=False))
    recover_names(conformance_faces, progress=False)
    resize_faceset(conformance_faces, ResizeOptions(image_size=192, progress=False))
    pack_faceset(conformance_faces, progress=False)
    shutil.rmtree(conformance_faces.parent / "aligned_trash")
    unpack_faceset(conformance_faces, progress=False)
    assert _names(conformance_faces) == sorted(expected)
    for name, exp in expected.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            d = pickle.loads(read_meta((conformance_faces / name).read_bytes()).payload)   # as DFL loads it
        assert d["face_type"] == exp["face_type"] and d["source_filename"] == exp["source_filename"]
        assert isinstance(d["landmarks"], list) and np.shape(d["landmarks"]) == (68, 2)
        assert isinstance(d["source_landmarks"], list) and np.shape(d["source_landmarks"]) == (68, 2)
        assert isinstance(d["source_rect"], np.ndarray) and d["source_rect"].tolist() == exp["source_rect"]
        assert isinstance(d["image_to_face_mat"], np.ndarray) and d["image_to_face_mat"].shape == (2, 3)
        assert ("seg_ie_polys" in d) == exp["has_polys"] and ("xseg_mask" in d) == exp["has_xseg_mask"]
        if exp["has_xseg_mask"]:
            assert isinstance(d["xseg_mask"], np.ndarray) and d["xseg_mask"].dtype == np.uint8
        if exp["has_polys"]:
            assert isinstance(d["seg_ie_polys"], dict) and d["seg_ie_polys"]["polys"][0]["pts"].dtype == np.float32
        assert cv2.imread(str(conformance_faces / name)).shape == (192, 192, 3)


# ----------------------------------------------------------------------------------- bad input
def _bad_inputs(folder: Path) -> list[tuple[str, bytes]]:
    good = list_faces(folder)[0].read_bytes()
    ok, plain = cv2.imencode(".jpg", np.zeros((32, 32, 3), np.uint8))
    return [("holiday.jpg", plain.tobytes()),                 # a JPEG that is not a face
            ("garbage.jpg", b"\x00\x01not an image at all"),   # unreadable
            ("cut.jpg", good[:len(good) // 2])]               # truncated face


TOOLS = {
    "sort blur": lambda f: sort_faceset(f, "blur", SortOptions(progress=False)),
    "sort final": lambda f: sort_faceset(f, "final-by-size", SortOptions(target=2, progress=False)),
    "recover-names": lambda f: recover_names(f, progress=False),
    "resize": lambda f: resize_faceset(f, ResizeOptions(image_size=64, progress=False)),
    "pack": lambda f: pack_faceset(f, progress=False),
    "metadata save": lambda f: save_metadata(f, progress=False),
    "debug": lambda f: write_debug_images(f, f.parent, progress=False),
}


@pytest.mark.parametrize("tool", list(TOOLS))
def test_bad_input_gives_one_line_and_moves_nothing(tool: str, tmp_path: Path) -> None:
    folder = synthetic_faceset(tmp_path, n=3, size=96)
    for bad_name, data in _bad_inputs(folder):
        if bad_name == "cut.jpg" and tool in ("recover-names", "metadata save", "debug"):
            continue                  # these read only the metadata, which a cut face still has whole
        (folder / bad_name).write_bytes(data)
        before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
        with pytest.raises(DflError) as err:
            TOOLS[tool](folder)
        msg = str(err.value)
        assert bad_name in msg and "\n" not in msg, (tool, msg)
        after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
        assert after == before, (tool, bad_name)
        assert not (folder.parent / "aligned_trash").exists()
        (folder / bad_name).unlink()


def test_truncated_pak_gives_one_line_and_changes_nothing(tmp_path: Path, dfl_run) -> None:
    folder = synthetic_faceset(tmp_path, n=3)
    pack_faceset(folder, progress=False)
    pak = folder / PAK_NAME
    for cut in (10, 100, len(pak.read_bytes()) - 300):
        data = (tmp_path / "full.pak").read_bytes() if (tmp_path / "full.pak").exists() else pak.read_bytes()
        (tmp_path / "full.pak").write_bytes(data)
        pak.write_bytes(data[:cut])
        before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
        r = dfl_run("faceset", "unpack", folder)
        assert r.code == 1 and str(pak) in r.err and len(r.err.strip().splitlines()) == 1, r.err
        assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
        with pytest.raises(DflError, match="faceset.pak"):
            face_files(folder)


# ----------------------------------------------------------------------------------- CLI and steps
def test_cli_tools_on_a_workspace(tmp_path: Path, dfl_run) -> None:
    synthetic_faceset(tmp_path / "ws", n=4)
    ws = tmp_path / "ws"
    r = dfl_run("faceset", "sort", "src", "--by", "face-yaw", "-w", ws)
    assert r.code == 0 and "sort by face-yaw: 4 faces" in r.out, r.err
    r = dfl_run("faceset", "recover-names", "src", "-w", ws)
    assert r.code == 0 and "4 faces renamed" in r.out
    r = dfl_run("faceset", "resize", "src", "--image-size", "64", "--face-type", "f", "--non-interactive", "-w", ws)
    assert r.code == 0 and "4 faces to 64px full_face" in r.out, r.err
    r = dfl_run("faceset", "debug", "src", "-w", ws)
    assert r.code == 0 and "4 frames" in r.out
    r = dfl_run("faceset", "metadata", "save", "src", "-w", ws)
    assert r.code == 0 and (ws / "data_src/aligned/meta.dat").is_file()
    r = dfl_run("faceset", "metadata", "restore", "src", "-w", ws)
    assert r.code == 0 and "4 faces" in r.out
    r = dfl_run("faceset", "pack", "src", "-w", ws)
    assert r.code == 0 and "4 faces" in r.out
    r = dfl_run("faceset", "info", "src", "-w", ws)
    assert r.code == 0 and r.out.count("faceset.pak:") == 0 and "4 faces in" in r.out   # read from the pak
    r = dfl_run("faceset", "unpack", "src", "-w", ws)
    assert r.code == 0 and len(list_faces(ws / "data_src/aligned")) == 4
    r = dfl_run("faceset", "info", "src", "-w", ws)
    assert r.code == 0 and "4 faces" in r.err + r.out and "faceset.pak:" not in r.out
    r = dfl_run("faceset", "sort", "src", "-w", ws, "--non-interactive")
    assert r.code == 1 and "--by" in r.err
    ok, plain = cv2.imencode(".jpg", np.zeros((16, 16, 3), np.uint8))
    (ws / "data_src/aligned/holiday.jpg").write_bytes(plain.tobytes())
    names = _names(ws / "data_src/aligned")
    r = dfl_run("faceset", "sort", "src", "--by", "blur", "-w", ws)
    assert r.code == 1 and "holiday.jpg" in r.err and len(r.err.strip().splitlines()) == 1
    assert _names(ws / "data_src/aligned") == names
    r = dfl_run("faceset", "sort", "dst", "--by", "blur", "-w", ws)
    assert r.code == 1 and "data_dst" in r.err and len(r.err.strip().splitlines()) == 1


STEPS = {
    "4_data_src_faceset_extract_manual": "extract-faces src --manual",
    "4_2_data_src_sort": "faceset sort src",
    "4_2_data_src_util_add_landmarks_debug_images": "faceset debug src",
    "4_2_data_src_util_faceset_metadata_save": "faceset metadata save src",
    "4_2_data_src_util_faceset_metadata_restore": "faceset metadata restore src",
    "4_2_data_src_util_faceset_pack": "faceset pack src",
    "4_2_data_src_util_faceset_unpack": "faceset unpack src",
    "4_2_data_src_util_faceset_resize": "faceset resize src",
    "4_2_data_src_util_recover_original_filename": "faceset recover-names src",
    "5_data_dst_faceset_extract_manual": "extract-faces dst --manual",
    "5_data_dst_faceset_extract_and_manual_fix": "extract-faces dst --manual-fix",
    "5_data_dst_faceset_manual_re_extract_deleted_aligned_debug": "extract-faces dst --fix",
    "5_2_data_dst_sort": "faceset sort dst",
    "5_2_data_dst_util_faceset_pack": "faceset pack dst",
    "5_2_data_dst_util_faceset_unpack": "faceset unpack dst",
    "5_2_data_dst_util_faceset_resize": "faceset resize dst",
    "5_2_data_dst_util_recover_original_filename": "faceset recover-names dst",
}


def test_faceset_steps_exist_and_call_their_command() -> None:
    for name, command in STEPS.items():
        sh, bat = ROOT / "steps" / f"{name}.sh", ROOT / "steps" / f"{name}.bat"
        assert os.access(sh, os.X_OK), sh
        assert f"exec dfl {command} \"$@\"" in sh.read_text()
        assert f"dfl {command} %*\r\n" in bat.read_bytes().decode()


@pytest.mark.skipif(os.name == "nt", reason="the .sh steps are for Linux and macOS")
def test_sort_step_runs_on_the_workspace_next_to_it(tmp_path: Path) -> None:
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "DFL_WORKSPACE"}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    if shutil.which("dfl", path=env["PATH"]) is None:
        pytest.skip("the dfl console script is not installed (pip install -e .)")
    shutil.copytree(ROOT / "steps", tmp_path / "steps")
    synthetic_faceset(tmp_path / "workspace", n=3)
    for step, args in (("4_2_data_src_sort", ["--by", "brightness"]),
                       ("4_2_data_src_util_recover_original_filename", [])):
        proc = subprocess.run([str(tmp_path / "steps" / f"{step}.sh"), *args], capture_output=True, text=True,
                              env=env, stdin=subprocess.DEVNULL, timeout=120)
        assert proc.returncode == 0, proc.stderr
    assert _names(tmp_path / "workspace/data_src/aligned") == ["00001_0.jpg", "00002_0.jpg", "00003_0.jpg"]
