"""``dfl demo``: offline demo videos with motion, lighting change and (dst) audio."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

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
