"""Messages that say what happened (issue 21, outside training): a device the build lacks, a missing
--weights-dir, Ctrl+C / SIGTERM in extract-faces, no empty progress bars, counts in correct English."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dfl.extract import STATE_FILE
from dfl.progress import progress_bar
from dfl.text import plural
from dfl.workspace import Workspace, list_images

REPO = Path(__file__).resolve().parents[1]
# a device torch knows by name that this machine cannot use (MPS off Apple silicon, else a 99th GPU)
UNUSABLE = "mps" if not torch.backends.mps.is_available() else "cuda:99"


def _command(args: tuple[str, ...]) -> str:
    """A test id: the command's words before its options."""
    words = []
    for a in args:
        if a.startswith("-"):
            break
        words.append(a)
    return " ".join(words)


def _one_line_error(res) -> str:
    assert res.code == 1, (res.code, res.out[-500:], res.err[-2000:])
    assert "Traceback" not in res.err and res.err.count("\n") == 1 and res.err.startswith("Error: "), res.err
    return res.err.strip()


@pytest.mark.parametrize("args", [
    ("extract-faces", "src", "--non-interactive"),
    ("faceset", "sort", "src", "--by", "absdiff"),
    ("faceset", "enhance", "src"),
    ("xseg", "apply", "src", "--generic"),
    ("merge", "--name", "demo", "--non-interactive"),
    ("train", "--name", "demo", "--target-iter", "5", "--non-interactive"),
], ids=_command)
def test_a_device_the_build_lacks_is_one_line_for_every_command(demo_run_session, copy_workspace, dfl_run,
                                                                 args) -> None:
    ws = copy_workspace(demo_run_session[0])
    line = _one_line_error(dfl_run(*args, "-w", ws.root, "--device", UNUSABLE))
    assert line.startswith(f"Error: --device {UNUSABLE}: ") and "use --device cpu or auto" in line


def test_demo_run_checks_the_device_before_it_clears_anything(tmp_path: Path, dfl_run) -> None:
    line = _one_line_error(dfl_run("demo", "--run", "-w", tmp_path / "ws", "--device", UNUSABLE))
    assert f"--device {UNUSABLE}" in line
    assert not (tmp_path / "ws" / "data_src").exists()          # nothing extracted, nothing cleared


def test_a_device_name_torch_does_not_know_is_one_line(demo_frames_session: Workspace, copy_workspace,
                                                       dfl_run) -> None:
    ws = copy_workspace(demo_frames_session)
    line = _one_line_error(dfl_run("extract-faces", "src", "-w", ws.root, "--non-interactive", "--device", "gpu0"))
    assert "--device gpu0: not a device name" in line


@pytest.mark.parametrize("args", [
    ("extract-faces", "src", "--non-interactive"),
    ("faceset", "enhance", "src"),
    ("xseg", "apply", "src", "--generic"),
    ("merge", "--name", "demo", "--non-interactive"),
], ids=_command)
def test_a_weights_dir_that_does_not_exist_is_an_error(demo_run_session, copy_workspace, tmp_path: Path, dfl_run,
                                                       args) -> None:
    ws = copy_workspace(demo_run_session[0])
    missing = tmp_path / "wieghts"                               # a typo of the user's
    line = _one_line_error(dfl_run(*args, "-w", ws.root, "--weights-dir", missing))
    assert f"{missing}: --weights-dir no such folder" in line
    assert not (ws.data_src / "aligned_enhanced").exists()


# -- Ctrl+C and SIGTERM in extract-faces: the summary of what was done, and a resumable stop ----------------
def _frames_workspace(demo_frames_session: Workspace, root: Path) -> Workspace:
    ws = Workspace(root)
    ws.data_src.mkdir(parents=True)
    for p in list_images(demo_frames_session.data_src):   # 75 frames of 320x320
        shutil.copy(p, ws.data_src / p.name)
    return ws


