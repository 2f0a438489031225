"""``dfl live``: open the stream, the face finder and the swap, run the pipeline, show and/or write it.

The swap runs on the PyTorch model (``engine="torch"``, the Winograd CPU paths included), on the same
model exported to ONNX in memory (``engine="onnx"``, onnxruntime), or on any ``.dfm`` file (``dfm=``,
e.g. one exported earlier or one of DeepFaceLive's own).  Faces are found with extraction's detector,
landmarker and :class:`~dfl.faces.tracker.FaceTracker`.  A written video has every frame of a file
source, its frame rate and audio, and the synthetic-media tag; it appears only when complete.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from tqdm import tqdm

from dfl.atomic import remove_stale_temporaries, temp_path_for
from dfl.device import available_cores, pick_device
from dfl.errors import DflError
from dfl.faces.align import FaceType
from dfl.imageops import synthetic_label as label
from dfl.live.pipeline import LivePipeline, live_threads
from dfl.live.source import FrameSource, StreamInfo
from dfl.live.window import NO_XSEG_LIVE, LiveControls, LiveUI, OpenCVLiveWindow, RateMeter, draw_overlay
from dfl.merge.config import MergeConfig
from dfl.merge.face import FaceEnhancerFunc, Predictor
from dfl.precision import CHOICES
from dfl.timing import StageTimes
from dfl.trash import move_to_trash

ENGINES = ("torch", "onnx")
PRECISIONS = CHOICES   # auto, retune, fp32, bf16, fp16
LIVE_PRESET = "superfast"  # x264 preset for written streams: 19 vs 29 CPU ms per 720p frame for veryfast, files ~1.3x


@dataclass
class LiveRequest:
    """What ``dfl live`` was asked for."""

    source: str                         # a video file or a camera index
    cfg: MergeConfig
    model_path: Path | None = None      # a trained model folder (torch or onnx engine)
    dfm: Path | None = None             # or a .dfm file
    engine: str = "torch"
    precision: str = "auto"             # torch engine: auto, fp32, bf16, fp16
    face_type: FaceType | None = None   # for a .dfm that does not say (DeepFaceLive's own)
    device: str = "auto"
    output: Path | None = None
    overwrite: bool = False             # replace an existing output (it goes to the trash)
    trash_root: Path | None = None
    trash_base: Path | None = None
    window: bool = False
    detector: str = "auto"
    landmarker: str = "auto"
    weights_dir: Path | None = None
    detect_every: int = 10
    min_confidence: float = 0.65
    max_faces: int = 0
    min_face_px: int = 40
    max_frames: int = 0                 # stop after this many frames; 0: the whole stream


@dataclass
class LiveSummary:
    stream: StreamInfo
    engine: str
    frames: int = 0
    faces: int = 0
    dropped: int = 0
    seconds: float = 0.0
    stages: dict[str, float] = field(default_factory=dict)   # CPU ms per frame
    output: Path | None = None

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        where = f" -> {self.output}" if self.output else ""
        dropped = f", {self.dropped} dropped to keep up" if self.dropped else ""
        return (f"Swapped {self.frames} frames of {self.stream.name} ({self.faces} faces{dropped}) with {self.engine} "
                f"at {self.fps:.1f} frames/s{where}")


def open_predictor(req: LiveRequest, threads: int, notify: Callable[[str], None]) -> tuple[Predictor, str]:
    """The swap as a merge predictor, and a label for it (engine, device, model)."""
    from dfl.export import runtime

    dev = pick_device(req.device)
    ort_device = "cuda" if dev.type == "cuda" else "cpu"
    if req.dfm is not None:
        if not Path(req.dfm).is_file():
            raise DflError(f"{req.dfm}: no such .dfm file")
        predictor = runtime.load_predictor(Path(req.dfm), ort_device, threads, req.face_type)
        return predictor, f"onnxruntime ({ort_device}, {Path(req.dfm).name})"
    if req.model_path is None:
        raise DflError("dfl live: give a model (--name) or a .dfm file (--dfm)")
    if req.engine not in ENGINES:
        raise DflError(f"--engine {req.engine}: one of {', '.join(ENGINES)}")
    from dfl.export.trained import load_trained

    if req.engine == "onnx":
        from dfl.export.dfm import export_bytes

        runtime.require()
        trained = load_trained(req.model_path, "cpu", notify)
        predictor = runtime.load_predictor(export_bytes(trained), ort_device, threads, FaceType(trained.model.face_type))
        return predictor, f"onnxruntime ({ort_device}, {req.model_path.name})"
    from dfl.merge.face import ModelPredictor

    from dfl.merge.precision import cast_model, inference_precision

    if req.precision not in PRECISIONS:
        raise DflError(f"--precision {req.precision}: one of {', '.join(PRECISIONS)}")
    trained = load_trained(req.model_path, dev, notify)
    precision = req.precision
    if precision != "fp32":   # auto: measured on the faces a frame brings (one) and cached
        precision = inference_precision(precision, trained.model, trained.options, dev, 1, notify)
    return ModelPredictor(cast_model(trained.model, precision), dev), \
        f"torch ({dev.type}, {precision}, {req.model_path.name})"


def make_tracker(req: LiveRequest, times: StageTimes):
    """Extraction's face finder for a stream: detector + landmarker + confidence check, tracked."""
    from dfl.faces.registry import get_backends
    from dfl.faces.tracker import FaceTracker
    from dfl.faces.verify import FaceVerifier

    dev = pick_device(req.device)
    backends = get_backends(req.detector, req.landmarker, dev, req.weights_dir)
    verifier = FaceVerifier(dev) if req.min_confidence > 0 else None
    return FaceTracker(backends.detector, backends.landmarker, verifier, min_face_px=req.min_face_px,
                       max_faces=req.max_faces, detect_every=req.detect_every, min_confidence=req.min_confidence,
                       times=times)


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    if "OMP_NUM_THREADS" in os.environ:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _check_output(req: LiveRequest, stream: StreamInfo) -> None:
    from dfl.video import refuse_to_overwrite

    out = req.output
    assert out is not None
    refuse_to_overwrite(out.absolute(), [stream.path])
    if out.exists() and not req.overwrite:
        raise DflError(f"{out}: already exists; give --force to replace it (the old file goes to the trash)")
    if not out.parent.is_dir():
        raise DflError(f"{out.parent}: output folder does not exist")


