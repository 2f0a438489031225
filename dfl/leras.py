"""DeepFaceLab's ``leras`` weight files (``*.npy``): read them safely and load them into torch modules.

DFL saves every network (its ``Saveable.save_weights``) as a pickled dict ``{variable name: array}``,
names relative to the network and in TensorFlow's form, ``down1/downs_0/conv1/weight:0``; list members
are ``<list>_<i>``.  Despite the suffix these are not numpy ``.npy`` files: ``np.load`` would refuse them,
and unpickling a stranger's file with plain ``pickle`` runs whatever it names.  They are read here only
with the restricted unpickler of :mod:`dfl.faceset.safe_pickle` (plain containers and numpy arrays).

Layouts differ from torch's: a Conv2D kernel is ``(kh, kw, in, out)``, a Conv2DTranspose kernel
``(kh, kw, out, in)``, a Dense kernel ``(in, out)``; everything else (biases, norm parameters) holds the
same numbers as the torch tensor up to a reshape (S3FD's L2Norm keeps ``(1, 1, 1, C)``).
Data format does not matter: DFL keeps HWIO kernels whether a model ran NCHW (GPUs) or NHWC (CPU), and
its flatten/reshape ops follow NCHW order in both, as dfl's networks do.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dfl.errors import DflError

NameFn = Callable[[str], "str | None"]
"""Maps a torch state-dict key to its leras variable name (None: the key has no leras variable)."""

_LIST_INDEX = re.compile(r"\.(\d+)(?=\.|$)")


def read_pickle(path: Path, what: str) -> object:
    """Unpickle one of DFL's files with the restricted unpickler; DflError (one line) otherwise."""
    from dfl.faceset.safe_pickle import safe_loads

    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DflError(f"{path}: no such file") from None
    except OSError as exc:
        raise DflError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not data:
        raise DflError(f"{path}: empty file, not a {what}")
    return safe_loads(data, str(path), what=what)


def read_weights(path: Path) -> dict[str, np.ndarray]:
    """The ``{variable name: array}`` dict of a DFL weights file (``Saveable.save_weights``)."""
    obj = read_pickle(path, "DFL weights file")
    if not isinstance(obj, dict) or not all(isinstance(k, str) for k in obj) \
            or not all(isinstance(v, (np.ndarray, np.generic)) for v in obj.values()):
        raise DflError(f"{path}: not a DFL weights file (expected a pickled dict of named arrays, "
                       f"found {type(obj).__name__})")
    return {k: np.asarray(v) for k, v in obj.items()}


def leras_name(key: str) -> str:
    """DFL's variable name for a torch key named after DFL's attributes.

    ``"down1.downs.0.conv1.weight"`` -> ``"down1/downs_0/conv1/weight:0"`` (list members are
    ``<list>_<i>`` in leras, ``<list>.<i>`` in torch).
    """
    return _LIST_INDEX.sub(r"_\1", key).replace(".", "/") + ":0"


def _owner(module: nn.Module, key: str) -> nn.Module:
    path, _, _ = key.rpartition(".")
    return module.get_submodule(path) if path else module


def to_torch_layout(array: np.ndarray, owner: nn.Module, param: str, target_shape: torch.Size) -> np.ndarray:
    """A leras array in the layout of the torch tensor ``owner.<param>`` (shape ``target_shape``)."""
    kernel = param == "weight" and isinstance(owner, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))
    shape = tuple(array.shape)
    if kernel:
        if array.ndim != len(target_shape):
            raise ValueError(f"shape {shape} does not fit {tuple(target_shape)}")
        # Conv2D (kh, kw, in, out) -> (out, in, kh, kw); Conv2DTranspose (kh, kw, out, in) -> (in, out, kh, kw);
        # Dense (in, out) -> (out, in)
        array = array.transpose(3, 2, 0, 1) if array.ndim == 4 else array.T
    if tuple(array.shape) != tuple(target_shape):
        if kernel or array.size != int(np.prod(target_shape)):
            raise ValueError(f"shape {shape} does not fit {tuple(target_shape)}")
        array = array.reshape(tuple(target_shape))
    return array


def state_dict_from_leras(module: nn.Module, weights: Mapping[str, np.ndarray], source: Path | str,
                          name: NameFn = leras_name) -> dict[str, torch.Tensor]:
    """``module``'s state dict filled from a leras weights dict, every variable checked.

    A missing variable, a shape that does not fit or a variable the module has no place for is a
    DflError naming ``source`` and the variable: the file belongs to another network or options.
    Keys ``name`` maps to None (e.g. BatchNorm's ``num_batches_tracked``) keep the module's values.
    """
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for key, current in module.state_dict().items():
        leras = name(key)
        if leras is None:
            out[key] = current
            continue
        if leras not in weights:
            raise DflError(f"{source}: no variable {leras} (not this network's weights, or made with "
                           f"other options)")
        used.add(leras)
        owner = _owner(module, key)
        try:
            arr = to_torch_layout(np.asarray(weights[leras]), owner, key.rpartition(".")[2], current.shape)
        except ValueError as exc:
            raise DflError(f"{source}: variable {leras}: {exc} (made with other options?)") from None
        if not np.issubdtype(arr.dtype, np.floating):
            raise DflError(f"{source}: variable {leras} holds {arr.dtype}, not floats")
        out[key] = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)).to(current.dtype)
    extra = sorted(set(weights) - used)
    if extra:
        more = f" and {len(extra) - 3} more" if len(extra) > 3 else ""
        raise DflError(f"{source}: variables this network does not have: {', '.join(extra[:3])}{more} "
                       f"(made with other options?)")
    return out


def load_leras(module: nn.Module, source: Path | Mapping[str, np.ndarray], name: NameFn = leras_name,
               where: str | None = None) -> nn.Module:
    """Load a DFL weights file (or an already read dict) into ``module`` in place; returns it."""
    weights = read_weights(Path(source)) if isinstance(source, (str, Path)) else source
    where = where or (str(source) if isinstance(source, (str, Path)) else "weights")
    module.load_state_dict(state_dict_from_leras(module, weights, where, name), strict=True)
    return module
