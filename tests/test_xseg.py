"""XSeg labels and masks (issue #15, first half): DFL's storage rules, the editor driven by scripted events,
a crash between faces, apply / remove / remove-labels / fetch, the CLI and the step scripts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

from dfl.errors import DflError
from dfl.faces.align import FaceType, transform_matrix, transform_points
from dfl.faces.manual import MEAN_FACE_68
from dfl.faceset import FaceRecord, polygons_mask, read_face, read_raw_dict, read_record, write_face, write_record
from dfl.faceset.record import encode_mask
from dfl.ui import KeyEvent, MouseEvent, decode_key
from dfl.xseg.draw import COLORS, render
from dfl.xseg.editor import Mode, View, XSegEditor
from dfl.xseg.predictor import MaskPredictor, load_predictor
from dfl.xseg.session import edit_labels
from dfl.xseg.tools import APPLY_STATE, apply_masks, fetch_dir, fetch_labelled, find_stored, remove_stored
from ui_script import Script

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------- helpers
def _frame(seed: int = 0, h: int = 480, w: int = 640) -> np.ndarray:
    """A smooth textured frame (so re-cut faces can be compared pixel by pixel)."""
    rs = np.random.RandomState(seed)
    small = rs.uniform(0, 255, (h // 16, w // 16, 3)).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 255).astype(np.uint8)


def _source_landmarks(angle: float = 0.0, size: float = 170.0, at=(330.0, 250.0)) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return (MEAN_FACE_68 @ (np.array([[c, -s], [s, c]]) * size).T + at).astype(np.float32)


def _cut(frame: np.ndarray, lm: np.ndarray, face_type: FaceType, size: int) -> tuple[np.ndarray, np.ndarray]:
    mat = transform_matrix(lm, size, face_type)
    return cv2.warpAffine(frame, mat, (size, size), flags=cv2.INTER_LANCZOS4), mat


def _face(path: Path, face_type: str = "whole_face", size: int = 64, polys: list | None = None,
          mask: np.ndarray | None = None, seed: int = 0) -> Path:
    lm = _source_landmarks(angle=0.15 + 0.05 * seed)
    img, mat = _cut(_frame(seed), lm, FaceType.from_string(face_type), size)
    rec = FaceRecord(face_type=face_type, landmarks=transform_points(lm, mat).astype(np.float32),
                     source_filename=f"{path.stem.split('_')[0]}.png", source_rect=(200, 100, 460, 400),
                     source_landmarks=lm, image_to_face_mat=mat, seg_ie_polys=polys, xseg_mask=mask)
    write_face(path, img, rec)
    return path


SQUARE = {"type": 1, "pts": np.float32([[10, 10], [50, 10], [50, 50], [10, 50]])}
HOLE = {"type": 0, "pts": np.float32([[20, 20], [30, 20], [30, 30]])}




def close(a, b) -> bool:
    return np.asarray(a).shape == np.asarray(b).shape and np.allclose(np.asarray(a, np.float64), b, atol=1e-4)


def clicks(*pts: tuple[float, float], **mods: bool) -> list:
    """Move to and left-click each view point."""
    out = []
    for x, y in pts:
        out += [MouseEvent("move", x, y, **mods), MouseEvent("left", x, y, **mods), MouseEvent("left_up", x, y, **mods)]
    return out


def drag(a: tuple[float, float], b: tuple[float, float]) -> list:
    return [MouseEvent("move", *a), MouseEvent("left", *a), MouseEvent("move", *b), MouseEvent("left_up", *b)]


def dfl_reader_polys(raw: dict) -> list[tuple[int, np.ndarray]]:
    """What DFL's reader makes of a stored ``seg_ie_polys`` (``SegIEPolys.load``): the dict form or the
    older list form, points as float32, then sorted: every include polygon, then every exclude one."""
    data = raw.get("seg_ie_polys")
    if data is None:
        return []
    items = [(p["type"], p["pts"]) for p in data["polys"]] if isinstance(data, dict) else list(data)
    polys = [(int(t), np.float32(pts)) for t, pts in items]
    return [p for p in polys if p[0] == 1] + [p for p in polys if p[0] == 0]


# ------------------------------------------------------------------------------------ DFL's storage rules
def test_dfl_written_labels_show_the_same_polygons(shared_dir: Path, tmp_path: Path) -> None:
    """Faces labelled and masked by DFL's own writer: dfl's polygons are DFL's reader's, and the labels'
    mask is DFL's overlay_mask (include then exclude, points cut to int)."""
    labelled = 0
    for path in sorted((shared_dir / "conformance").glob("0000*_0.jpg")):
        raw = read_raw_dict(path)
        rec = read_record(path)
        want = dfl_reader_polys(raw)
        assert [(p["type"], p["pts"].dtype) for p in rec.seg_ie_polys or []] == [(t, np.float32) for t, _ in want]
        assert all(np.array_equal(p["pts"], q) for p, (_, q) in zip(rec.seg_ie_polys or [], want))
        if want:
            labelled += 1
            img, _ = read_face(path)
            mask = np.zeros(img.shape[:2], np.float32)
            for t, pts in want:
                cv2.fillPoly(mask, [pts.astype(np.int32)], 1.0 if t == 1 else 0.0)
            assert np.array_equal(polygons_mask(rec, img.shape[:2]), mask) and 0 < mask.mean() < 1
            # edited and saved by dfl, the file still holds DFL's structure and the same arrays
            copy = tmp_path / path.name
            shutil.copy(path, copy)
            rec.seg_ie_polys = rec.seg_ie_polys + [dict(SQUARE)]
            write_record(copy, rec)
            again = dfl_reader_polys(read_raw_dict(copy))
            assert [t for t, _ in again] == [1, 1, 0] and np.array_equal(again[1][1], SQUARE["pts"])
            assert np.array_equal(read_raw_dict(copy)["xseg_mask"], raw["xseg_mask"])   # mask bytes untouched
    assert labelled == 2


