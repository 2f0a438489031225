"""The built-in face models through onnxruntime (dfl.faces.engine): the same outputs as the PyTorch graph for
any batch, one ONNX file made per model and reused, a damaged one made again, and DFL_FACE_ENGINE=torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dfl.faces import engine
from dfl.faces.blazeface import WEIGHTS_DIR
from dfl.faces.engine import GraphEngine
from dfl.faces.tflite_graph import TFLiteGraph

GRAPHS = {  # weights file -> input side; FaceMesh also with only its mesh and face-flag outputs
    "blazeface_short.safetensors": (128, None),
    "blazeface_full.safetensors": (192, None),
    "facemesh_attention.safetensors": (192, (0, 6)),
}


@pytest.fixture(scope="module")
def nets() -> dict[str, TFLiteGraph]:
    return {name: TFLiteGraph.load(WEIGHTS_DIR / name) for name in GRAPHS}


@pytest.mark.parametrize("name", list(GRAPHS))
def test_onnxruntime_gives_the_graph_outputs_for_any_batch(name: str, nets) -> None:
    side, subset = GRAPHS[name]
    net = nets[name]
    eng = GraphEngine(net, WEIGHTS_DIR / name, (1, 3, side, side))
    assert eng.name == "onnxruntime"
    x = torch.from_numpy(np.random.default_rng(1).random((3, 3, side, side), np.float32))
    for outputs in {None, subset}:
        for batch in (1, 3):
            got = eng(x[:batch], outputs)
            with torch.inference_mode():
                want = net(x[:batch], outputs)
            assert len(got) == len(want)
            for g, w in zip(got, want):
                assert g.shape == w.shape
                assert float((g - w).abs().max()) < 1e-3 * (1 + float(w.abs().max()))
    assert eng.name == "onnxruntime"          # no failure sent it back to PyTorch


def test_the_onnx_file_is_made_once_and_made_again_when_damaged(nets, recwarn) -> None:
    name = "blazeface_short.safetensors"
    x = torch.from_numpy(np.random.default_rng(2).random((2, 3, 128, 128), np.float32))
    first = GraphEngine(nets[name], WEIGHTS_DIR / name, (1, 3, 128, 128))
    want = first(x)
    (made,) = engine.cache_dir().glob("blazeface_short-*.onnx")
    stamp = made.stat().st_mtime_ns
    again = GraphEngine(nets[name], WEIGHTS_DIR / name, (1, 3, 128, 128))(x)
    assert made.stat().st_mtime_ns == stamp                       # read, not made again
    assert all(torch.equal(a, b) for a, b in zip(again, want))
    good = made.read_bytes()
    for damage in (b"not an onnx file", good[:-1] + bytes([good[-1] ^ 1])):   # garbage, or one flipped bit
        made.write_bytes(damage)
        repaired = GraphEngine(nets[name], WEIGHTS_DIR / name, (1, 3, 128, 128))
        assert all(torch.equal(a, b) for a, b in zip(repaired(x), want))
        assert repaired.name == "onnxruntime"
        (remade,) = engine.cache_dir().glob("blazeface_short-*.onnx")              # made again, the damage gone
        assert engine._digest(remade.read_bytes()) == remade.stem.rsplit("-", 1)[-1]
    assert not [w for w in recwarn if "onnxruntime not used" in str(w.message)]


def test_torch_engine_when_asked(nets, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(engine.ENGINE_ENV, "torch")
    name = "blazeface_full.safetensors"
    eng = GraphEngine(nets[name], WEIGHTS_DIR / name, (1, 3, 192, 192))
    assert eng.name == "torch"
    x = torch.rand(1, 3, 192, 192)
    with torch.inference_mode():
        want = nets[name](x)
    assert all(torch.equal(a, b) for a, b in zip(eng(x), want))


def test_landmarks_agree_between_the_engines(monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole find-faces path on a real portrait: onnxruntime's landmarks within 0.05 px of PyTorch's."""
    from dfl.demo import astronaut
    from dfl.faces.blazeface import BlazeFaceDetector
    from dfl.faces.facemesh import FaceMeshLandmarker
    from dfl.faces.find import find_faces

    image = astronaut().image

    def landmarks() -> np.ndarray:
        (found,) = find_faces([image], BlazeFaceDetector("cpu"), FaceMeshLandmarker("cpu"))
        assert len(found.landmarks) == 1
        return found.landmarks[0]

    fast = landmarks()
    monkeypatch.setenv(engine.ENGINE_ENV, "torch")
    assert np.abs(fast - landmarks()).max() < 0.05
