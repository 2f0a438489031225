"""Finding and loading a trained model for export and live swapping: the only module of
:mod:`dfl.export` and :mod:`dfl.live` that calls the model store, so a move of the store changes one import.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from dfl.errors import DflError
from dfl.models import store
from dfl.models.registry import SWAP, get_spec


@dataclass
class Trained:
    """A loaded model: the network (eval mode), its folder, options and saved state."""

    model: Any            # dfl.models.base.SwapModel
    path: Path
    options: dict[str, Any]
    state: dict[str, Any]

    @property
    def iteration(self) -> int:
        return int(self.state.get("iteration", 0) or 0)


def find_trained(model_dir: Path, name: str | None, model_type: str | None = None) -> Path:
    """The folder of the model called ``name`` in ``model_dir`` (of ``model_type`` when given); without a
    name the most recently saved usable one, as DFL's model picker offers first.

    A damaged model is refused with what is wrong and how to recover it, except one that only lost its
    state.json: its weights are all an export or a swap needs (loading says what it recovered).
    """
    model_dir = Path(model_dir)
    if name is None:   # only face-swap models export and swap (a mask model, e.g. XSeg, does not)
        usable = [m for m in store.list_models(model_dir) if not m.damaged and model_type in (None, m.model_type)
                  and get_spec(m.model_type).kind == SWAP]
        if not usable:
            kind = f"{model_type} " if model_type else ""
            raise DflError(f"{model_dir}: no usable {kind}model; train one with `dfl train` first")
        return usable[0].path
    info = store.find_model(model_dir, name, model_type)
    if info is None:
        have = ", ".join(f"{m.name} ({m.model_type})" for m in store.list_models(model_dir))
        raise DflError(f"{model_dir}: no model named {name!r}" + (f"; found {have}" if have else
                                                                  "; train one with `dfl train` first"))
    if info.damaged and not info.state_lost:
        raise DflError(info.describe_damage())
    if get_spec(info.model_type).kind != SWAP:
        raise DflError(f"{info.path}: a {info.model_type} mask model, not a face swap; it masks faces with "
                       "`dfl xseg apply`")
    return info.path


def load_trained(path: Path, device: torch.device | str = "cpu",
                 notify: Callable[[str], None] = lambda line: None) -> Trained:
    """The model in ``path`` on ``device`` in eval mode; ``notify`` gets a line per thing recovered."""
    model, options, state = store.load_model(Path(path), device, notify=notify)
    return Trained(model, Path(path), dict(options), dict(state))
