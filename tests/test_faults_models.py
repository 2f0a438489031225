"""Issue #20, models, training and merging: each fault made real from the outside (files damaged or
removed, a trainer running in another process, a full tmpfs) and run through the CLI as a user would.

Every test asserts the exit status, that an error is one line without a traceback, and that the files
the user had are unchanged (hashes before and after) or changed only as the command promises.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from safetensors.torch import load_file, save_file

from dfl.models import store as ckpt
from dfl.trash import TRASH_DIR

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_helpers import draw_face, make_workspace  # noqa: E402

TINY = {"resolution": 64, "face_type": "f", "archi": "df-ud", "ae_dims": 32, "e_dims": 16, "d_dims": 16,
        "d_mask_dims": 16, "batch_size": 2, "adabelief": False}
FAST = ("--non-interactive", "--workers", "0", "--preview-seconds", "1e9", "--seed", "0")
MODEL = "model/base_SAEHD"


# -- helpers ------------------------------------------------------------------------------------------
def _hashes(root: Path, exclude: tuple[str, ...] = ()) -> dict[str, str]:
    """Relative path -> digest of every file under ``root`` but those under ``exclude``."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and not any(rel == e or rel.startswith(e + "/") for e in exclude):
            out[rel] = hashlib.blake2b(p.read_bytes(), digest_size=16).hexdigest()
    return out


def _error_line(res) -> str:
    """The one ``Error:`` line of a failed command (progress bars aside), with no traceback anywhere."""
    assert res.code == 1, (res.code, res.out[-2000:], res.err[-2000:])
    assert "Traceback" not in res.out + res.err, res.err[-3000:]
    lines = [ln.strip() for ln in re.split(r"[\r\n]", res.err) if ln.strip().startswith("Error:")]
    assert len(lines) == 1, res.err[-3000:]
    return lines[0]


def _ok(res) -> str:
    assert res.code == 0, (res.out[-3000:], res.err[-3000:])
    assert "Traceback" not in res.out + res.err
    return res.out


def _state(ws: Path) -> dict:
    return json.loads((ws / MODEL / ckpt.STATE).read_text())


def _cli(*args: str) -> None:
    from dfl.cli import main

    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        assert not exc.code, exc.code


@pytest.fixture(scope="module")
def base_ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Facesets, the dst frames they came from, and a tiny SAEHD ``base`` trained to iteration 3 with a
    backup at iteration 2 (iter_000000002).  Read only: tests take a copy."""
    root = make_workspace(tmp_path_factory.mktemp("faults_models") / "ws", n=6, size=64)
    rng = np.random.default_rng(2)            # the dst faceset's seed: the same frames again
    for i in range(6):
        frame, _ = draw_face(rng, 1)
        cv2.imwrite(str(root / "data_dst" / f"{i:05d}.png"), frame)
    (root.parent / "tiny.json").write_text(json.dumps(TINY))
    _cli("train", "-w", root, "--model", "SAEHD", "--name", "base", "--config", root.parent / "tiny.json",
         "--target-iter", "3", "--backup-every", "2", *FAST)
    return root


@pytest.fixture
def ws(base_ws: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "ws"
    shutil.copytree(base_ws, dest)
    return dest


@pytest.fixture
def tmpfs(tmp_path: Path):
    """``tmpfs(size_mb) -> Path``: a real small filesystem, so a full disk is a real ENOSPC."""
    mounted: list[Path] = []

    def mount(size_mb: int) -> Path:
        d = tmp_path / f"tmpfs{len(mounted)}"
        d.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(d)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip()})")
        mounted.append(d)
        return d

    yield mount
    for d in mounted:
        subprocess.run(["umount", "-l", str(d)], check=False)


def _fill(folder: Path, leave_bytes: int) -> Path:
    """Fill ``folder``'s filesystem until ``leave_bytes`` are free (a file of the user's, not dfl's)."""
    st = os.statvfs(folder)
    free = st.f_bavail * st.f_frsize
    filler = folder / "filler.bin"
    with open(filler, "wb") as f:
        f.truncate(0)
        chunk = b"\0" * (1 << 20)
        left = free - leave_bytes
        while left > 0:
            f.write(chunk[:min(left, len(chunk))])
            left -= len(chunk)
    return filler


