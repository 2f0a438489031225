"""Step 4/5: find every face in a folder of frames, align it, and write DFL aligned-face JPEGs.

DFL's extractor runs one frame at a time through detection, landmarks and writing, which is why it
manages a couple of frames per second.  Frames of one video follow each other (``00041.png`` after
``00040.png``, see :func:`follows`), so their faces are tracked from the previous frame's landmarks
(:class:`dfl.faces.tracker.FaceTracker`: the full search at least every ``detect_every`` frames, whenever a
face is lost and at cuts).  Every other frame (stills, the first frame, frames after a gap or out of order)
gets the full search (:func:`dfl.faces.find.find_faces`), batched.

Tracking is sequential, so the cores are used by splitting the frames into runs of consecutive frames
(:class:`_Runs`) worked on side by side, one thread per core, each reading, finding, aligning and writing
its frames in order; a thread whose run is done takes half of the longest run left, which starts with the
full search.  PNG decoding, onnxruntime, OpenCV and torch release the GIL, so the threads really overlap.
Either way each face passes the confidence check of :mod:`dfl.faces.verify` (``min_confidence``), and the
summary counts the candidates rejected.  Per-stage
CPU times (:mod:`dfl.timing`) come back in ``ExtractSummary.stages`` for the benchmark.

What follows DFL exactly: the transform from ``dfl.faces.align`` with a bilinear warp (see
INTERPOLATIONS), the rotation retries (0, 90, 270, 180 degrees when nothing is found), faces numbered
largest first as ``<frame stem>_<i>.jpg``, the "aligned square > 4x detector box" sanity filter for face
types up to full_face_no_align, and debug frames in ``aligned_debug/`` with landmarks, detector box and
aligned square.

Resuming is by frame: a small state file in the aligned folder records the frames already done (with
or without faces) and the options used, so a rerun continues where a crash or Ctrl+C stopped.  Ctrl+C
(or SIGTERM, see :mod:`dfl.interrupt`) raises :class:`~dfl.interrupt.Interrupted` carrying the summary of
the frames finished before the stop.
Unreadable frames are reported, counted and skipped; they never stop the run.
"""

from __future__ import annotations

import json
import re
import time
import threading
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch
from tqdm import tqdm

from dfl.atomic import atomic_write_bytes, atomic_write_text, remove_stale_temporaries
from dfl.device import available_cores
from dfl.errors import DflError
from dfl.faces.align import FaceType, draw_rect_landmarks, transform_matrix, transform_points
from dfl.faces.backends import Detector, Landmarker, serialized
from dfl.faces.find import FrameFaces, find_faces
from dfl.faces.tracker import DEFAULT_DETECT_EVERY, FaceTracker
from dfl.faces.verify import DEFAULT_MIN_CONFIDENCE, FaceVerifier
from dfl.imageops.png import decode_color
from dfl.interrupt import Interrupted, stop_between_steps
from dfl.progress import progress_bar
from dfl.text import plural
from dfl.timing import StageTimes, null_times
from dfl.trash import TRASH_DIR, move_to_trash
from dfl.workspace import list_images

STATE_FILE = ".dfl_extract.json"
# DFL's extractor names INTER_LANCZOS4 but passes it where cv2.warpAffine expects ``dst``, so OpenCV
# ignores it and DFL's faces are bilinear.  "linear" therefore reproduces DFL's pixels, and it is what
# keeps 720p extraction above 25 frames/s on 2 cores (measured: 26 frames/s bilinear, 18 with Lanczos).
INTERPOLATIONS = {"lanczos": cv2.INTER_LANCZOS4, "cubic": cv2.INTER_CUBIC, "linear": cv2.INTER_LINEAR}
MAX_RUNS = 8             # runs worked on at once (one per core, up to this)
MIN_RUN = 8             # frames: no run is made shorter (each new run starts with the full search)
LIGHT_BACKENDS = {"blazeface", "facemesh", "dlib"}  # a few ms per frame on a CPU core
DEBUG_JPEG_QUALITY = 50
_FACE_NAME = re.compile(r"^(?P<stem>.+)_(?P<idx>\d+)$")


