"""The merge pipeline run frame by frame on a stream: decode -> find faces -> align -> swap -> merge.

Each stage runs in its own thread with a short queue to the next, and merging (the costliest numpy/OpenCV
part) on a small pool, so while one frame is merged the next is swapped, the one after it tracked and a
fourth decoded.  OpenCV, numpy, torch and onnxruntime release the GIL in their work, so on 2 cores both
stay busy; torch and onnxruntime get one intra-op thread each (:func:`live_threads`), as extraction gives
its light models.  Frames come out in order.

Nothing here is new merging: faces are found by :class:`dfl.faces.tracker.FaceTracker` (the extraction's
tracker), cut by :func:`dfl.merge.face.prepare_face` and blended by :func:`dfl.merge.face.blend_face` and
:func:`dfl.merge.face.compose` with the settings of ``dfl merge`` (:class:`dfl.merge.config.MergeConfig`),
which may change between frames (the live window's keys).  A camera source may drop frames the
pipeline cannot keep up with (``drop_late``), so what is shown stays current; a file never does.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from dfl.faces.align import FaceType, transform_matrix, transform_points
from dfl.imageops import synthetic_label as label
from dfl.merge.config import MergeConfig
from dfl.merge.face import FaceEnhancerFunc, FaceJob, Predictor, blend_face, compose, prepare_face
from dfl.timing import StageTimes

STAGES = ("decode", "detect", "landmarks", "verify", "align", "swap", "merge", "write")
"""Stage names in :class:`~dfl.timing.StageTimes` (detect, landmarks and verify are the tracker's)."""


@dataclass
class LiveFrame:
    """One frame on its way through the pipeline."""

    index: int
    frame: np.ndarray                      # the input, uint8 BGR
    decoded_at: float                      # perf_counter when it left the decoder
    cfg: MergeConfig
    swap: bool = True
    landmarks: list[np.ndarray] = field(default_factory=list)
    jobs: list[FaceJob] = field(default_factory=list)
    output: np.ndarray | None = None       # the merged frame (the input where nothing was swapped)


@dataclass
class _Failed:
    error: BaseException


_END = object()


def live_threads(cores: int) -> int:
    """Intra-op threads for the models: half the cores, so the stages' threads have the rest."""
    return max(1, cores // 2)


def face_motion(previous: np.ndarray | None, current: np.ndarray) -> tuple[float, float] | None:
    """(power px, angle deg) for the merger's motion blur from the last frame's face to this one's, scaled
    to the span DFL measures (previous to next frame; the next is not known yet on a stream)."""
    if previous is None:
        return None
    s = 256
    centre = np.float64([(s // 2 - 1, s // 2 - 1)])
    a, b = (transform_points(centre, transform_matrix(lm, s, FaceType.FULL), invert=True)[0]
            for lm in (previous, current))
    v = 2.0 * (b - a)
    power = float(np.linalg.norm(v))
    v = v / power if power else np.zeros(2)
    return power, -math.degrees(math.atan2(v[1], v[0]))


class LivePipeline:
    """Frames of ``source`` merged with ``predictor``'s faces, in order: ``for f in pipeline: f.output``.

    ``tracker`` is a :class:`~dfl.faces.tracker.FaceTracker` (``step(frame) -> FrameFaces``); ``cfg`` and
    ``swap`` may be replaced while it runs and apply from the next frame decoded.  ``close()`` stops the
    threads (iterating to the end does too).
    """

    def __init__(self, source: Any, tracker: Any, predictor: Predictor, cfg: MergeConfig, *,
                 times: StageTimes | None = None, drop_late: bool = False, depth: int = 2,
                 merge_workers: int = 2, enhancer: FaceEnhancerFunc | None = None) -> None:
        self.source, self.tracker, self.predictor = source, tracker, predictor
        self.cfg, self.swap = cfg, True
        self.times = times or StageTimes()
        self.drop_late, self.enhancer = drop_late, enhancer
        self.dropped = 0
        self.faces = 0
        self._stop = threading.Event()
        self._queues = [queue.Queue(maxsize=depth) for _ in range(3)]
        self._pool = ThreadPoolExecutor(max_workers=merge_workers, thread_name_prefix="live-merge")
        self._last_landmarks: np.ndarray | None = None
        q = self._queues
        self._threads = [threading.Thread(target=self._decode, args=(q[0],), daemon=True, name="live-decode"),
                         threading.Thread(target=self._relay, args=(self._find_and_align, q[0], q[1]), daemon=True,
                                          name="live-faces"),
                         threading.Thread(target=self._relay, args=(self._swap, q[1], q[2]), daemon=True,
                                          name="live-swap")]
        self._started = False

    # -- the stages -----------------------------------------------------------------------------
    def _decode(self, outq: queue.Queue) -> None:
        """Frames from the source, stamped with the settings of the moment; the end marker after the last."""
        index = 0
        try:
            while not self._stop.is_set():
                with self.times("decode"):
                    frame = self.source.read()
                if frame is None:
                    break
                item = LiveFrame(index, frame, time.perf_counter(), self.cfg, self.swap)
                self._put(outq, item, may_drop=self.drop_late)
                index += 1
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            self._put(outq, _Failed(exc))
            return
        self._put(outq, _END)

    def _find_and_align(self, item: LiveFrame) -> LiveFrame:
        faces = self.tracker.step(item.frame)
        item.landmarks = [np.asarray(lm, np.float64) for lm in faces.landmarks]
        self.faces += len(item.landmarks)
        cfg = item.cfg
        if not item.swap or not item.landmarks:
            self._last_landmarks = item.landmarks[0] if len(item.landmarks) == 1 else None
            return item
        with self.times("align"):
            single = len(item.landmarks) == 1      # as DFL: motion blur only where a frame has one face
            motion = face_motion(self._last_landmarks, item.landmarks[0]) if single and cfg.motion_blur_power else None
            item.jobs = [prepare_face(item.frame, lm, self.predictor.resolution, self.predictor.face_type, motion,
                                      bool(cfg.super_resolution_power)) for lm in item.landmarks]
        self._last_landmarks = item.landmarks[0] if single else None
        return item

    def _swap(self, item: LiveFrame) -> Future:
        preds = None
        if item.jobs:
            with self.times("swap"):
                preds = self.predictor(np.stack([j.dst_face for j in item.jobs]), morph_value=item.cfg.morph_value)
        return self._pool.submit(self._merge, item, preds)

    def _merge(self, item: LiveFrame, preds: tuple[np.ndarray, ...] | None) -> LiveFrame:
        if preds is None:
            item.output = item.frame
            return item
        cfg = item.cfg
        with self.times("merge"):
            results = [blend_face(item.frame, job, (preds[0][k], preds[1][k], preds[2][k]), cfg,
                                  self.predictor.face_type, None, None, self.enhancer)
                       for k, job in enumerate(item.jobs)]
            out, _mask = compose(item.frame, results)
            if cfg.visible_label:
                out = label.draw_visible_label(out)
        item.output = out
        return item

    # -- threads and queues -------------------------------------------------------------------------
    def _put(self, q: queue.Queue, item: object, may_drop: bool = False) -> bool:
        while not self._stop.is_set():
            if may_drop and q.full():
                try:
                    q.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    pass
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _get(self, q: queue.Queue) -> object:
        while not self._stop.is_set():
            try:
                return q.get(timeout=0.05)
            except queue.Empty:
                continue
        return _END

    def _relay(self, work: Any, inq: queue.Queue, outq: queue.Queue) -> None:
        """One stage: take, work, pass on; the end marker and failures travel downstream."""
        try:
            while not self._stop.is_set():
                item = self._get(inq)
                if item is _END or isinstance(item, _Failed):
                    self._put(outq, item)
                    return
                self._put(outq, work(item))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            self._put(outq, _Failed(exc))

    def __iter__(self) -> Iterator[LiveFrame]:
        if not self._started:
            self._started = True
            for t in self._threads:
                t.start()
        try:
            while True:
                item = self._get(self._queues[-1])
                if item is _END:
                    return
                if isinstance(item, _Failed):
                    raise item.error
                yield item.result()  # type: ignore[union-attr]
        finally:
            self.close()

    def close(self) -> None:
        """Stop every stage and wait for them (pending merges are finished, not shown)."""
        self._stop.set()
        for t in self._threads:
            if t.is_alive():
                t.join(timeout=10)
        self._pool.shutdown(wait=True)