# -- 1: a model folder without options.json is never overwritten -----------------------------------
def test_model_without_options_is_damaged_then_rebuilt_from_its_weights(ws: Path, dfl_run) -> None:
    path = ws / MODEL
    original = json.loads((path / ckpt.OPTIONS).read_text())
    weights = load_file(path / ckpt.WEIGHTS)
    (path / ckpt.OPTIONS).unlink()
    before = _hashes(ws)

    out = _ok(dfl_run("model", "list", "-w", ws))
    assert "base (SAEHD) DAMAGED: options.json is missing" in out and "--model SAEHD" in out
    line = _error_line(dfl_run("train", "-w", ws, "--name", "base", "--target-iter", "3", *FAST))
    assert "options.json is missing" in line and "--model SAEHD" in line
    assert _hashes(ws) == before

    # --model rebuilds the options (here from the weights' own save record); the model goes on as it was
    out = _ok(dfl_run("train", "-w", ws, "--name", "base", "--model", "SAEHD", "--target-iter", "3", *FAST))
    assert "options rebuilt from the weights' save record" in out and "Resuming base_SAEHD" in out
    assert json.loads((path / ckpt.OPTIONS).read_text()) == original
    assert _state(ws)["iteration"] == 3 and _state(ws)["loss_history"]["iters"] == [1, 2, 3]
    assert all(np.array_equal(v.numpy(), load_file(path / ckpt.WEIGHTS)[k].numpy()) for k, v in weights.items())
    assert all(_hashes(ws)[k] == h for k, h in before.items() if not k.startswith(MODEL + "/"))


def test_weights_without_a_record_rebuild_from_shapes_and_config(ws: Path, tmp_path: Path, dfl_run) -> None:
    """Weights saved before save records existed: the shapes give resolution and dims, the user gives
    what they cannot tell, and options that do not fit the tensors are refused."""
    path = ws / MODEL
    original = json.loads((path / ckpt.OPTIONS).read_text())
    weights = load_file(path / ckpt.WEIGHTS)
    save_file(weights, path / ckpt.WEIGHTS)                       # no metadata: an older dfl's file
    state = _state(ws)
    state["weights_blake2b"] = hashlib.blake2b((path / ckpt.WEIGHTS).read_bytes(), digest_size=16).hexdigest()
    (path / ckpt.STATE).write_text(json.dumps(state))
    (path / ckpt.OPTIONS).unlink()
    shutil.rmtree(path / ckpt.BACKUPS_DIR)
    before = _hashes(ws)
    args = ("train", "-w", ws, "--name", "base", "--model", "SAEHD", "--target-iter", "3", *FAST)

    line = _error_line(dfl_run(*args))
    assert "do not tell archi, face_type" in line and "--config" in line and "df-d or df-ud" in line
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"archi": "liae-ud", "face_type": "f"}))
    assert "do not fit" in _error_line(dfl_run(*args, "--config", wrong))
    assert _hashes(ws) == before

    given = tmp_path / "given.json"
    given.write_text(json.dumps({"archi": "df-ud", "face_type": "f", "batch_size": 2}))
    out = _ok(dfl_run(*args, "--config", given))
    assert "options rebuilt from the weights' tensor shapes and --config" in out
    rebuilt = json.loads((path / ckpt.OPTIONS).read_text())
    for k in ("resolution", "archi", "ae_dims", "e_dims", "d_dims", "d_mask_dims", "face_type", "batch_size"):
        assert rebuilt[k] == original[k], k
    assert _state(ws)["iteration"] == 3
    assert all(np.array_equal(v.numpy(), load_file(path / ckpt.WEIGHTS)[k].numpy()) for k, v in weights.items())


def test_a_killed_first_save_is_no_model_and_the_name_can_be_created(ws: Path, tmp_path: Path, dfl_run) -> None:
    half = ws / "model" / "new_SAEHD" / ckpt.SAVING_DIR
    half.mkdir(parents=True)
    (half / ckpt.WEIGHTS).write_bytes(b"\0" * 1000)      # kill -9 during a new model's first save
    out = _ok(dfl_run("model", "list", "-w", ws))
    assert "new" not in out
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(TINY))
    out = _ok(dfl_run("train", "-w", ws, "--name", "new", "--model", "SAEHD", "--config", cfg, "--target-iter", "1",
                      *FAST))
    assert "Creating new_SAEHD" in out and not half.exists()
    assert ckpt.read_checkpoint(ws / "model" / "new_SAEHD").state["iteration"] == 1


