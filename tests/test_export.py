"""``dfl model export --format dfm``: briefly trained SAEHD, AMP and Quick96 models exported as DeepFaceLive
loads them, the ONNX graph agreeing with the PyTorch model, the file written only whole and never over
another unasked, plain convolutions in the graph, and a one-line error without onnx."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from dfl.export.trained import load_trained  # noqa: E402
from dfl.training.session import SessionRequest, train  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_helpers import make_workspace  # noqa: E402

FAST = dict(workers=0, preview_seconds=1e9, log_seconds=1e9, autosave_minutes=1e9, seed=0, quiet=True, target_iter=2)
MODELS = {
    "Quick96": {},
    "SAEHD": {"resolution": 64, "face_type": "f", "archi": "liae-ud", "ae_dims": 32, "e_dims": 16, "d_dims": 16,
              "d_mask_dims": 16, "batch_size": 2},
    "AMP": {"resolution": 64, "face_type": "wf", "ae_dims": 32, "inter_dims": 64, "e_dims": 16, "d_dims": 16,
            "d_mask_dims": 16, "batch_size": 2},
}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: on a machine shared by several test runs, spinning OpenMP threads wait for each
    other far longer than the work takes (the results are the same)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def trained_ws(tmp_path_factory: pytest.TempPathFactory, one_thread) -> Path:
    """A workspace with the three models trained briefly on drawn faces (Quick96, DFL's fixed 96 px
    preset, for one iteration: its first step alone takes seconds)."""
    root = make_workspace(tmp_path_factory.mktemp("export_ws") / "workspace", n=4, size=96)
    for model_type, options in MODELS.items():
        req = SessionRequest(model_dir=root / "model", src_dir=root / "data_src" / "aligned",
                             dst_dir=root / "data_dst" / "aligned", model_type=model_type, name="tiny",
                             config=dict(options), interactive=False)
        result, _ = train(req, dict(FAST, target_iter=1 if model_type == "Quick96" else 2))
        assert result.iteration >= 1
    torch.set_num_threads(1)    # training takes every core
    return root


def dfm_model_like_deepfacelive(path: Path) -> tuple[ort.InferenceSession, int, bool]:
    """What DeepFaceLive's ``DFMModel.__init__`` accepts: first input named in_face with a fixed
    height/width at shape[1:3], at most a second input named morph_value."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    inputs = sess.get_inputs()
    assert inputs and "in_face" in inputs[0].name
    height, width = inputs[0].shape[1:3]
    assert isinstance(height, int) and height == width
    assert len(inputs) <= 2
    if len(inputs) == 2:
        assert "morph_value" in inputs[1].name
    return sess, height, len(inputs) == 2


@pytest.mark.parametrize("model_type", list(MODELS))
def test_export_loads_as_deepfacelive_expects_and_matches_pytorch(trained_ws: Path, model_type: str, dfl_run) -> None:
    r = dfl_run("model", "export", "tiny", "--model", model_type, "-w", trained_ws)
    assert r.code == 0, r.err
    assert "max difference" in r.out and "opset 12" in r.out
    path = trained_ws / "model" / f"tiny_{model_type}" / "tiny.dfm"
    assert path.is_file()
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".tiny")]   # no temporary left

    # DeepFaceLive's loader and DFL's exporter: names, order, dtypes, shapes, opset
    proto = onnx.load(str(path))
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [12]
    sess, res, morph = dfm_model_like_deepfacelive(path)
    model = load_trained(path.parent).model
    assert res == model.resolution and morph == bool(model.swap_inputs)
    names = [i.name for i in sess.get_inputs()]
    assert names == (["in_face:0", "morph_value:0"] if morph else ["in_face:0"])
    assert [i.type for i in sess.get_inputs()] == ["tensor(float)"] * len(names)
    assert sess.get_inputs()[0].shape[3] == 3
    if morph:
        assert sess.get_inputs()[1].shape == [1]
    assert [o.name for o in sess.get_outputs()] == ["out_face_mask:0", "out_celeb_face:0", "out_celeb_face_mask:0"]

    # the same faces through onnxruntime (NHWC, as DeepFaceLive feeds them: BGR in [0, 1], batch of 3) and
    # through the PyTorch model (NCHW): every output within 1e-3, at DeepFaceLive's morph value 0.75 for AMP
    rng = np.random.default_rng(1)
    faces = rng.random((3, res, res, 3), dtype=np.float32)
    feed = {"in_face:0": faces}
    if morph:
        feed["morph_value:0"] = np.float32([0.75])
    face_mask, celeb, celeb_mask = sess.run(None, feed)
    assert face_mask.shape == (3, res, res, 1) and celeb.shape == (3, res, res, 3) and celeb_mask.shape == (3, res, res, 1)
    with torch.no_grad():
        x = torch.from_numpy(faces).permute(0, 3, 1, 2).contiguous()
        ref = model.swap(x, morph_value=0.75) if morph else model.swap(x)
    ref_celeb, ref_celeb_mask, ref_face_mask = (t.permute(0, 2, 3, 1).numpy() for t in ref)
    for got, want in ((celeb, ref_celeb), (celeb_mask, ref_celeb_mask), (face_mask, ref_face_mask)):
        assert np.abs(got - want).max() < 1e-3
        assert got.min() >= 0.0 and got.max() <= 1.0
    # channel order is the model's (BGR): swapping the input's channels changes the swap
    feed["in_face:0"] = np.ascontiguousarray(faces[..., ::-1])
    assert np.abs(sess.run(None, feed)[1] - celeb).max() > 1e-3

    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["dfl.model_type"] == model_type and meta["dfl.face_type"] == model.face_type.to_string()
    assert json.loads(meta["dfl.swap_inputs"]) == model.swap_inputs


