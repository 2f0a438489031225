"""The CPU's features, the precision to train in, and the process settings for training on the CPU."""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from dfl.device import use_all_cores
from dfl.errors import DflError
from dfl.models.runtime import keep_freed_memory

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@functools.lru_cache(maxsize=1)
def _proc_cpuinfo() -> str:
    """``/proc/cpuinfo``, read once per process ("" where there is none, e.g. macOS, Windows)."""
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The CPU's feature flags from ``cpuinfo`` (default: this machine's ``/proc/cpuinfo``)."""
    if cpuinfo is None:
        cpuinfo = _proc_cpuinfo()
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
    return flags


def cpu_has_bf16(cpuinfo: str | None = None) -> bool:
    """True when the CPU has AMX tiles for bf16 (``amx_bf16``), the only CPUs where bf16 autocast pays off.

    AVX-512 BF16 alone is not enough: there oneDNN's bf16 convolutions ran at about half the fp32 rate
    (Quick96 1886 vs 1396 ms, SAEHD df-ud 128 4619 vs 2787 ms on 2 cores), and so do its bf16 GEMMs.
    """
    return "amx_bf16" in cpu_flags(cpuinfo)


def cpu_has_fp16(cpuinfo: str | None = None) -> bool:
    """True when the CPU has AVX-512 FP16 (``avx512_fp16``): there oneDNN multiplies float16 matrices at the
    float32 rate (accumulating in float32), so ``fp16`` (float16 Winograd tiles, see
    :func:`dfl.models.runtime.half_tiles`) trains faster than fp32 by moving fewer bytes.  Elsewhere
    float16 GEMMs may be emulated, and slow."""
    return "avx512_fp16" in cpu_flags(cpuinfo)


def resolve_precision(precision: str, device: torch.device, cpuinfo: str | None = None) -> str:
    """``auto``: bf16 where the hardware does it fast (CUDA Ampere+, CPUs with AMX), fp16 on older GPUs and
    on CPUs with AVX-512 FP16 (there: float16 Winograd tiles, everything else float32), else fp32."""
    if precision not in PRECISIONS:
        raise DflError(f"--precision {precision}: one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu" and cpu_has_bf16(cpuinfo):
        return "bf16"
    if device.type == "cpu" and cpu_has_fp16(cpuinfo):
        return "fp16"
    return "fp32"


def tune_cpu_for_training() -> None:
    """Flush denormal floats to zero, as TensorFlow does on the CPU (so DFL trained that way too), and keep
    freed memory in the process for the next step (:func:`dfl.models.runtime.keep_freed_memory`).

    Tiny gradients and optimiser moments otherwise hit the CPU's slow denormal path.
    """
    torch.set_flush_denormal(True)
    keep_freed_memory()


def setup_cpu_training() -> None:
    """Everything a process training on the CPU sets once: every core for torch, and the above."""
    use_all_cores()
    tune_cpu_for_training()
