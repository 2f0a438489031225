"""Model folders that survive crashes: a save is all-or-nothing, and a killed save loses nothing.

A model lives in ``model/<name>_<ModelType>/``::

    options.json          model_type + every option (JSON)
    state.json            iteration, loss history, save time (JSON)
    weights.safetensors   every network, keys ``<network>.<param>``
    optimizer.pt          optimiser state dicts (``torch.save``, loaded with ``weights_only=True``)
    preview.png, history.png, backups/

How a save stays consistent: the new files are written (and fsynced) into ``<folder>/.saving/``; when all
are complete an empty ``COMPLETE`` marker is written there (also fsynced), and only then are the files
renamed over the live ones, one ``os.replace`` each, after which ``.saving`` is removed.  A crash before
the marker leaves the previous complete state untouched (the half-written ``.saving`` is discarded); a
crash after it leaves a complete new state that :func:`recover` finishes moving into place (and
:func:`read_checkpoint` reads without moving anything, so a merge running beside a trainer is safe).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from dfl.atomic import atomic_write_bytes
from dfl.errors import DflError

MODEL_TYPES = ("SAEHD", "AMP", "Quick96")
OPTIONS = "options.json"
STATE = "state.json"
WEIGHTS = "weights.safetensors"
OPTIMIZER = "optimizer.pt"
SAVED_FILES = (WEIGHTS, OPTIMIZER, OPTIONS, STATE)   # state.json last: it names the iteration
SAVING_DIR = ".saving"
COMPLETE = "COMPLETE"
BACKUPS_DIR = "backups"
LOCK = ".lock"
_CRASH_ENV = "DFL_TEST_CRASH_IN_SAVE"   # tests only: SIGKILL ourselves at a stage of a save
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]*$")


@dataclass
class ModelInfo:
    """One model folder found in ``model/``."""

    name: str
    model_type: str
    path: Path


@dataclass
class Checkpoint:
    """What a model folder holds, read from its last complete save."""

    model_type: str
    options: dict[str, Any]
    state: dict[str, Any]
    weights: dict[str, torch.Tensor]
    optimizer: dict[str, Any] | None = None
    path: Path = field(default_factory=Path)


# -- names and listing -------------------------------------------------------------------------------
def model_path(model_dir: Path, name: str, model_type: str) -> Path:
    """``model_dir/<name>_<ModelType>``, checking the name is a plain folder name."""
    check_name(name)
    if model_type not in MODEL_TYPES:
        raise DflError(f"{model_type}: unknown model type (one of {', '.join(MODEL_TYPES)})")
    return Path(model_dir) / f"{name}_{model_type}"


def check_name(name: str) -> None:
    if not name or not _NAME_RE.match(name) or name in (".", ".."):
        raise DflError(f"{name!r}: a model name may use letters, digits, space, '.', '_' and '-'")


def parse_folder_name(folder: str) -> tuple[str, str] | None:
    """``"demo_SAEHD"`` -> ``("demo", "SAEHD")``; None for folders that are not models."""
    name, sep, model_type = folder.rpartition("_")
    if not sep or not name or model_type not in MODEL_TYPES:
        return None
    return name, model_type


def list_models(model_dir: Path) -> list[ModelInfo]:
    """Models in ``model_dir``, most recently saved first (DFL's picker order)."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return []
    found = []
    for p in model_dir.iterdir():
        parsed = parse_folder_name(p.name) if p.is_dir() and not p.name.startswith(".") else None
        if parsed and (_resolve(p, OPTIONS) is not None):
            found.append(ModelInfo(parsed[0], parsed[1], p))
    found.sort(key=lambda m: _mtime(m.path), reverse=True)
    return found


def _mtime(path: Path) -> float:
    f = _resolve(path, STATE) or _resolve(path, OPTIONS)
    return f.stat().st_mtime if f else 0.0


def find_model(model_dir: Path, name: str, model_type: str | None = None) -> ModelInfo | None:
    """The model called ``name`` (of ``model_type`` when given), or None."""
    matches = [m for m in list_models(model_dir) if m.name == name and (model_type in (None, m.model_type))]
    if len(matches) > 1:
        kinds = ", ".join(m.model_type for m in matches)
        raise DflError(f"{model_dir}: several models are named {name!r} ({kinds}); give --model")
    return matches[0] if matches else None


def rename_model(model_dir: Path, name: str, new_name: str, model_type: str | None = None) -> Path:
    """Rename a model folder (DFL's picker [r]); refuses to overwrite another model."""
    info = find_model(model_dir, name, model_type)
    if info is None:
        raise DflError(f"{model_dir}: no model named {name!r}")
    target = model_path(model_dir, new_name, info.model_type)
    if target.exists():
        raise DflError(f"{target}: a model with that name already exists")
    os.replace(info.path, target)
    return target


def delete_model(model_dir: Path, name: str, model_type: str | None = None) -> Path:
    """Delete a model folder with its backups (DFL's picker [d])."""
    info = find_model(model_dir, name, model_type)
    if info is None:
        raise DflError(f"{model_dir}: no model named {name!r}")
    shutil.rmtree(info.path)
    return info.path


# -- reading -----------------------------------------------------------------------------------------
def _saving_complete(path: Path) -> bool:
    return (path / SAVING_DIR / COMPLETE).is_file()


def _resolve(path: Path, name: str) -> Path | None:
    """The file ``name`` of the last complete save: in ``.saving`` when that save is complete but not yet
    moved into place, else the live one."""
    if _saving_complete(path) and (path / SAVING_DIR / name).is_file():
        return path / SAVING_DIR / name
    live = path / name
    return live if live.is_file() else None


def _read_bytes(path: Path, name: str) -> bytes | None:
    for _ in range(3):   # a trainer may move the file between resolve and open
        f = _resolve(path, name)
        if f is None:
            return None
        with contextlib.suppress(FileNotFoundError):
            return f.read_bytes()
    return None


def read_json(path: Path, name: str) -> dict[str, Any] | None:
    data = _read_bytes(path, name)
    if data is None:
        return None
    try:
        return json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise DflError(f"{path / name}: not valid JSON ({exc})") from None


def read_options(path: Path) -> tuple[str, dict[str, Any]]:
    """(model_type, options) of a model folder."""
    path = Path(path)
    opts = read_json(path, OPTIONS)
    if opts is None:
        raise DflError(f"{path}: not a model folder (no {OPTIONS})")
    opts = dict(opts)
    model_type = opts.pop("model_type", None) or (parse_folder_name(path.name) or (None, None))[1]
    if model_type not in MODEL_TYPES:
        raise DflError(f"{path / OPTIONS}: unknown model_type {model_type!r}")
    return model_type, opts


def read_checkpoint(path: Path, with_optimizer: bool = True) -> Checkpoint:
    """The last complete save of a model folder (read-only: safe beside a running trainer)."""
    path = Path(path)
    model_type, options = read_options(path)
    state = read_json(path, STATE) or {"iteration": 0}
    raw = _read_bytes(path, WEIGHTS)
    if raw is None:
        raise DflError(f"{path}: model has options but no {WEIGHTS}")
    digest = state.get("weights_blake2b")
    if digest and hashlib.blake2b(raw, digest_size=16).hexdigest() != digest:
        raise DflError(f"{path / WEIGHTS}: does not match state.json (damaged by something other than a "
                       f"killed save); restore a folder from {path / BACKUPS_DIR}")
    try:
        weights = st_load(raw)
    except Exception as exc:  # safetensors raises its own error types
        raise DflError(f"{path / WEIGHTS}: unreadable weights ({exc})") from None
    optimizer = None
    if with_optimizer:
        raw_opt = _read_bytes(path, OPTIMIZER)
        if raw_opt is not None:
            try:
                optimizer = torch.load(io.BytesIO(raw_opt), map_location="cpu", weights_only=True)
            except Exception:  # a damaged optimiser state only costs momentum, never the model
                optimizer = None
    return Checkpoint(model_type, options, state, weights, optimizer, path)


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


def load_model(path: Path, device: torch.device | str = "cpu") -> tuple[torch.nn.Module, dict[str, Any], dict[str, Any]]:
    """(SwapModel in eval mode on ``device``, options, state) of a model folder, for merging."""
    from dfl.models import build_model

    ckpt = read_checkpoint(Path(path), with_optimizer=False)
    model = build_model(ckpt.model_type, dict(ckpt.options))
    load_weights(model.networks, ckpt.weights, ckpt.path)
    model.to(device).eval()
    return model, ckpt.options, ckpt.state


# -- writing -----------------------------------------------------------------------------------------
def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_save_count = 0


def _maybe_crash(stage: str) -> None:
    """Tests only: ``DFL_TEST_CRASH_IN_SAVE=<stage>[:<n>]`` SIGKILLs this process at ``stage`` of its
    n-th save (default the first), to prove a killed save never loses the model."""
    want = os.environ.get(_CRASH_ENV)
    if not want:
        return
    name, _, nth = want.partition(":")
    if name == stage and _save_count == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)


