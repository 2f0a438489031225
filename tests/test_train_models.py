"""Each model (Quick96, SAEHD with LIAE, AMP) learns from real faces extracted by our own pipeline:
the demo workspace and, where ../shared exists, the HDTF pair.  Small resolutions and few iterations
keep this to seconds; what it guards is that the whole path (extraction -> faceset -> samples ->
model -> losses -> optimiser) produces a model whose reconstruction improves."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from dfl.extract import ExtractOptions, extract_faces
from dfl.faces.align import FaceType
from dfl.faces.registry import get_backends
from dfl.faceset import list_faces
from dfl.training.session import SessionRequest, train
from dfl.workspace import Workspace, list_images

FAST = dict(workers=0, preview_seconds=1e9, log_seconds=1e9, autosave_minutes=1e9, seed=0, quiet=True)
MODELS = {
    "Quick96": {},  # DFL's fixed preset (96 px, df-ud)
    "SAEHD": {"resolution": 64, "face_type": "f", "archi": "liae-ud", "ae_dims": 64, "e_dims": 16,
              "d_dims": 16, "d_mask_dims": 16, "batch_size": 4},
    "AMP": {"resolution": 64, "face_type": "f", "ae_dims": 32, "inter_dims": 64, "e_dims": 16, "d_dims": 16,
            "d_mask_dims": 16, "batch_size": 4},
}
ITERATIONS = 16


def _extract(frames: dict[str, list[Path]], root: Path) -> Path:
    """Real extraction (BlazeFace + FaceMesh) of the given frames into ``root``'s aligned folders."""
    backends = get_backends("blazeface", "facemesh", "cpu")
    ws = Workspace(root)
    for side, paths in frames.items():
        ws.frames_dir(side).mkdir(parents=True, exist_ok=True)
        for p in paths:
            shutil.copy(p, ws.frames_dir(side) / p.name)
        extract_faces(ws.frames_dir(side), ws.aligned_dir(side), backends.detector, backends.landmarker,
                      ExtractOptions(face_type=FaceType.WHOLE_FACE, image_size=128), progress=False)
        assert len(list_faces(ws.aligned_dir(side))) >= len(paths) - 1, side
    return root


@pytest.fixture(scope="module")
def demo_faces(demo_frames_session: Workspace, tmp_path_factory: pytest.TempPathFactory) -> Path:
    frames = {side: list_images(demo_frames_session.frames_dir(side))[::5] for side in ("src", "dst")}
    return _extract(frames, tmp_path_factory.mktemp("demo_faces"))


