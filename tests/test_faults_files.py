"""Issue #20, workspaces, frames, videos, faces and temporaries: each fault reproduced through the CLI.

Every test checks the exit status, that the user sees one line and no traceback, and that every file the
user had is unchanged (content hashes before and after).  kill -9 cases run dfl as a subprocess.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import select
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from dfl import video as vid
from dfl.workspace import MARKER, Workspace, list_frames

ROOT = Path(__file__).resolve().parents[1]
LINUX = sys.platform.startswith("linux")


# -- helpers -----------------------------------------------------------------------------------------
def hashes(root: Path) -> dict[str, str]:
    """Every file under ``root`` (relative path -> sha256): 'unchanged' is equality of two of these."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()}


def assert_kept(before: dict[str, str], root: Path) -> None:
    """Each file of ``before`` is still at its place with the same content."""
    after = hashes(root)
    changed = {k for k, v in before.items() if after.get(k) != v}
    assert not changed, f"lost or changed: {sorted(changed)[:10]}"


def _messages(err: str) -> list[str]:
    """stderr lines without tqdm's progress bars (which a terminal draws over and clears)."""
    return [ln for ln in err.splitlines() if ln.strip() and not re.search(r"\[\d\d:\d\d", ln)]


def assert_one_line_error(res, mentions: str | None = None) -> str:
    assert res.code == 1, (res.code, res.out, res.err)
    lines = _messages(res.err)
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.err
    assert "Traceback" not in res.err + res.out
    if mentions:
        assert mentions in lines[0], lines[0]
    return lines[0]


def _subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("DFL_WORKSPACE", None)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _start_dfl(*args: str | Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "dfl", *map(str, args)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_subprocess_env(),
                            start_new_session=True)


def _read_until(proc: subprocess.Popen, marker: bytes) -> None:
    """Block on dfl's stderr until ``marker`` shows (its progress bar appears once ffmpeg is started)."""
    seen = b""
    while marker not in seen:
        chunk = os.read(proc.stderr.fileno(), 4096)
        assert chunk, f"dfl ended before {marker!r}: {seen.decode(errors='replace')[-2000:]}"
        seen += chunk


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(x) for x in f.read().split()]


def _wait_gone(pid: int, timeout: float) -> bool:
    """True when process ``pid`` ends within ``timeout`` seconds (a pidfd becomes readable when it exits)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(timeout * 1000))
    finally:
        os.close(fd)


def _kill_mid_ffmpeg(proc: subprocess.Popen, bar: bytes) -> int:
    """Freeze dfl and its ffmpeg child (so ffmpeg cannot finish by itself), kill -9 dfl; returns ffmpeg's pid."""
    _read_until(proc, bar)
    os.killpg(proc.pid, signal.SIGSTOP)   # dfl runs in its own process group, ffmpeg with it
    ffmpegs = _children(proc.pid)
    assert len(ffmpegs) == 1, ffmpegs
    proc.kill()
    proc.wait()
    proc.stderr.close()
    return ffmpegs[0]


