"""Face-swap models: DFL's SAEHD, AMP and Quick96 as plain ``nn.Module``s.

``build_model("SAEHD", options)`` validates the options (see :mod:`dfl.models.options`) and returns
a :class:`SwapModel` whose ``networks`` are named as DFL names them.
"""

from __future__ import annotations

from typing import Any

from dfl.errors import DflError
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
    "options_from_weights",
    "weights_mismatch",
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


Shapes = dict[str, tuple[int, ...]]


def options_from_weights(model_type: str, shapes: Shapes) -> tuple[dict[str, Any], dict[str, str]]:
    """What a model's saved tensor shapes (``<network>.<param>`` -> shape) say about its options.

    Returns (the options the shapes determine, the options that shape nothing but were fixed when the
    model was created -> the values they may take).  Recovers a model folder whose options.json is lost.
    """
    model_type = canonical_model_type(model_type)
    if model_type == "SAEHD":
        from dfl.models.saehd import options_from_shapes
    elif model_type == "AMP":
        from dfl.models.amp import options_from_shapes
    else:   # Quick96 is a fixed preset: its shapes are checked by weights_mismatch, nothing to infer
        def options_from_shapes(shapes: Shapes) -> tuple[dict[str, Any], dict[str, str]]:
            return {}, {}
    known, unknown = options_from_shapes(shapes)
    if any(k.startswith("GAN.") for k in shapes):
        from dfl.models.discriminators import gan_options_from_shapes

        resolution = int(known.get("resolution") or validate_options(model_type, {})["resolution"])
        known.update(gan_options_from_shapes(shapes, resolution))
        unknown["gan_power"] = "above 0 (the weights hold a GAN; DFL's typical value is 0.1)"
    if any(k.startswith("code_discriminator.") for k in shapes):
        unknown["true_face_power"] = "above 0 (the weights hold a true-face discriminator; typical 0.01)"
    return known, unknown


def weights_mismatch(model_type: str, options: dict, shapes: Shapes) -> str | None:
    """The first way the model built from ``options`` differs from the saved ``shapes`` (its networks
    only; discriminators are checked when they load), or None when every tensor fits.  Builds on the
    ``meta`` device: nothing is allocated."""
    import torch

    try:
        with torch.device("meta"):
            model = build_model(model_type, options)
    except DflError as exc:
        return str(exc)
    for net_name, net in model.networks.items():
        for key, t in net.state_dict().items():
            full = f"{net_name}.{key}"
            if full not in shapes:
                return f"{full} is missing from the weights"
            if tuple(shapes[full]) != tuple(t.shape):
                return f"{full} is {tuple(shapes[full])} in the weights, {tuple(t.shape)} with these options"
    return None
