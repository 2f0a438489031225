"""``--precision auto`` for training: time a few iterations of the model at hand in each candidate precision
(:func:`dfl.precision.choose_precision`), on a copy, so the model being trained is untouched.

The configuration a choice is cached for: the model type, the options fixed at its creation (those shape its
networks: resolution, architecture, dims; the spec's ``changeable=False``), the batch size and the layout.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import torch
from torch import nn

from dfl.models.registry import get_spec
from dfl.precision import Tuning, choose_precision, losses_agree
from dfl.training.objective import Objective


def shape_config(model_type: str, options: dict[str, Any], batch_size: int, channels_last: bool) -> dict[str, Any]:
    """What a measured choice holds for (see the module's docstring)."""
    spec = get_spec(model_type)
    return {"model": spec.name, "options": spec.shape_options(options), "batch_size": int(batch_size), "channels_last": bool(channels_last)}


def training_precision(requested: str, model: nn.Module, options: dict[str, Any], batch: dict[str, Any],
                       device: torch.device, channels_last: bool, echo: Callable[[str], None],
                       flags: set[str] | None = None) -> str:
    """The precision to train ``model`` in: ``requested`` if forced (warned when emulated), else measured
    on ``batch`` (one real batch of the run) or taken from the cache.  Torch's random state is the same
    after as before, so a seeded run trains the same whether or not it measured."""
    model_type = str(model.model_type)
    batch_size = int(next(iter(batch.values())).shape[0]) if batch else 0

    def start(precision: str) -> Callable[[], float]:
        torch.manual_seed(0)                     # the same extra networks' weights and draws for every candidate
        candidate = copy.deepcopy(model)
        objective = Objective(candidate, options, precision=precision, channels_last=channels_last)
        prepared = objective.prepare_batch(batch)
        return lambda: float(sum(objective.train_step(prepared).values()))

    tuning = Tuning("train", f"{model_type} batch {batch_size}", shape_config(model_type, options, batch_size,
                    channels_last), start, losses_agree, echo, flags)
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        return choose_precision(requested, device, tuning)
