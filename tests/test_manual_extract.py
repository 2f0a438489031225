"""Manual extraction (DFL's manual extractor): the editor driven by scripted mouse and key events, the
session writing faces with the real landmarker, --fix on deleted debug images, and the CLI."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from dfl.extract import ExtractOptions, extract_faces
from dfl.faces.find import find_faces
from dfl.faces import registry
from dfl.faces.align import FaceType
from dfl.faces.manual import MEAN_FACE_68, KeyEvent, ManualEditor, MouseEvent
from dfl.faces.manual_draw import render, view_image
from dfl.faceset import list_faces, read_record
from dfl.manual_extract import manual_extract, run_manual, select_frames
from dfl.workspace import Workspace, list_images
from ui_script import Script




# ----------------------------------------------------------------------------------- the editor alone
def _editor(h: int = 720, w: int = 1280, n: int = 3) -> ManualEditor:
    ed = ManualEditor(n)
    ed.start_frame(h, w)
    return ed


def test_mouse_moves_the_square_in_frame_pixels_and_the_wheel_sizes_it() -> None:
    ed = _editor()
    assert ed.view_scale == pytest.approx(1368 / (720 * 16 / 9))          # DFL's 16:9 view, 1368 wide
    r = ed.handle(MouseEvent("move", 534.375, 267.1875))
    assert r.landmarks_needed and (ed.x, ed.y) == pytest.approx((500.0, 250.0))
    for _ in range(3):
        ed.handle(MouseEvent("wheel", delta=120))
    assert ed.half_size == 130                                              # +10 a notch above 100
    ed.half_size = 40
    ed.handle(MouseEvent("wheel", delta=-120))
    assert ed.half_size == 39                                               # 1 px steps when small
    ed.half_size = 5
    ed.handle(MouseEvent("wheel", delta=-120))
    assert ed.half_size == 5 and ed.zoomed


def test_left_click_locks_and_unlocks_the_square() -> None:
    ed = _editor()
    ed.handle(MouseEvent("move", 100, 100))
    ed.handle(MouseEvent("left"))
    assert ed.locked
    pos = (ed.x, ed.y)
    assert not ed.handle(MouseEvent("move", 300, 300)).landmarks_needed and (ed.x, ed.y) == pos
    ed.handle(MouseEvent("wheel", delta=120))
    assert ed.half_size == 100
    r = ed.handle(MouseEvent("left"))
    assert not ed.locked and r.landmarks_needed


def test_right_click_places_a_mean_face_by_hand() -> None:
    ed = _editor(h=400, w=400)
    ed.window_size = 0
    ed.start_frame(400, 400)
    ed.handle(MouseEvent("right", 200, 200))
    ed.handle(MouseEvent("move", 260, 200))                 # to the right: an upright face, half size 60
    assert ed.by_hand and ed.half_size == 60 and ed.rect == (140, 140, 260, 260)
    lm = ed.landmarks
    assert np.allclose(lm[30], (200, 200))                  # the nose tip at the right click
    assert lm[36:48, 1].mean() < lm[48:68, 1].mean()        # eyes above the mouth
    ed.handle(MouseEvent("move", 200, 260))                 # downwards: turned a quarter clockwise
    lm = ed.landmarks
    assert lm[36:48, 0].mean() > lm[48:68, 0].mean()        # eyes now right of the mouth
    ed.handle(MouseEvent("left"))
    assert ed.locked and not ed.by_hand
    r = ed.handle(KeyEvent("\r"))
    (i, mark), = r.done
    assert i == 0 and mark.rect == (140, 140, 260, 260) and np.allclose(mark.landmarks, lm)
    assert MEAN_FACE_68.shape == (68, 2)


def test_keys_confirm_skip_navigate_and_stop() -> None:
    ed = _editor(n=4)
    ed.landmarks = np.zeros((68, 2), np.float32)
    assert ed.handle(KeyEvent("\r")).done[0][0] == 0 and ed.index == 1      # Enter: face, next frame
    r = ed.handle(KeyEvent(" "))
    assert r.done == [(1, None)] and ed.index == 2                           # Space: no face
    ed.start_frame(720, 1280)
    r = ed.handle(KeyEvent("."))
    assert r.done == [(2, None)] and ed.index == 3                           # .: no face unless locked
    ed.start_frame(720, 1280)
    ed.handle(MouseEvent("left"))
    ed.handle(KeyEvent(","))                                                  # back, keeping frame 3's face
    assert ed.index == 2 and 3 in ed.marks
    ed.start_frame(720, 1280)
    r = ed.handle(KeyEvent("."))
    assert r.done == [(2, None)]
    ed.start_frame(720, 1280)
    assert ed.locked                                                         # frame 3's face is back, locked
    r = ed.handle(KeyEvent("q"))
    assert r.quit and r.done[0][0] == 3 and r.done[0][1] is not None
    ed2 = _editor()
    ed2.handle(KeyEvent("h"))
    assert not ed2.show_help
    ed2.handle(KeyEvent("a"))
    assert not ed2.accurate


def test_drawing_shows_the_square_zoomed_when_small() -> None:
    ed = _editor(h=200, w=300)
    ed.window_size = 0
    ed.start_frame(200, 300)
    frame = np.full((200, 300, 3), 80, np.uint8)
    ed.handle(MouseEvent("move", 150, 100))
    big = render(ed, view_image(frame, ed.view_scale), FaceType.WHOLE_FACE, 256, "00001.png")
    assert big.shape == frame.shape and not np.array_equal(big, frame)
    ed.half_size = 20
    small = render(ed, view_image(frame, ed.view_scale), FaceType.WHOLE_FACE, 256)
    blue = np.all(small == (255, 0, 0), axis=2)
    ys, xs = np.nonzero(blue)
    assert xs.max() - xs.min() > 80                          # 40 px square drawn about 100 px wide


# ----------------------------------------------------------------------------------- sessions on real faces
@pytest.fixture(scope="module")
def backends() -> registry.Backends:
    return registry.get_backends("auto", "auto", "cpu", Path("/nonexistent-weights"))


@pytest.fixture
def frames(demo_frames_session: Workspace, tmp_path: Path) -> Path:
    """Three demo frames (the astronaut) in a fresh data_src."""
    out = tmp_path / "ws" / "data_src"
    out.mkdir(parents=True)
    for p in list_images(demo_frames_session.data_src)[:3]:
        shutil.copy(p, out / p.name)
    return out


@pytest.fixture(scope="module")
def auto_faces(demo_frames_session: Workspace, backends: registry.Backends) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Detector box and landmarks of the automatic pass on the three frames, by frame name (found once)."""
    paths = list_images(demo_frames_session.data_src)[:3]
    found = find_faces([cv2.imread(str(p)) for p in paths], backends.detector, backends.landmarker)
    return {p.name: (f.rects[0], f.landmarks[0]) for p, f in zip(paths, found)}


