#!/usr/bin/env python
"""Merge speed: frames/s and peak memory merging 720p frames with one face, Quick96, current device.

Runs the real folder merger (read PNG, predict, blend, write labelled PNGs) on 1280x720 frames (the
shared HDTF clip scaled up when ../shared has it, else drawn) with one face, for overlay + rct and for
seamless.  The model is a freshly initialised Quick96: its
cost per frame is that of a trained one.  Targets on 2 CPU cores: overlay + rct >= 10 frames/s,
seamless >= 5.  For a 2-core figure on a bigger machine: ``taskset -c 0,1 python scripts/bench_merge.py``.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dfl.merge.config import MergeConfig  # noqa: E402
from dfl.merge.face import ModelPredictor  # noqa: E402
from dfl.merge.frames import frame_infos, merge_frames, merge_torch_threads  # noqa: E402
from dfl.merge.synthetic import draw_face, template_landmarks  # noqa: E402


HDTF = Path(__file__).resolve().parents[2] / "shared" / "media" / "video" / "hdtf" / "WDA_KatieHill_000.mp4"


def real_frames(n: int, w: int, h: int) -> list[np.ndarray] | None:
    """Frames of the shared HDTF clip scaled to ``h`` and widened to ``w`` (PNG cost depends on content)."""
    if not HDTF.is_file():
        return None
    cap = cv2.VideoCapture(str(HDTF))
    out = []
    while len(out) < n:
        ok, f = cap.read()
        if not ok:
            break
        f = cv2.resize(f, (h, h), interpolation=cv2.INTER_CUBIC)
        pad = (w - h) // 2
        out.append(cv2.copyMakeBorder(f, 0, 0, pad, w - h - pad, cv2.BORDER_REFLECT))
    cap.release()
    return [out[i % len(out)] for i in range(n)] if out else None


def make_frames(folder: Path, n: int, w: int = 1280, h: int = 720) -> dict[str, list[np.ndarray]]:
    """Write ``n`` frames (real footage when ../shared has it, else drawn) with one face each."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([40 + xx * 0.1, 60 + yy * 0.15, 90 + 0 * xx], -1).astype(np.uint8)
    real = real_frames(n, w, h)
    alignments = {}
    for i in range(n):
        lm = template_landmarks(w / 2 + 20 * np.sin(i / 7), h * 0.45 + 10 * np.cos(i / 5), h * 0.3)
        if real is not None:
            frame = real[i]
        else:
            frame = base.copy()
            frame += rng.integers(0, 4, frame.shape, dtype=np.uint8)
            draw_face(frame, lm)
        stem = f"{i:05d}"
        cv2.imwrite(str(folder / f"{stem}.png"), frame, [cv2.IMWRITE_PNG_COMPRESSION, 1])
        alignments[stem] = [lm]
    return alignments


def peak_rss_mib() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 1024 if sys.platform != "darwin" else r / 2 ** 20


