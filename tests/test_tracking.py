"""Video extraction: tracking from the previous frame, the detection schedule, cuts, faces leaving and
entering, frames out of order, the face-confidence check, the tile plan and dlib's packaged models.

Synthetic sequences paste faces from the portraits the installed packages ship (scikit-image's astronaut,
matplotlib's Grace Hopper) onto a plain background at known places, so they run without ../shared.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from dfl.extract import ExtractOptions, extract_faces, follows
from dfl.faces.blazeface import BlazeFaceDetector, plan_tiles
from dfl.faces.facemesh import FaceMeshLandmarker
from dfl.faces.find import find_faces
from dfl.faces.tracker import FaceTracker
from dfl.faces.verify import DEFAULT_MIN_CONFIDENCE, FaceVerifier

FRAME = (360, 480)      # height, width of the synthetic frames
FACE = 150              # side of the pasted face crop (the face box is about half of it)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """These small models run on one thread, as ``extract_faces`` runs them: on a busy 2-core machine two
    spin-waiting OpenMP threads made each full search 20x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def models() -> tuple[BlazeFaceDetector, FaceMeshLandmarker, FaceVerifier]:
    return BlazeFaceDetector("cpu"), FaceMeshLandmarker("cpu"), FaceVerifier("cpu")


@pytest.fixture(scope="module")
def faces() -> list[np.ndarray]:
    """Two FACE x FACE crops centred on a face: the astronaut and Grace Hopper."""
    from dfl.demo import astronaut, grace_hopper

    out = []
    for p in (astronaut(), grace_hopper()):
        cx, cy = p.face_center
        half = p.face_width * 1.1
        src = np.float32([[cx - half, cy - half], [cx + half, cy - half], [cx - half, cy + half]])
        dst = np.float32([[0, 0], [FACE, 0], [0, FACE]])
        out.append(cv2.warpAffine(p.image, cv2.getAffineTransform(src, dst), (FACE, FACE), borderMode=cv2.BORDER_REFLECT))
    return out


def frame_with(*placed: tuple[np.ndarray, int, int]) -> np.ndarray:
    """A plain frame with each ``(face, x, y)`` pasted with its top-left corner at x, y."""
    img = np.full((*FRAME, 3), (90, 110, 100), np.uint8)
    for face, x, y in placed:
        img[y:y + FACE, x:x + FACE] = face
    return img


def centre(landmarks: np.ndarray) -> np.ndarray:
    return np.asarray(landmarks)[27:48].mean(0)  # nose bridge and eyes


def near(landmarks: np.ndarray, x: int, y: int, tol: float = 25.0) -> bool:
    return bool(np.linalg.norm(centre(landmarks) - (x + FACE / 2, y + FACE / 2)) < tol)


def tracker(models, **kw) -> FaceTracker:
    det, lm, check = models
    return FaceTracker(det, lm, check, **kw)


# ----------------------------------------------------------------------------------- tracking
def test_tracked_landmarks_match_full_detection_and_skip_the_detector(models, faces) -> None:
    det, lm, check = models
    path = [(40 + 6 * i, 60 + 3 * i) for i in range(8)]   # a slow drift, as between video frames
    t = tracker(models, detect_every=100)
    for x, y in path:
        frame = frame_with((faces[0], x, y))
        got = t.step(frame)
        (full,) = find_faces([frame], det, lm, verifier=check)
        assert len(got.landmarks) == len(full.landmarks) == 1
        eyes = np.linalg.norm(full.landmarks[0][45] - full.landmarks[0][36])
        assert np.abs(got.landmarks[0] - full.landmarks[0]).mean() < 0.06 * eyes  # same face, same points
        assert got.confidences[0] >= DEFAULT_MIN_CONFIDENCE
    assert t.stats.detections == 1 and t.stats.lost == 0   # only the first frame was searched


def test_a_face_that_jumps_at_a_cut_is_found_where_it_lands(models, faces) -> None:
    t = tracker(models, detect_every=100)
    for x in (40, 46, 52):
        (lms,) = t.step(frame_with((faces[0], x, 40))).landmarks
        assert near(lms, x, 40)
    got = t.step(frame_with((faces[0], 300, 190)))     # the cut: same face, other corner of the frame
    assert len(got.landmarks) == 1 and near(got.landmarks[0], 300, 190)
    assert t.stats.detections == 2                      # the jump sent it back to the detector at once
    got = t.step(frame_with((faces[0], 296, 192)))
    assert len(got.landmarks) == 1 and near(got.landmarks[0], 296, 192) and t.stats.detections == 2


