"""``dfl video`` writes what it says: --lossless decodes to exactly the merged frames, -o takes the mask
video along, H.265 is tagged hvc1 for Apple's players; ``clear --videos`` moves dfl's cuts too (issue 21)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from dfl import video as vid
from dfl.demo import MARKER_NAME as DEMO_MARKER
from dfl.workspace import Workspace, list_images


def _decode(video: Path, width: int, height: int) -> np.ndarray:
    """Every frame of ``video`` as BGR uint8, decoded by ffmpeg itself (N x H x W x 3)."""
    raw = subprocess.run([vid.ffmpeg_exe(), "-v", "error", "-i", str(video), "-map", "0:v:0", "-f", "rawvideo",
                          "-pix_fmt", "bgr24", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, height, width, 3)


def _merged(ws: Workspace, n: int) -> list[Path]:
    """Stand-in merge output: n dst frames in merged/, and masks (grey levels, not just 0/255) in merged_mask/."""
    ws.merged_dir.mkdir(parents=True, exist_ok=True)
    ws.merged_mask_dir.mkdir(parents=True, exist_ok=True)
    frames = []
    for i, p in enumerate(list_images(ws.data_dst)[:n]):
        shutil.copy(p, ws.merged_dir / p.name)
        mask = np.zeros((288, 384), np.uint8)
        cv2.circle(mask, (190 + i, 140), 90, 255, -1)
        cv2.imwrite(str(ws.merged_mask_dir / p.name), cv2.GaussianBlur(mask, (31, 31), 0))
        frames.append(ws.merged_dir / p.name)
    return frames


def test_lossless_video_decodes_to_exactly_the_merged_frames(demo_frames_session: Workspace, copy_workspace,
                                                             dfl_run) -> None:
    ws = copy_workspace(demo_frames_session)
    frames = _merged(ws, 8)
    res = dfl_run("video", "-w", ws.root, "--lossless")
    assert res.code == 0, res.err
    assert "8 frames" in res.out and "(lossless)" in res.out
    decoded = _decode(ws.result, 384, 288)
    expected = np.stack([cv2.imread(str(p)) for p in frames])
    assert decoded.shape == expected.shape and np.array_equal(decoded, expected)
    info = vid.probe(ws.result)
    assert info.has_audio and info.codec_tag == "avc1"       # an mp4 with H.264 (RGB, High 4:4:4)
    masks = _decode(ws.result_mask, 384, 288)
    expected_masks = np.stack([cv2.imread(str(ws.merged_mask_dir / p.name)) for p in frames])
    assert np.array_equal(masks, expected_masks)


@pytest.mark.parametrize("codec", ["libx264", "libx265", "libvpx-vp9", "ffv1"])
def test_every_lossless_codec_is_exact_at_an_odd_size(tmp_path: Path, codec: str) -> None:
    """Noise is the hardest case for a lossy path; odd sizes must not be padded (4:4:4 needs no even size)."""
    folder = tmp_path / "frames"
    folder.mkdir()
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (37, 51, 3), np.uint8) for _ in range(4)]
    for i, f in enumerate(frames):
        cv2.imwrite(str(folder / f"{i + 1:05d}.png"), f)
    out = tmp_path / "out.mkv"
    assert vid.frames_to_video(folder, out, fps=25, codec=codec, lossless=True, desc=None) == 4
    assert np.array_equal(_decode(out, 51, 37), np.stack(frames))


def test_a_codec_without_lossless_mode_is_refused_in_one_line(demo_frames_session: Workspace, copy_workspace,
                                                                dfl_run) -> None:
    ws = copy_workspace(demo_frames_session)
    _merged(ws, 2)
    res = dfl_run("video", "-w", ws.root, "--lossless", "--codec", "mpeg4")
    assert res.code == 1 and res.err.count("\n") == 1 and "--codec mpeg4: no lossless mode" in res.err
    assert not ws.result.exists()


def test_output_option_puts_the_mask_video_beside_it(demo_frames_session: Workspace, copy_workspace,
                                                      tmp_path: Path, dfl_run) -> None:
    ws = copy_workspace(demo_frames_session)
    _merged(ws, 3)
    ws.result_mask.write_bytes(b"an earlier mask video")
    out_dir = tmp_path / "exports"
    out_dir.mkdir()
    res = dfl_run("video", "-w", ws.root, "-o", out_dir / "take2.mp4")
    assert res.code == 0, res.err
    assert vid.count_frames(out_dir / "take2.mp4") == 3 and vid.count_frames(out_dir / "take2_mask.mp4") == 3
    assert str(out_dir / "take2_mask.mp4") in res.out and "3 mask frames" in res.out
    assert ws.result_mask.read_bytes() == b"an earlier mask video" and not ws.result.exists()


def test_h265_is_tagged_hvc1_for_apple_players(demo_frames_session: Workspace, copy_workspace, dfl_run) -> None:
    ws = copy_workspace(demo_frames_session)
    _merged(ws, 2)
    res = dfl_run("video", "-w", ws.root, "--codec", "libx265", "--no-mask")
    assert res.code == 0, res.err
    info = vid.probe(ws.result)
    assert (info.video_codec, info.codec_tag) == ("hevc", "hvc1")
    res = dfl_run("cut-video", "-w", ws.root, "--to", "0.2", "--codec", "libx265")
    assert res.code == 0, res.err
    assert vid.probe(ws.root / "data_dst_cut.mp4").codec_tag == "hvc1"
    assert vid.probe(ws.require_video("dst")).codec_tag == "avc1"   # H.264 keeps its own tag


def test_clear_videos_moves_the_cuts_dfl_wrote_to_the_trash(demo_workspace: Workspace, dfl_run) -> None:
    ws = demo_workspace
    ws.marker.unlink(missing_ok=True)
    (ws.root / DEMO_MARKER).unlink()                           # a user's workspace: videos, then a cut
    res = dfl_run("cut-video", "-w", ws.root, "--to", "0.2")
    assert res.code == 0, res.err
    cut = (ws.root / "data_dst_cut.mp4").read_bytes()
    res = dfl_run("clear", "--yes", "-w", ws.root)             # without --videos the videos and the cut stay
    assert res.code == 0, res.err
    assert (ws.root / "data_dst_cut.mp4").is_file() and ws.video("dst") is not None
    res = dfl_run("clear", "--yes", "--videos", "-w", ws.root)
    assert res.code == 0, res.err
    assert not (ws.root / "data_dst_cut.mp4").exists() and ws.video("src") is None and ws.video("dst") is None
    trash = next(ws.trash_dir.iterdir())
    assert (trash / "data_dst_cut.mp4").read_bytes() == cut and (trash / "data_dst.mp4").is_file()
    assert "moved 3 items" in res.out