def stage_times(info, predictor, dev, n: int = 10) -> None:
    """Milliseconds per stage of one frame (decode, predict one face, blend, encode), one at a time."""
    import torch

    from dfl.imageops.png import encode_png
    from dfl.merge.face import blend_face, compose, prepare_face

    data = np.fromfile(str(info.path), np.uint8)
    frame = cv2.imdecode(data, cv2.IMREAD_COLOR)
    times: dict[str, float] = {}

    def clock(name, fn):
        fn()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(n):
            r = fn()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times[name] = (time.perf_counter() - t) / n * 1000
        return r

    clock("decode png", lambda: cv2.imdecode(data, cv2.IMREAD_COLOR))
    job = clock("cut face", lambda: prepare_face(frame, info.landmarks[0], predictor.resolution, predictor.face_type))
    pred = clock("predict 1 face", lambda: predictor(job.dst_face[None]))
    clock("predict 4 faces", lambda: predictor(np.repeat(job.dst_face[None], 4, 0)))
    one = (pred[0][0], pred[1][0], pred[2][0])
    for mode, ct in (("overlay", "rct"), ("seamless", "none")):
        cfg = MergeConfig(mode=mode, color_transfer_mode=ct)
        res = clock(f"blend {mode}" + (f"+{ct}" if ct != "none" else ""),
                    lambda: compose(frame, [blend_face(frame, job, one, cfg, predictor.face_type)]))
    clock("encode png", lambda: encode_png(res[0], {"a": "b"}))
    clock("encode mask", lambda: encode_png((res[1] * 255).astype(np.uint8)))
    print("stage times (ms, one thread of work at a time): " + ", ".join(f"{k} {v:.1f}" for k, v in times.items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads while merging (default: the merger's choice, half the usable cores)")
    ap.add_argument("--workers", type=int, default=None, help="blend/write threads (default: usable cores)")
    ap.add_argument("--batch", type=int, default=None, help="frames predicted at once (CPU 4, GPU 16)")
    ap.add_argument("--model", default="Quick96")
    ap.add_argument("--stages", action="store_true", help="also time each stage of one frame, sequentially")
    args = ap.parse_args()

    import torch

    from dfl.device import pick_device
    from dfl.models import create_model

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    dev = pick_device(args.device)
    threads = args.threads or merge_torch_threads(cores)
    torch.set_num_threads(threads)   # for --stages; merge_frames sets the same while merging
    model = create_model(args.model, {}).to(dev).eval()
    predictor = ModelPredictor(model, dev)
    batch = args.batch or (16 if dev.type == "cuda" else 4)
    workers = args.workers or cores

    with tempfile.TemporaryDirectory(prefix="dfl-bench-merge-") as tmp:
        src = Path(tmp) / "frames"
        src.mkdir()
        alignments = make_frames(src, args.frames)
        infos = frame_infos(sorted(src.glob("*.png")), alignments)
        warm = MergeConfig(mode="overlay", color_transfer_mode="rct")
        merge_frames(infos[:batch], Path(tmp) / "warm", Path(tmp) / "warm_m", predictor, warm, batch_frames=batch,
                     workers=workers, progress=False, torch_threads=threads)
        if args.stages:
            stage_times(infos[0], predictor, dev)
        rows = []
        for name, cfg in (("overlay + rct", MergeConfig(mode="overlay", color_transfer_mode="rct")),
                          ("seamless", MergeConfig(mode="seamless", color_transfer_mode="none")),
                          ("seamless + rct", MergeConfig(mode="seamless", color_transfer_mode="rct"))):
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            t, cpu = time.perf_counter(), time.process_time()
            s = merge_frames(infos, Path(tmp) / name.replace(" ", ""), Path(tmp) / (name.replace(" ", "") + "_m"),
                             predictor, cfg, batch_frames=batch, workers=workers, force=True, progress=False,
                             torch_threads=threads)
            dt = time.perf_counter() - t
            cpu_ms = (time.process_time() - cpu) / max(1, s.merged) * 1000
            gpu = torch.cuda.max_memory_allocated() / 2 ** 20 if dev.type == "cuda" else 0.0
            rows.append((name, s.merged / dt, cpu_ms, peak_rss_mib(), gpu))

    print(f"dfl merge benchmark: {args.frames} {'HDTF' if HDTF.is_file() else 'drawn'} frames 1280x720, one face, {args.model} "
          f"({model.resolution}px) on {dev.type}, {cores} usable cores, torch threads {threads if dev.type == 'cpu' else '-'}, "
          f"{workers} workers, batch {batch}")
    print(f"{'mode':<16} {'frames/s':>9} {'CPU ms/frame':>13} {'peak RSS MiB':>13} {'peak GPU MiB':>13}")
    for name, fps, cpu_ms, rss, gpu in rows:
        print(f"{name:<16} {fps:>9.1f} {cpu_ms:>13.0f} {rss:>13.0f} {gpu:>13.0f}")
    if dev.type == "cpu":
        print(f"(CPU ms/frame is all threads' CPU time per frame: {cores} free cores could reach about "
              f"{cores} x 1000 / that frames/s; compare it with frames/s when other work shares the machine)")


if __name__ == "__main__":
    main()