def test_labels_written_by_dfl_decode_with_dfls_reader_rules(tmp_path: Path) -> None:
    """Polygons given in any order are stored includes first, so DFL's reader (which sorts) gets exactly
    the arrays dfl holds; the stored structure is DFL's dump (``{'polys': [{'type', 'pts'}]}``)."""
    exclude2 = {"type": 0, "pts": np.float32([[1.25, 2.5], [9.75, 3.0], [5.5, 8.125]])}
    include2 = {"type": 1, "pts": np.float32([[30.5, 31.25], [60.0, 33.0], [45.0, 62.75], [31.0, 55.0]])}
    path = _face(tmp_path / "00001_0.jpg", polys=[HOLE, SQUARE, exclude2, include2])
    raw = read_raw_dict(path)
    stored = raw["seg_ie_polys"]
    assert isinstance(stored, dict) and list(stored) == ["polys"]
    assert all(list(p) == ["type", "pts"] and type(p["type"]) is int and p["pts"].dtype == np.float32
               for p in stored["polys"])
    dfl_view = dfl_reader_polys(raw)
    ours = read_record(path).seg_ie_polys
    assert [t for t, _ in dfl_view] == [p["type"] for p in ours] == [1, 1, 0, 0]
    for (t, pts), p, want in zip(dfl_view, ours, [SQUARE, include2, HOLE, exclude2]):
        assert np.array_equal(pts, want["pts"]) and np.array_equal(p["pts"], want["pts"])
        assert [q["pts"].tolist() for q in stored["polys"]].count(want["pts"].tolist()) == 1
    assert [p["pts"].tolist() for p in stored["polys"]] == [q.tolist() for _, q in dfl_view]   # stored sorted
    # DFL's older list form reads the same way; a type DFL's reader cannot sort is refused
    legacy = FaceRecord.from_dfl_dict({**raw, "seg_ie_polys": [(0, HOLE["pts"].tolist()), (1, SQUARE["pts"])]})
    assert [p["type"] for p in legacy.seg_ie_polys] == [1, 0]
    with pytest.raises(DflError, match="neither include"):
        FaceRecord.from_dfl_dict({**raw, "seg_ie_polys": {"polys": [{"type": 2, "pts": SQUARE["pts"]}]}})


def test_masks_are_encoded_byte_for_byte_as_dfls_set_xseg_mask() -> None:
    rs = np.random.RandomState(3)
    soft = cv2.GaussianBlur(rs.uniform(0, 1, (256, 256)).astype(np.float32), (0, 0), 9)
    soft = (soft - soft.min()) / (soft.max() - soft.min())
    noise = rs.uniform(0, 1, (256, 256, 1)).astype(np.float32)            # PNG over 50 kB: JPEG

    def dfl_set_xseg_mask(m: np.ndarray) -> np.ndarray:                  # DFLJPG.set_xseg_mask's rule
        img = np.clip(m * 255, 0, 255).astype(np.uint8)
        ok, buf = cv2.imencode(".png", img)
        if len(buf) > 50000:
            for q in range(100, -1, -1):
                ok, buf = cv2.imencode(".jpg", img, [int(cv2.IMWRITE_JPEG_QUALITY), q])
                if len(buf) <= 50000:
                    break
        return buf

    for m in (soft, noise):
        assert np.array_equal(encode_mask(m), dfl_set_xseg_mask(m))
    assert encode_mask(noise)[:2].tolist() == [0xFF, 0xD8] and encode_mask(soft)[:4].tolist() == [137, 80, 78, 71]
    levels = np.arange(256, dtype=np.float32).reshape(16, 16) / 255          # decoded levels come back exactly
    assert np.array_equal(cv2.imdecode(encode_mask(levels), cv2.IMREAD_UNCHANGED).ravel(), np.arange(256))


