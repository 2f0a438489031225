"""Finding and loading a trained model for export and live swapping: the only module of
:mod:`dfl.export` and :mod:`dfl.live` that calls the model store, so a move of the store changes one import.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from dfl.errors import DflError
from dfl.training import checkpoint as store


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


def find_trained(model_dir: Path, name: str, model_type: str | None = None) -> Path:
    """The folder of the model called ``name`` in ``model_dir`` (of ``model_type`` when given).

    A damaged model is refused with what is wrong and how to recover it, except one that only lost its
    state.json: its weights are all an export or a swap needs (loading says what it recovered).
    """
    info = store.find_model(Path(model_dir), name, model_type)
    if info is None:
        have = ", ".join(f"{m.name} ({m.model_type})" for m in store.list_models(Path(model_dir)))
        raise DflError(f"{model_dir}: no model named {name!r}" + (f"; found {have}" if have else
                                                                  "; train one with `dfl train` first"))
    if info.damaged and not info.state_lost:
        raise DflError(info.describe_damage())
    return info.path


def load_trained(path: Path, device: torch.device | str = "cpu",
                 notify: Callable[[str], None] = lambda line: None) -> Trained:
    """The model in ``path`` on ``device`` in eval mode; ``notify`` gets a line per thing recovered."""
    model, options, state = store.load_model(Path(path), device, notify=notify)
    return Trained(model, Path(path), dict(options), dict(state))
