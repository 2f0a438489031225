"""What a model folder holds and where: names, file resolution across an interrupted save, synced writes.

A model lives in ``model/<name>_<ModelType>/``::

    options.json          model_type + every option (JSON)
    state.json            iteration, loss history, save time, digest of the weights (JSON)
    weights.safetensors   every network, keys ``<network>.<param>``, and the save record in its metadata
    optimizer.pt          optimiser state dicts (``torch.save``, loaded with ``weights_only=True``)
    preview.png, history.png, backups/iter_<N>/

A save is staged in ``.saving/`` and marked ``COMPLETE`` before it is moved into place
(:mod:`dfl.models.store.saving`); :func:`resolve` therefore reads a file of the last complete save from
``.saving/`` while such a save is not yet moved, else from the folder itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from pathlib import Path
from typing import Any

from dfl.errors import DflError
from dfl.models.registry import model_names

OPTIONS = "options.json"
STATE = "state.json"
WEIGHTS = "weights.safetensors"
OPTIMIZER = "optimizer.pt"
SAVED_FILES = (WEIGHTS, OPTIMIZER, OPTIONS, STATE)   # state.json last: it names the iteration
SAVING_DIR = ".saving"
COMPLETE = "COMPLETE"
BACKUPS_DIR = "backups"
PREVIEWS = ("preview.png", "history.png")
LOCK = ".lock"
RECORD_PREFIX = "dfl."          # keys of the save record in the weights file's safetensors metadata
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]*$")


def model_path(model_dir: Path, name: str, model_type: str) -> Path:
    """``model_dir/<name>_<ModelType>``, checking the name is a plain folder name."""
    check_name(name)
    if model_type not in model_names():
        raise DflError(f"{model_type}: unknown model type (one of {', '.join(model_names())})")
    return Path(model_dir) / f"{name}_{model_type}"


def check_name(name: str) -> None:
    if not name or not _NAME_RE.match(name) or name in (".", ".."):
        raise DflError(f"{name!r}: a model name may use letters, digits, space, '.', '_' and '-'")


def parse_folder_name(folder: str) -> tuple[str, str] | None:
    """A folder name ``<name>_<Model>`` -> ``(name, Model)`` when ``Model`` is a registered model, else None."""
    name, sep, model_type = folder.rpartition("_")
    if not sep or not name or model_type not in model_names():
        return None
    return name, model_type


def saving_complete(path: Path) -> bool:
    return (path / SAVING_DIR / COMPLETE).is_file()


def resolve(path: Path, name: str) -> Path | None:
    """The file ``name`` of the last complete save: in ``.saving`` when that save is complete but not yet
    moved into place, else the live one."""
    if saving_complete(path) and (path / SAVING_DIR / name).is_file():
        return path / SAVING_DIR / name
    live = path / name
    return live if live.is_file() else None


def read_bytes(path: Path, name: str) -> bytes | None:
    for _ in range(3):   # a trainer may move the file between resolve and open
        f = resolve(path, name)
        if f is None:
            return None
        with contextlib.suppress(FileNotFoundError):
            return f.read_bytes()
    return None


def read_json(path: Path, name: str) -> dict[str, Any] | None:
    data = read_bytes(path, name)
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
    if model_type not in model_names():
        raise DflError(f"{path / OPTIONS}: unknown model_type {model_type!r}")
    return model_type, opts


def list_backups(path: Path) -> list[Path]:
    """Backup folders of a model, oldest first."""
    backups = Path(path) / BACKUPS_DIR
    if not backups.is_dir():
        return []
    return sorted(p for p in backups.iterdir() if p.is_dir() and p.name.startswith("iter_"))


def json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=False, default=json_default) + "\n").encode("utf-8")


def json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def fsync_dir(path: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