def _reap(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


FRAMES = 20   # frames per side in ``frames_ws``


@pytest.fixture
def frames_ws(demo_workspace: Workspace, demo_frames_session: Workspace) -> Workspace:
    """The demo workspace with its first FRAMES frames of each side extracted."""
    for side in ("src", "dst"):
        for p in list_frames(demo_frames_session.frames_dir(side))[:FRAMES]:
            shutil.copy(p, demo_workspace.frames_dir(side) / p.name)
    return demo_workspace


def _merged_from_frames(ws: Workspace, n: int = FRAMES) -> None:
    """data_dst/merged/ as ``dfl video`` reads it: copies of the dst frames, then symlinks up to ``n``."""
    frames = list_frames(ws.data_dst)
    ws.merged_dir.mkdir()
    for i in range(n):
        dest = ws.merged_dir / f"{i + 1:05d}.png"
        if i < len(frames):
            shutil.copy(frames[i], dest)
        else:
            dest.symlink_to(frames[i % len(frames)])


# -- 2 and 5: what dfl clear may touch ---------------------------------------------------------------
def test_clear_refuses_a_folder_that_merely_has_a_model_subfolder(tmp_path: Path, dfl_run) -> None:
    proj = tmp_path / "proj"
    (proj / "model").mkdir(parents=True)
    (proj / "model" / "resnet.pt").write_text("w")
    (proj / "data_src").mkdir()
    (proj / "data_src" / "notes.txt").write_text("mine")
    before = hashes(proj)
    assert_one_line_error(dfl_run("clear", "-w", proj, "--yes"), mentions="does not look like a dfl workspace")
    assert_one_line_error(dfl_run("clear", "-w", proj, "--yes", "--models", "--videos"))
    assert hashes(proj) == before
    assert sorted(p.name for p in proj.iterdir()) == ["data_src", "model"]   # nothing created either


def test_clear_deletes_only_what_can_be_made_again_and_never_a_model_unasked(frames_ws: Workspace,
                                                                          dfl_run) -> None:
    ws = frames_ws
    faces = [ws.aligned_dir("src") / "00001_0.jpg", ws.aligned_dir("dst") / "00001_0.jpg"]
    for face in faces:
        face.write_bytes(b"a hand-sorted face")
    model = ws.model_dir / "me_SAEHD"
    model.mkdir(parents=True)
    for name, data in (("options.json", b"{}"), ("state.json", b"{}"), ("weights.safetensors", b"w" * 100)):
        (model / name).write_bytes(data)
    (ws.model_dir / "resnet.pt").write_bytes(b"someone's")
    ws.merged_dir.mkdir()
    shutil.copy(ws.data_dst / "00001.png", ws.merged_dir / "00001.png")
    (ws.merged_dir / "my_edit.psd").write_bytes(b"user file in merged/")
    (ws.data_src / "holiday.jpg").write_bytes(b"user photo among the frames")
    ws.result.write_bytes(b"a result")
    before = hashes(ws.root)

    res = dfl_run("clear", "-w", ws.root, "--yes")
    assert res.code == 0 and "Traceback" not in res.err, res.err
    line = res.out.strip()
    assert "\n" not in line and f"deleted {2 * FRAMES + 1} generated files" in line, line
    assert "kept 1 model in model/" in line, line
    after = hashes(ws.root)
    mine = [k for k in before if k.startswith("model/") or k.endswith(("holiday.jpg", "my_edit.psd"))
            or not k.startswith(("data_src/", "data_dst/", "result"))]
    assert all(after.get(k) == before[k] for k in mine), "a file of the user's or a model changed"
    assert not list_frames(ws.data_src) and not (ws.merged_dir / "00001.png").exists()
    # faces and the result are in the trash, byte for byte, where they were relative to the workspace
    trash = next(ws.trash_dir.iterdir())
    for rel in ("data_src/aligned/00001_0.jpg", "data_dst/aligned/00001_0.jpg", "result.mp4"):
        assert hashlib.sha256((trash / rel).read_bytes()).hexdigest() == before[rel]
    assert ws.aligned_dir("src").is_dir() and not any(ws.aligned_dir("src").iterdir())

    # models go only when asked, and then to the trash as well
    res = dfl_run("clear", "-w", ws.root, "--yes", "--models")
    assert res.code == 0, res.err
    assert not any(ws.model_dir.iterdir())
    newest = max(ws.trash_dir.iterdir())
    assert hashes(newest / "model") == {k[len("model/"):]: v for k, v in before.items() if k.startswith("model/")}


def test_clear_counts_a_workspace_by_what_dfl_made_there(tmp_path: Path, demo_frames_session: Workspace,
                                                        dfl_run) -> None:
    """Frames dfl numbered make a workspace without the marker (one extracted before it existed)."""
    ws = Workspace(tmp_path / "old")
    ws.data_dst.mkdir(parents=True)
    shutil.copy(demo_frames_session.data_dst / "00001.png", ws.data_dst / "00001.png")
    (ws.root / "data_dst.mp4").write_bytes(b"video")
    res = dfl_run("clear", "-w", ws.root, "--yes")
    assert res.code == 0 and not (ws.data_dst / "00001.png").exists() and ws.marker.is_file()
    assert (ws.root / "data_dst.mp4").read_bytes() == b"video"


def test_demo_rerun_continues_its_model(demo_run_session, tmp_path: Path, dfl_run) -> None:
    # hard links: the model is 300 MB, and every dfl write replaces a file (rename), never edits one in place
    ws = Workspace(tmp_path / "ws")
    shutil.copytree(demo_run_session[0].root, ws.root, symlinks=True, copy_function=os.link)
    model = ws.model_dir / "demo_Quick96"
    before = hashes(model)
    res = dfl_run("demo", "--run", "-w", ws.root, "--seconds", "0.2", "--iterations", "1", "--image-size", "64",
                  "--workers", "0", "--seed", "0")
    assert res.code == 0, res.err[-2000:]
    assert "Traceback" not in res.err
    clear_line = next(ln for ln in res.out.splitlines() if ln.startswith("clear:"))
    assert "kept 1 model in model/" in clear_line, clear_line
    assert "train: demo_Quick96 is already at iteration 1 (--iterations 1): nothing to train" in res.out
    assert hashes(model) == before          # at its target already: continued, not retrained or removed
    assert ws.result.is_file()


# -- 3: extract-frames --overwrite -------------------------------------------------------------------
def test_extract_frames_overwrite_replaces_only_numbered_frames(demo_workspace: Workspace, tmp_path: Path,
                                                                dfl_run) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "IMG_0001.jpg").write_bytes(b"\xff\xd8 a photo \xff\xd9")
    (photos / "1.png").write_bytes(b"another")
    (photos / "notes.txt").write_text("mine")
    before = hashes(photos)
    res = dfl_run("extract-frames", "src", "-w", demo_workspace.root, "-i", demo_workspace.require_video("src"),
                  "-o", photos, "--overwrite")
    assert res.code == 0, res.err
    assert_kept(before, photos)
    assert len(list_frames(photos)) == 75
    res = dfl_run("extract-frames", "src", "-w", demo_workspace.root, "-o", photos, "--fps", "5", "--overwrite")
    assert res.code == 0 and abs(len(list_frames(photos)) - 15) <= 1
    assert_kept(before, photos)