@pytest.fixture(scope="module")
def hdtf_faces(shared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    clips = {"src": "WDA_AlexandriaOcasioCortez_000.mp4", "dst": "WDA_KatieHill_000.mp4"}
    tmp = tmp_path_factory.mktemp("hdtf_frames")
    frames: dict[str, list[Path]] = {}
    for side, name in clips.items():
        path = shared_dir / "media" / "video" / "hdtf" / name
        if not path.is_file():
            pytest.skip(f"{path} missing")
        cap = cv2.VideoCapture(str(path))
        frames[side] = []
        for i in range(0, 200, 13):
            cap.set(cv2.CAP_PROP_POS_FRAMES, i)
            ok, img = cap.read()
            if ok:
                out = tmp / f"{side}_{i:05d}.png"
                cv2.imwrite(str(out), img)
                frames[side].append(out)
        cap.release()
    return _extract(frames, tmp_path_factory.mktemp("hdtf_faces"))


def _learns(root: Path, model_type: str) -> None:
    ws = Workspace(root)
    seen: list[dict] = []
    req = SessionRequest(model_dir=ws.model_dir, src_dir=ws.aligned_dir("src"), dst_dir=ws.aligned_dir("dst"),
                         model_type=model_type, name=f"t{model_type}", config=dict(MODELS[model_type]),
                         interactive=False)
    settings = dict(FAST, target_iter=ITERATIONS, on_iteration=lambda it, losses: seen.append(losses))
    result, path = train(req, settings)
    assert result.iteration == ITERATIONS and (path / "weights.safetensors").is_file()
    total = [s["src_loss"] + s["dst_loss"] for s in seen]
    assert np.all(np.isfinite(total))
    first, last = np.mean(total[:3]), np.mean(total[-3:])
    assert last < 0.9 * first, (model_type, first, last)


@pytest.mark.parametrize("model_type", list(MODELS))
def test_model_learns_demo_faces(demo_faces: Path, model_type: str) -> None:
    _learns(demo_faces, model_type)


@pytest.mark.shared
@pytest.mark.parametrize("model_type", list(MODELS))
def test_model_learns_hdtf_pair(hdtf_faces: Path, model_type: str) -> None:
    _learns(hdtf_faces, model_type)


@pytest.mark.shared
def test_quick96_on_hdtf_merges_every_frame_without_flicker(hdtf_faces: Path, shared_dir: Path,
                                                            tmp_path: Path) -> None:
    """After a short Quick96 training on the HDTF pair: merge 15 consecutive dst frames with DFL's default
    settings, then ``dfl video``.  Every frame's face is replaced (none flickers back to the original
    face), consecutive merged faces change no more abruptly than the original footage plus the swap's own
    noise, and result.mp4 keeps the dst's frame count, fps and audio."""
    from click.testing import CliRunner

    from dfl import video as vid
    from dfl.cli import cli

    if not (Workspace(hdtf_faces).model_dir / "tQuick96_Quick96").is_dir():
        _learns(hdtf_faces, "Quick96")
    ws = Workspace(tmp_path / "ws")
    ws.root.mkdir()
    shutil.copytree(Workspace(hdtf_faces).model_dir, ws.model_dir)
    vid.cut_video(shared_dir / "media" / "video" / "hdtf" / "WDA_KatieHill_000.mp4", ws.root / "data_dst.mp4",
                  start=0, end=0.6, desc=None)   # 15 frames with audio
    runner = CliRunner()
    for args in (["extract-frames", "dst"], ["extract-faces", "dst", "--non-interactive", "--device", "cpu",
                                             "--image-size", "128"],
                 ["merge", "--model", "tQuick96", "--non-interactive", "--device", "cpu",
                  "--mode", "overlay", "--mask-mode", "learned-prd*learned-dst", "--color-transfer", "rct"],
                 ["video"]):
        res = runner.invoke(cli, args + ["-w", str(ws.root)], catch_exceptions=False)
        assert res.exit_code == 0, (args, res.output)

    frames = list_images(ws.data_dst)
    assert len(frames) == 15
    changes, steps_merged, steps_orig = [], [], []
    prev = None
    for f in frames:
        orig = cv2.imread(str(f)).astype(np.float32)
        out = cv2.imread(str(ws.merged_dir / f.name)).astype(np.float32)
        mask = cv2.imread(str(ws.merged_mask_dir / f.name), cv2.IMREAD_GRAYSCALE) > 128
        assert mask.sum() > 0.02 * mask.size, f.name           # a face region in every frame
        changes.append(np.abs(out - orig)[mask].mean())
        if prev is not None:
            both = mask & prev[2]
            steps_merged.append(np.abs(out - prev[1])[both].mean())
            steps_orig.append(np.abs(orig - prev[0])[both].mean())
        prev = (orig, out, mask)
    assert min(changes) > 3, changes                           # no frame left with the original face
    assert max(changes) < 3 * np.median(changes), changes      # none merged much less than the others
    assert max(steps_merged) < max(steps_orig) + 2 * np.median(changes), (steps_merged, steps_orig)

    info, ref = vid.probe(ws.result), vid.probe(ws.root / "data_dst.mp4")
    assert vid.count_frames(ws.result) == vid.count_frames(ws.root / "data_dst.mp4") == 15
    assert info.fps == ref.fps and info.has_audio
