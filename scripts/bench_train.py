#!/usr/bin/env python
"""Training speed: ms/iteration and peak memory of DFL's reference configurations on this device.

Each (model, precision) runs in its own process (so peak memory is its own): build the model with DFL's
default options, the full objective (DSSIM + MSE + masks, DFL's optimiser) on random batches, a few
warm-up iterations, then the mean of the timed ones.  Peak memory is the process's peak RSS on the CPU
and the CUDA allocator's peak on a GPU.  'CPU ms' is the process's CPU time per iteration (all threads):
on a shared machine it moves less with other people's load than wall time, so compare changes with it.

    python scripts/bench_train.py                       # all four, fp32, bf16 and fp16, current device
    python scripts/bench_train.py --configs q96 --precisions bf16 --iters 5

On the CPU, fp16 is float16 Winograd tiles with everything else float32; on GPUs it is autocast.  The
"auto picks" column is what ``--precision auto`` chooses for that configuration here (measured afresh in a
child process, the user's cache untouched); it should be the fastest row of the configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # runs from a checkout without installing

CONFIGS = {
    "q96": ("Quick96", {}, 4),
    "liae-ud": ("SAEHD", {"archi": "liae-ud", "resolution": 128, "face_type": "f"}, 8),
    "df-ud": ("SAEHD", {"archi": "df-ud", "resolution": 128, "face_type": "f"}, 8),
    "amp": ("AMP", {"resolution": 224, "face_type": "wf"}, 8),
}
LABELS = {"q96": "Quick96 96 b4", "liae-ud": "SAEHD liae-ud 128 b8", "df-ud": "SAEHD df-ud 128 b8",
          "amp": "AMP 224 b8"}
# DeepFaceLab's own code (TF 2.15 CPU, DSSIM + MSE + masks, AdaBelief, random warp) on 2 cores of these machines:
# (ms/iteration, peak GB) as the training issue states them, and as measured again on 2026-11-26, alternating
# with this script's runs on the machine that gave the README numbers (DFL's Model_SAEHD/Model_Quick96 classes,
# random batches, mean of 3 rounds of 8 iterations at 06:38-06:50 UTC; peak RSS in GB of 10^9 bytes).  The two
# differ by up to 40%, and these shared machines drift by 10-20% in an hour (this script's own df-ud fp32 step:
# 1360 ms at 05:50, 1600 ms at 06:40 the same morning): compare ratios measured in the same minutes.
DFL_CPU_REFERENCE = {"liae-ud": (2924, 5.4), "df-ud": (2239, 3.9), "q96": (730, 2.2)}
DFL_CPU_SAME_MACHINE = {"liae-ud": (4167, 3.79), "df-ud": (3126, 2.77), "q96": (1074, 1.86)}


def _setup(key: str, device_name: str):
    """(model, device, random batch) of a configuration, the process set up as ``dfl train`` sets it."""
    import torch

    from dfl.device import pick_device, use_all_cores
    from dfl.models import create_model
    from dfl.training.cpu import tune_cpu_for_training

    model_type, opts, batch = CONFIGS[key]
    device = pick_device(device_name)
    if device.type == "cpu":
        use_all_cores()
        tune_cpu_for_training()  # as dfl train does
    opts = dict(opts, batch_size=batch) if model_type != "Quick96" else {}
    torch.manual_seed(0)
    model = create_model(model_type, opts).to(device)
    r = model.resolution
    g = torch.Generator().manual_seed(0)

    def rnd(c: int) -> torch.Tensor:
        return torch.rand((batch, c, r, r), generator=g)

    b = {"warped_src": rnd(3), "target_src": rnd(3), "warped_dst": rnd(3), "target_dst": rnd(3)}
    for k in ("target_srcm", "target_dstm", "target_srcm_em", "target_dstm_em"):
        b[k] = (rnd(1) > 0.5).float()
    return model, device, b


def _auto_child(key: str, device_name: str, channels_last: bool) -> dict:
    """What ``--precision auto`` picks for the configuration here: measured afresh (``retune``) in a
    throw-away dfl folder, so the user's cached choices stay as they are."""
    import tempfile

    from dfl.precision import cached, cache_key
    from dfl.training.precision import shape_config, training_precision

    model, device, b = _setup(key, device_name)
    with tempfile.TemporaryDirectory() as home:
        os.environ["DFL_HOME"] = home
        choice = training_precision("retune", model, model.options, b, device, channels_last,
                                    lambda line: print(line, file=sys.stderr, flush=True))
        batch = next(iter(b.values())).shape[0]
        entry = cached(cache_key("train", device, shape_config(model.model_type, model.options, batch, channels_last)))
    return {"key": key, "auto": choice, "auto_ms": (entry or {}).get("ms", {})}