def _stop_extraction(ws: Workspace, sig: signal.Signals) -> tuple[int, str, str]:
    """Run ``dfl extract-faces src`` in a real process, wait (reading its progress bar) until it has written
    a frame's faces, send ``sig``; returns (exit code, stdout, stderr)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(REPO))
    env.pop("DFL_WORKSPACE", None)
    cmd = [sys.executable, "-m", "dfl", "extract-faces", "src", "-w", str(ws.root), "--non-interactive",
           "--detect-every", "1", "--no-output-debug"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # a terminal's Ctrl+C
    seen = b""
    try:
        while not re.search(rb"\| *[1-9]\d*/75 \[", seen):   # the bar says a frame is done: blocks on the child
            chunk = proc.stderr.read1(4096)
            assert chunk, f"extract-faces ended before it was stopped: {seen.decode(errors='replace')[-2000:]}"
            seen += chunk
        proc.send_signal(sig)
        out, rest = proc.communicate(timeout=60)     # it stops at its next frame: seconds
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out.decode(), (seen + rest).decode(errors="replace")


@pytest.mark.parametrize("sig, code, said", [(signal.SIGINT, 130, "Ctrl+C"), (signal.SIGTERM, 143, "SIGTERM")],
                         ids=["ctrl-c", "sigterm"])
def test_extract_faces_stopped_prints_what_it_did_and_resumes(demo_frames_session: Workspace, tmp_path: Path,
                                                              dfl_run, sig, code, said) -> None:
    ws = _frames_workspace(demo_frames_session, tmp_path / "ws")
    rc, out, err = _stop_extraction(ws, sig)
    assert rc == code, err[-2000:]
    assert "Traceback" not in err and "Aborted." not in err
    m = re.fullmatch(r"extract-faces src: (\d+) frames? \(0 already done\), (\d+) faces?, .* -> (.+)\n", out)
    assert m, out
    done, faces = int(m.group(1)), int(m.group(2))
    assert 1 <= done < 75 and faces == done                          # one face per demo frame
    last = err.strip().splitlines()[-1]
    assert last == (f"extract-faces src: stopped by {said} with {plural(75 - done, 'frame')} left; run the same "
                    "command again to continue"), last
    state = json.loads((ws.aligned_dir("src") / STATE_FILE).read_text())
    assert len(state["done"]) == done and len(list(ws.aligned_dir("src").glob("*.jpg"))) == faces
    if sig == signal.SIGTERM:   # the rerun goes on from there (once is enough: it takes seconds)
        res = dfl_run("extract-faces", "src", "-w", ws.root, "--non-interactive", "--no-output-debug")
        assert res.code == 0, res.err
        assert f"{plural(75 - done, 'frame')} ({done} already done), {plural(75 - done, 'face')}," in res.out
        assert len(list(ws.aligned_dir("src").glob("*.jpg"))) == 75


# -- progress bars and counts --------------------------------------------------------------------------------
def test_no_progress_bar_for_no_work() -> None:
    assert progress_bar(total=0, desc="Merging", unit="frame").disable
    assert progress_bar([], desc="reading faces", unit="face").disable
    assert not progress_bar(total=3, desc="Merging", unit="frame").disable
    assert not progress_bar(desc="Writing", unit="frame").disable      # no total: it counts as it goes
    assert progress_bar(total=3, desc="x", progress=False).disable


def test_plural() -> None:
    assert [plural(n, "face") for n in (0, 1, 2)] == ["0 faces", "1 face", "2 faces"]
    assert plural(1, "mask frame") == "1 mask frame" and plural(3, "older copy") == "3 older copies"
    assert plural(2, "match") == "2 matches" and plural(2, "day") == "2 days" and plural(2, "PNG") == "2 PNGs"
    assert plural(5, "person", "people") == "5 people"


def test_summaries_count_in_correct_english(demo_frames_session: Workspace, tmp_path: Path, dfl_run) -> None:
    ws = Workspace(tmp_path / "ws")
    ws.data_src.mkdir(parents=True)
    shutil.copy(list_images(demo_frames_session.data_src)[0], ws.data_src / "00001.png")
    res = dfl_run("extract-faces", "src", "-w", ws.root, "--non-interactive")
    assert res.code == 0, res.err
    assert res.out.startswith("extract-faces src: 1 frame (0 already done), 1 face, 0 frames without faces, "
                              "0 detections rejected as not faces, 0 unreadable;"), res.out
    ws.merged_dir.mkdir(parents=True)
    shutil.copy(list_images(demo_frames_session.data_dst)[0], ws.merged_dir / "00001.png")
    res = dfl_run("video", "-w", ws.root, "--fps", "25")
    assert res.code == 0, res.err
    assert res.out.startswith("video: 1 frame at 25 fps -> "), res.out
    res = dfl_run("clear", "-w", ws.root, "--yes")
    assert res.code == 0, res.err
    # the merged frame deleted; the frame (its video is gone), the face and result.mp4 moved to the trash
    assert "clear: deleted 1 generated file in" in res.out and "moved 3 items" in res.out, res.out


def test_a_stop_waits_for_the_next_check_and_a_second_signal_forces_it() -> None:
    """Inside stop_between_steps the first SIGTERM only sets the flag (no exception where a lock may be
    half taken); check() raises Terminated; a second signal raises at once; the old handlers come back."""
    from dfl.interrupt import Terminated, stop_between_steps

    before = signal.getsignal(signal.SIGTERM)
    with stop_between_steps() as check:
        check()                                       # nothing asked yet
        os.kill(os.getpid(), signal.SIGTERM)
        with pytest.raises(Terminated):
            check()
        with pytest.raises(Terminated):
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):                     # the handler runs between bytecodes of this thread
                pass
    assert signal.getsignal(signal.SIGTERM) is before
