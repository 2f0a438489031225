"""Saving a model all-or-nothing, and finishing or discarding a save that a crash interrupted.

How a save stays consistent: the new files are written (and fsynced) into ``<folder>/.saving/``
(:func:`write_staged`); when all are complete an empty ``COMPLETE`` marker is written there, also fsynced
(:func:`mark_complete`); only then are the files renamed over the live ones, one ``os.replace`` each, after
which ``.saving`` is removed (:func:`commit_save`).  A crash before the marker leaves the previous complete
state untouched (the half-written ``.saving`` is discarded by :func:`recover`); a crash after it leaves a
complete new state that :func:`recover` finishes moving into place (and
:func:`dfl.models.store.reading.read_checkpoint` reads without moving anything, so a merge running beside a
trainer is safe).  A save that fails (a full disk) removes its half-written ``.saving`` and says so in one
line.  The steps are public so that tests can stop a save between them in a process of their own.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as st_save

from dfl.errors import DflError
from dfl.models.store.layout import (COMPLETE, OPTIMIZER, OPTIONS, SAVED_FILES, SAVING_DIR, STATE, WEIGHTS,
                                     fsync_dir, json_bytes, read_json, resolve, saving_complete, write_synced)
from dfl.models.store.record import save_record


def serialize_weights(networks: dict[str, torch.nn.Module], metadata: dict[str, str] | None = None) -> bytes:
    """All networks' state dicts as one safetensors blob (fp32 CPU tensors, keys ``<net>.<param>``), with
    ``metadata`` (e.g. :func:`dfl.models.store.record.save_record`) in its header."""
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
    path = Path(path)
    with _defer_sigint():
        try:
            path.mkdir(parents=True, exist_ok=True)
            recover(path)   # an earlier complete save is moved into place first, never discarded
        except OSError as exc:
            raise DflError(f"{path}: cannot save the model ({exc.strerror or exc}); nothing was changed") from None
        try:
            write_staged(path, model_type, options, state, networks, optimizer_state)
            mark_complete(path)
        except OSError as exc:
            shutil.rmtree(path / SAVING_DIR, ignore_errors=True)
            raise DflError(_save_failed(path, exc)) from None
        try:
            commit_save(path)
        except OSError as exc:
            raise DflError(f"{path}: the new save is complete in {SAVING_DIR}/ but could not be moved into place "
                           f"({exc.strerror or exc}); the next `dfl train` of this model finishes it") from None


def write_staged(path: Path, model_type: str, options: dict[str, Any], state: dict[str, Any],
                 networks: dict[str, torch.nn.Module], optimizer_state: dict[str, Any] | None) -> None:
    """Write every file of a save into a fresh ``.saving/`` (each fsynced), not yet marked complete."""
    saving = Path(path) / SAVING_DIR
    shutil.rmtree(saving, ignore_errors=True)
    saving.mkdir()
    state = dict(state, saved_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    blob = serialize_weights(networks, save_record(model_type, options, state))
    state["weights_blake2b"] = hashlib.blake2b(blob, digest_size=16).hexdigest()
    write_synced(saving / WEIGHTS, blob)
    del blob
    if optimizer_state is not None:
        buf = io.BytesIO()
        torch.save(optimizer_state, buf)
        write_synced(saving / OPTIMIZER, buf.getvalue())
    write_synced(saving / OPTIONS, json_bytes({"model_type": model_type, **options}))
    write_synced(saving / STATE, json_bytes(state))
    fsync_dir(saving)


def mark_complete(path: Path) -> None:
    """Mark the staged save complete: from here on it is what loads, moved into place or not."""
    saving = Path(path) / SAVING_DIR
    write_synced(saving / COMPLETE, b"")
    fsync_dir(saving)


def commit_save(path: Path) -> None:
    """Move a complete staged save over the live files, one rename each, then remove ``.saving``."""
    path = Path(path)
    saving = path / SAVING_DIR
    for name in SAVED_FILES:
        src = saving / name
        if src.is_file():
            os.replace(src, path / name)
    fsync_dir(path)
    shutil.rmtree(saving, ignore_errors=True)
    fsync_dir(path)


def recover(path: Path) -> str | None:
    """Make a model folder consistent after a killed save; returns what was done (None: nothing).

    Only a process that owns the folder (the trainer, under :func:`dfl.models.store.ownership.lock_model`)
    may call this.
    """
    path = Path(path)
    saving = path / SAVING_DIR
    if not saving.exists():
        return None
    if saving_complete(path):
        commit_save(path)
        return "finished an interrupted save"
    shutil.rmtree(saving, ignore_errors=True)
    return "discarded an incomplete save"


def _save_failed(path: Path, exc: OSError) -> str:
    """One line for a save that could not be written: why, and that the last complete save is intact."""
    kept = "there was no earlier save"
    with contextlib.suppress(DflError, OSError):
        if resolve(path, WEIGHTS) is not None:
            state = read_json(path, STATE) or {}
            kept = f"the last complete save (iteration {int(state.get('iteration', 0))}) is untouched"
    full = exc.errno == errno.ENOSPC or exc.errno == getattr(errno, "EDQUOT", -1)
    return (f"{path}: cannot save the model ({exc.strerror or exc}); the half-written save was removed and "
            f"{kept}" + ("; free some space and train again" if full else ""))


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
