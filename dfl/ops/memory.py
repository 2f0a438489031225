"""The allocator setting some kernels' rules assume: keep freed memory in the process (glibc Linux).

Several of :mod:`dfl.ops.winograd`'s shape rules (:func:`dfl.ops.winograd.pays`) hold only when large
temporaries are cheap, i.e. when they are not fresh pages from the kernel every call; whether that is so is
this process's state, set once by the trainer's CPU setup and read by the rules.
"""

from __future__ import annotations

import ctypes
import platform
import sys

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
_M_MMAP_MAX = -4
_KEPT = False


def keep_freed_memory() -> bool:
    """Let glibc keep the memory torch frees for reuse instead of handing it back to the kernel.

    Why: a training step allocates and frees the same large activations every iteration.  glibc serves
    blocks over its mmap threshold with fresh ``mmap`` pages and returns them on free, so each step faults
    in and zeroes its working set again (1.4 GB per liae-ud 128 step, measured: 340k page faults), which on
    these virtual machines costs more than a tenth of the step.  With mmap off and trimming only past 2 GB,
    freed blocks are reused: liae-ud 2640 -> 2290 ms, df-ud 1910 -> 1830 ms per step on 2 cores, for
    about 0.1-0.35 GB more peak memory (fragmentation).  Only for long-running compute (training);
    returns whether it took effect (glibc Linux only; elsewhere the allocator is left alone).
    """
    global _KEPT
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    _KEPT = bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    return _KEPT


def freed_memory_kept() -> bool:
    """Whether :func:`keep_freed_memory` took effect in this process (large temporaries are then cheap)."""
    return _KEPT
