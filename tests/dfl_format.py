"""Test helpers that write what DeepFaceLab writes: leras weight files and model folders.

dfl itself only reads DFL's files; tests need to make them (DFL-format model folders to import, large
networks' weights regenerated from the seed rule of :mod:`dfl_seed`).  The writer pickles exactly what
DFL's ``Saveable.save_weights`` pickles (protocol 4, ``{name: array}``, numpy arrays under the
``numpy.core`` names DFL's numpy 1.x uses) and ``ModelBase.save``'s ``<name>_data.dat`` dict.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
from torch import nn

from dfl.faceset.safe_pickle import dfl_dumps
from dfl.leras import leras_name
from dfl_seed import leras_value


def leras_shape(module: nn.Module, key: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape DFL stores for the torch tensor ``key`` of ``module`` (inverse of dfl.leras' layout)."""
    path, _, param = key.rpartition(".")
    owner = module.get_submodule(path) if path else module
    if param == "weight" and isinstance(owner, (nn.Conv2d, nn.ConvTranspose2d)) and len(shape) == 4:
        return (shape[2], shape[3], shape[1], shape[0])
    if param == "weight" and isinstance(owner, nn.Linear):
        return (shape[1], shape[0])
    return tuple(shape)


def seeded_weights(module: nn.Module, network: str, seed: int = 1, name: Callable[[str], str | None] = leras_name,
                   shape: Callable[[str, tuple[int, ...]], tuple[int, ...]] | None = None) -> dict[str, np.ndarray]:
    """The leras dict DFL would save for ``module`` (DFL's network name ``network``) filled by the seed rule
    (``shape`` overrides the stored shape of a key)."""
    out = {}
    for key, t in module.state_dict().items():
        ln = name(key)
        if ln is None:
            continue
        sh = leras_shape(module, key, tuple(t.shape))
        if shape is not None:
            sh = shape(key, sh)
        out[ln] = leras_value(f"{network}/{ln}", sh, seed)
    return out


def write_weights(path: Path, weights: dict[str, np.ndarray]) -> Path:
    """A leras weights file as DFL's saver writes it."""
    Path(path).write_bytes(dfl_dumps({k: np.asarray(v) for k, v in weights.items()}))
    return Path(path)


def write_model_data(path: Path, iteration: int, options: dict, loss_history: list | None = None) -> Path:
    """``<name>_<Model>_data.dat`` as ``ModelBase.save`` writes it."""
    data = {"iter": iteration, "options": dict(options), "loss_history": loss_history or [],
            "sample_for_preview": None, "choosed_gpu_indexes": None}
    Path(path).write_bytes(dfl_dumps(data))
    return Path(path)


class _Touch:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os
        return (os.system, (f"touch {self.marker}",))


def code_running_pickle(marker: Path, inside_dict: bool = False) -> bytes:
    """A pickle that runs ``touch <marker>`` when loaded with plain ``pickle`` (what a crafted file does)."""
    import pickle

    payload = _Touch(Path(marker))
    return pickle.dumps({"iter": 3, "options": payload} if inside_dict else payload)
