"""``dfl model import``: DFL model folders (written here as DFL's saver writes them) become dfl models that
train on and merge; crafted or damaged files are refused with one line and leave nothing behind."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from dfl.errors import DflError
from dfl.interop.dfl_models import loss_history, map_options
from dfl.interop.model_import import import_model, scan
from dfl.leras import leras_name, read_weights
from dfl_format import code_running_pickle, seeded_weights, write_model_data, write_weights
from train_helpers import make_workspace

DATA = Path(__file__).parent / "data" / "dfl_oracle"

# options as DFL's SAEHD prompts leave them (np.clip gives numpy ints) plus what ModelBase adds
SAEHD_DFL = {
    "resolution": np.int64(64), "face_type": "f", "models_opt_on_gpu": True, "archi": "liae-ud",
    "ae_dims": np.int64(32), "e_dims": np.int64(16), "d_dims": np.int64(16), "d_mask_dims": np.int64(16),
    "masked_training": True, "eyes_mouth_prio": True, "uniform_yaw": False, "blur_out_mask": False,
    "adabelief": True, "lr_dropout": False, "random_warp": False, "random_hsv_power": np.float64(0.05),
    "true_face_power": 0.0, "face_style_power": 0.0, "bg_style_power": 0.0, "ct_mode": "rct",
    "clipgrad": True, "pretrain": False, "gan_power": np.float64(0.1), "gan_patch_size": np.int64(8),
    "gan_dims": np.int64(8), "autobackup_hour": np.int64(1), "write_preview_history": False,
    "target_iter": np.int64(0), "random_src_flip": False, "random_dst_flip": True, "batch_size": np.int64(2),
}
AMP_DFL = {
    "resolution": np.int64(64), "face_type": "wf", "models_opt_on_gpu": True, "ae_dims": np.int64(32),
    "inter_dims": np.int64(64), "e_dims": np.int64(16), "d_dims": np.int64(16), "d_mask_dims": np.int64(16),
    "morph_factor": np.float64(0.3), "uniform_yaw": True, "blur_out_mask": False, "lr_dropout": "y",
    "random_warp": True, "ct_mode": "none", "clipgrad": False, "gan_power": 0.0, "gan_patch_size": np.int64(8),
    "gan_dims": np.int64(16), "batch_size": np.int64(4), "random_src_flip": False, "random_dst_flip": True,
}


def write_dfl_model(folder: Path, name: str, model_type: str, dfl_options: dict, iteration: int,
                    seed: int = 3) -> dict[str, dict[str, np.ndarray]]:
    """A DFL model folder entry: every network's .npy, discriminators the options train, the .dat, and
    the files DFL keeps beside them (optimiser state, summary).  Returns the leras dicts written."""
    from dfl.models import build_model, validate_options
    from dfl.models.registry import get_spec
    from dfl.models.swap_loss import build_discriminators

    folder.mkdir(parents=True, exist_ok=True)
    opts = validate_options(model_type, map_options(get_spec(model_type), dfl_options)[0])
    model = build_model(model_type, opts)
    nets = dict(model.networks, **build_discriminators(model, opts))
    written = {}
    for net_name, net in nets.items():
        written[net_name] = seeded_weights(net, net_name, seed)
        write_weights(folder / f"{name}_{model_type}_{net_name}.npy", written[net_name])
    write_optimizers(folder, f"{name}_{model_type}", model_type, nets, opts, iteration)
    (folder / f"{name}_{model_type}_summary.txt").write_text("== Model Summary ==\n")
    rows = [[1.0 / (1 + i / 100), 1.2 / (1 + i / 100)] for i in range(iteration)]
    write_model_data(folder / f"{name}_{model_type}_data.dat", iteration, dfl_options, rows)
    return written


def write_optimizers(folder: Path, prefix: str, model_type: str, nets: dict, opts: dict, iteration: int) -> None:
    """DFL's optimiser files: per optimiser ``iters`` and a moment per trained variable, named as leras
    names them (``ms_<scope>/<variable>_0:0``, ``vs_...``, RMSprop's ``acc_...``)."""
    from dfl.interop.dfl_models import optimizer_variable
    from dfl.models.registry import get_spec
    from dfl_format import leras_shape

    scopes = get_spec(model_type).dfl_import.scopes
    adabelief = model_type != "Quick96" and opts.get("adabelief", True)
    trained = {"src_dst_opt": [n for n in nets if n not in ("GAN", "code_discriminator")
                               and not (model_type == "AMP" and n.startswith("inter"))],
               "GAN_opt": ["GAN"], "D_code_opt": ["code_discriminator"]}
    rs = np.random.RandomState(iteration)
    for opt_name, names in trained.items():
        if not all(n in nets for n in names):
            continue
        d = {"iters:0": np.int64(iteration)}
        for n in names:
            for key, t in nets[n].named_parameters():
                shape = leras_shape(nets[n], key, tuple(t.shape))
                for slot in (("m", "v") if adabelief else ("a",)):
                    d[optimizer_variable(slot, scopes.get(n, n), leras_name(key))] = \
                        rs.uniform(0, 1e-3, shape).astype(np.float32)
        write_weights(folder / f"{prefix}_{opt_name}.npy", d)


def _dst_workspace(root: Path, resolution: int) -> None:
    """data_dst/00000.png with one drawn face and its aligned face (source landmarks) for the merger."""
    from dfl.faces.align import FaceType, transform_matrix, transform_points
    from dfl.faceset import FaceRecord, write_face
    from dfl.merge.synthetic import draw_face, template_landmarks

    frame = np.random.default_rng(0).integers(0, 255, (160, 200, 3), dtype=np.uint8)
    lm = template_landmarks(100, 80, 80)
    draw_face(frame, lm)
    (root / "data_dst" / "aligned").mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(root / "data_dst" / "00000.png"), frame)
    mat = transform_matrix(lm, resolution, FaceType.FULL)
    rec = FaceRecord(face_type="full_face", landmarks=transform_points(lm, mat).astype(np.float32),
                     source_filename="00000.png", source_landmarks=lm.astype(np.float32), image_to_face_mat=mat)
    write_face(root / "data_dst" / "aligned" / "00000_0.jpg", cv2.warpAffine(frame, mat, (resolution,) * 2), rec)