def run_live(req: LiveRequest, *, ui: LiveUI | None = None, enhancer: FaceEnhancerFunc | None = None,
             progress: bool = True, notify: Callable[[str], None] = print,
             times: StageTimes | None = None) -> LiveSummary:
    """Swap the faces of ``req.source`` frame by frame; show them (``ui``, or a window when ``req.window``)
    and/or write ``req.output``.  Stops at the end of the stream, on Esc, or when the window closes."""
    if req.cfg.needs_xseg:
        raise DflError(f"--mask-mode {req.cfg.mask_mode}: {NO_XSEG_LIVE}")
    if req.cfg.super_resolution_power and enhancer is None:
        raise DflError("super_resolution_power: needs DFL's face enhancer (FaceEnhancer.npy in the weights folder)")
    times = times or StageTimes()
    threads = live_threads(available_cores())
    with FrameSource(req.source) as source, _torch_threads(threads):
        stream = source.info
        if req.output is not None:
            _check_output(req, stream)
        predictor, engine = open_predictor(req, threads, notify)
        tracker = make_tracker(req, times)
        controls = LiveControls(req.cfg.copy())
        pipeline = LivePipeline(source, tracker, predictor, controls.cfg, times=times,
                                drop_late=stream.camera, enhancer=enhancer)
        summary = LiveSummary(stream, engine, output=req.output)
        own_ui = ui is None and req.window
        if own_ui:
            ui = OpenCVLiveWindow()
        writer = _VideoWriter(req, stream, times) if req.output is not None else None
        try:
            for frame in _consume(pipeline, controls, ui, summary, progress):
                if writer is not None:
                    writer.put(frame)
                if req.max_frames and summary.frames >= req.max_frames:
                    break
            if writer is not None:
                writer.finish()
        finally:
            pipeline.close()
            if writer is not None:
                writer.abort()
            if own_ui and ui is not None:
                ui.close()
        summary.dropped, summary.faces = pipeline.dropped, pipeline.faces
        summary.stages = times.ms_per(summary.frames)
        return summary