# -- 7: rename/delete respect the trainer's lock; delete moves to the trash ---------------------------
def test_rename_and_delete_refused_while_training_and_delete_goes_to_trash(ws: Path, tmp_path: Path,
                                                                           dfl_run) -> None:
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    env.pop("DFL_WORKSPACE", None)
    with open(tmp_path / "train.err", "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "dfl", "train", "-w", str(ws), "--name", "base",
                                 "--target-iter", "0", *FAST], stdout=subprocess.PIPE, stderr=err, text=True, env=env,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))   # even under nohup
        try:
            for line in proc.stdout:   # blocks until the trainer holds the lock and trains
                if line.startswith("training base_SAEHD"):
                    break
            assert proc.poll() is None, (tmp_path / "train.err").read_text()[-2000:]
            busy = "a dfl train is using this model"
            assert busy in _error_line(dfl_run("model", "rename", "-w", ws, "base", "other"))
            assert busy in _error_line(dfl_run("model", "delete", "-w", ws, "base", "--yes"))
            assert (ws / MODEL).is_dir() and not (ws / "model" / "other_SAEHD").exists()
        finally:
            proc.send_signal(signal.SIGINT)     # Ctrl+C: the trainer saves and stops
            proc.stdout.read()
            code = proc.wait(timeout=300)
    assert code == 130, (tmp_path / "train.err").read_text()[-2000:]
    assert "Traceback" not in (tmp_path / "train.err").read_text()
    assert ckpt.read_checkpoint(ws / MODEL).state["iteration"] >= 3

    before = _hashes(ws / MODEL)
    out = _ok(dfl_run("model", "delete", "-w", ws, "base", "--yes"))
    trashed = list((ws / TRASH_DIR).glob("*/model/*"))
    assert [t.name for t in trashed] == ["base_SAEHD"] and str(trashed[0]) in out
    assert len(list((ws / TRASH_DIR).iterdir())) == 1        # the refused delete left nothing there
    assert not (ws / MODEL).exists() and _hashes(trashed[0]) == before
    assert "No models" in _ok(dfl_run("model", "list", "-w", ws))


def test_restore_puts_a_backup_back_and_keeps_what_it_replaces(ws: Path, dfl_run) -> None:
    path = ws / MODEL
    backup = _hashes(path / ckpt.BACKUPS_DIR / "iter_000000002")
    live = _hashes(path, exclude=(ckpt.BACKUPS_DIR, ckpt.LOCK))
    (path / ckpt.WEIGHTS).unlink()
    out = _ok(dfl_run("model", "list", "-w", ws))
    assert "weights.safetensors is missing" in out and "`dfl model restore base`" in out

    out = _ok(dfl_run("model", "restore", "-w", ws, "base"))
    assert "Restored base_SAEHD from iter_000000002 (iteration 2)" in out
    assert ckpt.read_checkpoint(path).state["iteration"] == 2
    now = _hashes(path, exclude=(ckpt.BACKUPS_DIR, ckpt.LOCK))
    assert now == backup
    aside = next((ws / TRASH_DIR).glob("*/model/base_SAEHD"))
    assert {k: v for k, v in live.items() if k != ckpt.WEIGHTS} == _hashes(aside)


# -- 8: a damaged optimizer.pt, a missing state.json: said in one line, recovered ---------------------
def test_damaged_optimizer_state_is_said_and_training_goes_on(ws: Path, dfl_run) -> None:
    path = ws / MODEL
    (path / ckpt.OPTIMIZER).write_bytes((path / ckpt.OPTIMIZER).read_bytes()[:1000])
    faces = _hashes(ws, exclude=("model",))
    out = _ok(dfl_run("train", "-w", ws, "--name", "base", "--target-iter", "4", *FAST))
    said = [ln for ln in out.splitlines() if "optimizer.pt" in ln]
    assert len(said) == 1 and "damaged" in said[0] and "starts afresh" in said[0]
    assert _state(ws)["iteration"] == 4 and _hashes(ws, exclude=("model",)) == faces


