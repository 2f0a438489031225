"""Run the converted MediaPipe graphs (BlazeFace, FaceMesh) through onnxruntime on the CPU, PyTorch elsewhere.

Why: these nets are hundreds of tiny ops (depthwise 3x3 convolutions on 2x2 to 96x96 maps, PReLUs, adds), where
PyTorch's per-op cost is most of the time.  onnxruntime runs the same graph 2-3x faster on one CPU core
(measured on a Sapphire Rapids Xeon, 1 thread: FaceMesh with attention 20 -> 10 ms, BlazeFace short range 18
tiles 75 -> 33 ms, full range 17 -> 3.5 ms), which is what extraction spends its time on.

The ONNX graph is traced from the PyTorch graph (:class:`dfl.faces.tflite_graph.TFLiteGraph`), so there is one
implementation of every op; it is cached in ``$DFL_HOME/cache/onnx`` (default ``~/.dfl``) under a key of the
weights, the graph code and the torch version, and checked against PyTorch on a fixed input when it is made
(a graph that disagrees is not used); each file is named by its own digest, so a damaged one is made again.
onnxruntime not installed, a GPU device, or ``DFL_FACE_ENGINE=torch``: the PyTorch graph runs.  ``onnx`` is
needed only to make the ONNX file.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import io
import os
import threading
import warnings
from pathlib import Path

import numpy as np
import torch

from dfl.atomic import atomic_write_bytes
from dfl.faces import tflite_graph
from dfl.faces.tflite_graph import TFLiteGraph

ENGINE_ENV = "DFL_FACE_ENGINE"   # "torch" keeps these graphs in PyTorch (default: onnxruntime on the CPU)
OPSET = 17                       # GridSample (the attention model's crops) needs 16+
CHECK_ATOL = 1e-3                # onnxruntime vs torch on the check input (measured differences ~1e-4)


def wanted(device: torch.device) -> bool:
    """Whether graphs on ``device`` go through onnxruntime now: on the CPU when it is installed, unless
    ``DFL_FACE_ENGINE=torch`` (read at each call, so a process can compare the two)."""
    if device.type != "cpu" or os.environ.get(ENGINE_ENV, "").strip().lower() == "torch":
        return False
    return _installed()


@functools.lru_cache(maxsize=1)
def _installed() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None   # onnx (the exporter's) only when exporting


def cache_dir() -> Path:
    from dfl.precision import dfl_home

    return dfl_home() / "cache" / "onnx"


class GraphEngine:
    """``engine(x, outputs)`` -> the graph outputs at positions ``outputs`` (all when None) as torch tensors,
    exactly as ``TFLiteGraph.forward`` gives them, run by onnxruntime when :func:`wanted`, else by the graph."""

    def __init__(self, net: TFLiteGraph, weights: Path, sample_shape: tuple[int, ...]) -> None:
        self.net, self.weights, self.sample_shape = net, Path(weights), tuple(sample_shape)
        self.device = next(net.parameters()).device
        self.failed = False             # an export or session failure: PyTorch from then on
        self._sessions: dict[tuple[int, ...], object] = {}
        self._lock = threading.Lock()   # extraction's runs share the engine; one of them makes a session

    @property
    def name(self) -> str:
        return "onnxruntime" if self.onnx else "torch"

    @property
    def onnx(self) -> bool:
        return not self.failed and wanted(self.device)

    def __call__(self, x: torch.Tensor, outputs: tuple[int, ...] | None = None) -> list[torch.Tensor]:
        picked = tuple(range(len(self.net.output_ids))) if outputs is None else tuple(outputs)
        if self.onnx:
            session = self._session(picked)
            if session is not None:
                arrays = session.run(None, {"x": np.ascontiguousarray(x.numpy(), np.float32)})
                return [torch.from_numpy(a) for a in arrays]
        with torch.inference_mode():
            return self.net(x, picked)

    # ------------------------------------------------------------------------------------------ sessions
    def _session(self, outputs: tuple[int, ...]) -> object | None:
        with self._lock:
            return self._sessions[outputs] if outputs in self._sessions else self._new_session(outputs)

    def _new_session(self, outputs: tuple[int, ...]) -> object | None:
        try:
            self._sessions[outputs] = self._make_session(outputs)
        except Exception as exc:  # an exporter or runtime failure costs speed, never the extraction
            warnings.warn(f"{self.weights.name}: onnxruntime not used ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:160] if str(exc) else ''}); running it in PyTorch")
            self.failed = True
            return None
        return self._sessions[outputs]

    def _make_session(self, outputs: tuple[int, ...]) -> object:
        """A session on the calling thread alone: these nets are too small for a second intra-op thread to pay
        (its hand-offs cost what it saves), and extraction and live run several calls at once instead."""
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        key = self._key(outputs)
        model = self._cached(key)
        if model is None:
            model = self._export(outputs)
            self._store(key, model)
        return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])

    # ------------------------------------------------------------------------------------------ the cache
    def _cached(self, key: str) -> bytes | None:
        """The cached ONNX for ``key`` whose bytes still hash to the digest in its name (else None: not made
        yet, or damaged, then made again)."""
        for path in cache_dir().glob(f"{self.weights.stem}-{key}-*.onnx"):
            try:
                data = path.read_bytes()
            except OSError:
                continue
            if _digest(data) == path.stem.rsplit("-", 1)[-1]:
                return data
        return None

    def _store(self, key: str, model: bytes) -> None:
        """Cache ``model`` (named by ``key`` and its own digest), replacing damaged files of the same key."""
        folder = cache_dir()
        path = folder / f"{self.weights.stem}-{key}-{_digest(model)}.onnx"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, model)
            for old in folder.glob(f"{self.weights.stem}-{key}-*.onnx"):
                if old != path:
                    old.unlink(missing_ok=True)   # a damaged copy (the cache is dfl's own, not the user's)
        except OSError:
            pass  # a read-only home only costs the export next time

    @functools.cached_property
    def _source(self) -> str:
        """Digest of what the ONNX graph is made from: the weights, the graph code, torch (read once)."""
        h = hashlib.sha256()
        h.update(self.weights.read_bytes())
        h.update(Path(tflite_graph.__file__).read_bytes())
        h.update(f"{torch.__version__}|{OPSET}|{self.sample_shape}".encode())
        return h.hexdigest()

    def _key(self, outputs: tuple[int, ...]) -> str:
        return hashlib.sha256(f"{self._source}|{outputs}".encode()).hexdigest()[:20]

    def _export(self, outputs: tuple[int, ...]) -> bytes:
        import onnxruntime as ort

        wrapper = _Outputs(self.net, outputs)
        sample = np.random.default_rng(0).random((2, *self.sample_shape[1:]), np.float32)
        buf = io.BytesIO()
        # callers run inside torch.inference_mode, under which the exporter cannot trace
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(wrapper, (torch.from_numpy(sample[:1]),), buf, dynamo=False, opset_version=OPSET,
                              input_names=["x"], dynamic_axes={"x": {0: "n"}})
        model = buf.getvalue()
        check = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
        got = check.run(None, {"x": sample})
        with torch.inference_mode():
            want = [t.numpy() for t in self.net(torch.from_numpy(sample), outputs)]
        for g, w in zip(got, want):
            if g.shape != w.shape or not np.allclose(g, w, rtol=1e-4, atol=CHECK_ATOL):
                raise ValueError(f"the ONNX graph disagrees with PyTorch (max difference "
                                 f"{float(np.abs(g - w).max()) if g.shape == w.shape else 'shape'})")
        return model


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


class _Outputs(torch.nn.Module):
    """The graph with a fixed output selection, as a module torch.onnx can trace."""

    def __init__(self, net: TFLiteGraph, outputs: tuple[int, ...]) -> None:
        super().__init__()
        self.net, self.outputs = net, outputs

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.net(x, self.outputs))
