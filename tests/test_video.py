"""Video in and out: probe, extract-frames, video, cut-video, denoise-frames, and their bad inputs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

from dfl import video as vid
from dfl.errors import DflError
from dfl.workspace import MARKER, Workspace, list_images

ROTATED = "media/video/openmpf/new_face_video-90.mp4"


def assert_one_line_error(res, *, mentions: str | None = None) -> None:
    """The user sees one ``Error: ...`` line, no traceback, and a non-zero exit code."""
    assert res.code != 0, res
    lines = [ln for ln in res.err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, res.err
    assert lines[0].startswith("Error: "), res.err
    assert "Traceback" not in res.err + res.out
    if mentions:
        assert mentions in lines[0], lines[0]


def _container_frame_count(video: Path) -> int:
    """The frame count the container declares, read by OpenCV: a check independent of ffmpeg's decode."""
    cap = cv2.VideoCapture(str(video))
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    return n


def tree(root: Path) -> dict[str, int]:
    """Every file under ``root`` with its size: 'nothing deleted or changed' is equality of two trees."""
    return {str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*")) if p.is_file()}


# -- probing -----------------------------------------------------------------------------------------
def test_probe_demo_videos(demo_workspace_session: Workspace) -> None:
    src = vid.probe(demo_workspace_session.require_video("src"))
    dst = vid.probe(demo_workspace_session.require_video("dst"))
    assert (src.width, src.height, src.fps, src.has_audio) == (320, 320, Fraction(25), False)
    assert (dst.width, dst.height, dst.fps, dst.has_audio) == (384, 288, Fraction(25), True)
    assert dst.duration == pytest.approx(3.0, abs=0.05)
    assert dst.estimated_frames == 75 == vid.count_frames(dst.path)


def test_probe_parses_older_ffmpeg_output(tmp_path: Path) -> None:
    """ffmpeg 4 printed rotation as a 'rotate' tag and NTSC rates as 29.97; both must be understood."""
    text = """Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'x.mov':
  Metadata:
    major_brand     : qt
    comment         : first line
                    : second line
  Duration: 00:01:02.50, start: 0.000000, bitrate: 1000 kb/s
    Stream #0:0(und): Video: h264 (High) (avc1 / 0x31637661), yuv420p(tv, bt709), 1920x1080, 900 kb/s, 29.97 fps, 29.97 tbr, 600 tbn, 1200 tbc (default)
    Metadata:
      rotate          : 90
      handler_name    : Core Media Video
    Stream #0:1(und): Audio: aac (LC) (mp4a / 0x6134706D), 44100 Hz, mono, fltp, 64 kb/s (default)
At least one output file must be specified
"""
    info = vid._parse_probe(tmp_path / "x.mov", text)
    assert (info.width, info.height, info.coded_width, info.coded_height) == (1080, 1920, 1920, 1080)
    assert info.rotation == 90 and info.fps == Fraction(30000, 1001) and info.audio_streams == 1
    assert info.duration == pytest.approx(62.5)
    assert info.metadata["comment"] == "first line\nsecond line"


@pytest.mark.parametrize("text, expected", [("12", 12.0), ("1:30", 90.0), ("00:01:30.500", 90.5), ("", None)])
def test_parse_time(text: str, expected: float | None) -> None:
    assert vid.parse_time(text) == expected


def test_parse_time_rejects_garbage() -> None:
    with pytest.raises(DflError):
        vid.parse_time("1:2:3:4")
    with pytest.raises(DflError):
        vid.parse_time("soon")


# -- extract-frames ----------------------------------------------------------------------------------
def test_extract_frames_both_formats_match_frame_count(demo_workspace: Workspace, dfl_run) -> None:
    ws = demo_workspace
    res = dfl_run("extract-frames", "src", "--workspace", ws.root)
    assert res.code == 0, res.err
    assert "75 frames" in res.out
    src = list_images(ws.data_src)
    video = ws.require_video("src")
    assert len(src) == vid.count_frames(video) == _container_frame_count(video) == 75
    assert src[0].name == "00001.png" and src[-1].name == "00075.png"
    assert cv2.imread(str(src[0])).shape == (320, 320, 3)

    res = dfl_run("extract-frames", "dst", "--workspace", ws.root, "--format", "jpg")
    assert res.code == 0, res.err
    dst = list_images(ws.data_dst)
    assert len(dst) == vid.count_frames(ws.require_video("dst")) and dst[0].name == "00001.jpg"
    assert cv2.imread(str(dst[0])).shape == (288, 384, 3)
    assert not [p for p in ws.data_dst.iterdir() if p.name.startswith(".")]  # no work folder left behind


def test_extract_frames_fps_and_overwrite(demo_workspace: Workspace, dfl_run) -> None:
    ws = demo_workspace
    (ws.data_src / "aligned" / "00001_0.jpg").write_bytes(b"a face")
    assert dfl_run("extract-frames", "src", "-w", ws.root, "--fps", "10", "--format", "jpg").code == 0
    assert abs(len(list_images(ws.data_src)) - 30) <= 1

    res = dfl_run("extract-frames", "src", "-w", ws.root)  # frames there, no terminal to ask: refuse
    assert_one_line_error(res, mentions="--overwrite")
    assert all(p.suffix == ".jpg" for p in list_images(ws.data_src))

    assert dfl_run("extract-frames", "src", "-w", ws.root, "--fps", "5", "--overwrite").code == 0
    frames = list_images(ws.data_src)
    assert abs(len(frames) - 15) <= 1 and all(p.suffix == ".png" for p in frames)  # old jpgs replaced
    assert (ws.data_src / "aligned" / "00001_0.jpg").read_bytes() == b"a face"  # subfolders untouched


def test_extract_frames_honours_rotation_flag(shared_dir: Path, tmp_path: Path) -> None:
    """A phone video stored sideways (480x640 coded, display matrix -90 deg) comes out upright.

    Upright here is landscape, 640 wide x 480 high: checked against OpenCV's own auto-rotation.
    """
    video = shared_dir / ROTATED
    if not video.is_file():
        pytest.skip(f"{video} not available")
    info = vid.probe(video)
    assert (info.coded_width, info.coded_height, abs(info.rotation)) == (480, 640, 90)
    assert (info.width, info.height) == (640, 480)
    n = vid.extract_frames(video, tmp_path / "frames", fmt="jpg", desc=None)
    assert n == vid.count_frames(video) == _container_frame_count(video)
    frames = list_images(tmp_path / "frames")
    first = cv2.imread(str(frames[0]))
    assert first.shape == (480, 640, 3)

    cap = cv2.VideoCapture(str(video))
    cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)
    ok, upright = cap.read()
    cap.release()
    if not ok or upright.shape != first.shape:
        pytest.skip("this OpenCV build cannot auto-rotate")
    assert np.abs(upright.astype(int) - first.astype(int)).mean() < 8


