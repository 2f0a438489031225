"""Step 4/5: find every face in a folder of frames, align it, and write DFL aligned-face JPEGs.

DFL's extractor runs one frame at a time through detection, landmarks and writing, which is why it
manages a couple of frames per second.  Here the work is pipelined: frames are decoded on a thread pool
ahead of need, detection and landmarks run on whole batches, and warping, JPEG encoding and writing run on
a second pool while the next batch is inferred (OpenCV releases the GIL, so the threads really overlap).

What follows DFL exactly: the transform from ``dfl.faces.align`` with a bilinear warp (see
INTERPOLATIONS), the rotation retries (0, 90, 270, 180 degrees when nothing is found), faces numbered
largest first as ``<frame stem>_<i>.jpg``, the "aligned square > 4x detector box" sanity filter for face
types up to full_face_no_align, and debug frames in ``aligned_debug/`` with landmarks, detector box and
aligned square.

Resuming is by frame: a small state file in the aligned folder records the frames already done (with
or without faces) and the options used, so a rerun continues where a crash or Ctrl+C stopped.
Unreadable frames are reported, counted and skipped; they never stop the run.
"""

from __future__ import annotations

import json
import re
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np
import torch
from tqdm import tqdm

from dfl.atomic import atomic_write_bytes, atomic_write_text, remove_stale_temporaries
from dfl.device import available_cores
from dfl.errors import DflError
from dfl.faces.align import FaceType, draw_rect_landmarks, transform_matrix, transform_points
from dfl.faces.backends import Detector, Landmarker
from dfl.trash import TRASH_DIR, move_to_trash
from dfl.workspace import list_images

STATE_FILE = ".dfl_extract.json"
ROTATIONS = (0, 90, 270, 180)            # DFL's order of retries when no face is found
MIN_FRAME_SIDE = 128                      # DFL does not search frames smaller than this
# DFL's extractor names INTER_LANCZOS4 but passes it where cv2.warpAffine expects ``dst``, so OpenCV
# ignores it and DFL's faces are bilinear.  "linear" therefore reproduces DFL's pixels, and it is what
# keeps 720p extraction above 25 frames/s on 2 cores (measured: 26 frames/s bilinear, 18 with Lanczos).
INTERPOLATIONS = {"lanczos": cv2.INTER_LANCZOS4, "cubic": cv2.INTER_CUBIC, "linear": cv2.INTER_LINEAR}
LIGHT_BACKENDS = {"blazeface", "facemesh", "dlib", "template", "fixed"}  # a few ms per frame on a CPU core
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
    workers: int = 0                       # decode/write threads per pool; 0 = auto (half the cores, >= 2)
    torch_threads: int = 0                 # torch intra-op threads while extracting; 0 = auto (see below)


@dataclass
class ExtractSummary:
    """What one run did, for the summary line and for scripts."""

    backend: str
    frames: int = 0                        # frames in the input folder
    processed: int = 0                     # frames searched this run
    already_done: int = 0                  # frames skipped because an earlier run finished them
    faces: int = 0
    frames_without_faces: int = 0
    unreadable: list[Path] = field(default_factory=list)
    seconds: float = 0.0
    trash: Path | None = None              # where --overwrite moved the faces it replaces

    @property
    def fps(self) -> float:
        return self.processed / self.seconds if self.seconds > 0 else 0.0

    def line(self, side: str | None = None) -> str:
        head = f"extract-faces {side}: " if side else "extract-faces: "
        return (f"{head}{self.processed} frames ({self.already_done} already done), {self.faces} faces, "
                f"{self.frames_without_faces} frames without faces, {len(self.unreadable)} unreadable; "
                f"backend {self.backend}; {self.fps:.1f} frames/s"
                + (f"; the earlier faces were moved to {self.trash}" if self.trash else ""))


@dataclass
class FrameFaces:
    """The faces found in one frame, in frame pixels, largest first."""

    rects: list[np.ndarray]                # (5,) l, t, r, b, score
    landmarks: list[np.ndarray]            # (68, 2)
    rotation: int = 0


