"""Models saved before the model registry (tests/data/old_models, see its README) load, resume and merge:
the file names and formats, the options' names and order, the network and optimiser layouts, the
optimiser defaults and the discriminators are what they were."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save as st_save

from dfl.models import store
from dfl.models.registry import get_spec
from dfl.training.objective import Objective

DATA = Path(__file__).resolve().parent / "data" / "old_models"
FOLDERS = sorted(p.name for p in DATA.iterdir() if p.is_dir())


def _rebuild(folder: str, model_dir: Path) -> Path:
    """The old model folder again: its own options.json, seeded weights and optimiser state of the recorded
    layouts, and its own state.json with the weights' digest brought up to date."""
    src, path = DATA / folder, model_dir / folder
    path.mkdir(parents=True)
    shutil.copy(src / "options.json", path / store.OPTIONS)
    header = json.loads((src / "weights_header.json").read_text())
    g = torch.Generator().manual_seed(0)
    tensors = {k: torch.rand(v["shape"], generator=g) * 0.1 for k, v in header["tensors"].items()}
    blob = st_save(tensors, metadata=header["metadata"])
    (path / store.WEIGHTS).write_bytes(blob)
    optimizer = {}
    for name, layout in json.loads((src / "optimizer_layout.json").read_text()).items():
        state = {int(i): {k: torch.rand(shape, generator=g) for k, shape in st.items()}
                 for i, st in layout["state"].items()}
        optimizer[name] = {"state": state, "param_groups": layout["param_groups"]}
    buf = io.BytesIO()
    torch.save(optimizer, buf)
    (path / store.OPTIMIZER).write_bytes(buf.getvalue())
    state = json.loads((src / "state.json").read_text())
    state["weights_blake2b"] = hashlib.blake2b(blob, digest_size=16).hexdigest()
    (path / store.STATE).write_text(json.dumps(state))
    return path


@pytest.mark.parametrize("folder", FOLDERS)
def test_an_old_model_loads_with_its_options_networks_and_optimisers(folder: str, tmp_path: Path) -> None:
    path = _rebuild(folder, tmp_path / "model")
    saved = json.loads((DATA / folder / "options.json").read_text())
    [info] = store.list_models(tmp_path / "model")
    assert (info.model_type, info.problem) == (saved["model_type"], None)
    c = store.read_checkpoint(path)
    assert c.notices == [] and c.state["iteration"] == 2
    spec = get_spec(c.model_type)
    # options are saved (and validated) exactly as they were, in their order
    assert list(spec.validate(c.options).items()) == [(k, v) for k, v in saved.items() if k != "model_type"]
    header = json.loads((DATA / folder / "weights_header.json").read_text())
    shapes = {k: tuple(v["shape"]) for k, v in header["tensors"].items()}
    assert store.weights_mismatch(c.model_type, c.options, shapes) is None
    model, options, state = store.load_model(path)
    assert options == c.options and state["iteration"] == 2
    objective = Objective(model, options)
    # the same discriminators, each tensor fitting, and every optimiser's state and settings taken back
    assert store.load_weights(objective.discriminators, c.weights, path, optional=True) == []
    assert sorted(objective.discriminators) == sorted({k.split(".")[0] for k in shapes} - set(model.networks))
    assert objective.load_optimizer_state(c.optimizer) == []
    for name, opt in objective.optimizers.items():
        old = {k: v for k, v in c.optimizer[name]["param_groups"][0].items() if k != "params"}
        new = {k: (list(v) if isinstance(v, tuple) else v) for k, v in opt.param_groups[0].items() if k != "params"}
        assert new == old, name


def test_an_old_model_resumes_and_merges_through_the_cli(tmp_path: Path, dfl_run) -> None:
    import sys

    import cv2
    import numpy as np

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from train_helpers import draw_face, make_workspace

    ws = make_workspace(tmp_path / "ws", n=4, size=64)
    rng = np.random.default_rng(2)   # the dst faces' frames, drawn again in make_workspace's order
    for i in range(4):
        cv2.imwrite(str(ws / "data_dst" / f"{i:05d}.png"), draw_face(rng, 1)[0])
    _rebuild("saehd_SAEHD", ws / "model")
    res = dfl_run("train", "-w", ws, "--name", "saehd", "--target-iter", "3", "--non-interactive", "--workers", "0",
                  "--preview-seconds", "1e9")
    assert res.code == 0, res.err
    assert "Resuming saehd_SAEHD" in res.out and "starts afresh" not in res.out + res.err
    assert store.read_checkpoint(ws / "model" / "saehd_SAEHD").state["iteration"] == 3
    res = dfl_run("merge", "-w", ws, "--name", "saehd", "--non-interactive", "--device", "cpu")
    assert res.code == 0, res.err
    assert len(list((ws / "data_dst" / "merged").glob("*.png"))) == 4