# ---------------------------------------------------------------------------------------- the editor
def _editor() -> XSegEditor:
    """A 100 px face in a 400 px view: view pixels are 4x face pixels, no offset."""
    ed = XSegEditor(canvas=(400, 400))
    ed.start_face(None, 100, 100)
    return ed


def _play(ed: XSegEditor, events: list) -> None:
    for ev in events:
        ed.handle(ev)


def test_editor_draws_moves_deletes_inserts_and_undoes() -> None:
    ed = _editor()
    corners = [(80, 80), (320, 80), (320, 320), (80, 320)]
    _play(ed, clicks(*corners))
    assert ed.mode == Mode.DRAW and len(ed.polys[0].pts) == 4
    _play(ed, clicks((83, 78)))                                    # on the first point: closes it
    assert ed.mode == Mode.EDIT and ed.polys[0].pts.tolist() == [[20, 20], [80, 20], [80, 80], [20, 80]]
    _play(ed, drag((321, 322), (361, 342)))                        # move a point by 10, 5 face pixels
    assert ed.polys[0].pts[2].tolist() == pytest.approx([90, 85])
    _play(ed, [KeyEvent("z")])
    assert ed.polys[0].pts[2].tolist() == [80, 80]
    _play(ed, [KeyEvent("y")])
    assert ed.polys[0].pts[2].tolist() == pytest.approx([90, 85])
    _play(ed, clicks((80, 320), ctrl=True))                        # Ctrl+click deletes a point
    assert len(ed.polys[0].pts) == 3
    _play(ed, [KeyEvent("e")] + clicks((200, 78)))                 # e: a click on an edge inserts a point
    assert close(ed.polys[0].pts, [[20, 20], [50, 20], [80, 20], [90, 85]])
    _play(ed, [KeyEvent("e"), KeyEvent("ctrl+z")])
    assert len(ed.polys[0].pts) == 3
    # an exclude polygon drawn next goes after the includes; an include drawn after it goes before
    _play(ed, clicks((380, 380)))                                  # empty space: editing ends
    assert ed.mode == Mode.NONE
    _play(ed, [KeyEvent("w")] + clicks((250, 120), (300, 120), (300, 180)) + [KeyEvent("\r"), KeyEvent("\x1b")])
    _play(ed, [KeyEvent("q")] + clicks((10, 390), (40, 390), (40, 360), (10, 390)))
    assert [p.type for p in ed.polys] == [1, 1, 0] and ed.polys[1].pts[0].tolist() == pytest.approx([2.5, 97.5])
    # the first points of a polygon undo one by one, the last undo removes it (DFL); redo brings it back
    _play(ed, [KeyEvent("\x1b")] + clicks((300, 390), (330, 390)))
    _play(ed, [KeyEvent("z")])
    assert ed.mode == Mode.DRAW and len(ed.polys[ed.op].pts) == 1
    _play(ed, [KeyEvent("z")])
    assert ed.mode == Mode.NONE and len(ed.polys) == 3
    _play(ed, [KeyEvent("y"), KeyEvent("y"), KeyEvent("\x1b")])   # Esc: 2 points are no polygon
    assert len(ed.polys) == 3
    # select by clicking the outline, Delete deletes it, undo restores it
    _play(ed, clicks((275, 121)) + [KeyEvent("delete")])
    assert [p.type for p in ed.polys] == [1, 1]
    _play(ed, [KeyEvent("z")])
    assert [p.type for p in ed.polys] == [1, 1, 0]
    saved = ed.finish()
    assert [p["type"] for p in saved] == [1, 1, 0] and saved[2]["pts"].dtype == np.float32