def recover(path: Path) -> str | None:
    """Make a model folder consistent after a killed save; returns what was done (None: nothing).

    Only a process that owns the folder (the trainer, under :func:`lock_model`) may call this.
    """
    path = Path(path)
    saving = path / SAVING_DIR
    if not saving.exists():
        return None
    if _saving_complete(path):
        _move_into_place(path)
        return "finished an interrupted save"
    shutil.rmtree(saving, ignore_errors=True)
    return "discarded an incomplete save"


def _move_into_place(path: Path) -> None:
    saving = path / SAVING_DIR
    for name in SAVED_FILES:
        src = saving / name
        if src.is_file():
            os.replace(src, path / name)
            _maybe_crash("swap")
    _fsync_dir(path)
    shutil.rmtree(saving, ignore_errors=True)
    _fsync_dir(path)


def serialize_weights(networks: dict[str, torch.nn.Module]) -> bytes:
    """All networks' state dicts as one safetensors blob (fp32 CPU tensors, keys ``<net>.<param>``)."""
    tensors = {}
    for net_name, net in networks.items():
        for k, v in net.state_dict().items():
            tensors[f"{net_name}.{k}"] = v.detach().to("cpu").contiguous().clone()
    return st_save(tensors)


def save_checkpoint(path: Path, model_type: str, options: dict[str, Any], state: dict[str, Any],
                    networks: dict[str, torch.nn.Module], optimizer_state: dict[str, Any] | None) -> None:
    """Save everything; all-or-nothing (see the module docstring).  Ctrl+C is deferred to the end."""
    global _save_count
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    _save_count += 1
    with _defer_sigint():
        recover(path)
        saving = path / SAVING_DIR
        shutil.rmtree(saving, ignore_errors=True)
        saving.mkdir()
        blob = serialize_weights(networks)
        state = dict(state, saved_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                     weights_blake2b=hashlib.blake2b(blob, digest_size=16).hexdigest())
        _write_synced(saving / WEIGHTS, blob)
        del blob
        _maybe_crash("weights")
        if optimizer_state is not None:
            buf = io.BytesIO()
            torch.save(optimizer_state, buf)
            _write_synced(saving / OPTIMIZER, buf.getvalue())
        _write_synced(saving / OPTIONS, _json_bytes({"model_type": model_type, **options}))
        _write_synced(saving / STATE, _json_bytes(state))
        _fsync_dir(saving)
        _maybe_crash("before_complete")
        _write_synced(saving / COMPLETE, b"")
        _fsync_dir(saving)
        _move_into_place(path)


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n").encode("utf-8")


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