# -- 4: no command writes over an input video --------------------------------------------------------
def test_no_command_writes_over_an_input_video(frames_ws: Workspace, dfl_run) -> None:
    ws = frames_ws
    _merged_from_frames(ws)
    (ws.root / "data_src.mov").write_bytes(b"a second src video")
    before = hashes(ws.root)
    for args in (["video", "-o", ws.root / "data_dst.mp4"],
                 ["video", "-o", ws.root / "data_src.mp4"],
                 ["video", "-o", ws.root / "data_src.mov", "--no-mask"],
                 ["video", "--reference", ws.root / "data_src.mp4", "-o", ws.root / "data_src.mp4"],
                 ["cut-video", "src", "--to", "1", "-o", ws.root / "data_dst.mp4"],
                 ["cut-video", "dst", "--to", "1", "-o", ws.root / "data_dst.mp4"]):
        assert_one_line_error(dfl_run(*args, "-w", ws.root), mentions="an input video")
    assert hashes(ws.root) == before


# -- 6: unreadable merged frames ---------------------------------------------------------------------
def test_video_names_an_unreadable_merged_frame(frames_ws: Workspace, dfl_run) -> None:
    ws = frames_ws
    _merged_from_frames(ws)
    good = (ws.merged_dir / "00003.png").read_bytes()
    cases = {"zero bytes": b"", "truncated": good[: len(good) // 2],
             "damaged": good[:3000] + bytes(b ^ 0x55 for b in good[3000:3100]) + good[3100:]}
    for what, data in cases.items():
        (ws.merged_dir / "00003.png").write_bytes(data)
        before = hashes(ws.root)
        line = assert_one_line_error(dfl_run("video", "-w", ws.root), mentions="00003.png")
        assert "--repeat-bad-frames" in line, (what, line)
        assert hashes(ws.root) == before and not ws.result.exists(), what
        assert not [p for p in ws.root.iterdir() if p.name.startswith(".result.")]
    (ws.merged_dir / "00001.png").write_bytes(b"")
    res = dfl_run("video", "-w", ws.root, "--repeat-bad-frames")
    assert res.code == 0, res.err
    assert f"{FRAMES} frames (2 unreadable frames replaced by a neighbouring frame" in res.out
    assert "00001.png, 00003.png" in res.out
    assert vid.count_frames(ws.result) == FRAMES


# -- 8: a truncated video -------------------------------------------------------------------------------
def test_extract_frames_of_a_truncated_video_says_so(demo_workspace: Workspace, tmp_path: Path, dfl_run) -> None:
    data = demo_workspace.require_video("src").read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: len(data) * 3 // 10])
    res = dfl_run("extract-frames", "src", "-w", demo_workspace.root, "-i", truncated, "-o", tmp_path / "frames")
    assert res.code == 0, res.err
    n = len(list_frames(tmp_path / "frames"))
    assert 0 < n < 60
    warnings = [ln for ln in _messages(res.err) if ln.startswith("Warning: ")]
    assert len(warnings) == 1 and f"only {n} of the 75 frames" in warnings[0], res.err
    healthy = dfl_run("extract-frames", "src", "-w", demo_workspace.root)
    assert healthy.code == 0 and not _messages(healthy.err), healthy.err


# -- 9: kill -9 --------------------------------------------------------------------------------------
@pytest.fixture
def long_video(tmp_path: Path) -> Path:
    """20 s of ffmpeg's test pattern (500 frames): long enough to be killed in the middle of."""
    path = tmp_path / "long.mp4"
    subprocess.run([vid.ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25:duration=20",
                    "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path)], check=True)
    return path


@pytest.mark.skipif(not LINUX, reason="finds dfl's ffmpeg through /proc")
def test_killed_extract_frames_takes_ffmpeg_with_it_and_the_rerun_cleans_up(demo_workspace: Workspace,
                                                                           long_video: Path, dfl_run) -> None:
    ws = demo_workspace
    (ws.data_src / "keep.png").write_bytes(b"the user's")
    before = hashes(ws.root)
    proc = _start_dfl("extract-frames", "src", "-w", ws.root, "-i", long_video)
    ffmpeg_pid = _kill_mid_ffmpeg(proc, b"Extracting")
    try:
        assert _wait_gone(ffmpeg_pid, timeout=20), "ffmpeg outlived dfl"
    finally:
        _reap(ffmpeg_pid)
    assert list(ws.data_src.glob(f".extracting-{proc.pid}-*")), "expected the killed run's work folder"
    res = dfl_run("extract-frames", "src", "-w", ws.root, "-i", long_video)
    assert res.code == 0, res.err
    assert not list(ws.data_src.glob(".extracting-*")) and len(list_frames(ws.data_src)) == 500
    assert_kept(before, ws.root)


@pytest.mark.skipif(not LINUX, reason="finds dfl's ffmpeg through /proc")
def test_killed_video_leaves_a_temporary_the_next_run_removes(frames_ws: Workspace, dfl_run) -> None:
    ws = frames_ws
    _merged_from_frames(ws, 200)
    ws.result.write_bytes(b"the previous result")
    proc = _start_dfl("video", "-w", ws.root, "--no-mask")
    ffmpeg_pid = _kill_mid_ffmpeg(proc, b"Writing")
    try:
        assert _wait_gone(ffmpeg_pid, timeout=20), "ffmpeg outlived dfl"
    finally:
        _reap(ffmpeg_pid)
    left = list(ws.root.glob(".result.*.tmp.mp4"))
    assert len(left) == 1 and f".{proc.pid}-" in left[0].name
    assert ws.result.read_bytes() == b"the previous result"           # the old result survived the kill
    for extra in list_frames(ws.merged_dir)[FRAMES:]:                 # a short rerun is enough
        extra.unlink()
    other = ws.root / f".result.{os.getpid()}-abcdefgh.tmp.mp4"        # a live process's: not ours to remove
    other.write_bytes(b"in progress")
    before = hashes(ws.root)
    res = dfl_run("video", "-w", ws.root, "--no-mask")
    assert res.code == 0, res.err
    assert not left[0].exists() and other.read_bytes() == b"in progress"
    assert_kept({k: v for k, v in before.items() if k not in ("result.mp4", left[0].name)}, ws.root)


@pytest.mark.skipif(sys.platform == "win32", reason="kills itself with SIGKILL")
def test_extract_faces_removes_what_a_killed_write_left(frames_ws: Workspace, tmp_path: Path, dfl_run) -> None:
    ws = frames_ws
    for p in list_frames(ws.data_src)[2:]:
        p.unlink()
    aligned = ws.aligned_dir("src")
    code = ("import os, sys; from dfl.atomic import atomic_open\n"
            "with atomic_open(sys.argv[1]) as f:\n"
            "    f.write(b'half a face'); f.flush(); os.kill(os.getpid(), 9)\n")
    killed = subprocess.run([sys.executable, "-c", code, str(aligned / "00001_0.jpg")], env=_subprocess_env())
    assert killed.returncode == -signal.SIGKILL
    stale = list(aligned.glob(".00001_0.jpg.*.tmp"))
    assert len(stale) == 1
    (aligned / ".my_notes.tmp").write_text("not dfl's")
    before = hashes(ws.root)
    (tmp_path / "none").mkdir()                        # an empty weights folder: the built-in backends
    res = dfl_run("extract-faces", "src", "-w", ws.root, "--image-size", "64", "--non-interactive",
                  "--weights-dir", tmp_path / "none", "--device", "cpu")
    assert res.code == 0, res.err
    assert not stale[0].exists() and (aligned / ".my_notes.tmp").read_text() == "not dfl's"
    assert_kept({k: v for k, v in before.items() if not k.endswith(stale[0].name)}, ws.root)

    # --overwrite moves the faces it replaces to the trash instead of deleting them
    faces = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in aligned.glob("*.jpg")}
    assert len(faces) == 2
    res = dfl_run("extract-faces", "src", "-w", ws.root, "--image-size", "64", "--non-interactive",
                  "--weights-dir", tmp_path / "none", "--device", "cpu", "--overwrite")
    assert res.code == 0 and "moved to" in res.out, res.err
    trashed = next(ws.trash_dir.iterdir()) / "data_src" / "aligned"
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in trashed.iterdir()} == faces


# -- 12: paths -------------------------------------------------------------------------------------------
def test_aligned_being_a_file_is_one_line(frames_ws: Workspace, tmp_path: Path, dfl_run) -> None:
    ws = frames_ws
    ws.aligned_dir("src").rmdir()
    ws.aligned_dir("src").write_text("not a folder")
    before = hashes(ws.root)
    (tmp_path / "none").mkdir()
    assert_one_line_error(dfl_run("extract-faces", "src", "-w", ws.root, "--non-interactive",
                                  "--weights-dir", tmp_path / "none", "--device", "cpu"), mentions="aligned")
    assert hashes(ws.root) == before


def test_a_name_over_255_bytes_is_one_line(frames_ws: Workspace, dfl_run) -> None:
    ws = frames_ws
    _merged_from_frames(ws)
    long = "a" * 300
    before = hashes(ws.root)
    for args in (["extract-frames", "src", "-w", ws.root, "-o", ws.root / long],
                 ["video", "-w", ws.root, "-o", ws.root / f"{long}.mp4"],
                 ["clear", "-w", ws.root / long, "--yes"],
                 ["extract-faces", "src", "-w", ws.root / long, "--non-interactive"],
                 ["cut-video", "dst", "-w", ws.root, "-o", ws.root / f"{long}.mp4"],
                 ["denoise-frames", "dst", "-w", ws.root, "-i", ws.root / long]):
        assert_one_line_error(dfl_run(*args))
    assert hashes(ws.root) == before


@pytest.fixture
def tiny_disk(tmp_path: Path):
    """A real 1 MB file system (tmpfs); skipped where mounting is not permitted."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if not LINUX or shutil.which("mount") is None:
        pytest.skip("needs mount")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_full_disk_is_one_line_and_keeps_the_frames_there(demo_workspace: Workspace, tiny_disk: Path,
                                                           dfl_run) -> None:
    out = tiny_disk / "frames"
    out.mkdir()
    (out / "00001.png").write_bytes(b"an older frame")
    (out / "mine.txt").write_text("the user's")
    before = hashes(tiny_disk)
    line = assert_one_line_error(dfl_run("extract-frames", "src", "-w", demo_workspace.root, "-o", out,
                                         "--overwrite"))
    assert "space" in line.lower(), line
    assert hashes(tiny_disk) == before and not list(out.glob(".extracting-*"))


def test_extract_faces_on_a_full_disk_is_one_line(demo_frames_session: Workspace, tiny_disk: Path,
                                                 tmp_path: Path, dfl_run) -> None:
    ws = Workspace(tiny_disk / "ws")
    ws.data_src.mkdir(parents=True)
    for p in list_frames(demo_frames_session.data_src)[:2]:
        shutil.copy(p, ws.data_src / p.name)
    free = shutil.disk_usage(tiny_disk).free
    (tiny_disk / "filler").write_bytes(b"f" * max(0, free - 24 * 1024))
    (tmp_path / "none").mkdir()
    before = hashes(tiny_disk)
    line = assert_one_line_error(dfl_run("extract-faces", "src", "-w", ws.root, "--image-size", "512",
                                         "--non-interactive", "--weights-dir", tmp_path / "none", "--device", "cpu"))
    assert "no space left" in line.lower(), line
    assert_kept(before, tiny_disk)
    assert not [p for p in ws.aligned_dir("src").iterdir() if p.name.endswith(".tmp")]


# -- the rest of the audit -------------------------------------------------------------------------------
def test_denoise_changes_only_numbered_frames(demo_frames_session: Workspace, tmp_path: Path, dfl_run) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for p in list_frames(demo_frames_session.data_dst)[:5]:
        shutil.copy(p, folder / p.name)
    shutil.copy(folder / "00001.png", folder / "portrait.png")
    mine = {"portrait.png": hashlib.sha256((folder / "portrait.png").read_bytes()).hexdigest()}
    res = dfl_run("denoise-frames", "-i", folder)
    assert res.code == 0 and "5 frames denoised" in res.out, res.err
    assert_kept(mine, folder)
    for p in list_frames(folder):
        p.unlink()
    assert_one_line_error(dfl_run("denoise-frames", "-i", folder), mentions="not dfl's to change")
    assert_kept(mine, folder)


def test_demo_overwrite_moves_the_users_videos_to_the_trash(tmp_path: Path, dfl_run) -> None:
    ws = Workspace(tmp_path / "mine")
    ws.root.mkdir()
    (ws.root / "data_src.mp4").write_bytes(b"my own footage")
    (ws.root / "data_dst.mkv").write_bytes(b"my own dst")
    before = hashes(ws.root)
    res = dfl_run("demo", "-w", ws.root, "--overwrite", "--seconds", "0.2")
    assert res.code == 0, res.err
    trash = next(ws.trash_dir.iterdir())
    assert hashes(trash) == before and (ws.root / MARKER).is_file()


def test_clear_knows_the_names_extract_and_merge_write() -> None:
    """dfl.clear names them without importing those modules (they load torch): keep them in step."""
    from dfl import clear, extract
    from dfl.merge import frames

    assert clear.EXTRACT_STATE == extract.STATE_FILE and clear.MERGE_CONFIG == frames.CONFIG_NAME
