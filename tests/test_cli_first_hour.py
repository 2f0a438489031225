"""A new user's first hour (issue 21): DFL's model picker at a terminal (driven through a real pty with
scripted answers) for train and merge, ``--target-iter`` already reached, Ctrl+C / SIGTERM in train printing
what was saved, the run's real ms/iteration, and merge settings that would do nothing refused."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dfl.models import create_model, store
from dfl.models.registry import SWAP, model_names

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_helpers import make_workspace  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TINY = {"resolution": 64, "face_type": "f", "archi": "df", "ae_dims": 32, "e_dims": 16, "d_dims": 16,
        "d_mask_dims": 16, "batch_size": 2}


def _save(model_dir: Path, name: str, iteration: int, age_s: float) -> Path:
    """A saved SAEHD model at ``iteration``, last saved ``age_s`` seconds ago (the picker's order)."""
    torch.manual_seed(0)
    model = create_model("SAEHD", TINY)
    path = store.model_path(model_dir, name, "SAEHD")
    store.save_checkpoint(path, "SAEHD", model.options, {"iteration": iteration, "loss_history": {}},
                          model.networks, None)
    t = time.time() - age_s
    for f in path.rglob("*"):
        os.utime(f, (t, t))
    return path


@pytest.fixture(scope="module")
def faces_ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_workspace(tmp_path_factory.mktemp("first_hour"), n=4, size=96)


@pytest.fixture
def ws(faces_ws: Path, tmp_path: Path) -> Path:
    """The faces, and two saved models: alpha (iteration 7, latest) and beta (iteration 3)."""
    root = tmp_path / "ws"
    shutil.copytree(faces_ws, root)
    _save(root / "model", "beta", 3, age_s=3600)
    _save(root / "model", "alpha", 7, age_s=60)
    return root


def _at_terminal(*args: str, answers: str, timeout: float = 600) -> tuple[int, str, str]:
    """``dfl ARGS`` in a real process whose stdin is a terminal (a pty), the ``answers`` typed in advance."""
    import pty

    master, slave = pty.openpty()
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(REPO))
    env.pop("DFL_WORKSPACE", None)
    try:
        proc = subprocess.Popen([sys.executable, "-m", "dfl", *args], stdin=slave, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env)
        os.close(slave)
        os.write(master, answers.encode())
        out, err = proc.communicate(timeout=timeout)
    finally:
        os.close(master)
    return proc.returncode, out.decode(), err.decode(errors="replace")


def test_train_picker_renames_deletes_and_picks_then_target_reached(ws: Path) -> None:
    # [r] 1 -> beta becomes gamma; [d] 0 -> alpha to the trash; then [0] (gamma, iteration 3) with the
    # target already reached: said before anything is loaded
    rc, out, err = _at_terminal("train", "-w", str(ws), "--target-iter", "3",
                                answers="r\n1\ngamma\nd\n0\n0\n")
    assert rc == 0, err[-2000:]
    assert "Choose one of saved models, or enter a name to create a new model." in out
    assert "[r] : rename" in out and "[d] : delete" in out
    assert re.search(r"\[0\] : alpha \(SAEHD, iteration 7, saved \d{4}-\d\d-\d\d \d\d:\d\d\) - latest", out), out
    assert re.search(r"\[1\] : beta \(SAEHD, iteration 3, saved ", out), out
    assert "Renamed beta_SAEHD -> gamma_SAEHD" in out
    assert "Deleted alpha_SAEHD: moved to " in out
    assert "gamma_SAEHD is already at iteration 3 (--target-iter 3): nothing to train" in out
    assert "Resuming" not in out and "Traceback" not in err
    names = sorted(p.name for p in (ws / "model").iterdir() if p.is_dir())
    assert names == ["gamma_SAEHD"]
    assert list((ws / "trash").rglob("alpha_SAEHD"))          # in the trash, not erased


def test_train_picker_new_name_asks_the_type_from_the_registry(ws: Path) -> None:
    idx = model_names().index("Quick96")
    # a new name, its type by number, Quick96's two prompts at their defaults, one iteration
    rc, out, err = _at_terminal("train", "-w", str(ws), "--target-iter", "1", "--precision", "fp32", "--workers",
                                "0", "--preview-seconds", "1e9", answers=f"newbie\n{idx}\n\n\n")
    assert rc == 0, (out[-2000:], err[-2000:])
    for i, name in enumerate(model_names()):
        assert f"[{i}] : {name} - " in out
    assert "Creating newbie_Quick96" in out
    assert re.search(r"Trained newbie_Quick96 to iteration 1 \(1 iteration this run, \d+ ms/iteration", out), out
    assert json.loads((ws / "model" / "newbie_Quick96" / "state.json").read_text())["iteration"] == 1


def test_merge_picker_lists_swap_models_and_picks_by_number(ws: Path) -> None:
    # [1] = beta; --morph is then refused for it (SAEHD declares no morph), before anything is loaded
    rc, out, err = _at_terminal("merge", "-w", str(ws), "--morph", "0.5", answers="1\n")
    assert rc == 1
    assert "Choose one of saved models." in out and "create a new model" not in out
    assert re.search(r"\[1\] : beta \(SAEHD, iteration 3", out), out
    assert err.strip().splitlines()[-1] == ("Error: beta_SAEHD (SAEHD): morph_value (--morph) does nothing for this "
                                            "model (only models that declare it in their merge defaults use it)")
    assert set(model_names(SWAP)) >= {"SAEHD"}


