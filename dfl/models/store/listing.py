"""The models in a ``model/`` folder, damaged ones included: what keeps each from loading, and how to
recover it."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from dfl.errors import DflError
from dfl.models.store.layout import (OPTIONS, SAVED_FILES, STATE, WEIGHTS, list_backups, parse_folder_name,
                                     read_json, read_options, resolve)
from dfl.models.store.record import read_weights_header


@dataclass
class ModelInfo:
    """One model folder found in ``model/``; ``problem`` says why a damaged one cannot be used as it is,
    ``fix`` how to recover it."""

    name: str
    model_type: str
    path: Path
    problem: str | None = None
    fix: str = ""

    @property
    def damaged(self) -> bool:
        return self.problem is not None

    @property
    def state_lost(self) -> bool:
        """Damaged only in state.json: training recovers it by itself (with a notice)."""
        return bool(self.problem) and self.problem.startswith(STATE)

    def describe_damage(self) -> str:
        return f"{self.path}: damaged model: {self.problem}; {self.fix}"


def list_models(model_dir: Path) -> list[ModelInfo]:
    """Models in ``model_dir``, most recently saved first (DFL's picker order), damaged ones included
    (marked by ``problem``): a folder named ``<name>_<ModelType>`` that holds any model file."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return []
    found = []
    for p in model_dir.iterdir():
        parsed = parse_folder_name(p.name) if p.is_dir() and not p.name.startswith(".") else None
        if parsed and holds_model_files(p):
            problem = diagnose(p)
            found.append(ModelInfo(parsed[0], parsed[1], p, problem, repair_hint(p, parsed[0], parsed[1], problem)))
    found.sort(key=lambda m: last_saved(m.path), reverse=True)
    return found


def holds_model_files(path: Path) -> bool:
    """True when a folder holds anything a complete save or a backup wrote (an empty folder, or one with
    only the half-written first save of a killed trainer, is no model)."""
    path = Path(path)
    return any(resolve(path, n) is not None for n in SAVED_FILES) or bool(list_backups(path))


def diagnose(path: Path) -> str | None:
    """What keeps a model folder from loading as it is, cheaply (no weights are read, only the header);
    None when nothing is wrong.  The message starts with the file it is about."""
    path = Path(path)
    try:
        read_options(path)
    except DflError as exc:
        return f"{OPTIONS} is missing" if resolve(path, OPTIONS) is None else f"{OPTIONS}: {_why(exc)}"
    weights = resolve(path, WEIGHTS)
    if weights is None:
        return f"{WEIGHTS} is missing"
    try:
        read_weights_header(weights)
    except DflError as exc:
        return f"{WEIGHTS}: {_why(exc)}"
    except FileNotFoundError:   # moved into place by a trainer meanwhile
        pass
    try:
        if read_json(path, STATE) is None:
            return f"{STATE} is missing"
    except DflError as exc:
        return f"{STATE}: {_why(exc)}"
    return None


def _why(exc: DflError) -> str:
    """The problem part of a "<path>: <problem>" DflError."""
    msg = str(exc)
    return msg.split(": ", 1)[1] if ": " in msg else msg


def repair_hint(path: Path, name: str, model_type: str, problem: str | None) -> str:
    """How to recover a damaged model, in one phrase."""
    if problem is None:
        return ""
    backups = list_backups(path)
    restore = f"`dfl model restore {name}` puts back backup {backups[-1].name}" if backups else ""
    if problem.startswith(STATE):
        return f"`dfl train --name {name}` recovers the iteration from the weights' save record or a backup"
    if problem.startswith(OPTIONS):
        rebuild = f"`dfl train --name {name} --model {model_type}` rebuilds the options from the weights"
        return f"{rebuild}, or {restore}" if restore else rebuild
    return restore or f"no backup to recover it from; `dfl model delete {name}` moves it to the trash"


def last_saved(path: Path) -> float:
    """When the model in ``path`` was last saved (its newest saved file's mtime; 0 when none)."""
    newest = 0.0
    for name in (STATE, OPTIONS, WEIGHTS):
        f = resolve(path, name)
        if f is not None:
            with contextlib.suppress(OSError):   # moved into place by a trainer meanwhile
                newest = max(newest, f.stat().st_mtime)
    return newest


def find_model(model_dir: Path, name: str, model_type: str | None = None) -> ModelInfo | None:
    """The model called ``name`` (of ``model_type`` when given), damaged or not, or None."""
    matches = [m for m in list_models(model_dir) if m.name == name and (model_type in (None, m.model_type))]
    if len(matches) > 1:
        kinds = ", ".join(m.model_type for m in matches)
        raise DflError(f"{model_dir}: several models are named {name!r} ({kinds}); give --model")
    return matches[0] if matches else None


def existing_model(model_dir: Path, name: str, model_type: str | None) -> ModelInfo:
    """:func:`find_model`, or a DflError when there is none."""
    info = find_model(model_dir, name, model_type)
    if info is None:
        raise DflError(f"{model_dir}: no model named {name!r}")
    return info
