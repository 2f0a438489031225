#!/usr/bin/env python3
"""Benchmark the faceset tools: sort and resize speed in faces/s on a faceset of 1,000 faces.

The faceset is made here, never committed: faces are extracted (whole_face, ``--size`` px) from frames of
the shared HDTF clips (or of the ``dfl demo`` videos when ../shared is missing), then copied with small
changes (brightness, blur, a one-pixel shift of the landmarks, own names and source frames) up to
``--faces``.  Each row times one tool end to end on a fresh copy (reading, computing, renaming or writing;
the copy is not timed).

Timings depend on the machine and its load; the CPU model and the load average are printed with the table.
Usage: python scripts/bench_faceset.py [--faces 1000] [--size 512] [--methods blur,face-yaw,...]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from dfl.precision import cpu_model  # noqa: E402
SHARED = REPO.parent / "shared"
DEFAULT_METHODS = ("blur", "motion-blur", "face-yaw", "face-source-rect-size", "hist", "hist-dissim",
                   "brightness", "black", "origname", "final-by-blur", "final-by-size")


def source_frames(out: Path, n: int) -> Path:
    """``n`` frames with one face each, from the HDTF clips (or the demo's src video)."""
    frames = out / "data_src"
    frames.mkdir(parents=True)
    clips = sorted((SHARED / "media/video/hdtf").glob("*.mp4"))
    if not clips:
        from dfl.demo import make_demo_workspace
        clips = [make_demo_workspace(out / "demo").require_video("src")]
    per_clip = -(-n // len(clips))
    k = 0
    for clip in clips:
        cap = cv2.VideoCapture(str(clip))
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or per_clip
        for i in range(per_clip):
            cap.set(cv2.CAP_PROP_POS_FRAMES, i * max(1, total // per_clip))
            ok, img = cap.read()
            if ok and k < n:
                k += 1
                cv2.imwrite(str(frames / f"{k:05d}.png"), img)
        cap.release()
    return frames


def make_faceset(root: Path, faces: int, size: int) -> Path:
    """``faces`` aligned faces in ``root/aligned``: extracted ones plus varied copies."""
    from dfl.extract import ExtractOptions, extract_faces
    from dfl.faces import registry
    from dfl.faceset import list_faces, read_face, write_face

    frames = source_frames(root, min(60, faces))
    b = registry.get_backends("auto", "auto", "cpu", Path("/nonexistent-weights"))
    aligned = root / "aligned"
    extract_faces(frames, aligned, b.detector, b.landmarker, ExtractOptions(image_size=size), progress=False)
    base = [read_face(p) for p in list_faces(aligned)]
    rng = np.random.default_rng(0)
    i = len(base)
    while i < faces:
        img, rec = base[i % len(base)]
        rec = rec.copy()
        img = np.clip(img.astype(np.int16) + int(rng.integers(-20, 21)), 0, 255).astype(np.uint8)
        if rng.random() < 0.3:
            img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.5, 2.0)))
        rec.landmarks = rec.landmarks + rng.uniform(-1, 1, 2).astype(np.float32)
        rec.source_filename = f"c{i:05d}.png"
        write_face(aligned / f"c{i:05d}_0.jpg", img, rec)
        i += 1
    return aligned


def timed(fn, folder: Path, work: Path) -> float:
    copy = work / "run" / "aligned"
    if copy.parent.exists():
        shutil.rmtree(copy.parent)
    shutil.copytree(folder, copy)
    t = time.perf_counter()
    fn(copy)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faces", type=int, default=1000)
    ap.add_argument("--size", type=int, default=512, help="side of the benchmark faces")
    ap.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                    help="sort methods to time (absdiff compares every pair: slow on a CPU)")
    args = ap.parse_args()

    from dfl.faceset.resize import ResizeOptions, resize_faceset
    from dfl.faceset.sort import SORT_METHODS, SortOptions, sort_faceset

    with tempfile.TemporaryDirectory(prefix="dfl_bench_faceset_") as tmp:
        work = Path(tmp)
        t = time.perf_counter()
        folder = make_faceset(work / "made", args.faces, args.size)
        n = len(list(folder.glob("*.jpg")))
        print(f"made {n} faces of {args.size}px in {time.perf_counter() - t:.0f} s", file=sys.stderr)
        rows = []
        for m in [m for m in args.methods.split(",") if m]:
            if m not in SORT_METHODS:
                raise SystemExit(f"unknown sort method {m}")
            s = timed(lambda f: sort_faceset(f, m, SortOptions(target=n // 2, progress=False)), folder, work)
            rows.append((f"sort {m}", s))
        half = args.size // 2
        for label, opts in ((f"resize {args.size}->{half}", ResizeOptions(image_size=half, progress=False)),
                            (f"resize {args.size}->{half} wf->f", ResizeOptions(image_size=half, face_type="full_face",
                                                                                progress=False))):
            rows.append((label, timed(lambda f: resize_faceset(f, opts), folder, work)))

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\n{n} faces of {args.size}px; {cpu_model()}, {os.cpu_count()} cores, load average {load:.1f}\n")
    print("| tool | seconds | faces/s |")
    print("|---|---|---|")
    for label, secs in rows:
        print(f"| {label} | {secs:.1f} | {n / secs:.0f} |")


if __name__ == "__main__":
    main()
