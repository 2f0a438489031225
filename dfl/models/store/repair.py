"""Rebuilding a lost or unreadable options.json: from the weights' save record, the newest backup whose
options fit the weights, or the weights' tensor shapes (what the model's spec can tell from them)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import torch

from dfl.errors import DflError
from dfl.models.registry import Shapes, create_model, get_spec
from dfl.models.store.layout import WEIGHTS, list_backups, parse_folder_name, read_options, resolve
from dfl.models.store.listing import repair_hint
from dfl.models.store.record import read_weights_header, weights_record


def weights_mismatch(model_type: str, options: dict, shapes: Shapes) -> str | None:
    """The first way the model built from ``options`` differs from the saved ``shapes`` (its networks
    only; discriminators are checked when they load), or None when every tensor fits.  Builds on the
    ``meta`` device: nothing is allocated."""
    try:
        with torch.device("meta"):
            model = create_model(model_type, options)
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


def rebuild_options(path: Path, model_type: str, given: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """Options for a model folder whose options.json is lost or unreadable, and where they came from.

    Sources, best first: the weights' save record, the newest backup whose options fit the weights, and
    the weights' tensor shapes (which fix resolution and dims but not, e.g., the face type: those must
    then come from ``given``, the user's --config).  ``given`` overrides the rest; the result must
    rebuild every saved tensor exactly, or nothing is used.
    """
    spec = get_spec(model_type)
    path = Path(path)
    weights = resolve(path, WEIGHTS)
    if weights is None:
        name = (parse_folder_name(path.name) or (path.name, model_type))[0]
        raise DflError(f"{path}: no {WEIGHTS} to rebuild the options from; "
                       f"{repair_hint(path, name, model_type, WEIGHTS)}")
    shapes, _ = read_weights_header(weights)
    given = {k: v for k, v in given.items() if k != "model_type"}
    spec.check_given(given)
    source, where = _known_options(path, model_type, shapes, weights)
    known, unknown = spec.options_from_weights(shapes)
    options = {**known, **source, **given}
    missing = [k for k in unknown if k not in options]
    if missing:
        what = "; ".join(f"{k}: {unknown[k]}" for k in missing)
        them = "it" if len(missing) == 1 else "them"
        raise DflError(f"{path}: the weights do not tell {', '.join(missing)}; give {them} in a --config file "
                       f"({what})")
    options = spec.validate(options)
    bad = weights_mismatch(model_type, options, shapes)
    if bad:
        raise DflError(f"{path / WEIGHTS}: these weights do not fit the rebuilt {model_type} options ({bad})")
    if given:
        where += f" and --config ({', '.join(sorted(given))})"
    if not source:
        where += "; the options they do not tell take their defaults (--config changes them)"
    return options, f"options rebuilt from {where}"


def _known_options(path: Path, model_type: str, shapes: Shapes, weights: Path) -> tuple[dict[str, Any], str]:
    """(options saved elsewhere that fit these weights, where from): the weights' save record, else the
    newest backup whose options rebuild every tensor; ({}, the shapes) when neither has them."""
    record = weights_record(weights)
    if record.get("model_type") == model_type and record.get("options"):
        return record["options"], "the weights' save record"
    for b in reversed(list_backups(path)):
        with contextlib.suppress(DflError):
            b_type, b_opts = read_options(b)
            if b_type == model_type and weights_mismatch(model_type, b_opts, shapes) is None:
                return b_opts, f"backup {b.name} and the weights"
    return {}, "the weights' tensor shapes"


def set_aside(path: Path, name: str) -> Path | None:
    """Rename a damaged file of a model folder to ``<name>.damaged`` before a save replaces it (kept for
    the user; a later one replaces an earlier one).  Returns the new path, None when there was none."""
    f = Path(path) / name
    if not f.is_file():
        return None
    target = f.with_name(f"{name}.damaged")
    os.replace(f, target)
    return target