# -- frames -> video ---------------------------------------------------------------------------------
def _merged_from_frames(ws: Workspace, n: int | None = None) -> None:
    """Stand-in merge output: the extracted dst frames, copied to merged/ (and grey masks)."""
    ws.merged_dir.mkdir(parents=True, exist_ok=True)
    for p in list_images(ws.data_dst)[:n]:
        shutil.copy(p, ws.merged_dir / p.name)


def test_video_matches_dst_frames_duration_and_audio(demo_frames_session: Workspace, copy_workspace,
                                                      dfl_run) -> None:
    ws = copy_workspace(demo_frames_session)
    _merged_from_frames(ws)
    res = dfl_run("video", "-w", ws.root)
    assert res.code == 0, res.err
    dst, out = vid.probe(ws.require_video("dst")), vid.probe(ws.result)
    assert abs(vid.count_frames(ws.result) - vid.count_frames(dst.path)) <= 1
    assert abs(out.duration - dst.duration) <= 1 / 25 + 1e-6
    assert out.has_audio and out.fps == dst.fps and (out.width, out.height) == (384, 288)
    assert "synthetic face" in out.metadata.get("comment", "")  # AI-modified mark, on by default
    assert not ws.result_mask.exists()
    assert not [p for p in ws.root.iterdir() if p.name.startswith(".") and p.name != MARKER]  # no temporaries