def test_without_a_terminal_the_latest_model_and_no_picker(ws: Path, dfl_run) -> None:
    shutil.rmtree(ws / "data_src")        # no faces: proves the target check comes before any loading
    res = dfl_run("train", "-w", ws, "--target-iter", "5")
    assert res.code == 0, res.err
    assert "Choose one" not in res.out
    assert res.out.strip() == ("alpha_SAEHD is already at iteration 7 (--target-iter 5): nothing to train; give a "
                               "higher --target-iter, or 0 to train until Ctrl+C")


def test_merge_refuses_sharpen_without_a_sharpen_mode(ws: Path, dfl_run) -> None:
    res = dfl_run("merge", "-w", ws, "--sharpen", "20")
    assert res.code == 1
    assert "(--sharpen) does nothing with sharpen_mode none: give --sharpen-mode box or gaussian" in res.err
    assert len(res.err.strip().splitlines()) == 1
    res = dfl_run("merge", "-w", ws, "--hist-threshold", "200", "--mode", "overlay")
    assert res.code == 1 and "only apply in mode hist-match or seamless-hist-match, not overlay" in res.err


@pytest.mark.parametrize("sig, code, said", [(signal.SIGINT, 130, "Ctrl+C"), (signal.SIGTERM, 143, "SIGTERM")],
                         ids=["ctrl-c", "sigterm"])
def test_train_stopped_prints_what_it_saved(ws: Path, sig, code, said) -> None:
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(REPO))
    env.pop("DFL_WORKSPACE", None)
    cmd = [sys.executable, "-m", "dfl", "train", "-w", str(ws), "--name", "beta", "--non-interactive",
           "--precision", "fp32", "--workers", "0", "--preview-seconds", "1e9"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # a terminal's Ctrl+C
    seen = b""
    try:
        # the bar (which starts at the saved iteration, 3) says an iteration of this run is done
        while not any(int(n) > 3 for n in re.findall(rb"beta_SAEHD: +(\d+)it ", seen)):
            chunk = proc.stderr.read1(4096)
            assert chunk, f"train ended before it was stopped: {seen.decode(errors='replace')[-2000:]}"
            seen += chunk
        proc.send_signal(sig)
        out, rest = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out, err = out.decode(), (seen + rest).decode(errors="replace")
    assert proc.returncode == code, err[-2000:]
    assert "Traceback" not in err and "Aborted." not in err
    m = re.search(r"Stopped beta_SAEHD at iteration (\d+) \((\d+) iterations? this run, \d+ ms/iteration.*\); saved in "
                  r"(.+)\n", out)
    assert m, out
    it, steps = int(m.group(1)), int(m.group(2))
    assert it == 3 + steps and steps >= 1 and Path(m.group(3)) == ws / "model" / "beta_SAEHD"
    assert json.loads((ws / "model" / "beta_SAEHD" / "state.json").read_text())["iteration"] == it
    assert err.strip().splitlines()[-1] == (f"train: stopped by {said} at iteration {it} (saved); run the same "
                                            "command again to continue")


def test_ms_per_iteration_is_the_runs_real_average(ws: Path) -> None:
    """Previews every iteration make the run slower than its bare steps: the summary says the run's pace."""
    from dfl.training.session import SessionRequest, train

    stamps: list[float] = []
    req = SessionRequest(model_dir=ws / "model", src_dir=ws / "data_src" / "aligned",
                         dst_dir=ws / "data_dst" / "aligned", model_type=None, name="beta", config={},
                         interactive=False)
    t0 = time.perf_counter()
    result, _ = train(req, dict(target_iter=6, workers=0, precision="fp32", preview_seconds=0, log_seconds=1e9,
                                autosave_minutes=1e9, quiet=True,
                                on_iteration=lambda it, losses: stamps.append(time.perf_counter())))
    total = time.perf_counter() - t0
    assert result.steps == 3 and result.iteration == 6
    assert result.ms_per_iter == pytest.approx(1000 * result.seconds / 3)
    # at least the span of iterations 2..3 as the callbacks saw it, at most the whole call (load and save too)
    assert stamps[-1] - stamps[0] <= result.seconds <= total


def test_pretrain_faces_refused_for_a_model_that_does_not_pretrain(ws: Path, dfl_run) -> None:
    faces = ws / "data_src" / "aligned"
    before = (ws / "model" / "beta_SAEHD" / "state.json").read_bytes()
    res = dfl_run("train", "-w", ws, "--name", "beta", "--non-interactive", "--pretrain-faces", faces)
    assert res.code == 1 and len(res.err.strip().splitlines()) == 1, res.err
    assert "beta_SAEHD does not pretrain; its pretrain option is off" in res.err
    assert (ws / "model" / "beta_SAEHD" / "state.json").read_bytes() == before
    res = dfl_run("train", "-w", ws, "--name", "quick", "--model", "Quick96", "--non-interactive",
                  "--pretrain-faces", faces)
    assert res.code == 1 and "Quick96 has no pretrain mode: leave --pretrain-faces out" in res.err, res.err
    assert not (ws / "model" / "quick_Quick96").exists()       # no model was created for it
