"""Model folders: all-or-nothing saves, recovery after a killed save, backups, the model picker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from dfl.errors import DflError
from dfl.training import checkpoint as ckpt


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


def _crash_child(path: Path, stage: str) -> int:
    code = textwrap.dedent(f"""
        import sys, torch
        sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})
        from test_checkpoint import _save
        _save(__import__('pathlib').Path({str(path)!r}), 7)
    """)
    env = dict(os.environ, **{ckpt._CRASH_ENV: stage})
    return subprocess.run([sys.executable, "-c", code], env=env, timeout=120).returncode


@pytest.mark.parametrize("stage,expected", [("weights", 3), ("before_complete", 3), ("swap", 7)])
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