def test_editor_zoom_pan_and_views() -> None:
    ed = _editor()
    before = ed.to_face(np.array([100.0, 60.0]))
    ed.handle(MouseEvent("wheel", 100, 60, delta=120))
    assert ed.view_scale == pytest.approx(4 + 0.2 + 0.4)
    assert ed.to_face(np.array([100.0, 60.0])) == pytest.approx(before)          # zoom around the mouse
    look = ed.look_at().copy()
    _play(ed, [MouseEvent("middle", 100, 100), MouseEvent("move", 146, 100), MouseEvent("middle_up", 146, 100)])
    assert ed.look_at() == pytest.approx(look - [46 / 4.6, 0])
    for _ in range(40):
        ed.handle(MouseEvent("wheel", 0, 0, delta=-120))
    assert ed.view_scale == 1.0                                                  # DFL's smallest zoom
    ed.handle(KeyEvent("4"))
    assert ed.view == View.LABELS
    before = len(ed.polys)
    _play(ed, clicks((200, 200)))                                                # no drawing on a mask view
    assert len(ed.polys) == before and ed.handle(KeyEvent("4")) and ed.view == View.FACE


def test_render_draws_the_polygons_in_the_chosen_colour() -> None:
    ed = _editor()
    ed.start_face([SQUARE, HOLE], 100, 100)
    ed.show_help = False
    face = np.full((100, 100, 3), 128, np.uint8)
    img = render(ed, face, None, "status")
    assert img.shape == (400, 400, 3)
    assert tuple(img[160, 40]) == COLORS[1]                      # the include square's left edge, x = 10 * 4
    assert tuple(img[160, 140]) == (128, 128, 128)                # inside: the face
    dashed = [tuple(img[81 + d, 120]) == COLORS[1] for d in range(0, 38)]   # the exclude's right edge, dashed
    assert 0.3 < np.mean(dashed) < 0.9
    ed.handle(MouseEvent("move", 40, 100))                        # the mouse on the square's outline: filled
    hover = render(ed, face, None, "")
    assert hover[160, 140, 1] > 128 > hover[160, 140, 0] == hover[160, 140, 2]
    ed.handle(KeyEvent("4"))
    baked = render(ed, face, None, "")
    assert baked[160, 160].tolist() == [255] * 3 and baked[92, 108].tolist() == [0] * 3   # include, hole
    mask = np.zeros((256, 256), np.float32)
    mask[:, 128:] = 1
    ed.handle(KeyEvent("4"))
    ed.handle(KeyEvent("`"))
    over = render(ed, face, mask, "")
    assert over[240, 100].tolist() == [64] * 3 and over[240, 300].tolist() == [128] * 3   # outside darkened


# --------------------------------------------------------------------------------------- the session
def test_editor_session_saves_labels_on_leaving_a_face(tmp_path: Path) -> None:
    folder = tmp_path / "aligned"
    folder.mkdir()
    faces = [_face(folder / "00001_0.jpg", size=100), _face(folder / "00002_0.jpg", size=100, polys=[SQUARE]),
             _face(folder / "00003_0.jpg", size=100, seed=1)]
    before = {p.name: p.read_bytes() for p in faces}
    square = [(80, 80), (320, 80), (320, 320), (80, 320)]
    ui = Script(
        clicks(*square) + [KeyEvent("\r")] + drag((320, 320), (360, 340))         # face 1: include, moved
        + clicks((380, 20)) + [KeyEvent("w")] + clicks((120, 120), (200, 120), (200, 200), (120, 200))
        + clicks((120, 120)) + clicks((200, 200), ctrl=True) + [KeyEvent("z"), KeyEvent("d")],
        clicks((40, 100)) + [KeyEvent("delete"), KeyEvent("d")],                  # face 2: its polygon deleted
        clicks((100, 100), (200, 100)) + [KeyEvent("a")],                         # face 3: 2 points, back
        [KeyEvent("l"), KeyEvent("L"), KeyEvent("n"), KeyEvent("\x1b")],
    )
    summary = edit_labels(folder, ui, window_size=400)
    assert (summary.faces, summary.labelled, summary.saved) == (3, 1, 2)
    raw = read_raw_dict(faces[0])
    polys = dfl_reader_polys(raw)
    assert [t for t, _ in polys] == [1, 0]
    assert close(polys[0][1], [[20, 20], [80, 20], [90, 85], [20, 80]])
    assert close(polys[1][1], [[30, 30], [50, 30], [50, 50], [30, 50]])   # deletion undone
    assert "seg_ie_polys" not in read_raw_dict(faces[1])
    assert faces[2].read_bytes() == before["00003_0.jpg"]                        # unfinished: nothing saved
    for p in faces[:2]:                                                          # pixels kept byte for byte
        sos = before[p.name].index(b"\xff\xda")
        assert p.read_bytes().endswith(before[p.name][sos:])
    assert len(ui.shown) >= 4 and ui.shown[-1].shape == (400, 400, 3)