def test_missing_state_recovers_iteration_and_history(ws: Path, dfl_run) -> None:
    path = ws / MODEL
    (path / ckpt.STATE).unlink()
    out = _ok(dfl_run("model", "list", "-w", ws))
    assert "base (SAEHD) DAMAGED: state.json is missing" in out
    out = _ok(dfl_run("train", "-w", ws, "--name", "base", "--target-iter", "4", *FAST))
    said = [ln for ln in out.splitlines() if "state.json" in ln]
    assert said == [f"{path / ckpt.STATE} is missing: iteration 3 from the weights' save record, "
                    "loss history from backup iter_000000002"]
    assert _state(ws)["iteration"] == 4 and _state(ws)["loss_history"]["iters"] == [1, 2, 4]

    # weights without a save record (an older dfl's): the iteration comes from the newest backup
    save_file(load_file(path / ckpt.WEIGHTS), path / ckpt.WEIGHTS)
    (path / ckpt.STATE).unlink()
    out = _ok(dfl_run("train", "-w", ws, "--name", "base", "--target-iter", "2", *FAST))
    assert "iteration 2 from backup iter_000000002 (the weights may be newer)" in out
    assert _state(ws)["iteration"] == 2


# -- 10: unreadable faces are skipped with a count; none usable is one line ----------------------------
def _bad_faces(folder: Path, good: Path) -> list[str]:
    """Six files that are not usable faces, made from a good one."""
    from dfl.faceset import read_raw_dict
    from dfl.faceset.container import write_meta
    from dfl.faceset.safe_pickle import dfl_dumps

    data = good.read_bytes()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "a_zero.jpg").write_bytes(b"")
    cv2.imwrite(str(folder / "b_plain.jpg"), np.full((64, 64, 3), 90, np.uint8))
    cv2.imwrite(str(folder / "c_plain.png"), np.full((64, 64, 3), 90, np.uint8))
    (folder / "d_truncated.jpg").write_bytes(data[:len(data) // 3])
    (folder / "e_pickle.jpg").write_bytes(write_meta(data, b"cos\nsystem\n(S'echo unsafe'\ntR."))
    raw = read_raw_dict(good)
    raw["face_type"] = "banana"
    (folder / "f_facetype.jpg").write_bytes(write_meta(data, dfl_dumps(raw)))
    return ["a_zero.jpg", "b_plain.jpg", "c_plain.png", "d_truncated.jpg", "e_pickle.jpg", "f_facetype.jpg"]


def test_unreadable_faces_are_skipped_with_a_count(ws: Path, tmp_path: Path, dfl_run) -> None:
    src = ws / "data_src" / "aligned"
    good = sorted(src.glob("*.jpg"))[0]
    names = _bad_faces(src, good)
    before = _hashes(ws, exclude=("model",))
    out = _ok(dfl_run("train", "-w", ws, "--name", "base", "--target-iter", "4", *FAST))
    said = [ln for ln in out.splitlines() if "skipped" in ln]
    assert len(said) == 1 and "skipped 6 of 12 faces" in said[0], out
    assert all(n in said[0] for n in names[:3])
    assert _state(ws)["iteration"] == 4 and _hashes(ws, exclude=("model",)) == before

    only_bad = tmp_path / "only_bad"
    _bad_faces(only_bad, good)
    model = _hashes(ws / MODEL)
    line = _error_line(dfl_run("train", "-w", ws, "--name", "base", "--target-iter", "5", "--src-faces", only_bad,
                               *FAST))
    assert "none of its 6 faces can be used" in line and "a_zero.jpg" in line
    assert _hashes(ws / MODEL) == model


# -- 11: one damaged state.json: the rest listed, the damaged one marked and never picked -----------
def test_damaged_state_is_marked_and_never_picked(ws: Path, dfl_run) -> None:
    shutil.copytree(ws / MODEL, ws / "model" / "other_SAEHD")
    (ws / MODEL / ckpt.STATE).write_text("{")          # the damaged one is the most recently saved
    before = _hashes(ws)
    for args in (("model", "list"), ("train", "--list")):
        out = _ok(dfl_run(*args, "-w", ws))
        assert "[0] other (SAEHD) iteration 3  - latest" in out
        assert "[!] base (SAEHD) DAMAGED: state.json: not valid JSON" in out
    assert _hashes(ws) == before

    out = _ok(dfl_run("train", "-w", ws, "--target-iter", "3", *FAST))
    assert "other_SAEHD is already at iteration 3 (--target-iter 3)" in out and "base" not in out
    out = _ok(dfl_run("merge", "-w", ws, "--non-interactive", "--device", "cpu"))
    assert "with other_SAEHD" in out and len(list((ws / "data_dst" / "merged").glob("*.png"))) == 6
    assert (ws / MODEL / ckpt.STATE).read_text() == "{"


# -- 12: a full disk during a save or a merge --------------------------------------------------------------
def test_full_disk_during_save_removes_the_partial_save(ws: Path, tmpfs, dfl_run) -> None:
    disk = tmpfs(160)
    w = disk / "ws"
    shutil.copytree(ws, w)
    before = _hashes(w)
    filler = _fill(disk, 4 << 20)            # less than one weights file
    line = _error_line(dfl_run("train", "-w", w, "--name", "base", "--target-iter", "4", *FAST))
    assert "No space left on device" in line and "half-written save was removed" in line
    assert "(iteration 3) is untouched" in line
    assert not (w / MODEL / ckpt.SAVING_DIR).exists()
    assert _hashes(w) == before
    assert ckpt.read_checkpoint(w / MODEL).state["iteration"] == 3

    filler.unlink()
    _ok(dfl_run("train", "-w", w, "--name", "base", "--target-iter", "4", *FAST))
    assert ckpt.read_checkpoint(w / MODEL).state["iteration"] == 4


def test_full_disk_during_merge_leaves_no_half_written_frame(ws: Path, tmpfs, dfl_run) -> None:
    disk = tmpfs(160)
    w = disk / "ws"
    shutil.copytree(ws, w)
    before = _hashes(w)
    filler = _fill(disk, 200 << 10)
    args = ("merge", "-w", w, "--name", "base", "--non-interactive", "--device", "cpu", "--workers", "1")
    line = _error_line(dfl_run(*args))
    assert "No space left on device" in line and "a rerun of the merge continues" in line
    merged = w / "data_dst" / "merged"
    written = [p for d in (merged, w / "data_dst" / "merged_mask") for p in d.iterdir()]
    assert not [p for p in written if p.name.startswith(".")], written           # no temp file left
    for p in merged.glob("*.png"):
        assert cv2.imread(str(p)) is not None, p                                  # every frame is whole
    assert len(list(merged.glob("*.png"))) < 6
    assert _hashes(w, exclude=("data_dst/merged", "data_dst/merged_mask")) == before

    filler.unlink()
    out = _ok(dfl_run(*args))
    assert len(list(merged.glob("*.png"))) == 6 and "Merged" in out


# -- 13: out-of-range options, a model too large, no faces: refused before anything is written -----
def test_bad_new_models_are_refused_before_anything_is_written(ws: Path, tmp_path: Path, dfl_run) -> None:
    before = _hashes(ws)
    new = ("train", "-w", ws, "--name", "big", "--model", "SAEHD", "--target-iter", "1", *FAST)
    cfg = tmp_path / "c.json"

    cfg.write_text(json.dumps({"resolution": 99999}))
    assert "option resolution: 99999 is outside 64-640" in _error_line(dfl_run(*new, "--config", cfg))
    cfg.write_text(json.dumps({"resolution": 640, "ae_dims": 1024, "e_dims": 256, "d_dims": 256, "batch_size": 256}))
    line = _error_line(dfl_run(*new, "--config", cfg))
    assert re.search(r"needs at least [\d.]+ GB, but \S+ has [\d.]+ GB free", line), line
    cfg.write_text(json.dumps(TINY))
    (tmp_path / "no_faces").mkdir()
    line = _error_line(dfl_run(*new, "--config", cfg, "--src-faces", tmp_path / "no_faces"))
    assert "no faces to train on" in line
    cfg.write_text(json.dumps({"batch_size": 9999}))      # a resumed model's changes are checked the same way
    line = _error_line(dfl_run("train", "-w", ws, "--name", "base", "--config", cfg, *FAST))
    assert "option batch_size: 9999 is outside 1-256" in line
    assert _hashes(ws) == before and not (ws / "model" / "big_SAEHD").exists()
