"""Reading a model's last complete save (read-only: safe beside a running trainer) and loading it."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load as st_load

from dfl.errors import DflError
from dfl.models.store.layout import (OPTIMIZER, OPTIONS, STATE, WEIGHTS, parse_folder_name, read_bytes,
                                     read_json, read_options)
from dfl.models.store.listing import repair_hint
from dfl.models.store.record import recover_state, weights_record


@dataclass
class Checkpoint:
    """What a model folder holds, read from its last complete save."""

    model_type: str
    options: dict[str, Any]
    state: dict[str, Any]
    weights: dict[str, torch.Tensor]
    optimizer: dict[str, Any] | None = None
    path: Path = field(default_factory=Path)
    notices: list[str] = field(default_factory=list)   # what was recovered or discarded, one line each


def read_checkpoint(path: Path, with_optimizer: bool = True,
                    options: tuple[str, dict[str, Any]] | None = None) -> Checkpoint:
    """The last complete save of a model folder (read-only: safe beside a running trainer).

    A missing or unreadable ``state.json`` is recovered (:func:`recover_state`) and an unreadable
    ``optimizer.pt`` dropped, each with a line in ``notices``; lost options or weights are a DflError
    that says how to recover them.  ``options`` ((model_type, options), e.g. from
    :func:`dfl.models.store.repair.rebuild_options`) stands in for the folder's options.json.
    """
    path = Path(path)
    try:
        model_type, opts = options if options is not None else read_options(path)
    except DflError as exc:
        name, mt = parse_folder_name(path.name) or (path.name, "")
        raise DflError(f"{exc}; {repair_hint(path, name, mt, OPTIONS)}") from None
    options_ = dict(opts)
    raw = read_bytes(path, WEIGHTS)
    if raw is None:
        name, mt = parse_folder_name(path.name) or (path.name, model_type)
        raise DflError(f"{path}: model has options but no {WEIGHTS}; {repair_hint(path, name, mt, WEIGHTS)}")
    notices: list[str] = []
    try:
        state = read_json(path, STATE)
        lost = f"{path / STATE} is missing"
    except DflError as exc:
        state, lost = None, str(exc)
    if state is None:
        state, how = recover_state(path, weights_record(raw))
        notices.append(f"{lost}: {how}")
    digest = state.get("weights_blake2b")
    name, mt = parse_folder_name(path.name) or (path.name, model_type)
    if digest and hashlib.blake2b(raw, digest_size=16).hexdigest() != digest:
        raise DflError(f"{path / WEIGHTS}: does not match state.json (damaged by something other than a "
                       f"killed save); {repair_hint(path, name, mt, WEIGHTS)}")
    try:
        weights = st_load(raw)
    except Exception as exc:  # safetensors raises its own error types
        raise DflError(f"{path / WEIGHTS}: unreadable weights ({exc}); "
                       f"{repair_hint(path, name, mt, WEIGHTS)}") from None
    optimizer = None
    if with_optimizer:
        optimizer = _read_optimizer(path, notices)
    return Checkpoint(model_type, options_, state, weights, optimizer, path, notices)


def _read_optimizer(path: Path, notices: list[str]) -> dict[str, Any] | None:
    """The optimiser states of the last save, or None with a notice (the model itself is not affected)."""
    raw_opt = read_bytes(path, OPTIMIZER)
    if raw_opt is None:
        notices.append(f"{path / OPTIMIZER} is missing: the optimiser starts afresh (its momentum, not the "
                       "model, is lost)")
        return None
    try:
        optimizer = torch.load(io.BytesIO(raw_opt), map_location="cpu", weights_only=True)
        if not isinstance(optimizer, dict):
            raise ValueError(f"holds a {type(optimizer).__name__}, not optimiser states")
    except Exception as exc:  # torch raises many types for a damaged file
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0].split(". ")[0][:160]
        notices.append(f"{path / OPTIMIZER} is damaged ({first}): the optimiser starts afresh (its "
                       "momentum, not the model, is lost)")
        return None
    return optimizer


def load_weights(networks: dict[str, torch.nn.Module], weights: dict[str, torch.Tensor], source: Path,
                 optional: bool = False) -> list[str]:
    """Load ``<network>.<param>`` tensors into each network, strictly (a mismatch is a user error).

    With ``optional`` a network without any saved tensor is left as initialised (e.g. a GAN just
    enabled); the names of such networks are returned.
    """
    fresh = []
    for net_name, net in networks.items():
        prefix = net_name + "."
        sd = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
        if not sd and optional:
            fresh.append(net_name)
            continue
        try:
            net.load_state_dict(sd, strict=True)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()
            raise DflError(f"{source}: weights of {net_name} do not fit the model's options "
                           f"({first[0] if first else exc})") from None
    return fresh


def load_model(path: Path, device: torch.device | str = "cpu", notify: Callable[[str], None] = lambda line: None
               ) -> tuple[torch.nn.Module, dict[str, Any], dict[str, Any]]:
    """(model in eval mode on ``device``, options, state) of a model folder, for merging; ``notify``
    gets a line for each thing recovered (e.g. a lost state.json)."""
    from dfl.models.registry import create_model

    ckpt = read_checkpoint(Path(path), with_optimizer=False)
    for line in ckpt.notices:
        notify(line)
    model = create_model(ckpt.model_type, dict(ckpt.options))
    load_weights(model.networks, ckpt.weights, ckpt.path)
    model.to(device).eval()
    return model, ckpt.options, ckpt.state
