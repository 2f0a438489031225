"""DFL's FaceEnhancer.npy in use: ``dfl faceset enhance`` and the merger's super resolution power.

The network itself is checked against DFL's outputs in ``test_dfl_oracle.py``; here the weights are the same
seeded DFL-format file (the enhancement looks like nothing, but every step runs on the real network).
One 192 px patch costs a few seconds on 2 CPU cores, so each test enhances one small face.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from dfl.faces.enhancer import FaceEnhancerNet, load_face_enhancer
from dfl_format import code_running_pickle, seeded_weights, write_weights
from train_helpers import write_faceset


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("weights")
    write_weights(d / "FaceEnhancer.npy", seeded_weights(FaceEnhancerNet(), "FaceEnhancer", 5))
    return d


def test_faceset_enhance_keeps_metadata_resumes_and_replaces(tmp_path: Path, weights_dir: Path, dfl_run) -> None:
    from dfl.faceset import read_face
    from dfl.faceset.container import read_meta

    ws = tmp_path / "ws"
    (face,) = write_faceset(ws / "data_src" / "aligned", 1, 0, seed=4, size=64, face_type="full_face")
    before_pixels, _ = read_face(face)
    payload = read_meta(face.read_bytes()).payload
    res = dfl_run("faceset", "enhance", "src", "-w", ws, "--weights-dir", weights_dir, "--device", "cpu", "--no-replace")
    assert res.code == 0, res.err
    out = ws / "data_src" / "aligned_enhanced" / face.name
    assert "Enhanced 1 face, 0 already done" in res.out and out.is_file()
    assert read_meta(out.read_bytes()).payload == payload              # DFL's metadata, byte for byte
    enhanced, _ = read_face(out)
    assert enhanced.shape == before_pixels.shape and np.abs(enhanced.astype(int) - before_pixels).mean() > 1

    res = dfl_run("faceset", "enhance", "src", "-w", ws, "--weights-dir", weights_dir, "--device", "cpu", "--replace")
    assert res.code == 0 and "Enhanced 0 faces, 1 already done" in res.out, res.err
    assert "Replaced 1 face in" in res.out
    assert np.array_equal(read_face(face)[0], enhanced)
    assert read_meta(face.read_bytes()).payload == payload
    (kept,) = (ws / "trash").glob(f"*/data_src/aligned/{face.name}")     # the original, in the trash
    assert np.array_equal(read_face(kept)[0], before_pixels)
    assert not out.parent.exists()


def test_missing_enhancer_weights_name_the_file_and_folder(tmp_path: Path, dfl_run) -> None:
    ws = tmp_path / "ws"
    write_faceset(ws / "data_dst" / "aligned", 1, 1, seed=5, size=64)
    empty = tmp_path / "no_weights"
    empty.mkdir()
    res = dfl_run("faceset", "enhance", "dst", "-w", ws, "--weights-dir", empty)
    assert res.code == 1 and res.err.count("\n") == 1
    assert "FaceEnhancer.npy" in res.err and str(empty) in res.err
    assert not (ws / "data_dst" / "aligned_enhanced").exists()
    bad = tmp_path / "bad_weights"                   # a "FaceEnhancer.npy" whose pickle would run a command
    bad.mkdir()
    marker = tmp_path / "pwned"
    (bad / "FaceEnhancer.npy").write_bytes(code_running_pickle(marker))
    res = dfl_run("faceset", "enhance", "dst", "-w", ws, "--weights-dir", bad)
    assert res.code == 1 and res.err.count("\n") == 1 and "FaceEnhancer.npy" in res.err and "refused" in res.err
    assert not marker.exists() and not (ws / "data_dst" / "aligned_enhanced").exists()

    from dfl.errors import DflError
    from dfl.faces.registry import get_detector, get_landmarker

    with pytest.raises(DflError, match=r"s3fd-619a316812.pth: .* \(or S3FD.npy\) into"):
        get_detector("s3fd", "cpu", empty)
    with pytest.raises(DflError, match=r"2DFAN4-\*.pth.tar: .* \(or 2DFAN.npy\) into"):
        get_landmarker("fan", "cpu", empty)


def test_dfl_extractor_files_make_auto_pick_s3fd_and_fan(tmp_path: Path) -> None:
    from dfl.faces.registry import resolve_names

    assert resolve_names("auto", "auto", tmp_path) == ("blazeface", "facemesh")
    (tmp_path / "S3FD.npy").write_bytes(b"")        # as copied from DFL's _internal/DeepFaceLab/facelib/
    (tmp_path / "2DFAN.npy").write_bytes(b"")
    assert resolve_names("auto", "auto", tmp_path) == ("s3fd", "fan")


def test_super_resolution_power_blends_the_enhanced_face_at_4x(weights_dir: Path) -> None:
    from dfl.faces.align import FaceType
    from dfl.merge.config import MergeConfig
    from dfl.merge.face import blend_face, merge_frame, prepare_face, super_resolve
    from dfl.merge.synthetic import draw_face, template_landmarks

    class Predictor:
        resolution, face_type = 48, FaceType.FULL

        def __call__(self, faces, morph_value=None):
            n = len(faces)
            m = np.zeros((n, 48, 48), np.float32)
            m[:, 8:40, 8:40] = 1
            return faces[..., ::-1].copy(), m, m.copy()   # the dst face with red and blue swapped

    frame = np.full((140, 160, 3), 90, np.uint8)
    lm = template_landmarks(80, 70, 60)
    draw_face(frame, lm)
    enhancer = load_face_enhancer(weights_dir)
    calls, done = [], {}

    class Counting:     # the real enhancer, each distinct face enhanced once (a patch takes seconds here)
        def enhance(self, image, is_tanh=False, preserve_size=True):
            calls.append((image.shape, is_tanh, preserve_size))
            key = (image.tobytes(), is_tanh, preserve_size)
            if key not in done:
                done[key] = enhancer.enhance(image, is_tanh, preserve_size)
            return done[key]

    cfg = MergeConfig(mode="overlay", mask_mode="learned-prd", color_transfer_mode="none")
    plain, mask0 = merge_frame(frame, [lm], Predictor(), cfg)
    with pytest.raises(Exception, match="FaceEnhancer.npy"):
        merge_frame(frame, [lm], Predictor(), MergeConfig(**{**cfg.to_dict(), "super_resolution_power": 50}))
    sr_cfg = MergeConfig(**{**cfg.to_dict(), "super_resolution_power": 100})
    sr, mask = merge_frame(frame, [lm], Predictor(), sr_cfg, enhancer=Counting())
    assert calls == [((48, 48, 3), True, False)]          # DFL: is_tanh=True, 4x output kept
    assert sr.shape == frame.shape and np.array_equal(sr[mask == 0], frame[mask == 0])
    assert np.abs(mask - mask0).max() < 0.05               # the same mask, shaped at 4x the model size
    inside = mask > 0.99
    assert np.abs(sr[inside].astype(int) - plain[inside]).mean() > 2

    # power p mixes p% of the enhanced face into the plain one, at 4x (DFL's formula)
    job = prepare_face(frame, lm, 48, FaceType.FULL, super_resolution=True)
    prediction = Predictor()(job.dst_face[None])
    job4, (prd4, m4, _) = super_resolve(frame, job, [p[0] for p in prediction], 30, Counting(), FaceType.FULL)
    assert len(done) == 1          # the same dst cut and prediction as the merge above
    enhanced4 = Counting().enhance(prediction[0][0], is_tanh=True, preserve_size=False)
    want = np.clip(cv2.resize(prediction[0][0], (192, 192)) * 0.7 + enhanced4 * 0.3, 0, 1)
    assert job4.face_mat.shape == (2, 3) and job4.dst_face.shape == (192, 192, 3) and job4.model_size == 48
    assert np.abs(prd4 - want).max() < 1e-5 and m4.shape == (192, 192)
    result = blend_face(frame, job4, (prd4, m4, m4), MergeConfig(**{**cfg.to_dict(), "super_resolution_power": 0}),
                        FaceType.FULL)
    assert result.image.shape[:2] == result.mask.shape
