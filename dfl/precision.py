"""Which precision to compute in, chosen by measuring, not by reading CPU flags.

The CPU flags say what the hardware has, not what pays: on one Zen 4 CPU with AVX-512 BF16 and no AMX, bf16
trained Quick96 1.5x faster than fp32 where the flags had said "fp32"; float16 without AVX-512 FP16 is
emulated and ran 15x slower.  So ``auto`` times a few steps of the work at hand (the caller's ``step``: a
training iteration of the real model, options and batch size, or a merge prediction) in each precision the
device does natively, keeps the fastest whose results agree with fp32's, and caches the choice per machine
and configuration in the user's dfl folder (:func:`cache_path`): the choice belongs to the machine and the
model's shape, not to one model's weights, so one measurement serves every model of that configuration,
and a model folder copied to another computer never carries a choice made elsewhere.

This module knows nothing of models: the training side (:mod:`dfl.training.precision`) and the merge side
(:mod:`dfl.merge.precision`) give it the step to time and how to compare results.
"""

from __future__ import annotations

import functools
import json
import math
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dfl.atomic import atomic_write_text
from dfl.errors import DflError

PRECISIONS = ("fp32", "bf16", "fp16")
CHOICES = ("auto", "retune", *PRECISIONS)
REFERENCE = "fp32"
CACHE_NAME = "precision.json"
# what a candidate's timing may cost: one warm-up step (not timed), then timed steps until either is reached
TIMED_STEPS = 3
BUDGET_S = 3.0


# -- the machine ---------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _proc_cpuinfo() -> str:
    """``/proc/cpuinfo``, read once per process ("" where there is none, e.g. macOS, Windows)."""
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The CPU's feature flags from ``cpuinfo`` (default: this machine's ``/proc/cpuinfo``; empty where
    there is none)."""
    if cpuinfo is None:
        cpuinfo = _proc_cpuinfo()
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
    return flags


def cpu_name(cpuinfo: str | None = None) -> str:
    """The CPU's model string (``lscpu``'s "Model name"), else what the platform says."""
    if cpuinfo is None:
        cpuinfo = _proc_cpuinfo()
    for line in cpuinfo.splitlines():
        if line.startswith("model name"):
            return " ".join(line.partition(":")[2].split())
    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_model() -> str:
    """The CPU's model string and the instruction sets that decide dfl's speed on it, e.g. "Intel(R) Xeon(R)
    Processor (AMX, AVX-512 FP16, AVX-512 BF16)": benchmarks print it beside every figure, because speeds
    depend on those (bf16 and fp16 kernels) more than on the clock, and virtual CPUs often hide the
    generation in the name."""
    flags = cpu_flags()
    have = [label for flag, label in (("amx_tile", "AMX"), ("avx512_fp16", "AVX-512 FP16"),
                                      ("avx512_bf16", "AVX-512 BF16")) if flag in flags]
    if not have:      # the widest vector unit, for CPUs without any of those
        have = [label for flag, label in (("avx512f", "AVX-512"), ("avx2", "AVX2")) if flag in flags][:1]
    return f"{cpu_name()} ({', '.join(have)})" if have else cpu_name()


def device_name(device: torch.device) -> str:
    """What the measurement was made on: the GPU's name, or the CPU's model string and its thread count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        return f"{cpu_name()}, {torch.get_num_threads()} threads"
    return device.type


def emulation(precision: str, device_type: str, flags: set[str] | None = None) -> str | None:
    """Why ``precision`` is emulated on this device (so slow that ``auto`` does not even time it), or None.

    ``flags``: the CPU's feature flags (default: this machine's).  An unknown CPU (no flags to read, e.g. on
    macOS or Windows) emulates nothing: there every precision is measured.
    """
    if precision == REFERENCE:
        return None
    if device_type == "cuda":
        if precision == "bf16" and not torch.cuda.is_bf16_supported():
            return "no bf16 arithmetic"
        return None
    if device_type != "cpu":
        return f"{precision} is not used on {device_type}"
    flags = cpu_flags() if flags is None else flags
    if not flags:
        return None
    if precision == "fp16" and "avx512_fp16" not in flags:
        return "no AVX-512 FP16"
    if precision == "bf16" and not flags & {"avx512_bf16", "amx_bf16"}:
        return "neither AVX-512 BF16 nor AMX"
    return None