def test_imported_saehd_keeps_options_iteration_weights_then_trains_and_merges(tmp_path: Path, dfl_run) -> None:
    from dfl.models.store import load_model, read_checkpoint
    from dfl.training.session import SessionRequest, train

    dfl_dir = tmp_path / "DeepFaceLab" / "workspace" / "model"
    written = write_dfl_model(dfl_dir, "me", "SAEHD", SAEHD_DFL, iteration=1234)
    ws = make_workspace(tmp_path / "ws", n=4, size=96, face_type="full_face")

    res = dfl_run("model", "import", tmp_path / "DeepFaceLab", "-w", ws)     # the install folder will do
    assert res.code == 0, res.err
    assert ("Imported me_SAEHD (SAEHD liae-ud 64 f, iteration 1234, discriminators GAN, "
            "optimizer state src_dst_opt, GAN_opt)") in res.out
    assert "models_opt_on_gpu" in res.out and "autobackup_hour" in res.out     # said, not silently lost
    path = ws / "model" / "me_SAEHD"
    opts = json.loads((path / "options.json").read_text())
    assert opts["model_type"] == "SAEHD" and opts["archi"] == "liae-ud" and opts["resolution"] == 64
    assert (opts["eyes_mouth_prio"], opts["clipgrad"], opts["random_warp"]) == (True, True, False)
    assert (opts["ct_mode"], opts["lr_dropout"], opts["batch_size"]) == ("rct", "n", 2)
    assert opts["gan_power"] == pytest.approx(0.1) and opts["random_hsv_power"] == pytest.approx(0.05)
    ckpt = read_checkpoint(path)
    assert ckpt.state["iteration"] == 1234 and ckpt.state["imported_from"]["dfl_model"] == "me_SAEHD"
    hist = ckpt.state["loss_history"]
    assert hist["names"] == ["src_loss", "dst_loss"] and hist["iters"][-1] == 1234 and len(hist["iters"]) == 1234
    assert hist["values"][-1] == pytest.approx([1.0 / (1 + 1233 / 100), 1.2 / (1 + 1233 / 100)])
    # weights as DFL stored them (HWIO -> OIHW, Dense (in, out) -> (out, in)), discriminator included
    w = written["encoder"]["down1/downs_0/conv1/weight:0"]
    assert torch.equal(ckpt.weights["encoder.down1.downs.0.conv1.weight"], torch.from_numpy(w.transpose(3, 2, 0, 1)))
    d = written["inter_AB"]["dense1/weight:0"]
    assert torch.equal(ckpt.weights["inter_AB.dense1.weight"], torch.from_numpy(d.T.copy()))
    assert torch.equal(ckpt.weights["GAN.in_conv.bias"], torch.from_numpy(written["GAN"][leras_name("in_conv.bias")]))
    model, _, _ = load_model(path)
    assert model.archi_type == "liae"
    # AdaBelief's moments and iteration count, in the order dfl's optimiser holds the parameters
    opt = ckpt.optimizer["src_dst_opt"]
    assert opt["param_groups"][0]["iterations"] == 1234 and opt["param_groups"][0]["lr_dropout"] == 1.0
    order = [f"{n}.{k}" for n in model.network_names for k, _ in model.networks[n].named_parameters()]
    first = order.index("encoder.down1.downs.0.conv1.weight")
    dfl_opt = read_weights(dfl_dir / "me_SAEHD_src_dst_opt.npy")
    m = dfl_opt["ms_encoder/down1/downs_0/conv1/weight_0:0"].transpose(3, 2, 0, 1)
    assert torch.equal(opt["state"][first]["m"], torch.from_numpy(np.ascontiguousarray(m)))
    assert ckpt.optimizer["GAN_opt"]["param_groups"][0]["iterations"] == 1234

    # training continues from DFL's iteration count, with the imported GAN
    req = SessionRequest(model_dir=ws / "model", src_dir=ws / "data_src" / "aligned", dst_dir=ws / "data_dst" / "aligned",
                         model_type=None, name="me", config={}, interactive=False)
    result, _ = train(req, dict(workers=0, preview_seconds=1e9, log_seconds=1e9, autosave_minutes=1e9, seed=0,
                                quiet=True, target_iter=1236))
    assert result.iteration == 1236
    after = read_checkpoint(path)
    assert after.state["iteration"] == 1236 and after.state["loss_history"]["iters"][-2:] == [1235, 1236]
    assert after.optimizer["src_dst_opt"]["param_groups"][0]["iterations"] == 1236   # DFL's state went on
    assert not torch.equal(after.weights["encoder.down1.downs.0.conv1.weight"], ckpt.weights["encoder.down1.downs.0.conv1.weight"])

    # and merges
    _dst_workspace(ws, 64)
    res = dfl_run("merge", "-w", ws, "--name", "me", "--non-interactive", "--mode", "overlay", "--device", "cpu")
    assert res.code == 0, res.err
    assert "Merged 1 frames" in res.out and (ws / "data_dst" / "merged" / "00000.png").is_file()


