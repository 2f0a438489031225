"""Pickle for DFL face metadata, safe to load from files strangers share, and loadable by DFL.

DFL stores each face's metadata as a pickled dict.  A plain ``pickle.loads`` runs whatever callable the
file names (``os.system`` included), so facesets downloaded from forums would be remote code execution.
Loading here resolves only the handful of globals the format needs (numpy's array/dtype/scalar
rebuilders); any other global is refused before anything is called.

Writing goes the other way: numpy 2 names its rebuilders ``numpy._core...``, a module DFL's numpy 1.x
cannot import, so arrays are pickled under the ``numpy.core...`` names DFL's own files use.
"""

from __future__ import annotations

import codecs
import io
import pickle
import types
from typing import Any

import numpy as np

from dfl.errors import DflError

_reconstruct = np.ndarray.__reduce__(np.zeros(1))[0]
_scalar = np.float32(0).__reduce__()[0]
_frombuffer = np.zeros(1).__reduce_ex__(5)[0]      # protocol-5 array rebuilder


def _latin1_encode(obj: str, encoding: str = "latin1", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as Python 3 uses it to pickle bytes at protocol 2, limited to latin-1."""
    if codecs.lookup(encoding).name != "iso8859-1" or not isinstance(obj, str):
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
    return obj.encode("latin1", errors)


# (module, name) -> object: the only globals a DFL metadata pickle may name.
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.multiarray", "scalar"): _scalar,
    ("numpy._core.multiarray", "scalar"): _scalar,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
    ("builtins", "bytes"): bytes,           # protocol <= 2 writes b"" as bytes()
    ("__builtin__", "bytes"): bytes,
}

# objects we write -> the (module, name) DFL's numpy 1.x can import
_LEGACY_NAMES: dict[int, tuple[str, str]] = {
    id(_reconstruct): ("numpy.core.multiarray", "_reconstruct"),
    id(_scalar): ("numpy.core.multiarray", "scalar"),
    id(np.ndarray): ("numpy", "ndarray"),
    id(np.dtype): ("numpy", "dtype"),
}


# DFL's IntEnums that its packed facesets (faceset.pak) pickle by name.  Loading turns a member into its
# int; writing pickles an :class:`EnumInt` as the member, so DFL's own loader rebuilds its enum.
DFL_ENUMS = (("samplelib.Sample", "SampleType"), ("facelib.FaceType", "FaceType"))


class EnumInt(int):
    """An int that pickles as a DFL enum member (``module.name(value)``); see :func:`dfl_enum`."""

    _rebuild: Any = None

    def __reduce__(self) -> tuple:
        return (type(self)._rebuild, (int(self),))


def _enum_type(module: str, name: str) -> type[EnumInt]:
    def rebuild(value: Any) -> int:
        if isinstance(value, tuple) and len(value) == 1:   # DFL's MARK_ONLY = 100, is a tuple value
            value = value[0]
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise pickle.UnpicklingError(f"{module}.{name} value {value!r} is not an int")
        return int(value)

    _ALLOWED_GLOBALS[(module, name)] = rebuild
    _LEGACY_NAMES[id(rebuild)] = (module, name)
    return type(name, (EnumInt,), {"_rebuild": staticmethod(rebuild)})


_ENUM_TYPES = {key: _enum_type(*key) for key in DFL_ENUMS}


def dfl_enum(module: str, name: str, value: int) -> EnumInt:
    """``value`` as DFL's enum member ``module.name`` when pickled (e.g. a pak's ``SampleType.FACE``)."""
    return _ENUM_TYPES[(module, name)](int(value))


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        obj = _ALLOWED_GLOBALS.get((module, name))
        if obj is None:
            raise pickle.UnpicklingError(f"forbidden global {module}.{name}")
        return obj

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not allowed")


def _check_types(obj: Any, depth: int = 0) -> None:
    """Reject anything but plain data in the result (object arrays could hide odd things)."""
    if depth > 64:
        raise pickle.UnpicklingError("metadata nested too deeply")
    if obj is None or isinstance(obj, (bool, int, float, complex, str, bytes, bytearray, np.generic)):
        if isinstance(obj, np.generic) and obj.dtype.kind == "O":
            raise pickle.UnpicklingError("object scalars are not allowed")
        return
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind == "O" or obj.dtype.fields is not None:
            raise pickle.UnpicklingError(f"arrays of dtype {obj.dtype} are not allowed")
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            _check_types(k, depth + 1)
            _check_types(v, depth + 1)
        return
    if isinstance(obj, (list, tuple)):
        for v in obj:
            _check_types(v, depth + 1)
        return
    raise pickle.UnpicklingError(f"type {type(obj).__name__} is not allowed")


def safe_loads(data: bytes, where: str = "<metadata>", what: str = "face metadata") -> Any:
    """Unpickle DFL data allowing only plain data and numpy arrays; DflError otherwise.

    ``what`` names the kind of file in the message (DFL's model ``.dat`` and weight ``.npy`` files are
    pickles of the same plain kinds).
    """
    try:
        obj = _RestrictedUnpickler(io.BytesIO(data)).load()
        _check_types(obj)
    except pickle.UnpicklingError as exc:
        raise DflError(f"{where}: unsafe or corrupt {what} refused ({exc})") from None
    except Exception as exc:  # truncated data, bad numpy state, absurd sizes ...
        raise DflError(f"{where}: corrupt {what} ({type(exc).__name__}: {exc})") from None
    return obj


class _LegacyNumpyPickler(pickle._Pickler):  # the pure-Python pickler lets us rename globals
    def save_global(self, obj: Any, name: str | None = None) -> None:
        alias = _LEGACY_NAMES.get(id(obj))
        if alias is None:
            raise pickle.PicklingError(f"face metadata may not contain {obj!r}")
        module, qualname = alias
        self.save(module)
        self.save(qualname)
        self.write(pickle.STACK_GLOBAL)
        self.memoize(obj)

    dispatch = dict(pickle._Pickler.dispatch)
    dispatch[types.FunctionType] = save_global      # the enum rebuilders are plain functions


def dfl_dumps(obj: Any) -> bytes:
    """Pickle metadata (protocol 4, as DFL) so that DFL's numpy 1.x loads it and so do we."""
    _check_types(obj)
    buf = io.BytesIO()
    _LegacyNumpyPickler(buf, protocol=4).dump(obj)
    return buf.getvalue()