def test_editor_session_trash_model_overlay_and_closing_the_window(tmp_path: Path) -> None:
    folder = tmp_path / "aligned"
    folder.mkdir()
    first, second = _face(folder / "00001_0.jpg", size=100), _face(folder / "00002_0.jpg", size=100, seed=1)
    cut = _face(folder / "00000_0.jpg", size=100, seed=2)
    cut.write_bytes(cut.read_bytes()[:-300])                 # metadata readable, image cut short: skipped
    model = MaskPredictor(lambda x: np.ones(x.shape[:3], np.float32), identity="all")
    ui = Script([KeyEvent("x")], [KeyEvent("h"), KeyEvent("5")], [KeyEvent("5")] + clicks((80, 80), (320, 80), (200, 320)))
    summary = edit_labels(folder, ui, predictor=model, window_size=400, report=lambda line: None)
    assert (summary.faces, summary.trashed, summary.saved, summary.labelled) == (3, 1, 1, 1)
    assert summary.unreadable == [cut] and "1 unreadable" in summary.line()
    assert not first.exists() and (tmp_path / "aligned_trash" / "00001_0.jpg").is_file()
    assert ui.shown[2][150:350, 50:350].min() == 255                   # 5: the model's mask of the face
    polys = dfl_reader_polys(read_raw_dict(second))                     # window closed: the open polygon saved
    assert len(polys) == 1 and close(polys[0][1], [[20, 20], [80, 20], [50, 80]])
    cut.unlink()
    ui = Script([KeyEvent("5")], [KeyEvent("\x1b")])
    edit_labels(folder, ui, window_size=400)
    assert ui.shown[-1][150:350, 50:350].max() == 0                    # no model, no stored mask: black


def test_a_killed_editor_keeps_every_label_saved_before(tmp_path: Path) -> None:
    """A real process, killed (SIGKILL) while the second face is half labelled: the first face's labels
    are saved and whole, the second face is as it was, and no temporary is left."""
    folder = tmp_path / "aligned"
    folder.mkdir()
    faces = [_face(folder / f"0000{i}_0.jpg", size=100, seed=i) for i in range(1, 4)]
    second = faces[1].read_bytes()
    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from dfl.ui import KeyEvent, MouseEvent
        from dfl.xseg.session import edit_labels

        def clicks(*pts):
            return [MouseEvent(k, x, y) for x, y in pts for k in ("move", "left", "left_up")]

        batches = [clicks((80, 80), (320, 80), (200, 320)) + [KeyEvent("\\r"), KeyEvent("d")],
                   clicks((40, 40), (300, 40), (300, 300))]

        class UI:
            def show(self, image):
                pass
            def events(self):
                if batches:
                    return batches.pop(0)
                print("READY", flush=True)
                sys.stdin.read()
            def close(self):
                pass

        edit_labels(Path({str(folder)!r}), UI(), window_size=400)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.strip() == "READY", proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()
    polys = dfl_reader_polys(read_raw_dict(faces[0]))
    assert len(polys) == 1 and close(polys[0][1], [[20, 20], [80, 20], [50, 80]])
    assert faces[1].read_bytes() == second
    assert sorted(p.name for p in folder.iterdir()) == [p.name for p in faces]


# -------------------------------------------------------------------------------------- apply
def _bright(x: np.ndarray) -> np.ndarray:
    """A small deterministic segmenter for the plumbing tests: bright pixels are face."""
    return (x.mean(axis=3) > 0.45).astype(np.float32)


class Counting:
    """A batch function that counts the faces it sees and can fail on a given call (a crash mid-apply)."""

    def __init__(self, fail_on_call: int | None = None) -> None:
        self.faces, self.calls, self.fail_on_call = 0, 0, fail_on_call

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise RuntimeError("out of memory")
        self.faces += len(x)
        return _bright(x)