def test_manual_session_writes_the_faces_accepted(frames: Path, backends: registry.Backends, auto_faces) -> None:
    paths = list_images(frames)
    box, auto_lm = auto_faces[paths[0].name]
    cx, cy, half = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2, (box[2] - box[0]) / 2
    wheel = [MouseEvent("wheel", delta=1 if half > 100 else -1)] * int(abs(half - 100) // 10)
    ui = Script([MouseEvent("move", cx, cy)] + wheel, [KeyEvent("\r")],       # frame 1: accept
                [KeyEvent(" ")],                                              # frame 2: skip
                [KeyEvent("q")])                                              # stop: frame 3 untouched
    aligned, debug = frames / "aligned", frames / "aligned_debug"
    opts = ExtractOptions(face_type=FaceType.WHOLE_FACE, image_size=128)
    s = manual_extract(paths, aligned, backends.landmarker, opts, debug, ui=ui, window_size=0)
    assert (s.frames, s.faces, s.skipped, s.stopped_at) == (3, 1, 1, 2)
    assert [p.name for p in list_faces(aligned)] == [f"{paths[0].stem}_0.jpg"]
    rec = read_record(aligned / f"{paths[0].stem}_0.jpg")
    assert rec.face_type == "whole_face" and rec.source_filename == paths[0].name
    assert np.abs(rec.source_landmarks - auto_lm).mean() < 3.0          # found inside the square, as auto
    assert sorted(p.name for p in debug.iterdir()) == [f"{paths[0].stem}.jpg", f"{paths[1].stem}.jpg"]
    assert len(ui.shown) >= 3 and ui.shown[0].shape == cv2.imread(str(paths[0])).shape


def test_going_back_and_skipping_moves_the_face_just_written_to_the_trash(frames: Path, backends, auto_faces) -> None:
    paths = list_images(frames)[:2]
    box, _ = auto_faces[paths[0].name]
    ui = Script([MouseEvent("move", (box[0] + box[2]) / 2, (box[1] + box[3]) / 2)], [KeyEvent("\r")],
                [KeyEvent(",")], [KeyEvent(" ")])
    aligned = frames / "aligned"
    s = manual_extract(paths, aligned, backends.landmarker, ExtractOptions(image_size=96), None, ui=ui,
                       window_size=0)
    assert s.faces == 1 and s.skipped == 1 and not list_faces(aligned)
    assert [p.name for p in (frames / "aligned_trash").iterdir()] == [f"{paths[0].stem}_0.jpg"]


def test_fix_re_extracts_only_frames_whose_debug_image_was_deleted(frames: Path, backends, auto_faces) -> None:
    aligned, debug = frames / "aligned", frames / "aligned_debug"
    opts = ExtractOptions(face_type=FaceType.WHOLE_FACE, image_size=128, output_debug=True)
    extract_faces(frames, aligned, backends.detector, backends.landmarker, opts, debug_dir=debug, progress=False)
    paths = list_images(frames)
    bad = paths[1]
    old = (aligned / f"{bad.stem}_0.jpg").read_bytes()
    (debug / f"{bad.stem}.jpg").unlink()                       # the user marks frame 2 as wrong
    assert select_frames("fix", frames, aligned, debug) == [bad]
    assert select_frames("missing", frames, aligned, debug) == []
    box, _ = auto_faces[bad.name]
    ui = Script([MouseEvent("move", (box[0] + box[2]) / 2 + 6, (box[1] + box[3]) / 2)], [KeyEvent("\r")])
    s = run_manual("fix", frames, aligned, debug, backends.landmarker, ExtractOptions(image_size=128), 0, ui)
    assert (s.frames, s.faces, s.replaced) == (1, 1, 1)
    assert (debug / f"{bad.stem}.jpg").is_file()                # the fixed frame has its debug image back
    assert (frames / "aligned_trash" / f"{bad.stem}_0.jpg").read_bytes() == old   # the old face kept
    assert (aligned / f"{bad.stem}_0.jpg").read_bytes() != old
    assert len(list_faces(aligned)) == len(paths)
    from dfl.faceset.sort import SortOptions, sort_faceset
    sort_faceset(aligned, "face-yaw", SortOptions(progress=False))       # names 00000.jpg ...: frames known
    assert select_frames("missing", frames, aligned, debug) == []        # from the faces' metadata


def test_cli_fix_needs_a_window_and_reports_nothing_to_fix(frames: Path, dfl_run, monkeypatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    ws = frames.parent
    r = dfl_run("extract-faces", "src", "-w", ws, "--fix", "--non-interactive")
    assert r.code == 1 and "aligned_debug" in r.err and len(r.err.strip().splitlines()) == 1
    r = dfl_run("extract-faces", "src", "-w", ws, "--image-size", "96", "--output-debug", "--non-interactive")
    assert r.code == 0, r.err
    r = dfl_run("extract-faces", "src", "-w", ws, "--fix", "--non-interactive")
    assert r.code == 0 and "0 frames, 0 faces written" in r.out, r.err
    (ws / "data_src" / "aligned_debug" / "00002.jpg").unlink()
    r = dfl_run("extract-faces", "src", "-w", ws, "--fix", "--non-interactive")
    assert r.code == 1 and "needs a window" in r.err and len(r.err.strip().splitlines()) == 1
    r = dfl_run("extract-faces", "src", "-w", ws, "--fix", "--manual", "--non-interactive")
    assert r.code == 1 and "choose one" in r.err