@dataclass
class ExtractOptions:
    """Everything that shapes the output; the defaults are DFL's."""

    face_type: FaceType = FaceType.WHOLE_FACE
    image_size: int = 512
    jpeg_quality: int = 90
    max_faces: int = 0                     # 0 = every face in the frame
    min_face_px: int = 40                  # faces with a smaller box side are skipped
    output_debug: bool = False
    overwrite: bool = False
    batch_size: int = 8
    interpolation: str = "linear"          # aligned-face resampling, see INTERPOLATIONS
    workers: int = 0                       # runs worked on at once, a thread each; 0 = auto (see _threads)
    torch_threads: int = 0                 # torch intra-op threads while extracting; 0 = auto (see _threads)
    detect_every: int = DEFAULT_DETECT_EVERY  # video frames: full search at least every N (1 = every frame)
    min_confidence: float = DEFAULT_MIN_CONFIDENCE  # faces below are rejected as not faces; 0 = keep all


@dataclass
class ExtractSummary:
    """What one run did, for the summary line and for scripts."""

    backend: str
    frames: int = 0                        # frames in the input folder
    processed: int = 0                     # frames searched this run
    already_done: int = 0                  # frames skipped because an earlier run finished them
    faces: int = 0
    frames_without_faces: int = 0
    rejected: int = 0                      # detector candidates rejected as not faces
    detections: int = 0                    # frames that got the full search (the rest were tracked)
    unreadable: list[Path] = field(default_factory=list)
    seconds: float = 0.0
    stages: dict[str, float] = field(default_factory=dict)  # seconds per stage, summed over threads
    trash: Path | None = None              # where --overwrite moved the faces it replaces

    @property
    def fps(self) -> float:
        return self.processed / self.seconds if self.seconds > 0 else 0.0

    @property
    def remaining(self) -> int:
        """Frames a rerun still has to search (after an interruption; unreadable ones are tried again)."""
        return self.frames - self.already_done - self.processed

    def line(self, side: str | None = None) -> str:
        head = f"extract-faces {side}: " if side else "extract-faces: "
        not_faces = "a face" if self.rejected == 1 else "faces"
        return (f"{head}{plural(self.processed, 'frame')} ({self.already_done} already done), "
                f"{plural(self.faces, 'face')}, {plural(self.frames_without_faces, 'frame')} without faces, "
                f"{plural(self.rejected, 'detection')} rejected as not {not_faces}, "
                f"{len(self.unreadable)} unreadable; backend {self.backend}; {self.fps:.1f} frames/s"
                + (f"; the earlier faces were moved to {self.trash}" if self.trash else ""))


# ----------------------------------------------------------------------------------- writing
def _plausible(rect: np.ndarray, mat: np.ndarray, size: int) -> bool:
    """DFL's filter: the aligned square may not cover more than 4x the detector box."""
    n = size - 1
    corners = transform_points(np.float64([(0, 0), (0, n), (n, n), (n, 0)]), mat, invert=True)
    x, y = corners[:, 0], corners[:, 1]
    square = 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))
    box = max(float(rect[2] - rect[0]), 0.0) * max(float(rect[3] - rect[1]), 0.0)
    return square <= 4 * box


def write_frame_faces(frame_path: Path, image: np.ndarray, faces: FrameFaces, aligned_dir: Path,
                      opts: ExtractOptions, debug_dir: Path | None, old_files: list[Path],
                      times: StageTimes | None = None) -> int:
    """Align and write one frame's faces (and its debug image); returns the number written."""
    from dfl.faceset.io import write_face
    from dfl.faceset.record import FaceRecord

    times = times or null_times()
    ft = FaceType(opts.face_type)
    for old in old_files:  # a re-extracted frame replaces all of its earlier faces
        old.unlink(missing_ok=True)
    debug = image.copy() if debug_dir is not None else None
    written = 0
    for rect, lm in zip(faces.rects, faces.landmarks):
        if ft == FaceType.MARK_ONLY:
            mat, face_img, face_lm = None, image, lm
        else:
            with times("align"):
                mat = transform_matrix(lm, opts.image_size, ft)
                if ft <= FaceType.FULL_NO_ALIGN and not _plausible(rect, mat, opts.image_size):
                    continue
                face_img = cv2.warpAffine(image, mat, (opts.image_size, opts.image_size),
                                          flags=INTERPOLATIONS[opts.interpolation])
                face_lm = transform_points(lm.astype(np.float32), mat)
        ltrb = tuple(int(v) for v in rect[:4])
        record = FaceRecord(
            face_type=ft.to_string(), landmarks=np.asarray(face_lm, np.float32),
            source_filename=frame_path.name, source_rect=ltrb,  # type: ignore[arg-type]
            source_landmarks=np.asarray(lm, np.float32), image_to_face_mat=mat,
        )
        with times("write"):
            write_face(aligned_dir / f"{frame_path.stem}_{written}.jpg", face_img, record, opts.jpeg_quality)
        if debug is not None:
            with times("debug"):
                draw_rect_landmarks(debug, ltrb, lm, opts.image_size, ft)
        written += 1
    if debug is not None:
        with times("debug"):
            ok, buf = cv2.imencode(".jpg", debug, [int(cv2.IMWRITE_JPEG_QUALITY), DEBUG_JPEG_QUALITY])
            if ok:
                atomic_write_bytes(debug_dir / f"{frame_path.stem}.jpg", buf.tobytes())
    return written


