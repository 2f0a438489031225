"""The merger's XSeg model: what the XSeg mask modes run on the predicted and the dst faces.

DFL's merger loads its XSeg (``model/XSeg_256.npy``) on demand, the first time a face is merged with an
XSeg mode.  :class:`LazyXSeg` does the same around any loader that returns a mask predictor (the CLI
passes :func:`dfl.xseg.predictor.load_predictor` for the workspace, ``--xseg-name`` or
``--xseg-generic``), so a merge that never uses an XSeg mode never loads one, and a missing model is one
line: at the start of a merge whose settings need it, or on the interactive merger's screen when its
``x`` key would cycle into the XSeg modes (they are then skipped).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol

import numpy as np

from dfl.errors import DflError


class MaskModel(Protocol):
    """What the merger needs of a mask predictor (:class:`dfl.xseg.predictor.MaskPredictor` is one)."""

    resolution: int
    name: str
    identity: str

    def predict(self, faces: np.ndarray) -> np.ndarray: ...


class LazyXSeg:
    """An ``XSegFunc`` (N x R x R x 3 faces -> N x R x R masks) whose model loads on first use.

    Thread-safe (the folder merger blends on several threads); a failed load is remembered, so it is
    reported once per use rather than retried on every face.
    """

    def __init__(self, load: Callable[[], MaskModel]) -> None:
        self._load = load
        self._model: MaskModel | None = None
        self._error: str | None = None
        self._lock = threading.Lock()

    def ready(self) -> str:
        """'' once the model is loaded (loading it now if needed), else why it cannot be (one line)."""
        with self._lock:
            if self._model is None and self._error is None:
                try:
                    self._model = self._load()
                except DflError as exc:
                    self._error = str(exc)
            return self._error or ""

    def require(self) -> MaskModel:
        """The loaded model; DflError (one line) when there is none."""
        why = self.ready()
        if why:
            raise DflError(why)
        assert self._model is not None
        return self._model

    @property
    def resolution(self) -> int:
        return int(self.require().resolution)

    @property
    def name(self) -> str:
        return self.require().name

    @property
    def identity(self) -> str:
        return self.require().identity

    def __call__(self, faces: np.ndarray) -> np.ndarray:
        return np.asarray(self.require().predict(np.asarray(faces, np.float32)), np.float32)