def test_apply_writes_256px_masks_in_batches_and_resumes(tmp_path: Path) -> None:
    folder = tmp_path / "aligned"
    folder.mkdir()
    faces = [_face(folder / f"0000{i}_0.jpg", seed=i, polys=[SQUARE] if i == 2 else None) for i in range(5)]
    straight = tmp_path / "straight"
    shutil.copytree(folder, straight)
    apply_masks(straight, MaskPredictor(_bright, identity="bright"), progress=False)

    crashing = Counting(fail_on_call=2)
    with pytest.raises(RuntimeError):
        apply_masks(folder, MaskPredictor(crashing, identity="bright"), batch_size=2, progress=False)
    assert json.loads((folder / APPLY_STATE).read_text())["done"].keys() == {"00000_0.jpg", "00001_0.jpg"}
    rec = read_record(faces[1])
    write_record(faces[1], rec)           # a face written since it was done (same content, new stamp)
    counting = Counting()
    s = apply_masks(folder, MaskPredictor(counting, identity="bright"), batch_size=2, progress=False)
    assert (s.faces, s.applied, s.resumed, counting.faces, counting.calls) == (5, 4, 1, 4, 2)
    assert not (folder / APPLY_STATE).exists()
    for p in faces:
        rec, want = read_record(p), read_record(straight / p.name)
        assert rec.xseg_mask.shape == (256, 256) and set(np.unique(rec.xseg_mask)) <= {0.0, 1.0}
        assert np.array_equal(rec.xseg_mask, want.xseg_mask) and 0.05 < rec.xseg_mask.mean() < 0.95
    assert read_record(faces[2]).seg_ie_polys[0]["pts"].tolist() == SQUARE["pts"].tolist()   # labels kept
    again = Counting()
    apply_masks(folder, MaskPredictor(again, identity="another model"), progress=False)
    assert again.faces == 5                                        # another model: every face again