def test_amp_and_quick96_import_with_their_options(tmp_path: Path) -> None:
    from dfl.models.store import load_model

    src = tmp_path / "model"
    write_dfl_model(src, "amp", "AMP", AMP_DFL, iteration=50)
    write_dfl_model(src, "q", "Quick96", {"batch_size": np.int64(4)}, iteration=7)
    dest = tmp_path / "ws" / "model"
    stale = dest / ".import-amp_AMP-999999999-abcdefgh"        # left by an import killed mid-save
    (stale / ".saving").mkdir(parents=True)
    with pytest.raises(DflError, match="several models"):
        import_model(src, dest)
    amp = import_model(src, dest, name="amp")
    assert not stale.exists() and sorted(p.name for p in dest.iterdir()) == ["amp_AMP"]
    assert amp.path.name == "amp_AMP" and amp.options["morph_factor"] == pytest.approx(0.3)
    assert (amp.options["inter_dims"], amp.options["lr_dropout"], amp.options["uniform_yaw"]) == (64, "y", True)
    assert amp.optimizers == ["src_dst_opt"]                 # AdaBelief over encoder + decoder, as DFL's AMP
    q = import_model(src / "q_Quick96_data.dat", dest, new_name="quick")
    assert q.path.name == "quick_Quick96" and q.options["archi"] == "df-ud" and q.options["resolution"] == 96
    assert q.optimizers == ["src_dst_opt"]                   # RMSprop accumulators
    model, _, state = load_model(q.path)
    assert state["iteration"] == 7 and model.model_type == "Quick96"
    with pytest.raises(DflError, match="already exists"):
        import_model(src, dest, name="q", new_name="quick")


