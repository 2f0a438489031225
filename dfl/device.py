"""Choosing the torch device and CPU threads, in one place."""

from __future__ import annotations

import os

import torch

from dfl.errors import DflError


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple's MPS, then the CPU; otherwise ``name`` as torch spells it.

    A device this PyTorch build or machine cannot use (``mps`` on Linux, ``cuda`` with a CPU-only build,
    ``cuda:3`` on a one-GPU machine) is a one-line DflError here, before anything loads, rather than a
    traceback from deep inside the first tensor that tries to go there.
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        raise DflError(f"--device {name}: not a device name torch knows (auto, cpu, cuda, cuda:1, mps, ...)") from None
    problem = _unusable(dev)
    if problem:
        raise DflError(f"--device {name}: {problem}; use --device cpu or auto")
    return dev


def _unusable(dev: torch.device) -> str | None:
    """Why ``dev`` cannot run here, in words, or None."""
    if dev.type == "cpu":
        return None
    if dev.type == "cuda":
        if torch.version.cuda is None and torch.version.hip is None:
            return f"this PyTorch build ({torch.__version__}) has no CUDA support"
        if not torch.cuda.is_available():
            return "no CUDA GPU is available on this machine (check the driver)"
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            return f"this machine has {count} CUDA GPU{'' if count == 1 else 's'} (cuda:0 to cuda:{count - 1})"
        return None
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_built():
            return f"this PyTorch build ({torch.__version__}) has no MPS (Apple GPU) support"
        if not mps.is_available():
            return "MPS is not available on this machine (it needs an Apple-silicon Mac with macOS 12.3 or later)"
        return None
    backend = getattr(torch, dev.type, None)   # xpu and other accelerators with a torch.<type> module
    available = getattr(backend, "is_available", None)
    if callable(available) and available():
        return None
    return f"no {dev.type} device is available to this PyTorch build ({torch.__version__})"


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