def candidates(device_type: str, flags: set[str] | None = None) -> list[str]:
    """The precisions ``auto`` times on this device: fp32 first (the reference), then those done natively."""
    if device_type not in ("cpu", "cuda"):
        return [REFERENCE]
    return [p for p in PRECISIONS if emulation(p, device_type, flags) is None]


# -- measuring -----------------------------------------------------------------------------------------
@dataclass
class Measurement:
    """One candidate's timing (ms per step, warm-up excluded) and its steps' results, warm-up included."""

    precision: str
    ms: float
    results: list[Any] = field(default_factory=list)
    error: str = ""


def measure(precision: str, start: Callable[[str], Callable[[], Any]], sync: Callable[[], None] = lambda: None,
            timed_steps: int = TIMED_STEPS, budget_s: float = BUDGET_S) -> Measurement:
    """Time ``start(precision)()`` (one step, returning its result): one warm-up step, then ``timed_steps``
    or ``budget_s`` seconds of steps, whichever ends first (at least one); ``ms`` is their median.  A candidate that fails
    (out of memory, an unsupported kernel) is a Measurement with ``error`` set, not an exception."""
    try:
        step = start(precision)
        results = [step()]
        sync()
        times: list[float] = []
        while len(times) < max(1, timed_steps) and (not times or sum(times) < budget_s):
            t0 = time.perf_counter()
            results.append(step())
            sync()
            times.append(time.perf_counter() - t0)
    except (RuntimeError, NotImplementedError, MemoryError) as exc:
        return Measurement(precision, math.inf, [], str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__)
    times.sort()   # the median: a shared machine's load only ever adds time, one slow step is not the rule
    return Measurement(precision, 1000 * times[len(times) // 2], results)


def losses_agree(ref: Sequence[float], other: Sequence[float], rtol: float = 0.05) -> bool:
    """Training: a candidate agrees with fp32 when each of the first steps' losses (same seed, same starting
    weights, same batch) is finite and within ``rtol`` of fp32's loss at that step."""
    n = min(len(ref), len(other))
    if n == 0:
        return False
    return all(math.isfinite(b) and abs(a - b) <= rtol * max(abs(a), 1e-6) for a, b in zip(ref[:n], other[:n]))


def pick(measured: Sequence[Measurement], agree: Callable[[list[Any], list[Any]], bool]) -> tuple[str, dict[str, str]]:
    """The fastest candidate whose results agree with fp32's (fp32 itself always qualifies), and why each
    other one lost ({precision: reason})."""
    ref = next((m for m in measured if m.precision == REFERENCE), None)
    if ref is None or ref.error:
        raise DflError(f"precision: fp32 could not be measured ({ref.error if ref else 'not a candidate'})")
    why: dict[str, str] = {}
    ok = [ref]
    for m in measured:
        if m is ref:
            continue
        if m.error:
            why[m.precision] = f"failed: {m.error}"
        elif not agree(ref.results, m.results):
            why[m.precision] = "results disagree with fp32"
        else:
            ok.append(m)
    best = min(ok, key=lambda m: m.ms)
    for m in ok:
        if m is not best:
            why[m.precision] = f"slower ({m.ms:.0f} vs {best.ms:.0f} ms)"
    return best.precision, why


# -- the cache -----------------------------------------------------------------------------------------
def dfl_home() -> Path:
    """The user's dfl folder: ``$DFL_HOME``, else ``~/.dfl`` (where ``weights/`` lives too)."""
    env = os.environ.get("DFL_HOME")
    return Path(env).expanduser() if env else Path("~/.dfl").expanduser()


def cache_path() -> Path:
    return dfl_home() / CACHE_NAME


def cache_key(task: str, device: torch.device, config: dict[str, Any]) -> str:
    """One line naming what a choice holds for: the task (train, infer), the device (CPU model and threads /
    GPU name), torch's version and the configuration (model type, shape-giving options, batch size)."""
    return json.dumps({"task": task, "device": device_name(device), "torch": torch.__version__, **config},
                      sort_keys=True)


def _read_cache() -> dict[str, Any]:
    try:
        data = json.loads(cache_path().read_text())
    except (OSError, ValueError):
        return {}   # none yet, or unreadable: measured again and rewritten
    return data if isinstance(data, dict) else {}


def cached(key: str) -> dict[str, Any] | None:
    """The cached entry for ``key``: {"precision": ..., "ms": {precision: ms}, "device": ...}, or None."""
    entry = _read_cache().get(key)
    return entry if isinstance(entry, dict) and entry.get("precision") in PRECISIONS else None


def remember(key: str, entry: dict[str, Any]) -> None:
    """Store ``entry`` under ``key`` (atomically; a cache that cannot be written is only not kept)."""
    data = _read_cache()
    data[key] = entry
    try:
        cache_path().parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(cache_path(), json.dumps(data, indent=1, sort_keys=True))
    except OSError:
        pass


# -- the decision --------------------------------------------------------------------------------------
@dataclass
class Tuning:
    """What to measure: the task and configuration (cache key), the step to time per precision, how to
    compare results with fp32's, and where to say things."""

    task: str                                   # "train" or "infer" (the cache keeps them apart)
    what: str                                   # for the lines shown, e.g. "Quick96 batch 4"
    config: dict[str, Any]
    start: Callable[[str], Callable[[], Any]]   # precision -> one step (returning its result)
    agree: Callable[[list[Any], list[Any]], bool]
    echo: Callable[[str], None]
    flags: set[str] | None = None               # the CPU's flags (default: this machine's)


def choose_precision(requested: str, device: torch.device, t: Tuning) -> str:
    """The precision to run in.  ``auto``: the cached choice for this machine and configuration, else
    measured (one line per candidate) and cached; ``retune``: measured again.  A forced precision that the
    hardware emulates is used, with a warning that says what it costs here (measured once, cached)."""
    if requested not in CHOICES:
        raise DflError(f"--precision {requested}: one of {', '.join(CHOICES)}")
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    key = cache_key(t.task, device, t.config)
    if requested in PRECISIONS:
        why = emulation(requested, device.type, t.flags)
        if why is not None:
            _warn_emulated(requested, why, device, t, key, sync)
        return requested
    where = device_name(device)
    entry = cached(key)
    if requested == "auto" and entry is not None:
        t.echo(f"precision {entry['precision']} (measured on {entry.get('device', where)}, cached; "
               "--precision retune to measure again)")
        return entry["precision"]
    cands = candidates(device.type, t.flags)
    if len(cands) == 1:
        return cands[0]
    t.echo(f"measuring {', '.join(cands)} for {t.what} on {where} (once; cached in {cache_path()})")
    measured = []
    for p in cands:
        m = measure(p, t.start, sync)
        measured.append(m)
        t.echo(f"  {p}: " + (f"failed ({m.error})" if m.error else f"{m.ms:.0f} ms/step"))
    choice, why = pick(measured, t.agree)
    known = dict((_read_cache().get(key) or {}).get("ms", {}))   # an emulated precision's cost, if measured
    known.update({m.precision: round(m.ms, 1) for m in measured if not m.error})
    remember(key, {"precision": choice, "device": where, "ms": known})
    lost = "; ".join(f"{p} {r}" for p, r in why.items() if "disagree" in r or "failed" in r)
    t.echo(f"precision {choice} (fastest that agrees with fp32 here{'; ' + lost if lost else ''})")
    return choice


def _warn_emulated(precision: str, why: str, device: torch.device, t: Tuning, key: str,
                   sync: Callable[[], None]) -> None:
    """Say that ``precision`` is emulated and what it costs against fp32 (measured now, unless known)."""
    ms = dict((_read_cache().get(key) or {}).get("ms", {}))
    if not (ms.get(precision) and ms.get(REFERENCE)):
        t.echo(f"{precision} is emulated here ({why}); measuring its cost against fp32 ...")
        for p in (REFERENCE, precision):
            m = measure(p, t.start, sync, timed_steps=1, budget_s=0.0)
            if not m.error:
                ms[p] = round(m.ms, 1)
        raw = _read_cache().get(key)
        raw = raw if isinstance(raw, dict) else {"device": device_name(device)}
        remember(key, {**raw, "ms": {**raw.get("ms", {}), **ms}})
    kind = "CPU" if device.type == "cpu" else "GPU"
    if precision in ms and REFERENCE in ms:
        ratio = ms[precision] / max(ms[REFERENCE], 1e-6)
        cost = f"{ratio:.1f}x slower than fp32 here" if ratio >= 1 else f"{1 / ratio:.1f}x faster than fp32 here"
    else:
        cost = "it could not be measured"
    t.echo(f"warning: {precision} is emulated on this {kind} ({why}): {cost} "
           f"({ms.get(precision, 0):.0f} vs {ms.get(REFERENCE, 0):.0f} ms/step); --precision auto measures and "
           "picks the fastest")
