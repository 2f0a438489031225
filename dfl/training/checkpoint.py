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
A save that fails (a full disk) removes its half-written ``.saving`` and says so in one line.

Nothing here destroys a model: a folder that holds model files but cannot be loaded is listed as
damaged (with how to recover it), never replaced by a new model; the weights file carries its own save
record (model type, options, iteration in the safetensors metadata) from which a lost ``options.json``
or ``state.json`` is rebuilt, or else from the tensor shapes and the backups; ``delete`` moves a model
to the workspace's trash (``trash/<date_time>/model/``).
"""

from __future__ import annotations

import contextlib
import errno
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
from typing import Any, Callable

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
PREVIEWS = ("preview.png", "history.png")
LOCK = ".lock"
RECORD_PREFIX = "dfl."          # keys of the save record in the weights file's safetensors metadata
_CRASH_ENV = "DFL_TEST_CRASH_IN_SAVE"   # tests only: SIGKILL ourselves at a stage of a save
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]*$")


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
    found.sort(key=lambda m: _mtime(m.path), reverse=True)
    return found


def holds_model_files(path: Path) -> bool:
    """True when a folder holds anything a complete save or a backup wrote (an empty folder, or one with
    only the half-written first save of a killed trainer, is no model)."""
    path = Path(path)
    return any(_resolve(path, n) is not None for n in SAVED_FILES) or bool(list_backups(path))


def diagnose(path: Path) -> str | None:
    """What keeps a model folder from loading as it is, cheaply (no weights are read, only the header);
    None when nothing is wrong.  The message starts with the file it is about."""
    path = Path(path)
    try:
        read_options(path)
    except DflError as exc:
        return f"{OPTIONS} is missing" if _resolve(path, OPTIONS) is None else f"{OPTIONS}: {_why(exc)}"
    weights = _resolve(path, WEIGHTS)
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


def _mtime(path: Path) -> float:
    newest = 0.0
    for name in (STATE, OPTIONS, WEIGHTS):
        f = _resolve(path, name)
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


def _existing(model_dir: Path, name: str, model_type: str | None) -> ModelInfo:
    info = find_model(model_dir, name, model_type)
    if info is None:
        raise DflError(f"{model_dir}: no model named {name!r}")
    return info


def rename_model(model_dir: Path, name: str, new_name: str, model_type: str | None = None) -> Path:
    """Rename a model folder (DFL's picker [r]); refuses to overwrite another model or to pull a model
    from under a running trainer."""
    info = _existing(model_dir, name, model_type)
    target = model_path(model_dir, new_name, info.model_type)
    if target.exists():
        raise DflError(f"{target}: a model with that name already exists")
    with _exclusive(info.path, _busy(info.path, "rename")):
        try:
            os.replace(info.path, target)
        except OSError as exc:
            raise DflError(f"{info.path}: cannot rename to {target.name} ({exc.strerror or exc})") from None
    return target


def delete_model(model_dir: Path, name: str, model_type: str | None = None) -> Path:
    """Move a model folder with its backups to the workspace's trash (DFL's picker [d] deleted it):
    ``trash/<date_time>/model/<name>_<Type>/`` (:mod:`dfl.trash`); returns where it went.  Emptying the
    trash is the user's call."""
    info = _existing(model_dir, name, model_type)
    with _exclusive(info.path, _busy(info.path, "delete")):
        folder = _to_trash(Path(model_dir), [info.path])
    return folder / Path(model_dir).name / info.path.name


def _to_trash(model_dir: Path, paths: list[Path]) -> Path:
    """Move ``paths`` (inside ``model_dir``) to a new folder of the workspace trash beside ``model_dir``,
    keeping their place relative to the workspace; returns that folder."""
    from dfl.trash import TRASH_DIR, move_to_trash

    workspace = Path(model_dir).absolute().parent
    folder = move_to_trash([p.absolute() for p in paths], workspace, workspace / TRASH_DIR)
    if folder is None:
        raise DflError(f"{model_dir}: nothing to move to the trash (already gone?)")
    return folder


def _busy(path: Path, verb: str) -> str:
    return f"{path}: a dfl train is using this model; stop it (Ctrl+C saves) before you {verb} it"


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


