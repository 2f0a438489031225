"""Merging every frame of ``data_dst`` into ``data_dst/merged`` and ``merged_mask``.

Faces are predicted in batches (many frames at once on a GPU, a few on the CPU) while a pool of worker
threads reads frames, blends and writes PNGs (OpenCV and numpy release the GIL, so blending runs on
all cores without copying the model into other processes).  Each merged PNG records a digest of the
settings and the model iteration that made it, so a re-run skips frames already merged the same way
and redoes only what changed.  ``merge_config.json`` beside the output says how to repeat the merge.
"""

from __future__ import annotations

import json
import math
import os
import time
import zlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
from tqdm import tqdm

from dfl import __version__
from dfl.atomic import atomic_write_bytes
from dfl.device import available_cores
from dfl.errors import DflError
from dfl.faces.align import FaceType, transform_matrix, transform_points
from dfl.imageops import synthetic_label as label

from dfl.imageops import png
from dfl.merge.config import MergeConfig
from dfl.merge.face import (NO_XSEG, FaceEnhancerFunc, FaceResult, Predictor, XSegFunc, batch_xseg, blend_face,
                            compose_rois, prepare_face)
from dfl.workspace import Workspace, list_images

CONFIG_NAME = "merge_config.json"
SETTINGS_KEY = "dfl-merge"


@dataclass
class FrameInfo:
    """One dst frame: its file, the landmarks of its faces and its motion (DFL's FrameInfo)."""

    path: Path
    landmarks: list[np.ndarray] = field(default_factory=list)
    motion: tuple[float, float] | None = None      # (power px, angle deg)


@dataclass
class MergeSummary:
    merged: int = 0
    copied: int = 0
    skipped: int = 0
    seconds: float = 0.0

    @property
    def fps(self) -> float:
        done = self.merged + self.copied
        return done / self.seconds if self.seconds > 0 else 0.0

    def line(self, out_dir: Path) -> str:
        return (f"Merged {self.merged} frames, copied {self.copied} without faces, skipped {self.skipped} "
                f"already merged -> {out_dir} ({self.fps:.1f} frames/s)")


def collect_alignments(aligned_dir: Path) -> dict[str, list[np.ndarray]]:
    """Frame stem -> source landmarks of its aligned faces, from the dst faceset's metadata."""
    from dfl.faceset import list_faces, read_record

    out: dict[str, list[np.ndarray]] = {}
    if not Path(aligned_dir).is_dir():
        return out
    for path in list_faces(aligned_dir):
        try:
            rec = read_record(path)
        except DflError as exc:
            tqdm.write(f"Skipping {path.name}: {exc}")
            continue
        if rec.source_filename is None or rec.source_landmarks is None:
            continue
        out.setdefault(Path(rec.source_filename).stem, []).append(np.asarray(rec.source_landmarks, np.float64))
    return out