# ----------------------------------------------------------------------------------- resume state
def _existing_faces(aligned_dir: Path) -> dict[str, list[Path]]:
    """Face files in ``aligned_dir`` by the frame stem they came from."""
    out: dict[str, list[Path]] = {}
    if aligned_dir.is_dir():
        for p in aligned_dir.iterdir():
            if p.suffix.lower() in (".jpg", ".jpeg", ".png") and not p.name.startswith("."):
                m = _FACE_NAME.match(p.stem)
                if m:
                    out.setdefault(m["stem"], []).append(p)
    return out


def _load_state(aligned_dir: Path) -> dict:
    path = aligned_dir / STATE_FILE
    if not path.exists():
        return {}
    try:
        state = json.loads(path.read_text("utf-8"))
        return state if isinstance(state, dict) else {}
    except (OSError, ValueError):
        return {}  # a damaged state only costs re-extracting frames


def _options_key(opts: ExtractOptions) -> dict:
    return {"face_type": FaceType(opts.face_type).to_string(), "image_size": int(opts.image_size)}


def _save_state(aligned_dir: Path, opts: ExtractOptions, done: dict[str, int]) -> None:
    state = {"version": 1, **_options_key(opts), "done": done}
    atomic_write_text(aligned_dir / STATE_FILE, json.dumps(state, separators=(",", ":")))


# ----------------------------------------------------------------------------------- decoding
def read_frame(path: Path) -> np.ndarray | None:
    """A frame as uint8 BGR, or None when it cannot be decoded (works with non-ASCII paths too)."""
    try:
        data = np.fromfile(str(path), np.uint8)
    except OSError:
        return None
    return decode_color(data)


_NUMBERED = re.compile(r"^(?P<prefix>.*?)(?P<num>\d+)$")


def follows(previous: Path | None, path: Path) -> bool:
    """True when ``path`` is the frame right after ``previous`` by its number (``00041.png`` after
    ``00040.png``, same prefix and folder): only such frames are tracked from the last one's faces; stills,
    gaps and frames out of order get the full search."""
    if previous is None or previous.parent != path.parent:
        return False
    a, b = _NUMBERED.match(previous.stem), _NUMBERED.match(path.stem)
    return bool(a and b and a["prefix"] == b["prefix"] and int(b["num"]) == int(a["num"]) + 1)


# ----------------------------------------------------------------------------------- the pipeline
def _threads(opts: ExtractOptions, detector: Detector, landmarker: Landmarker, cores: int) -> tuple[int, int]:
    """(runs worked on at once, torch intra-op threads).

    Tracking is sequential within a run of frames, so the cores are used by working on as many runs as
    there are cores, each on one thread with one intra-op thread: the light models (BlazeFace, FaceMesh,
    through onnxruntime) are hundreds of tiny ops that a second intra-op thread barely speeds up, while two
    runs side by side nearly double the frames/s (measured on 2 cores).  Heavy models on the CPU (S3FD,
    2DFAN-4) keep one run with every core on their large convolutions (and their memory to one frame).
    """
    light = detector.name in LIGHT_BACKENDS and landmarker.name in LIGHT_BACKENDS
    on_cpu = torch.device(_device_of(detector, landmarker)).type == "cpu"
    runs = opts.workers if opts.workers > 0 else (min(cores, MAX_RUNS) if light or not on_cpu else 1)
    threads = opts.torch_threads if opts.torch_threads > 0 else (1 if runs > 1 else cores)
    return max(1, runs), max(1, threads)