# ----------------------------------------------------------------------------------- rotations
def rotate(image: np.ndarray, rot: int) -> np.ndarray:
    """The frame turned as DFL turns it for retry ``rot`` (90 = clockwise)."""
    if rot == 0:
        return image
    code = {90: cv2.ROTATE_90_CLOCKWISE, 270: cv2.ROTATE_90_COUNTERCLOCKWISE, 180: cv2.ROTATE_180}[rot]
    return cv2.rotate(image, code)


def unrotate_points(points: np.ndarray, rot: int, height: int, width: int) -> np.ndarray:
    """Points found in ``rotate(frame, rot)`` back in the frame's own pixels (``height, width`` of it)."""
    p = np.asarray(points, np.float64).reshape(-1, 2)
    x, y = p[:, 0], p[:, 1]
    if rot == 0:
        out = p.copy()
    elif rot == 90:
        out = np.stack([y, height - 1 - x], axis=1)
    elif rot == 270:
        out = np.stack([width - 1 - y, x], axis=1)
    elif rot == 180:
        out = np.stack([width - 1 - x, height - 1 - y], axis=1)
    else:
        raise ValueError(f"rotation {rot}")
    return out.reshape(np.shape(points))


def unrotate_box(box: np.ndarray, rot: int, height: int, width: int) -> np.ndarray:
    """A ``l, t, r, b, score`` box from the rotated frame as an upright box in the frame."""
    l, t, r, b = box[:4]
    pts = unrotate_points(np.array([[l, t], [r, b]]), rot, height, width)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    return np.array([lo[0], lo[1], hi[0], hi[1], box[4]], np.float32)


# ----------------------------------------------------------------------------------- detection
def rotate_points(points: np.ndarray, rot: int, height: int, width: int) -> np.ndarray:
    """Frame points (frame ``height, width``) in the pixels of ``rotate(frame, rot)``: the frame is that image
    turned back by ``360 - rot``, so this is :func:`unrotate_points` of that turn, in the rotated image's size."""
    if rot not in (0, 90, 180, 270):
        raise ValueError(f"rotation {rot}")
    rh, rw = (width, height) if rot in (90, 270) else (height, width)
    return unrotate_points(points, (360 - rot) % 360, rh, rw)