def test_amp_graph_morph_matches_swap_for_each_value(trained_ws: Path) -> None:
    model = load_trained(trained_ws / "model" / "tiny_AMP").model
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        for value in (0.0, 0.25, 0.5, 0.75, 1.0):
            a = model.swap(x, morph_value=value)
            b = model.swap_graph(x, torch.tensor([value]))
            assert all(torch.equal(p, q) for p, q in zip(a, b)), value
        # outside 0..1 the graph acts as the clamped value, as swap() clamps it
        assert all(torch.equal(p, q) for p, q in zip(model.swap(x, 1.0), model.swap_graph(x, torch.tensor([1.7]))))
        assert all(torch.equal(p, q) for p, q in zip(model.swap(x, 0.0), model.swap_graph(x, torch.tensor([-0.2]))))


def test_existing_file_is_kept_unless_forced_then_trashed(trained_ws: Path, tmp_path: Path, dfl_run) -> None:
    out = tmp_path / "mine.dfm"
    out.write_bytes(b"the user's own file")
    r = dfl_run("model", "export", "--model", "SAEHD", "-w", trained_ws, "-o", out, "--no-check")  # the newest SAEHD
    assert r.code == 1 and r.err.count("\n") == 1 and "already exists" in r.err and "--force" in r.err
    assert out.read_bytes() == b"the user's own file"
    r = dfl_run("model", "export", "tiny", "--model", "SAEHD", "-w", trained_ws, "-o", out, "--force")
    assert r.code == 0, r.err
    assert out.read_bytes()[:4] != b"the "
    trashed = list((trained_ws / "trash").rglob("mine.dfm"))
    assert len(trashed) == 1 and trashed[0].read_bytes() == b"the user's own file"
    assert "previous file is in" in r.out


def test_bad_model_and_missing_onnx_are_one_line(trained_ws: Path, dfl_run, monkeypatch) -> None:
    r = dfl_run("model", "export", "nosuch", "-w", trained_ws)
    assert r.code == 1 and r.err.count("\n") == 1 and "no model named 'nosuch'" in r.err
    monkeypatch.setitem(sys.modules, "onnx", None)        # as if it were not installed
    r = dfl_run("model", "export", "tiny", "--model", "SAEHD", "-w", trained_ws, "--force")
    assert r.code == 1 and r.err.count("\n") == 1
    assert "onnx not installed" in r.err and "pip install onnx" in r.err and "dfl[export]" in r.err


def test_graph_has_plain_convolutions_where_eager_runs_winograd(tmp_path: Path, monkeypatch) -> None:
    """Inside a kernel cache (as merging runs) eager inference takes the Winograd path for this model's
    decoder; the traced export must still hold the stock Conv nodes and nothing else of it."""
    from dfl.export.dfm import export_bytes
    from dfl.export.trained import Trained
    from dfl.models import create_model
    from dfl.ops import kernel_cache, winograd
    from dfl.models.blocks import Conv2d

    model = create_model("SAEHD", {"resolution": 64, "face_type": "f", "archi": "df", "ae_dims": 32, "e_dims": 16,
                                  "d_dims": 16, "d_mask_dims": 16}).eval()
    seen: list[bool] = []
    hooks = [m.register_forward_pre_hook(lambda mod, inp: seen.append(winograd.applies(mod, inp[0])))
             for m in model.modules() if isinstance(m, Conv2d)]
    with torch.no_grad(), kernel_cache({}):
        model.swap(torch.rand(1, 3, 64, 64))
    assert any(seen)
    for h in hooks:
        h.remove()
    trained = Trained(model, tmp_path / "t_SAEHD", dict(model.options), {"iteration": 1})

    def op_types(env: str) -> list[str]:
        monkeypatch.setenv("DFL_WINOGRAD", env)
        with kernel_cache({}):
            return sorted(n.op_type for n in onnx.load_from_string(export_bytes(trained)).graph.node)

    ops = op_types("1")
    assert ops == op_types("0")
    assert "MatMul" not in ops and ops.count("Conv") >= 20