def test_list_shows_every_model_and_unreadable_ones(tmp_path: Path, dfl_run) -> None:
    from dfl.models.xseg import XSeg

    src = tmp_path / "model"
    write_dfl_model(src, "me", "SAEHD", dict(SAEHD_DFL, archi="df", gan_power=0.0), iteration=3)
    write_weights(src / "XSeg_256.npy", seeded_weights(XSeg(), "XSeg"))
    (src / "bad_SAEHD_data.dat").write_bytes(b"\x80\x04not a pickle")
    (src / "me_SAEHD_decoder_dst.npy").unlink()
    res = dfl_run("model", "import", "--list", src)
    assert res.code == 0, res.err
    assert "me_SAEHD: SAEHD df 64 f (ae 32, e 16, d 16, d_mask 16), iteration 3; missing me_SAEHD_decoder_dst.npy" in res.out
    assert "bad_SAEHD: SAEHD: unreadable" in res.out and "bad_SAEHD_data.dat" in res.out
    assert "XSeg: XSeg mask model (generic XSeg weights; XSeg_256.npy)" in res.out
    res = dfl_run("model", "import", src, "--name", "me", "-w", tmp_path / "ws")
    assert res.code == 1 and "me_SAEHD_decoder_dst.npy: missing" in res.err and res.err.count("\n") == 1
    assert _nothing_left(tmp_path / "ws" / "model")


def _nothing_left(model_dir: Path) -> bool:
    return not model_dir.exists() or not any(model_dir.iterdir())


@pytest.mark.parametrize("where", ["dat", "npy"])
def test_crafted_pickle_is_refused_runs_nothing_leaves_nothing(tmp_path: Path, dfl_run, where: str) -> None:
    src = tmp_path / "model"
    write_dfl_model(src, "me", "SAEHD", dict(SAEHD_DFL, archi="df", gan_power=0.0), iteration=3)
    marker = tmp_path / "pwned"
    target = src / ("me_SAEHD_data.dat" if where == "dat" else "me_SAEHD_inter.npy")
    target.write_bytes(code_running_pickle(marker, inside_dict=where == "dat"))
    ws = tmp_path / "ws"
    res = dfl_run("model", "import", src, "-w", ws)
    assert res.code == 1 and res.err.count("\n") == 1
    assert str(target) in res.err and "refused" in res.err and "os" in res.err
    assert not marker.exists()
    assert _nothing_left(ws / "model")
    res = dfl_run("model", "import", "--list", src)       # listing reads the .dat too, and runs nothing
    assert not marker.exists()
    if where == "dat":
        assert "unreadable" in res.out


def test_truncated_npy_is_one_line(tmp_path: Path, dfl_run) -> None:
    src = tmp_path / "model"
    write_dfl_model(src, "me", "SAEHD", dict(SAEHD_DFL, archi="df", gan_power=0.0), iteration=3)
    f = src / "me_SAEHD_decoder_src.npy"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    ws = tmp_path / "ws"
    res = dfl_run("model", "import", src, "-w", ws)
    assert res.code == 1 and res.err.count("\n") == 1 and str(f) in res.err and "truncated" in res.err
    assert _nothing_left(ws / "model")