def test_a_face_leaves_and_another_enters(models, faces) -> None:
    t = tracker(models, detect_every=4)
    counts = []
    for i in range(12):
        placed = [(faces[0], 30 + 2 * i, 40)] if i < 4 else []          # leaves after frame 3
        if i >= 6:
            placed.append((faces[1], 290, 180))                          # enters at frame 6
        got = t.step(frame_with(*placed))
        counts.append(len(got.landmarks))
        if i >= 6 and got.landmarks:
            assert near(got.landmarks[0], 290, 180)
    assert counts == [1] * 4 + [0] * 2 + [1] * 6      # no ghost after it left; the newcomer found at once


def test_a_second_face_entering_is_found_within_the_schedule(models, faces) -> None:
    every = 3
    t = tracker(models, detect_every=every)
    seen = []
    for i in range(8):
        placed = [(faces[0], 30, 40)] + ([(faces[1], 300, 190)] if i >= 2 else [])
        seen.append(len(t.step(frame_with(*placed)).landmarks))
    first = seen.index(2)
    assert seen[:2] == [1, 1] and first <= 2 + every - 1 and all(n == 2 for n in seen[first:])


def test_generic_landmarker_tracks_from_a_box_made_of_the_last_landmarks(models, faces) -> None:
    det, mesh, check = models

    class BoxesOnly:
        """FaceMesh through the plain Landmarker protocol: no ``track``, so the tracker builds boxes."""
        name = "facemesh-boxes"

        def landmarks(self, images, boxes):
            return mesh.landmarks(images, boxes)

    t = FaceTracker(det, BoxesOnly(), check, detect_every=100)
    for i in range(4):
        got = t.step(frame_with((faces[1], 60 + 5 * i, 50)))
        assert len(got.landmarks) == 1 and near(got.landmarks[0], 60 + 5 * i, 50)
        l, tp, r, b = got.rects[0][:4]
        assert l < centre(got.landmarks[0])[0] < r and tp < centre(got.landmarks[0])[1] < b
    assert t.stats.detections == 1


def test_tracker_max_faces_keeps_the_largest(models, faces) -> None:
    big = cv2.resize(faces[0], None, fx=1.0, fy=1.0)
    small = cv2.resize(faces[1], (100, 100))
    t = tracker(models, max_faces=1, detect_every=100)
    for i in range(3):
        frame = frame_with((big, 20 + i, 30))
        frame[220:320, 330:430] = small
        got = t.step(frame)
        assert len(got.landmarks) == 1 and near(got.landmarks[0], 20 + i, 30)


