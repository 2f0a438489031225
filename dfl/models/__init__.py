"""Models: DFL's SAEHD, AMP, Quick96 and XSeg as plain ``nn.Module``s, each registered with one spec.

``create_model(name, options)`` validates the options and returns the model, whose ``networks`` are
named as DFL names them; :mod:`dfl.models.registry` is where everything else asks about models, and
:mod:`dfl.models.store` keeps them on disk.  Importing this package registers every model module below.
"""

from __future__ import annotations

from typing import Any

# each model module registers its spec when imported; this order is the order models are listed in
from dfl.models import saehd  # noqa: F401, I001
from dfl.models import amp  # noqa: F401, I001
from dfl.models import quick96  # noqa: F401, I001
from dfl.models import xseg  # noqa: F401, I001
from dfl.models.base import Model, SwapModel
from dfl.models.options import OptionSpec
from dfl.models.registry import (ModelSpec, create_model, get_spec, list_specs, model_names, register_model,
                                 unregister_model)

__all__ = [
    "Model", "ModelSpec", "OptionSpec", "SwapModel", "build_model", "check_changes", "create_model",
    "default_options", "get_spec", "list_specs", "model_names", "register_model", "unregister_model",
    "validate_options",
]

build_model = create_model   # the name the first models were built by


def validate_options(model_type: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` completed, coerced and clamped as DFL's prompts would (see :meth:`ModelSpec.validate`)."""
    return get_spec(model_type).validate(options)


def default_options(model_type: str) -> dict[str, Any]:
    """Every option at its default, as a new model would get them."""
    return get_spec(model_type).defaults()


def check_changes(model_type: str, saved: dict[str, Any], requested: dict[str, Any]) -> dict[str, Any]:
    """Options to resume with: ``saved`` changed by ``requested`` (see :meth:`ModelSpec.check_changes`)."""
    return get_spec(model_type).check_changes(saved, requested)