def _keep_index(boxes: np.ndarray, min_face_px: int, max_faces: int) -> np.ndarray:
    """Indices of boxes big enough, largest first, at most ``max_faces`` (0 = all)."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 5)
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    idx = np.flatnonzero(np.minimum(w, h) >= min_face_px)
    idx = idx[np.argsort(-(w * h)[idx], kind="stable")]
    return idx[:max_faces] if max_faces > 0 else idx


def upright_turn(keypoints: np.ndarray) -> int:
    """Clockwise quarter turn (0/90/180/270) that puts a face upright, from BlazeFace's keypoints.

    The eyes-to-mouth direction should point down the image; a face lying on its side is found by
    BlazeFace as is, but 68-point landmarkers expect it upright, so the frame is turned first.
    """
    eyes = (keypoints[0] + keypoints[1]) / 2.0
    v = keypoints[3] - eyes
    theta = np.degrees(np.arctan2(v[0], v[1]))   # 0 = mouth straight below the eyes
    return int(round(theta / 90.0)) % 4 * 90


def _detect(detector: Detector, images: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """Per image boxes, and keypoints when the detector offers them (BlazeFace)."""
    with_kps = getattr(detector, "detect_with_keypoints", None)
    if callable(with_kps):
        return [(np.asarray(d, np.float32).reshape(-1, 5), np.asarray(k)) for d, k in with_kps(images)]
    return [(np.asarray(d, np.float32).reshape(-1, 5), None) for d in detector.detect(images)]


def find_faces(images: list[np.ndarray], detector: Detector, landmarker: Landmarker,
               min_face_px: int = 40, max_faces: int = 0) -> list[FrameFaces]:
    """Boxes and 68 landmarks for a batch of frames, retrying rotated frames where nothing is found.

    As in DFL, all faces of a frame share one rotation: the first of 0, 90, 270, 180 that finds any.
    When the detector also gives keypoints, a face found lying on its side turns the frame upright for
    the landmarker.
    """
    n = len(images)
    boxes: list[np.ndarray] = [np.zeros((0, 5), np.float32)] * n
    rots = [0] * n
    pending = [i for i, im in enumerate(images) if min(im.shape[:2]) >= MIN_FRAME_SIDE]
    for rot in ROTATIONS:
        if not pending:
            break
        found = _detect(detector, [rotate(images[i], rot) for i in pending])
        still = []
        for i, (b, kps) in zip(pending, found):
            keep = _keep_index(b, min_face_px, max_faces)
            if not len(keep):
                still.append(i)
                continue
            turn = upright_turn(kps[keep[0]]) if kps is not None and kps.ndim == 3 and len(kps) == len(b) else 0
            b = b[keep]
            if turn:
                h, w = images[i].shape[:2]
                new_rot = (rot + turn) % 360
                moved = []
                for box in b:
                    corners = unrotate_points(np.array([[box[0], box[1]], [box[2], box[3]]]), rot, h, w)
                    c = rotate_points(corners, new_rot, h, w)
                    moved.append([*c.min(axis=0), *c.max(axis=0), box[4]])
                b, rot_i = np.asarray(moved, np.float32), new_rot
            else:
                rot_i = rot
            boxes[i], rots[i] = b, rot_i
        pending = still

    with_faces = [i for i in range(n) if len(boxes[i])]
    results = [FrameFaces([], [], rots[i]) for i in range(n)]
    if not with_faces:
        return results
    lms = landmarker.landmarks([rotate(images[i], rots[i]) for i in with_faces], [boxes[i] for i in with_faces])
    for i, lm in zip(with_faces, lms):
        h, w = images[i].shape[:2]
        for box, pts in zip(boxes[i], np.asarray(lm)):
            if pts.shape != (68, 2) or not np.all(np.isfinite(pts)):
                continue  # the landmarker gave up on this face
            results[i].rects.append(unrotate_box(box, rots[i], h, w))
            results[i].landmarks.append(unrotate_points(pts, rots[i], h, w).astype(np.float32))
    return results


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
                      opts: ExtractOptions, debug_dir: Path | None, old_files: list[Path]) -> int:
    """Align and write one frame's faces (and its debug image); returns the number written."""
    from dfl.faceset.io import write_face
    from dfl.faceset.record import FaceRecord

    ft = FaceType(opts.face_type)
    for old in old_files:  # a re-extracted frame replaces all of its earlier faces
        old.unlink(missing_ok=True)
    debug = image.copy() if debug_dir is not None else None
    written = 0
    for rect, lm in zip(faces.rects, faces.landmarks):
        if ft == FaceType.MARK_ONLY:
            mat, face_img, face_lm = None, image, lm
        else:
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
        write_face(aligned_dir / f"{frame_path.stem}_{written}.jpg", face_img, record, opts.jpeg_quality)
        if debug is not None:
            draw_rect_landmarks(debug, ltrb, lm, opts.image_size, ft)
        written += 1
    if debug is not None:
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
    if data.size == 0:
        return None
    img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if img is None or img.size == 0:
        return None
    return img


def _decoded(paths: list[Path], pool: ThreadPoolExecutor, ahead: int) -> Iterator[tuple[Path, np.ndarray | None]]:
    """Frames in order, decoded up to ``ahead`` frames in advance on ``pool``."""
    queue: deque[tuple[Path, Future]] = deque()
    it = iter(paths)
    for p in it:
        queue.append((p, pool.submit(read_frame, p)))
        if len(queue) >= ahead:
            break
    while queue:
        p, fut = queue.popleft()
        nxt = next(it, None)
        if nxt is not None:
            queue.append((nxt, pool.submit(read_frame, nxt)))
        yield p, fut.result()