@contextlib.contextmanager
def _defer_sigint():
    """Hold Ctrl+C until the block ends, so a save is never cut short by the user (SIGKILL still can)."""
    import threading
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending = []
    old = signal.signal(signal.SIGINT, lambda s, f: pending.append(s))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
        if pending:
            raise KeyboardInterrupt


# -- backups -----------------------------------------------------------------------------------------
def make_backup(path: Path, keep: int) -> Path | None:
    """Copy the live complete save into ``backups/iter_<N>/`` and keep only the last ``keep`` backups."""
    path = Path(path)
    state = read_json(path, STATE)
    if state is None or keep <= 0:
        return None
    backups = path / BACKUPS_DIR
    backups.mkdir(exist_ok=True)
    target = backups / f"iter_{int(state.get('iteration', 0)):09d}"
    if target.exists():
        return target
    tmp = backups / f".{target.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for name in SAVED_FILES:
        f = _resolve(path, name)
        if f is not None:
            shutil.copy2(f, tmp / name)
    for extra in ("preview.png", "history.png"):
        if (path / extra).is_file():
            shutil.copy2(path / extra, tmp / extra)
    os.replace(tmp, target)
    for old in list_backups(path)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def list_backups(path: Path) -> list[Path]:
    """Backup folders of a model, oldest first."""
    backups = Path(path) / BACKUPS_DIR
    if not backups.is_dir():
        return []
    return sorted(p for p in backups.iterdir() if p.is_dir() and p.name.startswith("iter_"))


# -- ownership ---------------------------------------------------------------------------------------
@contextlib.contextmanager
def lock_model(path: Path):
    """Hold an exclusive lock on a model folder while training it (released by the OS even on SIGKILL)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:   # Windows: no advisory locks; one trainer per model is the user's job there
        yield
        return
    f = open(path / LOCK, "a+")
    try:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise DflError(f"{path}: another dfl train is using this model") from None
        yield
    finally:
        f.close()


def write_file_atomic(path: Path, data: bytes) -> None:
    """For previews and plots in the model folder."""
    atomic_write_bytes(path, data)