def _child(key: str, device_name: str, precision: str, warmup: int, iters: int, channels_last: bool) -> dict:
    import resource

    import torch

    from dfl.training.objective import Objective

    model, device, b = _setup(key, device_name)
    obj = Objective(model, model.options, precision=precision, channels_last=channels_last)
    b = obj.prepare_batch(b)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        obj.train_step(b)
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times, cpu = [], []
    for _ in range(iters):
        t0, c0 = time.perf_counter(), time.process_time()
        obj.train_step(b)
        sync()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    if device.type == "cuda":
        peak_gb = torch.cuda.max_memory_allocated() / 1e9
    else:
        peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9
    params = sum(p.numel() for p in model.parameters())
    return {"key": key, "precision": precision, "device": str(device), "threads": torch.get_num_threads(),
            "ms": 1000 * sum(times) / len(times), "ms_min": 1000 * min(times),
            "cpu_ms": 1000 * sum(cpu) / len(cpu), "peak_gb": peak_gb,
            "params_m": params / 1e6, "fp32_retries": getattr(obj, "fp32_retries", 0)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default=",".join(CONFIGS), help=f"comma list of {', '.join(CONFIGS)}")
    ap.add_argument("--precisions", default="fp32,bf16,fp16")
    ap.add_argument("--no-auto", action="store_true", help="skip the 'auto picks' column (what --precision auto "
                    "measures and chooses for each configuration here)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--no-channels-last", action="store_true")
    ap.add_argument("--json", help="also write the rows to this JSON file")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        key, prec = a.child.split(":")
        if prec == "auto":
            print("RESULT " + json.dumps(_auto_child(key, a.device, not a.no_channels_last)))
        else:
            print("RESULT " + json.dumps(_child(key, a.device, prec, a.warmup, a.iters, not a.no_channels_last)))
        return
    rows = []
    from dfl.precision import cpu_model

    print(f"CPU: {cpu_model()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"{'configuration':24} {'precision':9} {'device':8} {'ms/iter':>9} {'peak GB':>8}  {'DFL CPU ref':>14}  "
          f"{'DFL re-measured':>16}  {'CPU ms':>7}  {'auto picks':>10}")
    for key in a.configs.split(","):
        auto = "-"
        if not a.no_auto:
            cmd = [sys.executable, __file__, "--child", f"{key}:auto", "--device", a.device] + \
                (["--no-channels-last"] if a.no_channels_last else [])
            p = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ))
            line = next((ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if line is None:
                auto = "failed"
            else:
                got = json.loads(line[7:])
                auto = got["auto"]
                print(f"{LABELS[key]:24} auto measured (ms/step, warm-up excluded): "
                      + ", ".join(f"{k} {v:.0f}" for k, v in got["auto_ms"].items()), flush=True)
        for prec in a.precisions.split(","):
            cmd = [sys.executable, __file__, "--child", f"{key}:{prec}", "--device", a.device,
                   "--warmup", str(a.warmup), "--iters", str(a.iters)] + (["--no-channels-last"] if a.no_channels_last else [])
            p = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ))
            line = next((ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if line is None:
                err = (p.stderr.strip().splitlines() or ["no output"])[-1]
                print(f"{LABELS[key]:24} {prec:9} failed: {err}")
                continue
            row = json.loads(line[7:])
            rows.append(row)
            refs = [(DFL_CPU_REFERENCE if i == 0 else DFL_CPU_SAME_MACHINE).get(key) for i in (0, 1)]
            ref_s = [f"{r[0]} ms {r[1]} GB" if r else "-" for r in refs]
            row["auto_picks"] = auto
            print(f"{LABELS[key]:24} {prec:9} {row['device']:8} {row['ms']:9.0f} {row['peak_gb']:8.2f}  {ref_s[0]:>14}  "
                  f"{ref_s[1]:>16}  {row['cpu_ms']:7.0f}  {auto:>10}", flush=True)
            if row.get("fp32_retries"):
                print(f"{'':24} ({row['fp32_retries']} fp16 steps overflowed and were recomputed in fp32)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