def test_video_lossless_writes_mask_video(demo_frames_session: Workspace, copy_workspace, dfl_run) -> None:
    ws = copy_workspace(demo_frames_session)
    _merged_from_frames(ws, 10)
    ws.merged_mask_dir.mkdir()
    for p in list_images(ws.merged_dir):
        cv2.imwrite(str(ws.merged_mask_dir / p.name), np.full((288, 384), 255, np.uint8))
    res = dfl_run("video", "-w", ws.root, "--lossless")
    assert res.code == 0, res.err
    assert vid.count_frames(ws.result) == 10 and vid.count_frames(ws.result_mask) == 10
    assert not vid.probe(ws.result_mask).has_audio
    res = dfl_run("video", "-w", ws.root, "--lossless", "--no-label", "--no-mask")
    assert res.code == 0, res.err
    assert "synthetic" not in vid.probe(ws.result).metadata.get("comment", "")
    # lossless: the decoded frame is the merged frame (RGB H.264; every frame: test_video_output.py)
    cap = cv2.VideoCapture(str(ws.result))
    ok, decoded = cap.read()
    cap.release()
    assert ok and np.array_equal(decoded, cv2.imread(str(list_images(ws.merged_dir)[0])))


def test_frames_to_video_metadata_odd_size_and_no_audio(tmp_path: Path) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(5):
        cv2.imwrite(str(frames / f"{i + 1:05d}.png"), np.full((33, 47, 3), 40 * i, np.uint8))
    out = tmp_path / "out.mp4"
    n = vid.frames_to_video(frames, out, fps=Fraction(30000, 1001),
                            metadata={"comment": "synthetic media", "dfl_synthetic": "1"}, desc=None)
    info = vid.probe(out)
    assert n == 5 and vid.count_frames(out) == 5 and not info.has_audio
    assert (info.width, info.height) == (48, 34) and info.fps == Fraction(30000, 1001)
    assert info.metadata["comment"] == "synthetic media" and info.metadata["dfl_synthetic"] == "1"
    assert (out.stat().st_mode & 0o777) == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# -- cut and denoise ---------------------------------------------------------------------------------
def test_cut_video(demo_workspace: Workspace, dfl_run) -> None:
    res = dfl_run("cut-video", "-w", demo_workspace.root, "--from", "0.5", "--to", "00:00:01.500")
    assert res.code == 0, res.err
    cut = demo_workspace.root / "data_dst_cut.mp4"
    info = vid.probe(cut)
    assert abs(vid.count_frames(cut) - 25) <= 1 and info.has_audio
    assert demo_workspace.require_video("dst").name == "data_dst.mp4"  # the cut does not shadow the original
    assert_one_line_error(dfl_run("cut-video", "-w", demo_workspace.root, "--from", "2", "--to", "1"))


def test_denoise_frames_in_place(demo_frames_session: Workspace, tmp_path: Path, dfl_run) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for p in list_images(demo_frames_session.data_dst)[:8]:
        noisy = cv2.imread(str(p)).astype(int) + rng.integers(-25, 26, (288, 384, 3))
        cv2.imwrite(str(folder / p.name), np.clip(noisy, 0, 255).astype(np.uint8))
    before = {p.name: cv2.imread(str(p)) for p in list_images(folder)}
    res = dfl_run("denoise-frames", "--input", folder, "-w", tmp_path, "--factor", "10")
    assert res.code == 0, res.err
    after = {p.name: cv2.imread(str(p)) for p in list_images(folder)}
    assert after.keys() == before.keys() and sorted(os.listdir(folder)) == sorted(before)
    name = "00004.png"
    roughness = lambda im: np.abs(np.diff(im.astype(int), axis=1)).mean()  # noqa: E731
    assert roughness(after[name]) < 0.8 * roughness(before[name])