def read_checkpoint(path: Path, with_optimizer: bool = True,
                    options: tuple[str, dict[str, Any]] | None = None) -> Checkpoint:
    """The last complete save of a model folder (read-only: safe beside a running trainer).

    A missing or unreadable ``state.json`` is recovered (:func:`recover_state`) and an unreadable
    ``optimizer.pt`` dropped, each with a line in ``notices``; lost options or weights are a DflError
    that says how to recover them.  ``options`` ((model_type, options), e.g. from
    :func:`rebuild_options`) stands in for the folder's options.json.
    """
    path = Path(path)
    try:
        model_type, opts = options if options is not None else read_options(path)
    except DflError as exc:
        name, mt = parse_folder_name(path.name) or (path.name, "")
        raise DflError(f"{exc}; {repair_hint(path, name, mt, OPTIONS)}") from None
    options_ = dict(opts)
    raw = _read_bytes(path, WEIGHTS)
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
        raw_opt = _read_bytes(path, OPTIMIZER)
        if raw_opt is None:
            notices.append(f"{path / OPTIMIZER} is missing: the optimiser starts afresh (its momentum, not the "
                           "model, is lost)")
        else:
            try:
                optimizer = torch.load(io.BytesIO(raw_opt), map_location="cpu", weights_only=True)
                if not isinstance(optimizer, dict):
                    raise ValueError(f"holds a {type(optimizer).__name__}, not optimiser states")
            except Exception as exc:  # torch raises many types for a damaged file
                optimizer = None
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0].split(". ")[0][:160]
                notices.append(f"{path / OPTIMIZER} is damaged ({first}): the optimiser starts afresh (its "
                               "momentum, not the model, is lost)")
    return Checkpoint(model_type, options_, state, weights, optimizer, path, notices)


# -- the weights' save record, and recovering lost state and options --------------------------------
def save_record(model_type: str, options: dict[str, Any], state: dict[str, Any]) -> dict[str, str]:
    """What a save writes into the weights file's metadata, so the weights alone tell what they are."""
    return {f"{RECORD_PREFIX}model_type": model_type,
            f"{RECORD_PREFIX}options": json.dumps(options, default=_json_default),
            f"{RECORD_PREFIX}iteration": str(int(state.get("iteration", 0))),
            f"{RECORD_PREFIX}saved_at": str(state.get("saved_at", ""))}


def read_weights_header(source: Path | bytes) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    """(tensor name -> shape, metadata) from a safetensors file or blob, without reading the tensors."""
    where = source if isinstance(source, Path) else WEIGHTS
    try:
        if isinstance(source, (bytes, bytearray, memoryview)):
            head = bytes(source[:8])
            n = int.from_bytes(head, "little") if len(head) == 8 else -1
            body = bytes(source[8:8 + n]) if 0 < n <= len(source) - 8 else b""
        else:
            with open(source, "rb") as f:
                head = f.read(8)
                n = int.from_bytes(head, "little") if len(head) == 8 else -1
                size = os.fstat(f.fileno()).st_size
                body = f.read(n) if 0 < n <= size - 8 else b""
        header = json.loads(body.decode("utf-8")) if body else None
    except (ValueError, UnicodeDecodeError):
        header = None
    if not isinstance(header, dict):
        raise DflError(f"{where}: not a safetensors weights file (truncated or overwritten)")
    meta = header.pop("__metadata__", None) or {}
    try:
        shapes = {k: tuple(int(x) for x in v["shape"]) for k, v in header.items()}
    except (TypeError, KeyError, ValueError):
        raise DflError(f"{where}: not a safetensors weights file (malformed header)") from None
    return shapes, {str(k): str(v) for k, v in meta.items()}


