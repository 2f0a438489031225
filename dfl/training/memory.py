"""Will a model fit? A lower bound of its training memory, checked before anything is allocated.

A model too large for the machine used to be allocated, saved (gigabytes) and then killed by the
kernel's OOM killer, at every later start too.  Here the networks are built on PyTorch's ``meta``
device (shapes only, no memory) and one training forward pass is traced there, which gives the
weights, gradients, optimiser states and activations a step needs.  The sum is a lower bound (the
losses, temporaries and allocator slack come on top: measured peaks on the CPU were 1.2-1.7x it),
so a refusal is certain to be right; a model that passes may still be tight.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from dfl.errors import DflError
from dfl.models.registry import create_model, get_spec
from dfl.training.optim import state_tensors

BASELINE_BYTES = 250 * 1024**2   # the process itself: PyTorch, OpenCV, the faceset cache of a small set


def estimate_training_bytes(model_type: str, options: dict[str, Any], precision: str = "fp32") -> int:
    """Bytes one training step of this model needs at least (weights, gradients, optimiser states,
    activations kept for the backward pass), from its spec's training forward pass (``trace``)."""
    spec = get_spec(model_type)
    batch = int(options.get("batch_size", 4) or 4)
    with torch.device("meta"):
        model = create_model(model_type, options)
        outputs: list[int] = []

        def count(_module: torch.nn.Module, _inputs: Any, out: Any) -> None:
            if isinstance(out, torch.Tensor):
                outputs.append(out.numel())

        leaves = [m for m in model.modules() if not any(True for _ in m.children())]
        hooks = [m.register_forward_hook(count) for m in leaves]
        try:
            spec.trace(model, batch)
        finally:
            for h in hooks:
                h.remove()
    trained = set(model.trainable_networks(options))
    n_all = sum(p.numel() for p in model.parameters())
    n_trained = sum(p.numel() for name, net in model.networks.items() if name in trained for p in net.parameters())
    states = state_tensors(spec.optimizer(options))             # AdaBelief: m and v; RMSprop: one
    activation_copies = 2 if precision == "fp32" else 1           # kept for backward, and their gradients
    return 4 * (n_all + n_trained * (1 + states)) + 4 * activation_copies * sum(outputs) + BASELINE_BYTES


def available_bytes(device: torch.device) -> int | None:
    """Memory free for training on ``device``, or None where it cannot be told (then nothing is checked).
    On the CPU: available RAM plus free swap (what the OOM killer lets a process have)."""
    if device.type == "cuda":
        try:
            return int(torch.cuda.mem_get_info(device)[0])
        except (RuntimeError, AssertionError):
            return None
    if device.type != "cpu":
        return None
    try:
        lines = Path("/proc/meminfo").read_text().splitlines()
    except OSError:
        return None
    info = {}
    for line in lines:
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            info[key] = int(parts[0]) * 1024
    if "MemAvailable" not in info:
        return None
    return info["MemAvailable"] + info.get("SwapFree", 0)


def check_fits(model_type: str, options: dict[str, Any], device: torch.device, precision: str = "fp32",
               where: Path | str = "model") -> None:
    """A one-line DflError when the model cannot fit ``device``'s free memory, before it is allocated."""
    free = available_bytes(device)
    if free is None:
        return
    need = estimate_training_bytes(model_type, options, precision)
    if need > free:
        gb = 1024**3
        raise DflError(f"{where}: training this {model_type} (resolution {options.get('resolution')}, batch "
                       f"{options.get('batch_size')}) needs at least {need / gb:.1f} GB, but {device} has "
                       f"{free / gb:.1f} GB free; choose a lower resolution, smaller dims or a smaller batch")
