"""``steps/``: DFL-named scripts, one ``dfl`` call each, on the workspace next to them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dfl.video import count_frames
from dfl.workspace import Workspace, list_images

ROOT = Path(__file__).resolve().parents[1]
STEPS = ROOT / "steps"
EXPECTED = ["1_clear_workspace", "2_extract_images_from_video_data_src",
            "3_extract_images_from_video_data_dst_full_fps", "3_cut_video", "3_optional_denoise_data_dst_images",
            "8_merged_to_mp4", "8_merged_to_mp4_lossless"]


def test_every_step_has_sh_and_bat() -> None:
    for name in EXPECTED:
        sh, bat = STEPS / f"{name}.sh", STEPS / f"{name}.bat"
        assert sh.is_file() and bat.is_file(), name
        assert os.access(sh, os.X_OK), f"{sh} is not executable"
        assert sh.read_text().startswith("#!/bin/sh")
    for script in STEPS.glob("*.sh"):
        calls = [ln for ln in script.read_text().splitlines() if " dfl " in f" {ln} " and not ln.startswith("#")]
        assert len(calls) == 1, script
        assert (script.with_suffix(".bat")).is_file(), f"{script.name} has no .bat twin"
    for bat in STEPS.glob("*.bat"):
        assert "\r\n" in bat.read_bytes().decode(), f"{bat} needs CRLF line ends for cmd.exe"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DFL_WORKSPACE"}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(extra)
    return env


@pytest.mark.skipif(sys.platform == "win32", reason="the .sh steps are for Linux and macOS")
def test_frame_steps_run_on_the_workspace_next_to_them(demo_workspace_session: Workspace, tmp_path: Path) -> None:
    if shutil.which("dfl", path=_env()["PATH"]) is None:
        pytest.skip("the dfl console script is not installed (pip install -e .)")
    shutil.copytree(STEPS, tmp_path / "steps")
    ws = Workspace(tmp_path / "workspace")
    shutil.copytree(demo_workspace_session.root, ws.root)

    def step(name: str, *args: str, **env: str) -> subprocess.CompletedProcess:
        proc = subprocess.run([str(tmp_path / "steps" / f"{name}.sh"), *args], capture_output=True, text=True,
                              env=_env(**env), stdin=subprocess.DEVNULL, timeout=180)
        assert proc.returncode == 0, proc.stderr
        return proc

    step("2_extract_images_from_video_data_src", "--format", "jpg")
    step("3_extract_images_from_video_data_dst_full_fps", "--format", "jpg")
    assert len(list_images(ws.data_src)) == count_frames(ws.require_video("src")) == 75
    assert len(list_images(ws.data_dst)) == count_frames(ws.require_video("dst"))
    step("3_optional_denoise_data_dst_images")
    assert len(list_images(ws.data_dst)) == 75

    # $DFL_WORKSPACE points the same scripts somewhere else
    other = Workspace(tmp_path / "other")
    shutil.copytree(demo_workspace_session.root, other.root)
    step("3_cut_video", "--to", "1", DFL_WORKSPACE=str(other.root))
    assert (other.root / "data_dst_cut.mp4").is_file() and not (ws.root / "data_dst_cut.mp4").exists()

    ws.merged_dir.mkdir()
    for p in list_images(ws.data_dst)[:5]:
        shutil.copy(p, ws.merged_dir / p.name)
    step("8_merged_to_mp4")
    assert count_frames(ws.result) == 5

    step("1_clear_workspace", "--yes")
    assert not list_images(ws.data_src) and not ws.result.exists() and ws.video("dst") is not None


def test_help_lists_the_steps(dfl_run) -> None:
    res = dfl_run("--help")
    assert res.code == 0
    for command in ("clear", "extract-frames", "cut-video", "denoise-frames", "video", "demo"):
        assert f"  {command} " in res.out, command
