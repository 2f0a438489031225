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
              "d_dims": 16, "d_mask_dims": 8, "batch_size": 4},
    "AMP": {"resolution": 64, "face_type": "f", "ae_dims": 32, "inter_dims": 64, "e_dims": 16, "d_dims": 16,
            "d_mask_dims": 8, "batch_size": 4},
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