# ----------------------------------------------------------------------------------- the pipeline
def _torch_threads(opts: ExtractOptions, detector: Detector, landmarker: Landmarker, cores: int) -> int:
    """Intra-op threads for inference.

    Light models (BlazeFace, FaceMesh) take less time per frame than decoding and writing, so they get
    half the cores and the decode/write pools the rest: measured on 2 contended cores, 2 torch threads
    spin-waiting against the pools cost 3x the CPU per frame of 1.  Heavy models (S3FD, 2DFAN-4) are
    the bottleneck themselves and get every core.
    """
    if opts.torch_threads > 0:
        return opts.torch_threads
    if detector.name in LIGHT_BACKENDS and landmarker.name in LIGHT_BACKENDS:
        return max(1, cores // 2)
    return cores


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
    report = report or tqdm.write
    frames_dir, aligned_dir = Path(frames_dir), Path(aligned_dir)
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
    if opts.output_debug:
        debug_dir = debug_dir or aligned_dir.parent / f"{aligned_dir.name}_debug"
    else:
        debug_dir = None
    for folder in filter(None, (aligned_dir, debug_dir)):
        if folder.exists() and not folder.is_dir():
            raise DflError(f"{folder}: is a file, not a folder; move it out of the way")
        folder.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(folder)  # what a killed run's atomic writes left

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
    done = {k: v for k, v in done.items() if k in stems}
    todo = [p for p in frames if opts.overwrite or p.stem not in done]

    summary = ExtractSummary(backend=f"{detector.name}+{landmarker.name}", frames=len(frames),
                             already_done=len(frames) - len(todo), trash=trashed)
    if not todo:
        return summary

    cores = available_cores()
    workers = opts.workers or max(2, cores // 2)
    batch_size = max(1, int(opts.batch_size))
    prev_cv2_threads, prev_torch_threads = cv2.getNumThreads(), torch.get_num_threads()
    cv2.setNumThreads(1)  # parallelism comes from our pools; nested OpenCV threads only contend
    torch.set_num_threads(_torch_threads(opts, detector, landmarker, cores))
    start = time.perf_counter()
    last_save = start
    bar = tqdm(total=len(todo), unit="frame", desc="extract-faces", dynamic_ncols=True, disable=not progress)
    writing: deque[tuple[Path, int, Future]] = deque()

    def finish_one() -> None:
        nonlocal last_save
        path, _, fut = writing.popleft()
        n = fut.result()
        summary.processed += 1
        summary.faces += n
        summary.frames_without_faces += n == 0
        done[path.stem] = n
        bar.update(1)
        now = time.perf_counter()
        if now - last_save > 5.0:
            _save_state(aligned_dir, opts, done)
            last_save = now

    try:
        with ThreadPoolExecutor(workers, thread_name_prefix="dfl-decode") as decode_pool, \
                ThreadPoolExecutor(workers, thread_name_prefix="dfl-write") as write_pool:
            batch: list[tuple[Path, np.ndarray]] = []

            def run_batch() -> None:
                found = find_faces([im for _, im in batch], detector, landmarker, opts.min_face_px, opts.max_faces)
                for (path, image), faces in zip(batch, found):
                    old = existing.get(path.stem, [])
                    fut = write_pool.submit(write_frame_faces, path, image, faces, aligned_dir, opts, debug_dir, old)
                    writing.append((path, len(faces.rects), fut))
                batch.clear()
                while len(writing) > 2 * batch_size or (writing and writing[0][2].done()):
                    finish_one()

            for path, image in _decoded(todo, decode_pool, ahead=2 * batch_size + workers):
                if image is None:
                    summary.unreadable.append(path)
                    report(f"{path}: unreadable or corrupt image, skipped")
                    bar.update(1)
                    continue
                batch.append((path, image))
                if len(batch) >= batch_size:
                    run_batch()
            if batch:
                run_batch()
            while writing:
                finish_one()
    finally:
        # Ctrl+C or an error: keep what was finished so the next run resumes after it
        for path, _, fut in writing:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                done[path.stem] = fut.result()
        _save_state(aligned_dir, opts, done)
        bar.close()
        cv2.setNumThreads(prev_cv2_threads)
        torch.set_num_threads(prev_torch_threads)
    summary.seconds = time.perf_counter() - start
    return summary
