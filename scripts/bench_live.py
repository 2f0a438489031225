#!/usr/bin/env python
"""Live swap speed: end-to-end frames/s of ``dfl live`` on a 1280x720 video, with CPU time per stage.

The clip is the shared HDTF speaker (512x512, 200 frames) scaled to 720 px high on a 1280x720 canvas and
encoded as H.264, so decoding costs what a 720p file costs (without ../shared: the demo's dst video, scaled
the same way).  Each row runs the whole ``dfl live`` path (decode -> track faces -> align -> swap -> merge
overlay + rct -> encode to mp4) with freshly initialised Quick96 and SAEHD 128 (liae-ud, DFL's default
dims) models: their cost per frame is that of trained ones.  Rows: the PyTorch engine at the automatic
precision (bf16 on CPUs with AMX), PyTorch fp32, and onnxruntime; on CUDA too where a GPU is present.

Columns: frames/s (wall clock, so it depends on what else runs on the machine: the load average is printed
beside it), CPU ms per frame of the whole process and its ffmpeg child, and that time by stage (CPU time
of the thread that ran it; ``encode`` is the ffmpeg child, ``other`` what no stage accounts for: OpenCV's
and the decoder's own threads, queues, Python).  ``bound`` is cores x 1000 / CPU ms: the frames/s the
machine could reach if nothing else ran on it and the stages overlapped perfectly.
For a 2-core figure on a bigger machine: ``taskset -c 0,1 python scripts/bench_live.py``.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dfl.device import available_cores  # noqa: E402
from dfl.precision import cpu_model  # noqa: E402
from dfl.errors import DflError  # noqa: E402
from dfl.live.session import LiveRequest, run_live  # noqa: E402
from dfl.merge.config import MergeConfig  # noqa: E402
from dfl.timing import StageTimes  # noqa: E402

HDTF = Path(__file__).resolve().parents[2] / "shared" / "media" / "video" / "hdtf" / "WDA_KatieHill_000.mp4"
MODELS = {"Quick96": {}, "SAEHD 128": {"resolution": 128, "face_type": "wf", "archi": "liae-ud"}}
STAGES = ("decode", "detect", "landmarks", "verify", "align", "swap", "merge", "write")




def load() -> str:
    try:
        return "/".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "?"


def make_clip(folder: Path, frames: int) -> tuple[Path, str]:
    """A 1280x720 H.264 clip of a speaking face (the HDTF clip, else the demo's dst video)."""
    from dfl.video import encode_arrays

    source, what = HDTF, "HDTF WDA_KatieHill"
    if not source.is_file():
        from dfl.demo import make_demo_workspace

        source, what = make_demo_workspace(folder / "demo").video("dst"), "dfl demo dst"
    cap = cv2.VideoCapture(str(source))
    out = []
    while len(out) < frames:
        ok, f = cap.read()
        if not ok:
            if not out:
                raise SystemExit(f"{source}: no frames")
            cap.release()
            cap = cv2.VideoCapture(str(source))   # loop a short clip
            continue
        f = cv2.resize(f, (720 * f.shape[1] // f.shape[0], 720), interpolation=cv2.INTER_CUBIC)
        pad = (1280 - f.shape[1]) // 2
        out.append(cv2.copyMakeBorder(f, 0, 0, pad, 1280 - f.shape[1] - pad, cv2.BORDER_CONSTANT, value=(40, 40, 40)))
    cap.release()
    clip = folder / "clip720.mp4"
    encode_arrays(out, clip, fps=25, size=(1280, 720), crf=18)
    return clip, what


def make_models(model_dir: Path) -> dict[str, Path]:
    import torch

    from dfl.models import build_model
    from dfl.models import store

    torch.manual_seed(0)
    paths = {}
    for label, options in MODELS.items():
        model_type = label.split()[0]
        model = build_model(model_type, options)
        path = store.model_path(model_dir, label.replace(" ", ""), model_type)
        store.save_checkpoint(path, model_type, dict(model.options), {"iteration": 1}, model.networks, None)
        paths[label] = path
    return paths


def cpu_seconds() -> tuple[float, float]:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


def run(clip: Path, model: Path, engine: str, precision: str, device: str, out: Path) -> dict:
    times = StageTimes()
    req = LiveRequest(source=str(clip), cfg=MergeConfig(mode="overlay", color_transfer_mode="rct"), model_path=model,
                      engine=engine, precision=precision, device=device, output=out, overwrite=True,
                      trash_root=out.parent / "trash", trash_base=out.parent)
    before_load = load()
    (me0, kids0), t0 = cpu_seconds(), time.perf_counter()
    summary = run_live(req, progress=False, notify=lambda line: None, times=times)
    wall = time.perf_counter() - t0
    me1, kids1 = cpu_seconds()
    n = max(1, summary.frames)
    stages = {k: 1000 * times.seconds.get(k, 0.0) / n for k in STAGES}
    stages["encode"] = 1000 * (kids1 - kids0) / n
    total = 1000 * ((me1 - me0) + (kids1 - kids0)) / n
    stages["other"] = max(0.0, total - sum(stages.values()))
    return {"fps": summary.fps, "wall": wall, "frames": summary.frames, "faces": summary.faces, "cpu": total,
            "stages": stages, "engine": summary.engine, "load": f"{before_load} -> {load()}"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=200, help="frames of the 720p clip (the HDTF clip has 200)")
    ap.add_argument("--models", default="Quick96,SAEHD 128", help="comma-separated: Quick96, SAEHD 128")
    ap.add_argument("--engines", default="torch:auto,torch:fp32,onnx",
                    help="comma-separated engine:precision (torch:auto, torch:fp32, torch:bf16, onnx)")
    ap.add_argument("--device", default="all", help="cpu, cuda, or all (the CPU, then CUDA when present)")
    args = ap.parse_args()

    import torch

    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    devices = [d for d in devices if d != "cuda" or torch.cuda.is_available()]
    cores = available_cores()
    with tempfile.TemporaryDirectory(prefix="dfl-bench-live-") as tmp:
        folder = Path(tmp)
        clip, what = make_clip(folder, args.frames)
        paths = make_models(folder / "model")
        print(f"dfl live benchmark: {args.frames} frames of a 1280x720 clip ({what}), one face, overlay + rct, "
              f"written to mp4 (x264 superfast); {cpu_model()}, {cores} usable cores, torch {torch.__version__}")
        head = (f"{'model':<10} {'engine':<34} {'frames/s':>8} {'CPU ms':>7} {'bound':>6} "
                + " ".join(f"{s:>9}" for s in (*STAGES, "encode", "other")) + "  load 1/5/15 min before -> after")
        print(head)
        for device in devices:
            for label in [m.strip() for m in args.models.split(",")]:
                for spec in [e.strip() for e in args.engines.split(",")]:
                    engine, _, precision = spec.partition(":")
                    try:
                        r = run(clip, paths[label], engine, precision or "auto", device, folder / "out.mp4")
                    except DflError as exc:     # e.g. onnxruntime without CUDA on a GPU machine
                        print(f"{label:<10} {spec} on {device}: skipped ({exc})", flush=True)
                        continue
                    bound = cores * 1000 / r["cpu"] if device == "cpu" else float("nan")
                    print(f"{label:<10} {r['engine'][:34]:<34} {r['fps']:>8.1f} {r['cpu']:>7.0f} {bound:>6.1f} "
                          + " ".join(f"{r['stages'][s]:>9.1f}" for s in (*STAGES, "encode", "other"))
                          + f"  {r['load']}", flush=True)
    print("(stage columns: CPU ms per frame; detect, landmarks and verify are the face tracker's; frames/s is "
          "wall clock and drops with the machine's load)")


if __name__ == "__main__":
    main()