def test_apply_recuts_faces_of_another_face_type_as_dfl_does(tmp_path: Path) -> None:
    """A full_face faceset and a whole_face model: the model sees the face re-cut as whole_face from the
    landmarks (what cutting whole_face from the frame gives, where the face covers it) and its mask goes
    back onto the full_face cut."""
    size = 128
    lm = _source_landmarks(angle=0.15)
    frame = _frame(0)
    full, full_mat = _cut(frame, lm, FaceType.FULL, size)
    whole, whole_mat = _cut(frame, lm, FaceType.WHOLE_FACE, size)
    folder = tmp_path / "aligned"
    folder.mkdir()
    path = _face(folder / "00000_0.jpg", "full_face", size)
    disk = np.zeros((size, size), np.float32)
    cv2.circle(disk, (64, 70), 40, 1.0, -1)
    seen = []

    def model(x: np.ndarray) -> np.ndarray:
        seen.append(x[0])
        return disk[None]

    pred = MaskPredictor(model, resolution=size, face_type=FaceType.WHOLE_FACE, identity="disk")
    apply_masks(folder, pred, progress=False)
    covered = cv2.warpAffine(np.ones((size, size), np.float32), whole_mat @ np.vstack([cv2.invertAffineTransform(full_mat), [0, 0, 1]]),
                             (size, size)) > 0.99
    covered = cv2.erode(covered.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    assert 0.4 < covered.mean() < 0.95                      # whole_face is wider: the full face covers part
    diff = np.abs(seen[0] * 255 - whole.astype(np.float32))[covered]
    assert diff.mean() < 6                                  # the re-cut is the whole_face cut (JPEG, resampling)
    back = cv2.warpAffine(disk, full_mat @ np.vstack([cv2.invertAffineTransform(whole_mat), [0, 0, 1]]), (size, size)) >= 0.5
    stored = read_record(path).xseg_mask > 0.5
    assert (stored & back).sum() / (stored | back).sum() > 0.97
    # the same face with a model of its own type is not re-cut
    seen.clear()
    apply_masks(folder, MaskPredictor(model, resolution=size, face_type=FaceType.FULL, identity="d2"), progress=False)
    assert np.abs(seen[0] * 255 - read_face(path)[0]).max() < 1e-3
    assert np.array_equal(read_record(path).xseg_mask, (disk >= 0.5).astype(np.float32))


@pytest.fixture(scope="module")
def dfl_xseg_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """DFL's XSeg_256.npy with seeded weights, written in DFL's format (the generic model's file)."""
    from dfl_format import seeded_weights, write_weights

    from dfl.models.xseg import XSeg

    folder = tmp_path_factory.mktemp("generic_xseg")
    return write_weights(folder / "XSeg_256.npy", seeded_weights(XSeg(), "XSeg"))


def test_cli_apply_generic_and_the_workspaces_dfl_xseg(dfl_xseg_weights: Path, tmp_path: Path, dfl_run) -> None:
    """DFL's generic XSeg (--generic PATH; whole_face, so a full_face face is re-cut) writes DFL's mask;
    without --generic the workspace's DFL-trained model/XSeg_256.npy (with its face type) is used."""
    from dfl_format import write_model_data

    ws = tmp_path / "ws"
    aligned = ws / "data_dst" / "aligned"
    aligned.mkdir(parents=True)
    face = _face(aligned / "00000_0.jpg", "full_face", 64)
    r = dfl_run("xseg", "apply", "dst", "-w", ws, "--generic", dfl_xseg_weights.parent, "--device", "cpu")
    assert r.code == 0, r.err
    assert "1 of 1 face in" in r.out and "DFL XSeg" in r.out
    rec = read_record(face)
    assert rec.xseg_mask.shape == (256, 256) and set(np.unique(rec.xseg_mask)) <= {0.0, 1.0}
    assert 0 < rec.xseg_mask.mean() < 1
    pred = load_predictor(ws / "model", generic=dfl_xseg_weights, device="cpu")
    assert pred.face_type == FaceType.WHOLE_FACE                # the generic model: re-cut from full_face
    r = dfl_run("xseg", "apply", "dst", "-w", ws, "--device", "cpu")
    assert r.code == 1 and "no trained XSeg model" in r.err and "--generic" in r.err
    (ws / "model").mkdir()
    os.link(dfl_xseg_weights, ws / "model" / "XSeg_256.npy")
    write_model_data(ws / "model" / "XSeg_data.dat", 5000, {"face_type": "f", "pretrain": False})
    pred = load_predictor(ws / "model", device="cpu")
    assert pred.face_type == FaceType.FULL and "model" in pred.name
    assert load_predictor(ws / "model", device="cpu", face_type="same").face_type is None
    r = dfl_run("xseg", "apply", "dst", "-w", ws, "--name", "mine")
    assert r.code == 1 and "no XSeg model named 'mine'" in r.err


# ------------------------------------------------------------------------------ remove, fetch, refusals
def test_remove_labels_and_masks_keep_a_restorable_backup(tmp_path: Path, dfl_run) -> None:
    ws = tmp_path / "ws"
    aligned = ws / "data_src" / "aligned"
    aligned.mkdir(parents=True)
    mask = np.zeros((256, 256), np.float32)
    mask[64:192, 64:192] = 1
    faces = [_face(aligned / "00000_0.jpg", polys=[SQUARE, HOLE], mask=mask),
             _face(aligned / "00001_0.jpg", mask=mask, seed=1), _face(aligned / "00002_0.jpg", seed=2)]
    labelled = read_raw_dict(faces[0])
    r = dfl_run("xseg", "remove-labels", "src", "-w", ws)
    assert r.code == 1 and "--yes" in r.err and len(r.err.strip().splitlines()) == 1
    assert read_record(faces[0]).has_polys
    r = dfl_run("xseg", "remove-labels", "src", "-w", ws, "--yes")
    assert r.code == 0 and "removed from 1 face in" in r.out, r.err
    assert "seg_ie_polys" not in read_raw_dict(faces[0]) and read_record(faces[0]).xseg_mask is not None
    (backup,) = (ws / "trash").glob("*/data_src/aligned/meta.dat")
    assert str(backup) in r.out.replace("\n", "")
    shutil.move(backup, aligned / "meta.dat")                 # the way back: DFL's metadata restore
    r = dfl_run("faceset", "metadata", "restore", "src", "-w", ws)
    assert r.code == 0, r.err
    restored = read_raw_dict(faces[0])
    assert dfl_reader_polys(restored)[1][1].tolist() == dfl_reader_polys(labelled)[1][1].tolist()
    assert np.array_equal(restored["xseg_mask"], labelled["xseg_mask"])
    r = dfl_run("xseg", "remove", "src", "-w", ws, "--yes")
    assert r.code == 0 and "removed from 2 faces" in r.out, r.err
    assert all(read_record(p).xseg_mask is None for p in faces) and read_record(faces[0]).has_polys
    r = dfl_run("xseg", "remove", "src", "-w", ws, "--yes")
    assert r.code == 0 and "no face" in r.out
    # outside a workspace the backup goes to trash/ beside the folder
    other = tmp_path / "faces"
    other.mkdir()
    _face(other / "00000_0.jpg", polys=[SQUARE])
    s = remove_stored(find_stored(other, "labels", False), other, "labels", tmp_path / "trash", tmp_path, False)
    assert s.removed == 1 and s.backup.parent == next((tmp_path / "trash").iterdir()) / "faces"


def test_fetch_copies_or_moves_the_labelled_faces(tmp_path: Path, dfl_run) -> None:
    ws = tmp_path / "ws"
    aligned = ws / "data_dst" / "aligned"
    aligned.mkdir(parents=True)
    faces = [_face(aligned / f"0000{i}_0.jpg", polys=[SQUARE] if i != 1 else None, seed=i) for i in range(3)]
    r = dfl_run("xseg", "fetch", "dst", "-w", ws)
    assert r.code == 0 and "2 labelled faces, 2 copied" in r.out, r.err
    out = fetch_dir(aligned)
    assert out == ws / "data_dst" / "aligned_xseg"
    assert sorted(p.name for p in out.iterdir()) == ["00000_0.jpg", "00002_0.jpg"]
    assert (out / "00000_0.jpg").read_bytes() == faces[0].read_bytes() and all(p.exists() for p in faces)
    rec = read_record(faces[2])
    rec.seg_ie_polys = [SQUARE, HOLE]
    write_record(faces[2], rec)                                   # relabelled since: the old copy is kept aside
    s = fetch_labelled(aligned, move=True, progress=False)
    assert (s.written, s.present, s.replaced) == (1, 1, 1)
    assert not faces[0].exists() and not faces[2].exists() and faces[1].exists()
    assert (aligned.parent / "aligned_trash" / "00000_0.jpg").is_file()          # its copy was already there
    assert len(read_record(out / "00002_0.jpg").seg_ie_polys) == 2
    assert (out.parent / "aligned_xseg_trash" / "00002_0.jpg").is_file()


def test_packed_facesets_and_bad_faces_are_refused_before_anything_changes(tmp_path: Path) -> None:
    folder = tmp_path / "aligned"
    folder.mkdir()
    good = _face(folder / "00000_0.jpg", polys=[SQUARE])
    (folder / "faceset.pak").write_bytes(b"")
    for call in (lambda: apply_masks(folder, MaskPredictor(_bright), progress=False),
                 lambda: edit_labels(folder, Script()), lambda: fetch_labelled(folder, progress=False)):
        with pytest.raises(DflError, match="unpack it first"):
            call()
    (folder / "faceset.pak").unlink()
    (folder / "00001_0.jpg").write_bytes(b"\xff\xd8 not a face")
    before = good.read_bytes()
    with pytest.raises(DflError, match="00001_0.jpg"):
        apply_masks(folder, MaskPredictor(_bright), progress=False)
    with pytest.raises(DflError, match="00001_0.jpg"):
        find_stored(folder, "labels", False)
    assert good.read_bytes() == before


# ------------------------------------------------------------------------------------- keys and steps
def test_window_keys_decode_the_same_on_every_opencv_backend() -> None:
    cases = {-1: None, ord("d"): "d", ord("D"): "D", 13: "\r", 27: "\x1b", 0xFFFF: "delete", 0x2E0000: "delete",
             0x4007A: "ctrl+z", 0x5007A: "ctrl+shift+z", 0x10064: "d", 0x100064: "d", 26: "ctrl+z",
             0xFF51: "left", 0x270000: "right", 0xFF08: "\b", ord("`"): "`", 0xFFBE: None}
    for code, key in cases.items():
        assert decode_key(code) == key, hex(code)


STEPS = {
    "5_XSeg_data_{side}_mask_edit": "dfl xseg edit {side}",
    "5_XSeg_data_{side}_mask_fetch": "dfl xseg fetch {side}",
    "5_XSeg_data_{side}_mask_remove": "dfl xseg remove-labels {side}",
    "5_XSeg_data_{side}_trained_mask_apply": "dfl xseg apply {side}",
    "5_XSeg_data_{side}_trained_mask_remove": "dfl xseg remove {side}",
    "5_XSeg_Generic_data_{side}_whole_face_mask_apply": "dfl xseg apply {side} --generic",
}


def test_xseg_steps_are_named_as_dfl_and_call_their_command() -> None:
    steps = ROOT / "steps"
    expected = {name.format(side=s): cmd.format(side=s) for name, cmd in STEPS.items() for s in ("src", "dst")}
    expected["5_XSeg_train"] = "dfl train --model XSeg"
    for name, cmd in expected.items():
        sh, bat = (steps / f"{name}.sh").read_text(), (steps / f"{name}.bat").read_bytes().decode()
        header = sh.splitlines()[1]
        assert header.startswith('# DeepFaceLab step "5.XSeg') and os.access(steps / f"{name}.sh", os.X_OK)
        assert f"exec {cmd} \"$@\"" in sh and f"\r\n{cmd} %*\r\n" in bat, name