def _device_of(detector: Detector, landmarker: Landmarker) -> torch.device | str:
    return getattr(detector, "device", None) or getattr(landmarker, "device", None) or "cpu"


class _Runs:
    """The frames to do (indices ``0..n-1``) as runs of consecutive frames, one per worker; a worker whose run
    is done takes the second half of the longest run left, so the cores stay busy to the end.  No run is
    shorter than ``MIN_RUN`` frames: each costs a full search at its start."""

    def __init__(self, n: int, workers: int) -> None:
        k = max(1, min(workers, n // MIN_RUN))
        bounds = [round(n * i / k) for i in range(k + 1)]
        self.runs = [[bounds[i], bounds[i + 1]] for i in range(k)] + [[n, n] for _ in range(workers - k)]
        self.lock = threading.Lock()

    def take(self, worker: int) -> int | None:
        """The next frame for ``worker``, or None when there is nothing left for it."""
        with self.lock:
            run = self.runs[worker]
            if run[0] >= run[1]:
                longest = max(self.runs, key=lambda r: r[1] - r[0])
                if longest[1] - longest[0] < 2 * MIN_RUN:
                    return None
                middle = (longest[0] + longest[1]) // 2
                run[0], run[1], longest[1] = middle, longest[1], middle
            run[0] += 1
            return run[0] - 1


class _FrameFinder:
    """Faces for frames in folder order: consecutive video frames through the :class:`FaceTracker`, every
    other frame (stills, the first frame, frames after a gap) through batched full searches, whose last
    result then seeds the tracker."""

    def __init__(self, detector: Detector, landmarker: Landmarker, verifier: FaceVerifier | None,
                 opts: ExtractOptions, times: StageTimes) -> None:
        self.verifier = verifier
        self.detector, self.landmarker, self.opts, self.times = detector, landmarker, opts, times
        self.tracker = FaceTracker(detector, landmarker, self.verifier, min_face_px=opts.min_face_px,
                                   max_faces=opts.max_faces, detect_every=opts.detect_every,
                                   min_confidence=opts.min_confidence, times=times)
        self.batch_size = max(1, int(opts.batch_size))
        self.stills: list[tuple[Path, np.ndarray]] = []
        self.previous: Path | None = None
        self.still_searches = 0

    @property
    def detections(self) -> int:
        """Frames that got the full search."""
        return self.still_searches + self.tracker.stats.detections

    def add(self, path: Path, image: np.ndarray) -> list[tuple[Path, np.ndarray, FrameFaces]]:
        """Queue one frame; returns the frames whose faces are known now (in order)."""
        continuous = self.opts.detect_every > 1 and follows(self.previous, path)
        self.previous = path
        if not continuous:
            self.stills.append((path, image))
            return self.flush() if len(self.stills) >= self.batch_size else []
        ready = self.flush()
        ready.append((path, image, self.tracker.step(image)))
        return ready

    def flush(self) -> list[tuple[Path, np.ndarray, FrameFaces]]:
        """Search the queued stills (one batch) and hand the last one's faces to the tracker."""
        if not self.stills:
            return []
        o = self.opts
        found = find_faces([im for _, im in self.stills], self.detector, self.landmarker, o.min_face_px, o.max_faces,
                           self.verifier, o.min_confidence, self.times)
        self.still_searches += len(self.stills)
        self.tracker.observe(self.stills[-1][1], found[-1])
        ready = [(p, im, f) for (p, im), f in zip(self.stills, found)]
        self.stills = []
        return ready


def extract_faces(frames_dir: Path, aligned_dir: Path, detector: Detector, landmarker: Landmarker,
                  opts: ExtractOptions | None = None, debug_dir: Path | None = None,
                  report: Callable[[str], None] | None = None, progress: bool = True,
                  trash_dir: Path | None = None) -> ExtractSummary:
    """Extract the faces of every frame in ``frames_dir`` into ``aligned_dir`` (see module docstring).

    ``debug_dir`` is used when ``opts.output_debug`` is set.  ``report`` receives one line per problem
    (unreadable frames); by default it prints above the progress bar.  With ``opts.overwrite`` the faces
    already there are moved to ``trash_dir`` (default ``<frames_dir>/trash``) first, never deleted.
    """
    opts = opts or ExtractOptions()
    frames_dir, aligned_dir = Path(frames_dir), Path(aligned_dir)
    frames = _check_inputs(frames_dir, opts)
    debug_dir = (debug_dir or aligned_dir.parent / f"{aligned_dir.name}_debug") if opts.output_debug else None
    for folder in filter(None, (aligned_dir, debug_dir)):
        if folder.exists() and not folder.is_dir():
            raise DflError(f"{folder}: is a file, not a folder; move it out of the way")
        folder.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(folder)  # what a killed run's atomic writes left
    existing, done, trashed = _resume(frames, frames_dir, aligned_dir, opts, trash_dir)
    todo = [p for p in frames if opts.overwrite or p.stem not in done]
    summary = ExtractSummary(backend=f"{detector.name}+{landmarker.name}", frames=len(frames),
                             already_done=len(frames) - len(todo), trash=trashed)
    if todo:
        _Extraction(todo, detector, landmarker, opts, aligned_dir, debug_dir, existing, done, summary,
                    report or tqdm.write).run(progress)
    return summary


def _check_inputs(frames_dir: Path, opts: ExtractOptions) -> list[Path]:
    """The frames to extract from, after checking the folder and the options (one-line errors)."""
    if not frames_dir.is_dir():
        raise DflError(f"{frames_dir}: no frames folder; extract the video's frames first")
    frames = list_images(frames_dir)
    if not frames:
        raise DflError(f"{frames_dir}: no frames (png/jpg) to extract faces from")
    if opts.image_size < 64 or opts.image_size > 4096:
        raise DflError(f"--image-size {opts.image_size}: must be between 64 and 4096")
    if opts.interpolation not in INTERPOLATIONS:
        raise DflError(f"interpolation {opts.interpolation}: choose one of {', '.join(INTERPOLATIONS)}")
    if not 1 <= opts.jpeg_quality <= 100:
        raise DflError(f"--jpeg-quality {opts.jpeg_quality}: must be between 1 and 100")
    return frames


def _resume(frames: list[Path], frames_dir: Path, aligned_dir: Path, opts: ExtractOptions,
            trash_dir: Path | None) -> tuple[dict[str, list[Path]], dict[str, int], Path | None]:
    """(faces already in ``aligned_dir`` by frame stem, frames done -> faces written, where ``--overwrite`` moved
    the old faces): what an earlier run left, from its state file, else from the faces there (a DFL faceset)."""
    existing = _existing_faces(aligned_dir)
    trashed = None
    if opts.overwrite and existing:
        trash_dir = trash_dir or frames_dir / TRASH_DIR
        trashed = move_to_trash([p for files in existing.values() for p in files], trash_dir.parent, trash_dir)
        existing = {}
    state = {} if opts.overwrite else _load_state(aligned_dir)
    done: dict[str, int] = {}
    if state:
        if {k: state.get(k) for k in ("face_type", "image_size")} != _options_key(opts) and state.get("done"):
            raise DflError(
                f"{aligned_dir}: faces there were extracted as {state.get('face_type')} at "
                f"{state.get('image_size')} px; rerun with the same --face-type/--image-size to continue, "
                f"or pass --overwrite to extract again")
        done = {str(k): int(v) for k, v in dict(state.get("done") or {}).items()}
    elif not opts.overwrite:
        done = {stem: len(files) for stem, files in existing.items()}  # e.g. a faceset DFL extracted
    stems = {p.stem for p in frames}
    return existing, {k: v for k, v in done.items() if k in stems}, trashed


class _Extraction:
    """One ``extract_faces`` call at work: its runs side by side (:class:`_Runs`), each thread reading, finding,
    aligning and writing its frames; the counts, the resume state and the progress bar under one lock."""

    def __init__(self, todo: list[Path], detector: Detector, landmarker: Landmarker, opts: ExtractOptions,
                 aligned_dir: Path, debug_dir: Path | None, existing: dict[str, list[Path]], done: dict[str, int],
                 summary: ExtractSummary, report: Callable[[str], None]) -> None:
        self.todo, self.opts, self.aligned_dir, self.debug_dir = todo, opts, aligned_dir, debug_dir
        self.existing, self.done, self.summary, self.report = existing, done, summary, report
        self.workers, self.torch_threads = _threads(opts, detector, landmarker, available_cores())
        # dlib's, and anything on Apple's GPU (MPS is not safe to drive from several threads): one call at a time
        mps = torch.device(_device_of(detector, landmarker)).type == "mps"
        detector, landmarker = serialized(detector, mps), serialized(landmarker, mps)
        self.times = StageTimes()
        verifier = FaceVerifier(_device_of(detector, landmarker)) if opts.min_confidence > 0 else None
        self.finders = [_FrameFinder(detector, landmarker, verifier, opts, self.times) for _ in range(self.workers)]
        self.runs = _Runs(len(todo), self.workers)
        self.lock = threading.Lock()
        self.halt = threading.Event()
        self.last_save = 0.0
        self.bar: tqdm | None = None

    def run(self, progress: bool) -> None:
        """Work until every frame is done; on Ctrl+C / SIGTERM raise :class:`Interrupted` with the summary of
        what was finished (saved in the state file, so a rerun resumes after it)."""
        prev_cv2_threads, prev_torch_threads = cv2.getNumThreads(), torch.get_num_threads()
        cv2.setNumThreads(1)  # parallelism comes from the runs; nested OpenCV threads only contend
        torch.set_num_threads(self.torch_threads)
        start = self.last_save = time.perf_counter()
        self.bar = progress_bar(total=len(self.todo), unit="frame", desc="extract-faces", progress=progress)
        stop: KeyboardInterrupt | None = None
        try:
            with stop_between_steps() as check_stop, \
                    ThreadPoolExecutor(self.workers, thread_name_prefix="dfl-extract") as pool:
                futures = [pool.submit(self._work, w, check_stop) for w in range(self.workers)]
                wait(futures)
                errors = [f.exception() for f in futures if f.exception() is not None]
                errors.sort(key=lambda e: isinstance(e, KeyboardInterrupt))   # a real error before a stop
                if errors:
                    raise errors[0]
        except KeyboardInterrupt as exc:   # Ctrl+C or SIGTERM (dfl.interrupt): stop, keep, and say what was done
            stop = exc
        finally:
            # Ctrl+C or an error: the frames written so far are counted, so the next run resumes after them
            self.halt.set()
            _save_state(self.aligned_dir, self.opts, self.done)
            self.bar.close()
            cv2.setNumThreads(prev_cv2_threads)
            torch.set_num_threads(prev_torch_threads)
        s = self.summary
        s.seconds = time.perf_counter() - start
        s.detections = sum(f.detections for f in self.finders)
        s.stages = dict(self.times.seconds)
        if stop is not None:
            raise Interrupted.from_stop(stop, s) from None

    def _work(self, worker: int, check_stop: Callable[[], None]) -> None:
        """One run after another: read, find (tracking within the run), align and write each frame."""
        finder = self.finders[worker]
        try:
            while not self.halt.is_set():
                check_stop()                   # Ctrl+C / SIGTERM stop here, between frames
                i = self.runs.take(worker)
                if i is None:
                    break
                path = self.todo[i]
                with self.times("decode"):
                    image = read_frame(path)
                if image is None:
                    with self.lock:
                        self.summary.unreadable.append(path)
                        self.report(f"{path}: unreadable or corrupt image, skipped")
                        self.bar.update(1)
                    continue
                self._write(finder.add(path, image))
            if not self.halt.is_set():
                self._write(finder.flush())
        except BaseException:
            self.halt.set()                    # the other runs stop at their next frame
            raise

    def _write(self, ready: list[tuple[Path, np.ndarray, FrameFaces]]) -> None:
        for path, image, faces in ready:
            n = write_frame_faces(path, image, faces, self.aligned_dir, self.opts, self.debug_dir,
                                  self.existing.get(path.stem, []), self.times)
            with self.lock:
                s = self.summary
                s.processed += 1
                s.faces += n
                s.frames_without_faces += n == 0
                s.rejected += faces.rejected
                self.done[path.stem] = n
                self.bar.update(1)
                now = time.perf_counter()
                if now - self.last_save > 5.0:
                    _save_state(self.aligned_dir, self.opts, self.done)
                    self.last_save = now
