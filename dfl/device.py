"""Choosing the torch device and CPU threads, in one place."""

from __future__ import annotations

import os

import torch

from dfl.errors import DflError


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple's MPS, then the CPU; otherwise ``name`` as torch spells it."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise DflError(f"--device {name}: not a device torch knows ({exc})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DflError(f"--device {name}: CUDA is not available on this machine")
    return dev


def available_cores() -> int:
    """Cores this process may run on (taskset and container limits count, unlike ``os.cpu_count``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def use_all_cores() -> int:
    """Give torch's intra-op pool every core (respecting ``OMP_NUM_THREADS`` when the user set it)."""
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(available_cores())
    return torch.get_num_threads()
