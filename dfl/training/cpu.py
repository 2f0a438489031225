"""The process settings for training on the CPU (the precision is measured: :mod:`dfl.training.precision`)."""

from __future__ import annotations

import torch

from dfl.device import use_all_cores
from dfl.models.runtime import keep_freed_memory


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
