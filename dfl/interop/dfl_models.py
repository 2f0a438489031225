"""How DFL's model files map onto dfl: option names, optimiser variables, loss columns.

What differs per model type (its network files, TF scopes, options a preset fixes) is each model's spec's
``dfl_import`` (:class:`dfl.models.registry.DflImport`); this module holds what is the same for all.
A DFL model ``<name>_<Type>`` saves ``<name>_<Type>_<network>.npy`` per network (dfl's networks carry
DFL's network names, so the file stem is the dfl network name and the leras variable names follow
:func:`dfl.leras.leras_name`), the discriminators ``GAN.npy`` / ``code_discriminator.npy`` when
training used them, optimiser states (``<name>_<Type>_<optimiser>.npy``: ``iters`` and one moment per
trained variable, named after the variable's full TensorFlow name), and ``<name>_<Type>_data.dat``:
``iter``, ``options``, ``loss_history`` (one ``[src_loss, dst_loss]`` row per iteration) and a preview sample.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dfl.models.registry import ModelSpec

# DFL option names that dfl spells differently (older DFL versions used some of these).
RENAMED = {"eyes_prio": "eyes_mouth_prio"}
# DFL options with no dfl counterpart, and why (shown in the import summary).
NOT_CARRIED = {
    "models_opt_on_gpu": "dfl places models by --device",
    "autobackup_hour": "dfl backs up by iterations: --backup-every",
    "write_preview_history": "dfl keeps preview.png and history.png",
    "target_iter": "a dfl train flag: --target-iter",
    "random_flip": "replaced by random_src_flip / random_dst_flip in DFL itself",
    "use_fp16": "dfl picks precision per run: --precision",
}
LOSS_NAMES = ("src_loss", "dst_loss")   # the columns of DFL's loss_history for its face-swap models


def plain(value: Any) -> Any:
    """numpy scalars (DFL's options hold ``np.clip`` results) as Python values."""
    if isinstance(value, np.generic):
        return value.item()
    return value


# dfl optimiser state key -> the prefix DFL's optimiser gives its variable per trained variable
OPTIMIZER_SLOTS = {"m": "ms_", "v": "vs_", "a": "acc_"}   # AdaBelief m, v; RMSprop accumulator


def optimizer_variable(slot: str, scope: str, leras: str) -> str:
    """DFL's name for an optimiser slot of variable ``<scope>/<leras>`` (``leras`` ends in ``:0``):
    leras' optimisers make ``ms_`` + the variable's name with ``:`` turned into ``_``."""
    return f"{OPTIMIZER_SLOTS[slot]}{scope}/{leras}".replace(":", "_") + ":0"


def map_options(spec: ModelSpec, dfl_options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """(dfl options before validation, {DFL option: why it is not carried}) for a DFL options dict.

    Names the model declares carry over as they are (numpy scalars made plain); DFL's old boolean
    ``lr_dropout`` becomes y/n as DFL itself converts it; options a preset fixes (its spec's
    ``dfl_import.ignored``) are dropped silently.
    """
    known = {s.name for s in spec.options}
    ignored = spec.dfl_import.ignored if spec.dfl_import is not None else ()
    mapped: dict[str, Any] = {}
    dropped: dict[str, str] = {}
    for key, value in dfl_options.items():
        name = RENAMED.get(key, key)
        value = plain(value)
        if name in known:
            if name == "lr_dropout" and isinstance(value, bool):
                value = "y" if value else "n"
            mapped[name] = value
        elif key in ignored:
            continue                                  # fixed by the preset, in DFL as here
        else:
            dropped[key] = NOT_CARRIED.get(key, "not an option of dfl's " + spec.name)
    return mapped, dropped


def loss_history(rows: Any, max_points: int, columns: tuple[str, ...] = LOSS_NAMES) -> dict[str, Any]:
    """DFL's per-iteration loss rows (``columns``: ``[src, dst]`` for the face-swap models) as dfl's history
    (``names``/``iters``/``values``).

    Row ``i`` is iteration ``i + 1``.  Longer histories are averaged over runs of 2^k rows (the last
    iteration of each run names it) so at most ``max_points`` remain, as dfl's own history thins.
    """
    arr = np.asarray(rows if rows is not None else [], np.float64)
    if arr.size == 0:
        return {}
    if arr.ndim != 2:
        raise ValueError(f"loss history rows of shape {arr.shape}")
    n, cols = arr.shape
    names = list(columns[:cols]) + [f"loss_{i}" for i in range(len(columns), cols)]
    step = 1
    while -(-n // step) > max_points:
        step *= 2
    iters = np.arange(1, n + 1)
    if step > 1:
        full = n // step * step
        means = arr[:full].reshape(-1, step, cols).mean(1)
        ends = iters[step - 1:full:step]
        if full < n:
            means = np.vstack([means, arr[full:].mean(0, keepdims=True)])
            ends = np.append(ends, n)
        arr, iters = means, ends
    return {"names": names, "iters": [int(i) for i in iters], "values": arr.tolist()}