def weights_record(source: Path | bytes) -> dict[str, Any]:
    """The save record of a weights file or blob: ``model_type``, ``options`` (dict), ``iteration`` (int)
    where present ({} for weights saved before records existed, or a header that does not parse)."""
    try:
        _, meta = read_weights_header(source)
    except (DflError, OSError):
        return {}
    rec: dict[str, Any] = {}
    if f"{RECORD_PREFIX}model_type" in meta:
        rec["model_type"] = meta[f"{RECORD_PREFIX}model_type"]
    try:
        rec["options"] = dict(json.loads(meta[f"{RECORD_PREFIX}options"]))
    except (KeyError, ValueError, TypeError):
        pass
    try:
        rec["iteration"] = int(meta[f"{RECORD_PREFIX}iteration"])
    except (KeyError, ValueError):
        pass
    return rec


def _newest_backup_state(path: Path) -> tuple[Path, dict[str, Any]] | None:
    for b in reversed(list_backups(path)):
        with contextlib.suppress(DflError):
            s = read_json(b, STATE)
            if isinstance(s, dict):
                return b, s
    return None


def recover_state(path: Path, record: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """A state for a model whose state.json is lost: the iteration from the weights' save record (else
    the newest backup), the loss history from the newest backup up to that iteration.  Returns the state
    and what was done, for the user."""
    found = _newest_backup_state(Path(path))
    iteration = record.get("iteration")
    if iteration is not None:
        how = f"iteration {iteration} from the weights' save record"
    elif found is not None:
        iteration = int(found[1].get("iteration", 0))
        how = f"iteration {iteration} from backup {found[0].name} (the weights may be newer)"
    else:
        iteration = 0
        how = "no save record or backup tells the iteration: counting from 0 (the weights are kept)"
    history: dict[str, Any] = {}
    if found is not None and isinstance(found[1].get("loss_history"), dict):
        h = found[1]["loss_history"]
        keep = [i for i, it in enumerate(h.get("iters", [])) if it <= iteration]
        if keep:
            history = {"names": h.get("names", []), "iters": [h["iters"][i] for i in keep],
                       "values": [h["values"][i] for i in keep]}
            how += f", loss history from backup {found[0].name}"
    if not history:
        how += ", the loss history starts afresh"
    return {"iteration": int(iteration), "loss_history": history}, how


def rebuild_options(path: Path, model_type: str, given: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """Options for a model folder whose options.json is lost or unreadable, and where they came from.

    Sources, best first: the weights' save record, the newest backup whose options fit the weights, and
    the weights' tensor shapes (which fix resolution and dims but not, e.g., the face type: those must
    then come from ``given``, the user's --config).  ``given`` overrides the rest; the result must
    rebuild every saved tensor exactly, or nothing is used.
    """
    from dfl.models import options_from_weights, validate_options, weights_mismatch
    from dfl.models.options import check_given

    path = Path(path)
    weights = _resolve(path, WEIGHTS)
    if weights is None:
        name = (parse_folder_name(path.name) or (path.name, model_type))[0]
        raise DflError(f"{path}: no {WEIGHTS} to rebuild the options from; "
                       f"{repair_hint(path, name, model_type, WEIGHTS)}")
    shapes, _ = read_weights_header(weights)
    record = weights_record(weights)
    given = {k: v for k, v in given.items() if k != "model_type"}
    check_given(model_type, given)
    source: dict[str, Any] = {}
    where = "the weights' tensor shapes"
    if record.get("model_type") == model_type and record.get("options"):
        source, where = record["options"], "the weights' save record"
    else:
        for b in reversed(list_backups(path)):
            with contextlib.suppress(DflError):
                b_type, b_opts = read_options(b)
                if b_type == model_type and weights_mismatch(model_type, b_opts, shapes) is None:
                    source, where = b_opts, f"backup {b.name} and the weights"
                    break
    known, unknown = options_from_weights(model_type, shapes)
    options = {**known, **source, **given}
    missing = [k for k in unknown if k not in options]
    if missing:
        what = "; ".join(f"{k}: {unknown[k]}" for k in missing)
        them = "it" if len(missing) == 1 else "them"
        raise DflError(f"{path}: the weights do not tell {', '.join(missing)}; give {them} in a --config file "
                       f"({what})")
    options = validate_options(model_type, options)
    bad = weights_mismatch(model_type, options, shapes)
    if bad:
        raise DflError(f"{path / WEIGHTS}: these weights do not fit the rebuilt {model_type} options ({bad})")
    if given:
        where += f" and --config ({', '.join(sorted(given))})"
    if not source:
        where += "; the options they do not tell take their defaults (--config changes them)"
    return options, f"options rebuilt from {where}"


def set_aside(path: Path, name: str) -> Path | None:
    """Rename a damaged file of a model folder to ``<name>.damaged`` before a save replaces it (kept for
    the user; a later one replaces an earlier one).  Returns the new path, None when there was none."""
    f = Path(path) / name
    if not f.is_file():
        return None
    target = f.with_name(f"{name}.damaged")
    os.replace(f, target)
    return target


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
    """(SwapModel in eval mode on ``device``, options, state) of a model folder, for merging; ``notify``
    gets a line for each thing recovered (e.g. a lost state.json)."""
    from dfl.models import build_model

    ckpt = read_checkpoint(Path(path), with_optimizer=False)
    for line in ckpt.notices:
        notify(line)
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


def serialize_weights(networks: dict[str, torch.nn.Module], metadata: dict[str, str] | None = None) -> bytes:
    """All networks' state dicts as one safetensors blob (fp32 CPU tensors, keys ``<net>.<param>``), with
    ``metadata`` (e.g. :func:`save_record`) in its header."""
    tensors = {}
    for net_name, net in networks.items():
        for k, v in net.state_dict().items():
            tensors[f"{net_name}.{k}"] = v.detach().to("cpu").contiguous().clone()
    return st_save(tensors, metadata=metadata)


def save_checkpoint(path: Path, model_type: str, options: dict[str, Any], state: dict[str, Any],
                    networks: dict[str, torch.nn.Module], optimizer_state: dict[str, Any] | None) -> None:
    """Save everything; all-or-nothing (see the module docstring).  Ctrl+C is deferred to the end.

    A save that cannot be written (a full disk, a lost drive) removes its half-written ``.saving`` and
    raises a DflError saying so; the previous complete save is untouched.
    """
    global _save_count
    path = Path(path)
    _save_count += 1
    with _defer_sigint():
        try:
            path.mkdir(parents=True, exist_ok=True)
            recover(path)   # an earlier complete save is moved into place first, never discarded
        except OSError as exc:
            raise DflError(f"{path}: cannot save the model ({exc.strerror or exc}); nothing was changed") from None
        try:
            _stage_save(path, model_type, options, state, networks, optimizer_state)
        except OSError as exc:
            shutil.rmtree(path / SAVING_DIR, ignore_errors=True)
            raise DflError(_save_failed(path, exc)) from None
        try:
            _move_into_place(path)
        except OSError as exc:
            raise DflError(f"{path}: the new save is complete in {SAVING_DIR}/ but could not be moved into place "
                           f"({exc.strerror or exc}); the next `dfl train` of this model finishes it") from None


def _stage_save(path: Path, model_type: str, options: dict[str, Any], state: dict[str, Any],
                networks: dict[str, torch.nn.Module], optimizer_state: dict[str, Any] | None) -> None:
    """Write every file of a save into ``.saving/`` and mark it COMPLETE (fsynced at each step)."""
    saving = path / SAVING_DIR
    shutil.rmtree(saving, ignore_errors=True)
    saving.mkdir()
    state = dict(state, saved_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    blob = serialize_weights(networks, save_record(model_type, options, state))
    state["weights_blake2b"] = hashlib.blake2b(blob, digest_size=16).hexdigest()
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


def _save_failed(path: Path, exc: OSError) -> str:
    """One line for a save that could not be written: why, and that the last complete save is intact."""
    kept = "there was no earlier save"
    with contextlib.suppress(DflError, OSError):
        if _resolve(path, WEIGHTS) is not None:
            state = read_json(path, STATE) or {}
            kept = f"the last complete save (iteration {int(state.get('iteration', 0))}) is untouched"
    full = exc.errno == errno.ENOSPC or exc.errno == getattr(errno, "EDQUOT", -1)
    return (f"{path}: cannot save the model ({exc.strerror or exc}); the half-written save was removed and "
            f"{kept}" + ("; free some space and train again" if full else ""))


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
    """Copy the live complete save into ``backups/iter_<N>/`` and keep only the last ``keep`` backups.

    A backup that cannot be written (a full disk) leaves no partial folder and raises a DflError; the
    model's own save is not affected.
    """
    path = Path(path)
    state = read_json(path, STATE)
    if state is None or keep <= 0:
        return None
    backups = path / BACKUPS_DIR
    target = backups / f"iter_{int(state.get('iteration', 0)):09d}"
    if target.exists():
        return target
    tmp = backups / f".{target.name}.tmp"
    try:
        backups.mkdir(exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for name in SAVED_FILES:
            f = _resolve(path, name)
            if f is not None:
                shutil.copy2(f, tmp / name)
        for extra in PREVIEWS:
            if (path / extra).is_file():
                shutil.copy2(path / extra, tmp / extra)
        os.replace(tmp, target)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DflError(f"{target}: backup not written ({exc.strerror or exc}); the model itself is saved") from None
    for old in list_backups(path)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def restore_backup(model_dir: Path, name: str, model_type: str | None = None,
                   backup: str | None = None) -> tuple[Path, Path, Path | None]:
    """Put a backup (default: the newest) back as the model's live save.

    The files it replaces go to the workspace trash first, so a restore loses nothing either.  Returns
    (model folder, backup used, where the replaced files went or None).
    """
    info = _existing(model_dir, name, model_type)
    backups = list_backups(info.path)
    if not backups:
        raise DflError(f"{info.path}: no backups to restore (`dfl train --backup-every N` makes them)")
    chosen = backups[-1] if backup is None else next((b for b in backups if b.name == backup), None)
    if chosen is None:
        raise DflError(f"{info.path}: no backup {backup!r} (there are {', '.join(b.name for b in backups)})")
    with _exclusive(info.path, _busy(info.path, "restore")):
        read_checkpoint(chosen, with_optimizer=False)   # a damaged backup is refused, never put back
        recover(info.path)
        saving = info.path / SAVING_DIR
        try:
            shutil.rmtree(saving, ignore_errors=True)
            saving.mkdir()
            for n in SAVED_FILES:
                if (chosen / n).is_file():
                    shutil.copy2(chosen / n, saving / n)
            _fsync_dir(saving)
            _write_synced(saving / COMPLETE, b"")
        except OSError as exc:
            shutil.rmtree(saving, ignore_errors=True)
            raise DflError(f"{info.path}: cannot restore {chosen.name} ({exc.strerror or exc}); "
                           "nothing was changed") from None
        replaced = [f for f in info.path.iterdir() if f.is_file() and f.name != LOCK
                    and f.name.split(".damaged")[0] in (*SAVED_FILES, *PREVIEWS)]
        aside = _to_trash(Path(model_dir), replaced) / Path(model_dir).name / info.path.name if replaced else None
        _move_into_place(info.path)
        for extra in PREVIEWS:
            if (chosen / extra).is_file():
                with contextlib.suppress(OSError):
                    atomic_write_bytes(info.path / extra, (chosen / extra).read_bytes())
    return info.path, chosen, aside


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
    with _exclusive(path, f"{path}: another dfl train is using this model"):
        yield


@contextlib.contextmanager
def _exclusive(path: Path, busy: str):
    """The folder's flock, or a DflError ``busy`` when another process holds it.  Rename, delete and
    restore take it too, so none of them pulls a model from under its trainer."""
    try:
        import fcntl
    except ImportError:   # Windows: no advisory locks; one trainer per model is the user's job there
        yield
        return
    f = open(Path(path) / LOCK, "a+")
    try:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise DflError(busy) from None
        yield
    finally:
        f.close()


def remove_if_unused(path: Path) -> bool:
    """Remove a model folder that holds nothing but its lock file (a new model whose creation failed
    before its first save); True when removed."""
    path = Path(path)
    try:
        if {p.name for p in path.iterdir()} - {LOCK}:
            return False
        (path / LOCK).unlink(missing_ok=True)
        path.rmdir()
        return True
    except OSError:
        return False


def write_file_atomic(path: Path, data: bytes) -> None:
    """For previews and plots in the model folder."""
    atomic_write_bytes(path, data)
