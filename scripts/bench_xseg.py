#!/usr/bin/env python
"""XSeg end to end on real faces: label by script, train, apply, and how well the masks match the labels.

On the HDTF dst video (``../shared/media/video/hdtf/WDA_KatieHill_000.mp4``): extract frames (``--fps``,
5: 40 frames) and whole_face faces with dfl's own steps, label ``--labelled`` faces (20) by script (the
landmarks' jaw line and eyebrows raised to include the forehead; every other face also gets an exclusion
polygon over the mouth), train ``dfl train --model XSeg`` on the first ``--train-faces`` (16) of them, then
``dfl xseg apply`` to every face.  After every ``--eval-every`` iterations it prints the mean IoU of the
applied masks against the labels on the faces it trained on and on the held-back labelled faces, the
training ms/iteration and the apply rate (faces/s); a GPU column where CUDA is present.

    python scripts/bench_xseg.py                          # 300 iterations, batch 4, evaluated every 100
    python scripts/bench_xseg.py --iterations 200 --eval-every 50 --batch-size 2 --workdir /tmp/xs

Torch uses every core (``OMP_NUM_THREADS`` overrides it).  On a shared 2-core machine that other work keeps
busy, two threads can run several times slower than one (measured 2.5x for an XSeg step, 13.7 s against
5.4 s, at a load average of 6): there ``OMP_NUM_THREADS=1`` gives the steadier numbers.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))   # runs from a checkout without installing
from dfl.precision import cpu_model  # noqa: E402
VIDEO = ROOT.parent / "shared" / "media" / "video" / "hdtf" / "WDA_KatieHill_000.mp4"



def dfl(*args: object) -> None:
    subprocess.run([sys.executable, "-m", "dfl", *map(str, args)], check=True, stdout=subprocess.DEVNULL)


def label_polys(landmarks: np.ndarray, with_mouth_hole: bool) -> list[dict]:
    """Include: the hull of the jaw line and the eyebrows raised by 45% of the brows' height above the chin
    (the forehead the landmark hull cuts off); exclude (``with_mouth_hole``): the outer lip line."""
    lm = np.asarray(landmarks, np.float32)
    jaw, brows = lm[0:17], lm[17:27]
    chin_to_brow = float(np.mean(lm[8, 1] - brows[:, 1]))
    raised = brows - np.float32([0, 0.45 * chin_to_brow])
    hull = cv2.convexHull(np.concatenate([jaw, raised]).astype(np.float32))[:, 0]
    polys = [{"type": 1, "pts": hull.astype(np.float32)}]
    if with_mouth_hole:
        polys.append({"type": 0, "pts": lm[48:60].astype(np.float32)})
    return polys


def label_faces(folder: Path, n: int) -> tuple[list[Path], dict[str, np.ndarray]]:
    """Label ``n`` faces spread over the faceset; (their paths, each one's label mask at 256 px)."""
    from dfl.faceset import polygons_mask, read_face, read_record, write_record
    from dfl.faceset.io import list_faces

    faces = list_faces(folder)
    if len(faces) < n:
        raise SystemExit(f"{folder}: only {len(faces)} faces, {n} to label")
    chosen = [faces[int(i)] for i in np.linspace(0, len(faces) - 1, n).round()]
    truth = {}
    for k, p in enumerate(chosen):
        rec = read_record(p)
        rec.seg_ie_polys = label_polys(rec.landmarks, with_mouth_hole=k % 2 == 1)
        write_record(p, rec)
        img, rec = read_face(p)
        m = polygons_mask(rec, img.shape[:2])
        truth[p.name] = cv2.resize(m, (256, 256), interpolation=cv2.INTER_LINEAR) >= 0.5
    return chosen, truth


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--fps", type=float, default=5.0)
    ap.add_argument("--labelled", type=int, default=20)
    ap.add_argument("--train-faces", type=int, default=16)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, default=None, help="Keep the workspace here (default: a temp folder).")
    args = ap.parse_args()
    if not VIDEO.is_file():
        raise SystemExit(f"{VIDEO}: missing (the shared media folder)")

    import torch

    from dfl.device import pick_device
    from dfl.faceset import read_record, write_record
    from dfl.training.session import SessionRequest, train
    from dfl.xseg.predictor import load_predictor
    from dfl.xseg.tools import apply_masks

    ws = args.workdir or Path(tempfile.mkdtemp(prefix="bench_xseg_"))
    if ws.exists() and args.workdir is not None:
        shutil.rmtree(ws)
    ws.mkdir(parents=True)
    aligned = ws / "data_dst" / "aligned"
    t0 = time.perf_counter()
    dfl("extract-frames", "dst", "-w", ws, "-i", VIDEO, "--fps", args.fps, "--format", "jpg")
    dfl("extract-faces", "dst", "-w", ws, "--face-type", "whole_face", "--image-size", "256", "--max-faces", "1",
        "--no-output-debug")
    labelled, truth = label_faces(aligned, args.labelled)
    held = labelled[args.train_faces:]
    for p in held:                      # held back: labels only in memory, not in the faceset
        rec = read_record(p)
        rec.seg_ie_polys = None
        write_record(p, rec)
    n_faces = len(list(aligned.glob("*.jpg")))
    print(f"{n_faces} dst faces extracted, {len(labelled)} labelled ({len(labelled) - len(held)} to train on, "
          f"{len(held)} held back) in {time.perf_counter() - t0:.0f} s", flush=True)

    device = pick_device(args.device)
    cpu = cpu_model()
    gpu = torch.cuda.get_device_name(0) if device.type == "cuda" else ""
    req = SessionRequest(model_dir=ws / "model", src_dir=ws / "data_src" / "aligned", dst_dir=aligned,
                         model_type="XSeg", name="bench", config={"batch_size": args.batch_size},
                         interactive=False)
    (ws / "model").mkdir()
    settings = dict(device=args.device, preview_seconds=1e9, log_seconds=1e9, workers=0, seed=args.seed, quiet=True)
    header = "| iterations | IoU trained-on | IoU held-back | train ms/it | apply faces/s | batch | device |"
    rows = [header, "|---|---|---|---|---|---|---|"]
    print(header, flush=True)
    it = 0
    while it < args.iterations:
        it = min(args.iterations, it + args.eval_every)
        result, path = train(req, {**settings, "target_iter": it})
        predictor = load_predictor(ws / "model", device=device)
        t = time.perf_counter()
        summary = apply_masks(aligned, predictor, batch_size=8, progress=False)
        rate = summary.applied / (time.perf_counter() - t)
        scores = {p.name: iou(read_record(p).xseg_mask >= 0.5, truth[p.name]) for p in labelled}
        trained = np.mean([scores[p.name] for p in labelled if p not in held])
        kept = np.mean([scores[p.name] for p in held]) if held else float("nan")
        row = (f"| {result.iteration} | {trained:.3f} | {kept:.3f} | {result.ms_per_iter:.0f} | {rate:.2f} | "
               f"{args.batch_size} | {gpu or 'CPU'} |")
        rows.append(row)
        print(row, flush=True)
    print(f"\nCPU: {cpu}" + (f"; GPU: {gpu}" if gpu else "; no CUDA GPU") + f"; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; {n_faces} faces applied per row; workspace {ws}")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
