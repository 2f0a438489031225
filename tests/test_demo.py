"""``dfl demo``: offline demo videos with motion, lighting change and (dst) audio."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from dfl import video as vid
from dfl.workspace import Workspace, list_images

ROOT = Path(__file__).resolve().parents[1]


def test_demo_videos_move_and_change_light(demo_frames_session: Workspace) -> None:
    for side in ("src", "dst"):
        frames = [cv2.imread(str(p)).astype(np.float32) for p in list_images(demo_frames_session.frames_dir(side))]
        assert len(frames) == 75
        brightness = [f.mean() for f in frames]
        assert max(brightness) - min(brightness) > 20          # lighting changes over the clip
        step = np.mean([np.abs(a - b).mean() for a, b in zip(frames, frames[1:])])
        far = np.abs(frames[0] - frames[37]).mean()
        assert 0.5 < step < 0.3 * far  # moving, and smoothly: neighbours much closer than distant frames


def test_demo_has_a_face_where_expected(demo_frames_session: Workspace) -> None:
    """The portraits' faces stay in frame: a skin-coloured region near the centre of every 10th frame."""
    for side in ("src", "dst"):
        for p in list_images(demo_frames_session.frames_dir(side))[::10]:
            img = cv2.imread(str(p))
            h, w = img.shape[:2]
            centre = cv2.cvtColor(img[h // 3: 2 * h // 3, w // 3: 2 * w // 3], cv2.COLOR_BGR2YCrCb)
            skin = (centre[..., 1] > 135) & (centre[..., 1] < 180) & (centre[..., 2] > 85) & (centre[..., 2] < 135)
            assert skin.mean() > 0.25, p


def test_demo_refuses_to_replace_videos(demo_workspace: Workspace, dfl_run) -> None:
    before = demo_workspace.require_video("src").read_bytes()
    res = dfl_run("demo", "-w", demo_workspace.root)
    assert res.code == 1 and "--overwrite" in res.err and "Traceback" not in res.err
    assert demo_workspace.require_video("src").read_bytes() == before


def test_demo_script_writes_a_workspace(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_demo_workspace.py"), "-w", str(ws.root),
                           "--seconds", "0.4"], capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert "data_src.mp4" in proc.stdout and "data_dst.mp4" in proc.stdout
    assert vid.count_frames(ws.require_video("src")) == 10 == vid.count_frames(ws.require_video("dst"))
    assert vid.probe(ws.require_video("dst")).has_audio and ws.aligned_dir("src").is_dir()


# -- dfl demo --run: the whole workflow in one command ------------------------------------------------
STEP_PREFIXES = ("demo: data_src.mp4", "demo: data_dst.mp4", "clear:", "extract-frames src:", "extract-frames dst:",
                 "extract-faces src:", "extract-faces dst:", "train:", "merge:", "video:", "demo: done")


def _run_cli(*args: str | Path) -> tuple[int, str, str]:
    """``dfl ARGS`` in-process (no torch import per run), as the console script runs it."""
    import contextlib
    import io

    from dfl.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(a) for a in args])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def demo_run(demo_run_session: tuple[Workspace, str, str]) -> tuple[Workspace, str, str]:
    """conftest's ``dfl demo --run`` (10 frames a side, stopped by the clock at iteration 1), shared."""
    return demo_run_session


def test_demo_run_leaves_a_labelled_result_with_the_dst_frames_and_audio(demo_run: tuple[Workspace, str, str]) -> None:
    ws, out, _ = demo_run
    dst = ws.require_video("dst")
    assert vid.count_frames(ws.result) == vid.count_frames(dst) == 10
    info = vid.probe(ws.result)
    assert info.has_audio and info.fps == vid.probe(dst).fps
    assert "synthetic face" in info.metadata.get("comment", "") and "dfl" in info.metadata["comment"]
    # every step printed its one summary line, in workflow order, and the last line names the result
    lines = out.strip().splitlines()
    found = [next(i for i, line in enumerate(lines) if line.startswith(p)) for p in STEP_PREFIXES]
    assert found == sorted(found), out
    assert lines[-1].startswith("demo: done") and lines[-1].endswith(str(ws.result))
    assert "extract-faces src: 10 frames" in out and ", 10 faces," in out


def test_demo_run_trained_quick96_and_merged_the_face(demo_run: tuple[Workspace, str, str]) -> None:
    import json

    ws, out, err = demo_run
    model = ws.model_dir / "demo_Quick96"
    assert json.loads((model / "state.json").read_text())["iteration"] == 1      # stopped by the clock, saved
    assert (model / "weights.safetensors").is_file() and "time limit of" in out + err
    merged = list_images(ws.merged_dir)
    assert [p.name for p in merged] == [p.name for p in list_images(ws.data_dst)]
    frame, swapped = (cv2.imread(str(p)).astype(np.int16) for p in (ws.data_dst / "00001.png", merged[0]))
    changed = np.abs(frame - swapped).max(axis=2) > 0
    assert changed.mean() > 0.05                                   # the face area was replaced ...
    assert not changed[:, :10].any() and not changed[:, -10:].any()  # ... the frame's edges were not


def test_demo_run_refuses_a_workspace_with_other_work(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "mine")
    (ws.model_dir / "me_SAEHD").mkdir(parents=True)
    (ws.root / "data_src.mp4").write_bytes(b"my own footage")
    code, out, err = _run_cli("demo", "--run", "-w", ws.root, "--iterations", "1")
    assert code == 1 and "--overwrite" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert (ws.root / "data_src.mp4").read_bytes() == b"my own footage" and (ws.model_dir / "me_SAEHD").is_dir()
    assert not ws.data_src.exists() and ws.video("dst") is None


def test_demo_run_options_need_run(tmp_path: Path) -> None:
    code, _, err = _run_cli("demo", "-w", tmp_path / "ws", "--iterations", "3")
    assert code == 1 and "--iterations: only with --run" in err and not (tmp_path / "ws").exists()


def test_demo_pipeline_script_calls_demo_run(tmp_path: Path) -> None:
    """scripts/demo_pipeline.sh is `dfl demo --run` on its first argument, passing the other options on."""
    import shutil

    if shutil.which("sh") is None or shutil.which("dfl") is None:
        pytest.skip("needs sh and the dfl console script on PATH")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "data_dst.mov").write_bytes(b"my own footage")
    proc = subprocess.run(["sh", str(ROOT / "scripts" / "demo_pipeline.sh"), str(mine), "--iterations", "1"],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 1 and f"{mine}: holds data_dst.mov" in proc.stderr
    assert (mine / "data_dst.mov").read_bytes() == b"my own footage" and len(list(mine.iterdir())) == 1
    proc = subprocess.run(["sh", str(ROOT / "scripts" / "demo_pipeline.sh"), str(mine), "--minutes", "-1"],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2 and "--minutes" in proc.stderr


def test_demo_run_may_start_over_only_in_its_own_workspace(demo_workspace: Workspace) -> None:
    """A workspace `dfl demo` made is the demo's to replace; once the user swaps in a video, it is not."""
    from dfl.demo import is_demo_workspace
    from dfl.demo_run import check_target
    from dfl.errors import DflError

    assert is_demo_workspace(demo_workspace.root)
    check_target(demo_workspace)            # no error: --run regenerates and clears it without --overwrite
    demo_workspace.require_video("src").write_bytes(b"now my own footage")
    assert not is_demo_workspace(demo_workspace.root)
    with pytest.raises(DflError, match="--overwrite"):
        check_target(demo_workspace)
    check_target(demo_workspace, overwrite=True)
