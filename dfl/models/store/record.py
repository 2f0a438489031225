"""The save record in the weights file (so the weights alone tell what they are) and a lost state.json
recovered from it or from the newest backup."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from dfl.errors import DflError
from dfl.models.store.layout import RECORD_PREFIX, STATE, WEIGHTS, json_default, list_backups, read_json


def save_record(model_type: str, options: dict[str, Any], state: dict[str, Any]) -> dict[str, str]:
    """What a save writes into the weights file's metadata, so the weights alone tell what they are."""
    return {f"{RECORD_PREFIX}model_type": model_type,
            f"{RECORD_PREFIX}options": json.dumps(options, default=json_default),
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
