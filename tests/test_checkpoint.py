"""Model folders: all-or-nothing saves, recovery after a killed save, backups, the model picker."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dfl.errors import DflError
from dfl.models import store as ckpt


def _nets(seed: int) -> dict[str, torch.nn.Module]:
    torch.manual_seed(seed)
    return {"encoder": torch.nn.Linear(8, 4), "decoder": torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU())}


def _save(path: Path, it: int) -> dict[str, torch.nn.Module]:
    nets = _nets(it)
    opt = torch.optim.SGD([p for n in nets.values() for p in n.parameters()], lr=0.1, momentum=0.9)
    ckpt.save_checkpoint(path, "SAEHD", {"resolution": 64, "ae_dims": 32}, {"iteration": it}, nets,
                         {"src_dst_opt": opt.state_dict()})
    return nets


def test_roundtrip_layout_and_strict_load(tmp_path: Path) -> None:
    path = tmp_path / "model" / "a_SAEHD"
    nets = _save(path, 3)
    assert sorted(p.name for p in path.iterdir()) == sorted(ckpt.SAVED_FILES)
    c = ckpt.read_checkpoint(path)
    assert c.model_type == "SAEHD" and c.options == {"resolution": 64, "ae_dims": 32}
    assert c.state["iteration"] == 3 and "encoder.weight" in c.weights and "decoder.0.bias" in c.weights
    assert "src_dst_opt" in c.optimizer
    fresh = _nets(99)
    ckpt.load_weights(fresh, c.weights, path)
    assert torch.equal(fresh["encoder"].weight, nets["encoder"].weight)
    with pytest.raises(DflError, match="encoder"):
        ckpt.load_weights({"encoder": torch.nn.Linear(8, 5)}, c.weights, path)
    assert ckpt.load_weights({"GAN": torch.nn.Linear(2, 2)}, c.weights, path, optional=True) == ["GAN"]


# A save killed at each of its stages, by a process of its own that runs the store's save steps in order
# and SIGKILLs itself where the stage ends: "staged" (every file written into .saving/, not yet marked
# complete), "complete" (marked, nothing moved yet), "moving" (the first file moved into place).
_CRASH_CHILD = """
import os, signal, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_checkpoint import _nets
from dfl.models import store
import torch

path, stage = Path({path!r}), {stage!r}
nets = _nets(7)
opt = torch.optim.SGD([p for n in nets.values() for p in n.parameters()], lr=0.1, momentum=0.9)
store.write_staged(path, "SAEHD", {{"resolution": 64, "ae_dims": 32}}, {{"iteration": 7}}, nets,
                   {{"src_dst_opt": opt.state_dict()}})
if stage != "staged":
    store.mark_complete(path)
if stage == "moving":
    first = store.SAVED_FILES[0]
    os.replace(path / store.SAVING_DIR / first, path / first)
os.kill(os.getpid(), signal.SIGKILL)
"""


def _crash_child(path: Path, stage: str) -> int:
    code = _CRASH_CHILD.format(tests=str(Path(__file__).resolve().parent), path=str(path), stage=stage)
    return subprocess.run([sys.executable, "-c", code], timeout=120).returncode


@pytest.mark.parametrize("stage,expected", [("staged", 3), ("complete", 7), ("moving", 7)])
def test_sigkill_during_save_loads_last_complete_state(tmp_path: Path, stage: str, expected: int) -> None:
    path = tmp_path / "m_SAEHD"
    _save(path, 3)
    assert _crash_child(path, stage) == -9
    c = ckpt.read_checkpoint(path)          # read-only view, digest-checked
    assert c.state["iteration"] == expected
    ref = _nets(expected)
    assert torch.equal(c.weights["encoder.weight"], ref["encoder"].weight)
    assert ckpt.recover(path) is not None
    assert not (path / ckpt.SAVING_DIR).exists()
    assert ckpt.read_checkpoint(path).state["iteration"] == expected
    _save(path, 8)                          # and saving goes on normally
    assert ckpt.read_checkpoint(path).state["iteration"] == 8


def test_damaged_weights_are_reported_not_loaded(tmp_path: Path) -> None:
    path = tmp_path / "m_SAEHD"
    _save(path, 1)
    data = bytearray((path / ckpt.WEIGHTS).read_bytes())
    data[-1] ^= 0xFF
    (path / ckpt.WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(DflError, match="does not match"):
        ckpt.read_checkpoint(path)


def test_backups_roll(tmp_path: Path) -> None:
    path = tmp_path / "m_SAEHD"
    for it in (1, 2, 3, 4):
        _save(path, it)
        ckpt.make_backup(path, keep=2)
    names = [b.name for b in ckpt.list_backups(path)]
    assert names == ["iter_000000003", "iter_000000004"]
    assert json.loads((path / "backups" / names[-1] / "state.json").read_text())["iteration"] == 4


def test_list_rename_delete_and_lock(tmp_path: Path) -> None:
    md = tmp_path / "model"
    _save(md / "one_SAEHD", 1)
    _save(md / "two_AMP", 1)
    (md / "junk").mkdir()
    (md / "empty_SAEHD").mkdir()
    assert sorted((m.name, m.model_type) for m in ckpt.list_models(md)) == [("one", "SAEHD"), ("two", "AMP")]
    ckpt.rename_model(md, "one", "uno")
    assert (md / "uno_SAEHD").is_dir() and not (md / "one_SAEHD").exists()
    with pytest.raises(DflError, match="already exists"):
        ckpt.rename_model(md, "two", "two")
    with pytest.raises(DflError):
        ckpt.check_name("../evil")
    ckpt.delete_model(md, "uno")
    assert [m.name for m in ckpt.list_models(md)] == ["two"]
    with ckpt.lock_model(md / "two_AMP"):
        with pytest.raises(DflError, match="another dfl train"):
            with ckpt.lock_model(md / "two_AMP"):
                pass
