"""Face-swap models: DFL's SAEHD, AMP and Quick96 as plain ``nn.Module``s.

``build_model("SAEHD", options)`` validates the options (see :mod:`dfl.models.options`) and returns
a :class:`SwapModel` whose ``networks`` are named as DFL names them.
"""

from __future__ import annotations

from dfl.models.base import SwapModel
from dfl.models.options import (
    MODEL_OPTIONS,
    OptionSpec,
    canonical_model_type,
    check_changes,
    default_options,
    validate_options,
)

__all__ = [
    "MODEL_OPTIONS",
    "OptionSpec",
    "SwapModel",
    "build_model",
    "check_changes",
    "default_options",
    "validate_options",
]


def build_model(model_type: str, options: dict | None = None) -> SwapModel:
    """A freshly initialised model of ``model_type`` ("SAEHD", "AMP", "Quick96") from its options."""
    model_type = canonical_model_type(model_type)
    opts = validate_options(model_type, {k: v for k, v in (options or {}).items() if k != "model_type"})
    if model_type == "SAEHD":
        from dfl.models.saehd import SAEHDModel

        return SAEHDModel(opts)
    if model_type == "AMP":
        from dfl.models.amp import AMPModel

        return AMPModel(opts)
    from dfl.models.quick96 import Quick96Model

    return Quick96Model(opts)