# -- bad input ---------------------------------------------------------------------------------------
def test_missing_video(tmp_path: Path, dfl_run) -> None:
    (tmp_path / "data_src").mkdir()
    assert_one_line_error(dfl_run("extract-frames", "src", "-w", tmp_path), mentions="data_src")
    assert_one_line_error(dfl_run("extract-frames", "dst", "-w", tmp_path, "-i", tmp_path / "nope.mp4"),
                          mentions="nope.mp4")
    assert_one_line_error(dfl_run("cut-video", tmp_path / "nope.mp4", "-w", tmp_path), mentions="nope.mp4")


def test_not_a_video_keeps_existing_frames(demo_frames_session: Workspace, copy_workspace, dfl_run) -> None:
    ws = copy_workspace(demo_frames_session)
    ws.require_video("dst").write_text("this is not a video\n")
    before = tree(ws.root)
    assert_one_line_error(dfl_run("extract-frames", "dst", "-w", ws.root, "--overwrite"), mentions="not a video")
    assert_one_line_error(dfl_run("cut-video", "dst", "-w", ws.root), mentions="not a video")
    _merged_from_frames(ws, 3)
    assert_one_line_error(dfl_run("video", "-w", ws.root), mentions="not a video")
    (ws.root / "data_src.mp4").write_bytes(cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    assert_one_line_error(dfl_run("extract-frames", "src", "-w", ws.root, "--overwrite"))
    after = tree(ws.root)
    assert {k: v for k, v in after.items() if k in before and k != "data_src.mp4"} == \
        {k: v for k, v in before.items() if k != "data_src.mp4"}


def test_empty_frames_folder(demo_workspace: Workspace, dfl_run) -> None:
    ws = demo_workspace
    ws.merged_dir.mkdir(parents=True)
    ws.result.write_bytes(b"previous result")
    assert_one_line_error(dfl_run("video", "-w", ws.root), mentions="merged")
    assert_one_line_error(dfl_run("denoise-frames", "dst", "-w", ws.root), mentions="data_dst")
    assert ws.result.read_bytes() == b"previous result"


def _as_unprivileged(cmd: list[str]) -> list[str] | None:
    """Root ignores file modes; drop the capabilities that let it, or give up when that is impossible."""
    if os.geteuid() != 0:
        return cmd
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search", "--", *cmd]


def test_unwritable_output_folder(demo_frames_session: Workspace, copy_workspace, tmp_path: Path) -> None:
    ws = copy_workspace(demo_frames_session)
    _merged_from_frames(ws, 3)
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "keep.txt").write_text("keep")
    os.chmod(locked, 0o555)
    try:
        for args, what in ((["extract-frames", "src", "-o", locked / "frames", "--overwrite"], "locked"),
                           (["video", "-o", locked / "result.mp4"], "locked")):
            cmd = _as_unprivileged([sys.executable, "-m", "dfl", *map(str, args), "-w", str(ws.root)])
            if cmd is None:
                pytest.skip("running as root without setpriv: cannot make a folder unwritable")
            proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
            lines = proc.stderr.strip().splitlines()
            assert proc.returncode == 1 and len(lines) == 1 and lines[0].startswith("Error: "), proc.stderr
            assert what in lines[0] and "Traceback" not in proc.stderr
        assert sorted(os.listdir(locked)) == ["keep.txt"]
    finally:
        os.chmod(locked, 0o755)


def test_output_folder_is_a_file(demo_frames_session: Workspace, copy_workspace, dfl_run, tmp_path: Path) -> None:
    ws = copy_workspace(demo_frames_session)
    _merged_from_frames(ws, 3)
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    assert_one_line_error(dfl_run("video", "-w", ws.root, "-o", blocker / "result.mp4"), mentions="blocker")
    assert_one_line_error(dfl_run("extract-frames", "dst", "-w", ws.root, "-o", blocker), mentions="blocker")
    assert blocker.read_text() == "x"


def test_workspace_path_is_a_file(tmp_path: Path, dfl_run) -> None:
    f = tmp_path / "workspace"
    f.write_text("not a folder")
    for args in (["extract-frames", "src"], ["video"], ["clear", "--yes"], ["demo"], ["denoise-frames"]):
        assert_one_line_error(dfl_run(*args, "-w", f), mentions="workspace")
    assert f.read_text() == "not a folder"