def frame_infos(frames: Sequence[Path], alignments: Mapping[str, list[np.ndarray]]) -> list[FrameInfo]:
    """Frames with their faces, and each face's motion from its neighbours (single-face videos, as DFL)."""
    infos = [FrameInfo(p, list(alignments.get(p.stem, []))) for p in frames]
    if any(len(i.landmarks) > 1 for i in infos):
        return infos        # DFL: motion blur is not used when frames hold several faces
    s = 256
    centre = np.float64([(s // 2 - 1, s // 2 - 1)])
    pts: list[np.ndarray | None] = []
    for info in infos:
        if info.landmarks:
            mat = transform_matrix(info.landmarks[0], s, FaceType.FULL)
            pts.append(transform_points(centre, mat, invert=True)[0])
        else:
            pts.append(None)
    n = len(infos)
    for i, info in enumerate(infos):
        prev, cur, nxt = pts[max(0, i - 1)], pts[i], pts[min(n - 1, i + 1)]
        if prev is None or cur is None or nxt is None:
            continue
        v = nxt - prev
        power = float(np.linalg.norm(v))
        v = v / power if power else np.zeros(2)
        info.motion = (power, -math.degrees(math.atan2(v[1], v[0])))
    return infos


def _read(path: Path) -> np.ndarray:
    data = np.fromfile(str(path), np.uint8)
    img = png.decode_color(data)
    if img is None:
        raise DflError(f"{path}: cannot read this frame")
    return img


def frame_digest(cfg: MergeConfig, model_id: str, xseg_id: str = "") -> str:
    """What a merged PNG must carry to be reused: settings + model (+ the XSeg model for the XSeg modes)."""
    digest = f"{cfg.settings_hash()}:{model_id}"
    return f"{digest}:{xseg_id}" if cfg.needs_xseg and xseg_id else digest


def require_xseg(xseg: XSegFunc | None, cfgs: Sequence[MergeConfig]) -> str:
    """Check that settings using an XSeg mask mode have an XSeg model (loading a lazy one now, so a missing
    model is one line before any frame is merged); returns the model's identity ('' when none is needed)."""
    need = sorted({c.mask_mode for c in cfgs if c.needs_xseg})
    if not need:
        return ""
    if xseg is None:
        raise DflError(NO_XSEG.format(mode=need[0]))
    require = getattr(xseg, "require", None)
    if require is not None:
        require()
    return str(getattr(xseg, "identity", ""))


def is_done(out_path: Path, mask_path: Path, digest: str) -> bool:
    """True when both outputs exist and the frame was merged with these settings and model."""
    return out_path.is_file() and mask_path.is_file() and \
        label.read_png_text_file(out_path).get(SETTINGS_KEY) == digest


def write_outputs(out_path: Path, mask_path: Path, image: np.ndarray, mask: np.ndarray, digest: str,
                  synthetic: bool, visible_label: bool) -> None:
    """Write the merged frame (labelled) and its mask, each atomically."""
    if visible_label:
        image = label.draw_visible_label(np.ascontiguousarray(image).copy())
    text = label.png_text_chunks({SETTINGS_KEY: digest}) if synthetic else {"Software": "dfl", SETTINGS_KEY: digest}
    mask8 = mask if mask.dtype == np.uint8 else (np.clip(mask, 0, 1) * 255).astype(np.uint8)
    _write(mask_path, png.encode_png(mask8, {"Software": "dfl", SETTINGS_KEY: digest}))
    _write(out_path, png.encode_png(image, text))   # last: its digest marks the frame done


def _write(path: Path, data: bytes) -> None:
    """An atomic write whose failure (a full disk) is one line: the temp file is gone, and a frame is
    either complete or absent, so a rerun merges exactly what is missing."""
    try:
        atomic_write_bytes(path, data)
    except OSError as exc:
        raise DflError(f"{path}: cannot write ({exc.strerror or exc}); every frame written so far is complete, "
                       "a rerun of the merge continues from there") from None


def save_config(out_dir: Path, cfg: MergeConfig, model: Mapping[str, object]) -> Path:
    """``merge_config.json``: the settings (loadable with ``--config``) and the model used."""
    data = {"dfl_version": __version__, "model": dict(model), **cfg.to_dict()}
    path = Path(out_dir) / CONFIG_NAME
    _write(path, (json.dumps(data, indent=2) + "\n").encode("utf-8"))
    return path


def default_batch(device_type: str) -> int:
    return 16 if device_type == "cuda" else 4


def merge_frames(infos: Sequence[FrameInfo], out_dir: Path, mask_dir: Path, predictor: Predictor,
                 cfg: MergeConfig, *, model_id: str = "", frame_configs: Mapping[str, MergeConfig] | None = None,
                 xseg: XSegFunc | None = None, batch_frames: int = 4, workers: int | None = None,
                 force: bool = False, progress: bool = True,
                 on_frame: Callable[[FrameInfo, np.ndarray, np.ndarray], None] | None = None,
                 torch_threads: int | None = None, enhancer: FaceEnhancerFunc | None = None) -> MergeSummary:
    """Merge ``infos`` into ``out_dir``/``mask_dir`` (PNG per frame stem); the core of ``dfl merge``.

    ``frame_configs`` (frame stem -> settings) override ``cfg`` per frame, as the interactive merger
    saves them.  ``torch_threads`` overrides :func:`merge_torch_threads` for a CPU model.  ``enhancer``
    (DFL's FaceEnhancer) serves a ``super_resolution_power`` above 0.  Returns counts and time.
    """
    out_dir, mask_dir = Path(out_dir), Path(mask_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    mask_dir.mkdir(parents=True, exist_ok=True)
    frame_configs = frame_configs or {}
    cfgs = {i.path.stem: frame_configs.get(i.path.stem, cfg) for i in infos}
    xseg_id = require_xseg(xseg, list(cfgs.values()))
    if enhancer is None and any(c.super_resolution_power for c in cfgs.values()):
        raise DflError("super_resolution_power: needs DFL's face enhancer (FaceEnhancer.npy in the weights folder)")
    summary = MergeSummary()
    todo: list[FrameInfo] = []
    for info in infos:
        stem = info.path.stem
        if not force and is_done(out_dir / f"{stem}.png", mask_dir / f"{stem}.png",
                                 frame_digest(cfgs[stem], model_id, xseg_id)):
            summary.skipped += 1
        else:
            todo.append(info)

    workers = workers or available_cores()
    restore_threads = _share_cores_with_workers(predictor, torch_threads)
    try:
        return _merge_todo(todo, summary, out_dir, mask_dir, predictor, cfgs, model_id, xseg, batch_frames,
                           workers, progress, on_frame, enhancer, xseg_id)
    finally:
        restore_threads()


def merge_torch_threads(cores: int) -> int:
    """Torch threads for predicting on the CPU while the workers blend and encode other frames.

    The model is about half of a frame's work; half the cores for it keeps both sides busy, and one
    thread on 2 cores avoids OpenMP's spinning threads fighting the workers (2-3x slower measured).
    """
    return max(1, cores // 2)


def _share_cores_with_workers(predictor: Predictor, threads: int | None) -> Callable[[], None]:
    """Set torch's CPU threads for the merge (unless OMP_NUM_THREADS says otherwise); returns the undo."""
    dev = getattr(predictor, "device", None)
    if dev is None or getattr(dev, "type", str(dev)) != "cpu" or (threads is None and "OMP_NUM_THREADS" in os.environ):
        return lambda: None
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads or merge_torch_threads(available_cores()))
    return lambda: torch.set_num_threads(before)


def _merge_todo(todo: list[FrameInfo], summary: MergeSummary, out_dir: Path, mask_dir: Path, predictor: Predictor,
                cfgs: Mapping[str, MergeConfig], model_id: str, xseg: XSegFunc | None, batch_frames: int,
                workers: int, progress: bool,
                on_frame: Callable[[FrameInfo, np.ndarray, np.ndarray], None] | None,
                enhancer: FaceEnhancerFunc | None = None, xseg_id: str = "") -> MergeSummary:
    """The pipeline: a reader decodes the next chunk while the model (and XSeg, for the XSeg mask modes)
    predicts this one in one batch and the workers blend and write the previous ones."""
    start = time.perf_counter()
    bar = tqdm(total=len(todo), desc="Merging", unit="frame", disable=not progress, dynamic_ncols=True)

    def finish(info: FrameInfo, frame: np.ndarray, jobs, preds, xseg_masks) -> int:
        c = cfgs[info.path.stem]
        rng = np.random.default_rng(zlib.crc32(info.path.stem.encode()))  # repeatable idt/sot
        if jobs:
            results: list[FaceResult] = [blend_face(frame, j, (preds[0][k], preds[1][k], preds[2][k]), c,
                                                    predictor.face_type, xseg, rng, enhancer, xseg_masks[k])
                                         for k, j in enumerate(jobs)]
            image, mask, box = compose_rois(frame, results)
            mask8 = np.zeros(mask.shape, np.uint8)
            if box is not None:     # the mask is zero outside the faces' rectangles
                x0, y0, x1, y1 = box
                mask8[y0:y1, x0:x1] = (np.clip(mask[y0:y1, x0:x1], 0, 1) * 255).astype(np.uint8)
        elif c.mode == "raw-predict":
            r = predictor.resolution
            image, mask = np.zeros((r, r, 3), np.uint8), np.zeros((r, r), np.float32)
            mask8 = np.zeros((r, r), np.uint8)
        else:
            image, mask = frame, np.zeros(frame.shape[:2], np.float32)
            mask8 = np.zeros(frame.shape[:2], np.uint8)
        write_outputs(out_dir / f"{info.path.stem}.png", mask_dir / f"{info.path.stem}.png", image, mask8,
                      frame_digest(c, model_id, xseg_id), synthetic=bool(jobs), visible_label=c.visible_label)
        if on_frame is not None:
            on_frame(info, image, mask)
        return 1 if jobs else 0

    def load(chunk: list[FrameInfo]) -> tuple[list[np.ndarray], list[list]]:
        frames = [_read(i.path) for i in chunk]
        jobs = [[prepare_face(f, lm, predictor.resolution, predictor.face_type, info.motion,
                              bool(cfgs[info.path.stem].super_resolution_power))
                 for lm in info.landmarks] for info, f in zip(chunk, frames)]
        return frames, jobs

    chunks = [todo[b:b + batch_frames] for b in range(0, len(todo), batch_frames)]
    try:
        # a reader keeps the next chunk decoded while the model predicts this one and the workers write
        with ThreadPoolExecutor(max_workers=workers) as pool, ThreadPoolExecutor(max_workers=1) as reader:
            pending: deque[Future] = deque()

            def drain(limit: int) -> None:
                while len(pending) > limit:
                    merged = pending.popleft().result()
                    summary.merged += merged
                    summary.copied += 1 - merged
                    bar.update(1)

            nxt = reader.submit(load, chunks[0]) if chunks else None
            for c, chunk in enumerate(chunks):
                frames, all_jobs = nxt.result()  # type: ignore[union-attr]
                nxt = reader.submit(load, chunks[c + 1]) if c + 1 < len(chunks) else None
                by_morph: dict[float | None, list[tuple[int, int]]] = {}
                for fi, jobs in enumerate(all_jobs):
                    for k in range(len(jobs)):
                        by_morph.setdefault(cfgs[chunk[fi].path.stem].morph_value, []).append((fi, k))
                preds: list[list] = [[None] * len(j) for j in all_jobs]
                for morph, where in by_morph.items():
                    batch = np.stack([all_jobs[fi][k].dst_face for fi, k in where])
                    p = predictor(batch, morph_value=morph)
                    for n, (fi, k) in enumerate(where):
                        preds[fi][k] = (p[0][n], p[1][n], p[2][n])
                faces = [(frames[fi], all_jobs[fi][k], preds[fi][k][0], cfgs[chunk[fi].path.stem])
                         for fi in range(len(chunk)) for k in range(len(all_jobs[fi]))]
                xms = iter(batch_xseg(xseg, faces, predictor.face_type))
                for fi, info in enumerate(chunk):
                    fp = preds[fi]
                    stacked = (np.stack([x[0] for x in fp]), np.stack([x[1] for x in fp]),
                               np.stack([x[2] for x in fp])) if fp else None
                    frame_xms = [next(xms) for _ in fp]
                    pending.append(pool.submit(finish, info, frames[fi], all_jobs[fi], stacked, frame_xms))
                drain(2 * workers + batch_frames)
            drain(0)
    finally:
        bar.close()   # a failure's one line then starts on a line of its own
    summary.seconds = time.perf_counter() - start
    return summary


def model_identity(model_path: Path, state: Mapping[str, object]) -> dict[str, object]:
    """What identifies the model's current weights in saved configs and frame digests."""
    return {"path": str(model_path), "name": Path(model_path).name, "iteration": state.get("iteration", 0)}


@dataclass
class MergeContext:
    """Everything a merge needs besides the settings: frames with faces, the predictor, the model."""

    workspace: Workspace
    infos: list[FrameInfo]
    predictor: Predictor
    model_info: dict[str, object]
    device_type: str = "cpu"
    model_path: Path | None = None
    defaults: dict[str, object] = field(default_factory=dict)   # settings the model needs (its spec's)

    @property
    def model_id(self) -> str:
        return f"{self.model_info.get('name')}@{self.model_info.get('iteration', 0)}"


def load_predictor(model_path: Path, device: str = "auto", precision: str = "fp32"
                   ) -> tuple[Predictor, dict[str, object], str, str]:
    """(predictor, model identity, device type, model type) for a model folder; ``precision``: fp32, bf16,
    fp16, or auto/retune (measured, :mod:`dfl.merge.precision`)."""
    from dfl.device import pick_device, use_all_cores
    from dfl.merge.face import ModelPredictor
    from dfl.merge.precision import cast_model, inference_precision
    from dfl.models.store import load_model

    dev = pick_device(device)
    if dev.type == "cpu":
        use_all_cores()
    model, options, state = load_model(Path(model_path), dev, notify=tqdm.write)
    if precision != "fp32":
        precision = inference_precision(precision, model, options, dev, default_batch(dev.type), tqdm.write)
    info = model_identity(Path(model_path), state)
    info["precision"] = precision
    return ModelPredictor(cast_model(model, precision), dev), info, dev.type, str(getattr(model, "model_type", ""))


def prepare_merge(workspace: Workspace, model_path: Path | None, *, device: str = "auto", precision: str = "fp32",
                  predictor: Predictor | None = None, model_info: Mapping[str, object] | None = None,
                  alignments: Mapping[str, list[np.ndarray]] | None = None) -> MergeContext:
    """Find the dst frames and their faces and load the model (or take ``predictor``)."""
    frames = list_images(workspace.data_dst)
    if not frames:
        raise DflError(f"{workspace.data_dst}: no dst frames; run `dfl extract-frames dst` first")
    if alignments is None:
        aligned = workspace.aligned_dir("dst")
        if not aligned.is_dir():
            raise DflError(f"{aligned}: no aligned dst faces; run `dfl extract-faces dst` first")
        alignments = collect_alignments(aligned)
    dev_type = "cpu"
    defaults: dict[str, object] = {}
    if predictor is None:
        if model_path is None:
            raise DflError("merge: no model given")
        predictor, info, dev_type, model_type = load_predictor(Path(model_path), device, precision)
        info["model_type"] = model_type
        model_info = info
        from dfl.models.registry import get_spec

        defaults = dict(get_spec(model_type).merge_defaults)
    return MergeContext(workspace, frame_infos(frames, alignments), predictor,
                        dict(model_info or {"name": "custom predictor"}), dev_type,
                        Path(model_path) if model_path else None, defaults)


def merge_context(ctx: MergeContext, cfg: MergeConfig, *, frame_configs: Mapping[str, MergeConfig] | None = None,
                  xseg: XSegFunc | None = None, batch_frames: int | None = None, workers: int | None = None,
                  force: bool = False, progress: bool = True, enhancer: FaceEnhancerFunc | None = None) -> MergeSummary:
    """Merge every frame of a prepared context and save ``merge_config.json``."""
    cfg = cfg.copy().validate().fill_unset(ctx.defaults)
    ws = ctx.workspace
    model = dict(ctx.model_info)
    if require_xseg(xseg, [cfg, *(frame_configs or {}).values()]):
        model["xseg"] = str(getattr(xseg, "name", "XSeg"))
    ws.merged_dir.mkdir(parents=True, exist_ok=True)
    save_config(ws.merged_dir, cfg, model)
    return merge_frames(ctx.infos, ws.merged_dir, ws.merged_mask_dir, ctx.predictor, cfg,
                        model_id=ctx.model_id, frame_configs=frame_configs, xseg=xseg,
                        batch_frames=batch_frames or default_batch(ctx.device_type), workers=workers,
                        force=force, progress=progress, enhancer=enhancer)


def merge_folder(workspace: Workspace, model_path: Path | None, cfg: MergeConfig, *, device: str = "auto",
                 predictor: Predictor | None = None, model_info: Mapping[str, object] | None = None,
                 alignments: Mapping[str, list[np.ndarray]] | None = None,
                 frame_configs: Mapping[str, MergeConfig] | None = None, xseg: XSegFunc | None = None,
                 batch_frames: int | None = None, workers: int | None = None, force: bool = False,
                 progress: bool = True, enhancer: FaceEnhancerFunc | None = None) -> MergeSummary:
    """Merge all of ``workspace``'s dst frames with the model at ``model_path`` (or ``predictor``)."""
    cfg.validate()
    ctx = prepare_merge(workspace, model_path, device=device, predictor=predictor, model_info=model_info,
                        alignments=alignments)
    return merge_context(ctx, cfg, frame_configs=frame_configs, xseg=xseg, batch_frames=batch_frames,
                         workers=workers, force=force, progress=progress, enhancer=enhancer)