# ----------------------------------------------------------------------------------- the pipeline
def _write(folder: Path, names_and_frames: list[tuple[str, np.ndarray]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, img in names_and_frames:
        cv2.imwrite(str(folder / name), img)


def test_follows_needs_the_next_number_in_the_same_folder() -> None:
    assert follows(Path("a/00041.png"), Path("a/00042.png"))
    assert follows(Path("a/clip_9.jpg"), Path("a/clip_10.png"))
    assert not follows(None, Path("a/00001.png"))
    assert not follows(Path("a/00041.png"), Path("a/00043.png"))     # a gap: frames deleted or skipped
    assert not follows(Path("a/00042.png"), Path("a/00041.png"))     # out of order
    assert not follows(Path("a/x_1.png"), Path("a/y_2.png"))
    assert not follows(Path("a/1.png"), Path("b/2.png"))
    assert not follows(Path("a/IMG_A.png"), Path("a/IMG_B.png"))


def test_video_frames_are_tracked_and_out_of_order_frames_searched(tmp_path: Path, models, faces) -> None:
    det, lm, _ = models
    moves = [(faces[0], 40 + 8 * i, 50 + 4 * i) if i < 4 else (faces[1], 280 + 4 * i, 170) for i in range(8)]
    opts = ExtractOptions(image_size=64, detect_every=100, batch_size=3)

    video = tmp_path / "video"
    _write(video, [(f"{i + 1:05d}.png", frame_with(m)) for i, m in enumerate(moves)])
    s = extract_faces(video, video / "aligned", det, lm, opts, progress=False)
    assert (s.processed, s.faces, s.frames_without_faces) == (8, 8, 0)
    assert s.detections == 2        # the first frame, then the cut to the other face elsewhere at frame 5
    assert {"decode", "detect", "landmarks", "verify", "align", "write"} <= set(s.stages)

    # the same frames numbered out of order (every other number, descending): each gets the full search
    shuffled = tmp_path / "shuffled"
    _write(shuffled, [(f"{100 - 2 * i:05d}.png", frame_with(m)) for i, m in enumerate(moves)])
    s2 = extract_faces(shuffled, shuffled / "aligned", det, lm, opts, progress=False)
    assert (s2.processed, s2.faces, s2.detections) == (8, 8, 8)

    # tracked and searched faces align alike: the aligned landmarks of each frame agree closely
    from dfl.faceset import read_record
    for i in range(8):
        a = read_record(video / "aligned" / f"{i + 1:05d}_0.jpg").landmarks
        b = read_record(shuffled / "aligned" / f"{100 - 2 * i:05d}_0.jpg").landmarks
        assert np.abs(a - b).mean() < 2.0   # 64 px faces


def test_detect_every_one_searches_every_frame(tmp_path: Path, models, faces) -> None:
    det, lm, _ = models
    folder = tmp_path / "f"
    _write(folder, [(f"{i + 1:05d}.png", frame_with((faces[0], 40 + 4 * i, 50))) for i in range(4)])
    s = extract_faces(folder, folder / "aligned", det, lm, ExtractOptions(image_size=64, detect_every=1),
                      progress=False)
    assert (s.faces, s.detections) == (4, 4)


# ----------------------------------------------------------------------------------- the check
def test_confidence_high_on_faces_and_low_where_landmarks_sit_on_no_face(models, faces) -> None:
    det, lm, check = models
    frame = frame_with((faces[0], 40, 40), (faces[1], 300, 190))
    (found,) = find_faces([frame], det, lm, verifier=check)
    assert len(found.landmarks) == 2 and min(found.confidences) > 0.8
    # the same landmarks moved onto a stripe pattern and onto a round, cup-like blob
    frame[20:180, 280:460] = np.where((np.arange(180) // 12 % 2)[None, :, None], 200, 40).astype(np.uint8)
    cv2.circle(frame, (100, 270), 60, (230, 235, 240), -1)
    moved = np.stack([found.landmarks[0] + (250, 0), found.landmarks[1] - (275, 0)])
    (conf,) = check.confidence([frame], [moved])
    assert np.all(conf < DEFAULT_MIN_CONFIDENCE), conf


def test_summary_line_counts_rejected() -> None:
    from dfl.extract import ExtractSummary
    s = ExtractSummary(backend="x+y", processed=3, faces=3, rejected=2, seconds=1.0)
    assert "2 detections rejected as not faces" in s.line("dst")


# ----------------------------------------------------------------------------------- tiles
@pytest.mark.parametrize("size", [(1364, 720), (720, 1280), (1080, 1920), (512, 512), (480, 640)])
def test_tiles_cover_every_small_face(size: tuple[int, int]) -> None:
    h, w = size
    tiles = plan_tiles(h, w, 40, 128)
    whole_min = 14 * max(h, w) / 128          # what the whole-frame short-range pass sees
    assert tiles and all(0 <= x and x + s <= w and 0 <= y and y + s <= h for x, y, s in tiles)
    assert all(40 * 128 / s >= 14 for _, _, s in tiles)    # a 40 px face reaches the model's minimum
    rng = np.random.default_rng(0)
    for _ in range(300):   # a face up to what the whole-frame pass or half a tile covers lies inside a tile
        face = int(rng.integers(40, int(min(whole_min, tiles[0][2] // 2)) + 1))
        fx, fy = rng.integers(0, w - face + 1), rng.integers(0, h - face + 1)
        assert any(x <= fx and fx + face <= x + s and y <= fy and fy + face <= y + s for x, y, s in tiles)


def test_small_frames_need_no_tiles() -> None:
    assert plan_tiles(288, 360, 40, 128) == []
    assert len(plan_tiles(512, 512, 40, 128)) == 4 and len(plan_tiles(720, 1280, 40, 128)) < 20


# ----------------------------------------------------------------------------------- real footage
def test_no_false_face_on_s29(shared_dir: Path, models, tmp_path: Path) -> None:
    """Frames where BlazeFace's tiles see paper cups, a sleeve or a hand holding a cup beside her face
    (without the check a full search of these gives 2 faces each), plus frames with her face alone."""
    det, lm, _ = models
    bait = {23, 24, 29, 30, 31, 32, 143, 150, 154}
    wanted = bait | {1, 100, 110, 156}
    cap = cv2.VideoCapture(str(shared_dir / "media/video/liveportrait/s29.mp4"))
    frames, i = [], 0
    while len(frames) < len(wanted):
        ok, f = cap.read()
        assert ok
        i += 1
        if i in wanted:
            frames.append((f"{i:05d}.png", f))
    cap.release()
    folder = tmp_path / "s29"
    _write(folder, frames)
    opts = ExtractOptions(image_size=64, detect_every=1)
    s = extract_faces(folder, folder / "aligned", det, lm, opts, progress=False)
    assert (s.processed, s.faces, s.frames_without_faces) == (13, 13, 0)
    assert s.rejected >= len(bait) - 2
    unchecked = extract_faces(folder, tmp_path / "unchecked", det, lm,
                              ExtractOptions(image_size=64, detect_every=1, min_confidence=0), progress=False)
    assert unchecked.faces >= 13 + len(bait) - 2 and unchecked.rejected == 0


# ----------------------------------------------------------------------------------- dlib's models
def test_dlib_models_are_found_in_face_recognition_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dfl.faces import dlib_backend

    pkg = tmp_path / "site" / "face_recognition_models"
    (pkg / "models").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise ImportError('must not be imported')\n")
    (pkg / "models" / "shape_predictor_68_face_landmarks.dat").write_bytes(b"x")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "face_recognition_models", raising=False)
    found = dlib_backend.packaged_model("shape_predictor_68_face_landmarks.dat")
    assert found == pkg / "models" / "shape_predictor_68_face_landmarks.dat"
    assert dlib_backend.packaged_model("mmod_human_face_detector.dat") is None
    own = tmp_path / "weights"
    own.mkdir()
    (own / "shape_predictor_68_face_landmarks.dat").write_bytes(b"mine")
    assert dlib_backend.model_file(own, ("shape_predictor_68_face_landmarks.dat",)) == own / "shape_predictor_68_face_landmarks.dat"
    assert dlib_backend.model_file(tmp_path / "none", ("shape_predictor_68_face_landmarks.dat",)) == found


def test_one_entry_per_face_even_when_framed_differently() -> None:
    from dfl.faces.tracker import TrackedFace, _distinct

    rng = np.random.default_rng(3)
    lm = rng.uniform(100, 180, (68, 2)).astype(np.float32)
    a = TrackedFace(np.array([95, 95, 185, 185, 0.9], np.float32), lm, 0.9, np.zeros(4))
    b = TrackedFace(np.array([0, 0, 60, 60, 0.9], np.float32), lm + 2, 0.8, np.zeros(4))    # same landmarks
    c = TrackedFace(np.array([300, 300, 380, 380, 0.9], np.float32), lm + 200, 0.8, np.zeros(4))
    assert [f.confidence for f in _distinct([a, b, c])] == [0.9, 0.8] and _distinct([a, b, c])[1] is c


def test_cli_takes_detect_every_and_min_confidence(tmp_path: Path, faces, dfl_run) -> None:
    ws = tmp_path / "ws"
    _write(ws / "data_dst", [(f"{i + 1:05d}.png", frame_with((faces[0], 40 + 5 * i, 50))) for i in range(3)])
    (tmp_path / "none").mkdir()                        # an empty weights folder: the built-in backends
    r = dfl_run("extract-faces", "dst", "--workspace", ws, "--image-size", "64", "--detect-every", "2",
                "--min-confidence", "0.5", "--no-output-debug", "--weights-dir", tmp_path / "none", "--device", "cpu",
                "--non-interactive")
    assert r.code == 0, r.err
    assert "3 faces" in r.out and "0 detections rejected as not faces" in r.out
    r = dfl_run("extract-faces", "dst", "--workspace", ws, "--min-confidence", "1.5", "--non-interactive")
    assert r.code != 0 and "min-confidence" in (r.out + r.err)


# ----------------------------------------------------------------------------------- runs side by side
def test_runs_share_out_every_frame_once() -> None:
    from dfl.extract import MIN_RUN, _Runs

    runs = _Runs(100, 2)
    first = []
    while (i := runs.take(0)) is not None:       # worker 0 alone: its half, then halves of what worker 1 has left
        first.append(i)
    second = []
    while (i := runs.take(1)) is not None:
        second.append(i)
    assert sorted(first + second) == list(range(100))
    assert first[:50] == list(range(50)) and first[50] == 75   # the second half of worker 1's run
    assert MIN_RUN <= len(second) < 2 * MIN_RUN                  # what was too short to share
    assert second == list(range(50, 50 + len(second)))          # worker 1 kept the start of its run
    short = _Runs(2 * MIN_RUN - 1, 4)                           # too few frames for two runs: one worker
    assert [short.take(w) for w in (1, 2, 3)] == [None] * 3 and short.take(0) == 0
    assert len({tuple(r) for r in _Runs(3 * MIN_RUN, 8).runs if r[1] > r[0]}) == 3


def test_frames_extracted_in_runs_side_by_side_match_one_run(tmp_path: Path, models, faces) -> None:
    """40 frames of a face moving across, in 2 runs at once (one starting mid-video with the full search)
    and in one: the same faces, the same landmarks, each frame once."""
    det, lm, _ = models
    folder = tmp_path / "video"
    _write(folder, [(f"{i + 1:05d}.png", frame_with((faces[0], 20 + 7 * i, 60 + 2 * i))) for i in range(40)])
    both = extract_faces(folder, tmp_path / "two", det, lm, ExtractOptions(image_size=64, workers=2, detect_every=100),
                          progress=False)
    one = extract_faces(folder, tmp_path / "one", det, lm, ExtractOptions(image_size=64, workers=1, detect_every=100),
                         progress=False)
    assert (both.processed, both.faces, both.frames_without_faces) == (40, 40, 0) == (one.processed, one.faces, 0)
    assert (one.detections, both.detections) == (1, 2)     # the second run began with a search
    from dfl.faceset import read_record
    for i in range(40):
        a = read_record(tmp_path / "two" / f"{i + 1:05d}_0.jpg").source_landmarks
        b = read_record(tmp_path / "one" / f"{i + 1:05d}_0.jpg").source_landmarks
        assert np.abs(a - b).mean() < 1.5
    assert sorted(p.name for p in (tmp_path / "two").glob("*.jpg")) == [f"{i + 1:05d}_0.jpg" for i in range(40)]


class _OneCallAtATime:
    """A detector that does not declare itself thread-safe (as dlib's does not): it counts calls that found
    another call of it still running."""

    name = "blazeface"

    def __init__(self, inner: BlazeFaceDetector) -> None:
        self.inner, self.overlaps, self.calls = inner, 0, 0
        import threading
        self.busy = threading.Lock()

    def detect(self, images: list[np.ndarray]) -> list[np.ndarray]:
        if not self.busy.acquire(blocking=False):
            self.overlaps += 1
            self.busy.acquire()
        try:
            self.calls += 1
            return self.inner.detect(images)
        finally:
            self.busy.release()


def test_backends_not_declared_thread_safe_are_called_one_at_a_time(tmp_path: Path, models, faces) -> None:
    det, lm, _ = models
    folder = tmp_path / "video"
    _write(folder, [(f"{i + 1:05d}.png", frame_with((faces[i % 2], 20 + 5 * i, 60))) for i in range(32)])
    guarded = _OneCallAtATime(det)
    s = extract_faces(folder, tmp_path / "aligned", guarded, lm, ExtractOptions(image_size=64, workers=2,
                                                                                detect_every=2), progress=False)
    assert (s.processed, s.faces) == (32, 32) and guarded.calls >= 16   # a search every other frame
    assert guarded.overlaps == 0


def test_dlib_backends_extract_in_runs_side_by_side(tmp_path: Path, faces) -> None:
    pytest.importorskip("dlib")
    from dfl.faces.dlib_backend import DLIB_SHAPE_FILES, packaged_model
    from dfl.faces.registry import get_backends
    from dfl.faces.weights import weights_dir

    if packaged_model(DLIB_SHAPE_FILES[0]) is None and not (weights_dir(None) / DLIB_SHAPE_FILES[0]).exists():
        pytest.skip("dlib's 68-point model is not installed")
    b = get_backends("dlib", "dlib", "cpu", None)
    folder = tmp_path / "video"
    _write(folder, [(f"{i + 1:05d}.png", frame_with((faces[0], 20 + 5 * i, 60))) for i in range(32)])
    s = extract_faces(folder, tmp_path / "aligned", b.detector, b.landmarker,
                      ExtractOptions(image_size=64, workers=2, detect_every=2), progress=False)
    assert (s.processed, s.faces, s.frames_without_faces) == (32, 32, 0)