def test_dfl_written_data_file_reads(tmp_path: Path) -> None:
    """The .dat DFL's ModelBase.save wrote (numpy 1.x, protocol 3, numpy scalars in the options)."""
    (m,) = scan(DATA / "dfl_saved")
    assert (m.name, m.model_type, m.iteration, m.error) == ("saehd_tiny", "SAEHD", 300, None)
    assert m.options["archi"] == "df-ud" and m.options["resolution"] == 32 and type(m.options["ae_dims"]) is int
    hist = loss_history(m.loss_rows, 20000)
    assert len(hist["iters"]) == 300 and hist["names"] == ["src_loss", "dst_loss"]


def test_long_loss_history_is_thinned_like_dfls_own() -> None:
    rows = [[float(i), 2.0 * i] for i in range(10)]
    h = loss_history(rows, 4)
    assert h["iters"] == [4, 8, 10] and h["values"] == [[1.5, 3.0], [5.5, 11.0], [8.5, 17.0]]
    assert loss_history([], 4) == {}


def test_generic_xseg_folder_with_face_type(tmp_path: Path) -> None:
    from dfl.faces.align import FaceType
    from dfl.interop.xseg import load_dfl_xseg, xseg_mask_func
    from dfl.models.xseg import XSeg

    folder = tmp_path / "model"
    folder.mkdir()
    with pytest.raises(DflError, match="XSeg_256.npy"):
        load_dfl_xseg(folder)
    write_weights(folder / "XSeg_256.npy", seeded_weights(XSeg(), "XSeg"))
    write_model_data(folder / "XSeg_data.dat", 100, {"face_type": "wf", "pretrain": False, "batch_size": 4})
    net, face_type = load_dfl_xseg(folder / "XSeg_256.npy")
    assert face_type == FaceType.WHOLE_FACE
    masks = xseg_mask_func(net)(np.full((1, 256, 256, 3), 0.5, np.float32))
    assert masks.shape == (1, 256, 256) and masks.dtype == np.float32
    assert ((masks == 0) | (masks >= 0.1)).all() and masks.max() <= 1
    result = import_model(folder, tmp_path / "ws")          # the only model there: DFL's XSeg (issue #16)
    assert result.path == tmp_path / "ws" / "XSeg_XSeg" and result.options["face_type"] == "wf"
    assert result.source.iteration == 100


def test_dfl_saved_optimizer_state_lands_in_dfls_optimizer() -> None:
    """DFL's own AdaBelief file (saved by its saver): every moment reaches the parameter it belongs to."""
    from dfl.interop.model_import import _optimizer_state
    from dfl.models.saehd import SAEHDModel
    from dfl.training.objective import Objective
    from dfl_seed import leras_value

    (m,) = scan(DATA / "dfl_saved")
    o = m.options
    swap = SAEHDModel({"face_type": "f", **{k: o[k] for k in ("resolution", "archi", "ae_dims", "e_dims", "d_dims",
                                                              "d_mask_dims")}})
    objective = Objective(swap, {"adabelief": True, "lr_dropout": "n"})
    state, carried = _optimizer_state(m, dict(swap.networks), objective)
    assert carried == ["src_dst_opt"]
    opt = state["src_dst_opt"]
    assert opt["param_groups"][0]["iterations"] == 300
    params = [(n, k, p) for n in swap.network_names for k, p in swap.networks[n].named_parameters()]
    assert len(opt["state"]) == len(params)
    for i, (net, key, p) in enumerate(params):
        for slot, prefix in (("m", "ms_"), ("v", "vs_")):
            name = f"src_dst_opt/{prefix}{net}/{leras_name(key)}".replace(":", "_") + ":0"
            want = np.abs(leras_value(name, _leras_shape(p), 1)) * 1e-3
            assert np.array_equal(opt["state"][i][slot].numpy(), _to_torch(want, p)), (net, key, slot)


def _leras_shape(p: torch.Tensor) -> tuple[int, ...]:
    if p.dim() == 4:
        return (p.shape[2], p.shape[3], p.shape[1], p.shape[0])
    return tuple(p.shape[::-1])


def _to_torch(arr: np.ndarray, p: torch.Tensor) -> np.ndarray:
    return arr.transpose(3, 2, 0, 1) if p.dim() == 4 else (arr.T if p.dim() == 2 else arr)