def _consume(pipeline: LivePipeline, controls: LiveControls, ui: LiveUI | None, summary: LiveSummary,
             progress: bool) -> Iterator[np.ndarray]:
    """The merged frames in order, with the window shown and its keys applied on the way."""
    meter = RateMeter()
    bar = tqdm(total=summary.stream.frames, desc="Live", unit="frame", dynamic_ncols=True, disable=not progress,
               leave=False)
    start = time.perf_counter()
    try:
        for item in pipeline:
            fps = meter.tick()
            summary.frames += 1
            summary.seconds = time.perf_counter() - start
            bar.update(1)
            if ui is not None:
                latency = 1000 * (time.perf_counter() - item.decoded_at)
                ui.show(draw_overlay(item.output, controls, fps, len(item.landmarks), latency))
                key = ui.next_key()
                if key == "":
                    return
                if controls.handle_key(key):
                    pipeline.cfg, pipeline.swap = controls.cfg, controls.swap
                if controls.quit:
                    yield item.output
                    return
            yield item.output
    finally:
        bar.close()


class _VideoWriter:
    """Encodes the frames it is given into ``req.output`` on a thread of its own (ffmpeg in a child process),
    under a temporary name until :meth:`finish`; an existing file then goes to the trash."""

    _END = object()

    def __init__(self, req: LiveRequest, stream: StreamInfo, times: StageTimes) -> None:
        from dfl.video import probe

        self.out = Path(req.output)  # type: ignore[arg-type]
        self.req, self.stream, self.times = req, stream, times
        self.audio = None
        if stream.path is not None:
            with contextlib.suppress(DflError):
                self.audio = stream.path if probe(stream.path).has_audio else None
        remove_stale_temporaries(self.out.parent, self.out)
        self.tmp = temp_path_for(self.out)
        self.queue: queue.Queue = queue.Queue(maxsize=4)
        self.error: BaseException | None = None
        self.done = False
        self.thread = threading.Thread(target=self._encode, daemon=True, name="live-write")
        self.thread.start()

    def _frames(self) -> Iterator[np.ndarray]:
        while True:
            item = self.queue.get()
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            start = time.thread_time()
            yield item              # the encoder writes it to ffmpeg before asking for the next
            self.times.add("write", time.thread_time() - start)

    def _encode(self) -> None:
        from dfl.video import encode_arrays

        try:
            encode_arrays(self._frames(), self.tmp, fps=self.stream.fps or 25.0,
                          size=(self.stream.width, self.stream.height), audio=self.audio,
                          metadata=label.video_metadata(), preset=LIVE_PRESET)
        except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread
            self.error = exc

    def put(self, frame: np.ndarray) -> None:
        while self.thread.is_alive():
            try:
                self.queue.put(frame, timeout=0.1)
                return
            except queue.Full:
                continue
        raise self.error or DflError(f"{self.out}: the video encoder stopped")

    def finish(self) -> None:
        """Wait for the encoder, then put the video in place."""
        self.queue.put(self._END)
        self.thread.join()
        if self.error is not None:
            raise self.error
        if self.out.exists():
            move_to_trash([self.out], self.req.trash_base or self.out.parent,
                          self.req.trash_root or self.out.parent / "trash")
        os.replace(self.tmp, self.out)
        self.done = True

    def abort(self) -> None:
        """After a failure or Ctrl+C: stop ffmpeg, leave no temporary (a finished video is kept)."""
        if self.thread.is_alive():
            with contextlib.suppress(queue.Empty):
                while True:          # frames not yet encoded are dropped: the output is abandoned
                    self.queue.get_nowait()
            self.queue.put(DflError("live: stopped"))
            self.thread.join(timeout=30)
        if not self.done:
            self.tmp.unlink(missing_ok=True)
