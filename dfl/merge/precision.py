"""``--precision auto`` for merging and live swapping: time a few predictions of the model at hand in each
candidate precision (:func:`dfl.precision.choose_precision`), on copies of it, and keep the fastest whose
faces agree with fp32's.

"Agree": the predicted faces differ from fp32's by at most :data:`MAX_MEAN_DIFF` on average (a [0, 1]
scale; bf16 moves them by about 0.002, half a step of an 8-bit pixel) and nowhere by more than
:data:`MAX_DIFF`.  The choice is cached per machine, model type, shape-giving options and batch.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from dfl.errors import DflError
from dfl.precision import PRECISIONS, Tuning, choose_precision

MAX_MEAN_DIFF = 0.01    # 2.5 levels of 255
MAX_DIFF = 0.25
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def faces_agree(ref: list[np.ndarray], other: list[np.ndarray]) -> bool:
    """Each prediction of ``other`` is finite and within the tolerances of fp32's (see the module)."""
    if not ref or len(other) < 1:
        return False
    for a, b in zip(ref, other):
        if not np.isfinite(b).all():
            return False
        diff = np.abs(a.astype(np.float32) - b.astype(np.float32))
        if float(diff.mean()) > MAX_MEAN_DIFF or float(diff.max()) > MAX_DIFF:
            return False
    return True


def cast_model(model: nn.Module, precision: str) -> nn.Module:
    """``model`` in ``precision`` (its weights cast; the predictor feeds it faces in the same type)."""
    return model if precision == "fp32" else model.to(DTYPES[precision])


def inference_precision(requested: str, model: nn.Module, options: dict[str, Any], device: torch.device,
                        batch: int, echo: Callable[[str], None], flags: set[str] | None = None) -> str:
    """The precision to predict faces with ``model`` (fp32, not yet cast): forced, cached or measured on
    ``batch`` faces of the model's resolution (fixed random faces: the cost does not depend on them)."""
    from dfl.merge.face import ModelPredictor
    from dfl.models.registry import get_spec

    if requested in PRECISIONS and requested != "fp32" and device.type not in ("cpu", "cuda"):
        raise DflError(f"--precision {requested}: only on the CPU or CUDA")
    res = int(model.resolution)
    faces = np.random.default_rng(0).random((batch, res, res, 3), dtype=np.float32)

    def start(precision: str) -> Callable[[], np.ndarray]:
        predictor = ModelPredictor(cast_model(copy.deepcopy(model), precision), device)
        return lambda: predictor(faces)[0]

    spec = get_spec(str(model.model_type))
    config = {"model": spec.name, "options": spec.shape_options(options), "batch_size": int(batch)}
    tuning = Tuning("infer", f"{spec.name} predictions of {batch}", config, start, faces_agree, echo, flags)
    return choose_precision(requested, device, tuning)
