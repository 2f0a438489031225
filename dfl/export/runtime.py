"""Running a ``.dfm`` (ONNX) face swap with onnxruntime, as DeepFaceLive runs it and as a merge predictor.

``onnx`` and ``onnxruntime`` are dfl dependencies, but a platform without an onnxruntime wheel can run dfl
without them: :func:`require` says in one line which are missing before anything is done.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dfl.errors import DflError
from dfl.faces.align import FaceType

IN_FACE = "in_face:0"
MORPH_VALUE = "morph_value:0"
OUT_FACE_MASK, OUT_CELEB_FACE, OUT_CELEB_FACE_MASK = "out_face_mask:0", "out_celeb_face:0", "out_celeb_face_mask:0"
OUTPUTS = (OUT_FACE_MASK, OUT_CELEB_FACE, OUT_CELEB_FACE_MASK)
"""DFL's output names, in the order DeepFaceLive unpacks ``session.run(None, ...)``."""
OPSET = 12
META_PREFIX = "dfl."   # keys of the ONNX metadata_props a dfl export adds (DeepFaceLive ignores them)


def input_name(swap_input: str) -> str:
    """The graph input for one of a model's ``swap_inputs`` (``morph_value`` -> ``morph_value:0``), named as
    TensorFlow names a placeholder's output, which DFL's exports kept."""
    return f"{swap_input}:0"


def require(*modules: str) -> None:
    """A one-line DflError naming the missing ones of ``modules`` (default: onnx and onnxruntime)."""
    missing = []
    for name in modules or ("onnx", "onnxruntime"):
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise DflError(f"{' and '.join(missing)} not installed: `pip install {' '.join(missing)}` "
                       '(or `pip install "dfl[export]"`) to export or run .dfm models')


def session(model: bytes | Path, device: str = "cpu", threads: int = 0) -> Any:
    """An onnxruntime InferenceSession for ``model`` (a file or its bytes) on ``device`` (cpu, cuda, cuda:N);
    ``threads`` > 0 caps its intra-op threads (the live pipeline gives it one core)."""
    require("onnxruntime")
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads > 0:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    providers: list[Any] = ["CPUExecutionProvider"]
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise DflError(f"--device {device}: this onnxruntime has no CUDA support; `pip install onnxruntime-gpu` "
                           "or use the torch engine")
        index = int(device.split(":", 1)[1]) if ":" in device else 0
        providers = [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    elif device not in ("cpu", "auto"):
        raise DflError(f"--device {device}: the onnx engine runs on cpu or cuda")
    where = str(model) if isinstance(model, Path) else ".dfm bytes"
    try:
        return ort.InferenceSession(str(model) if isinstance(model, Path) else model, opts, providers=providers)
    except Exception as exc:  # onnxruntime raises its own types for unreadable or invalid graphs
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise DflError(f"{where}: onnxruntime cannot load it ({first})") from None


def metadata(sess: Any) -> dict[str, str]:
    """The ``dfl.*`` metadata of a session's model, prefix removed (empty for DFL's own exports)."""
    props = sess.get_modelmeta().custom_metadata_map or {}
    return {k[len(META_PREFIX):]: v for k, v in props.items() if k.startswith(META_PREFIX)}


@dataclass
class DfmPredictor:
    """A ``.dfm`` session as a :class:`dfl.merge.face.Predictor` (numpy BGR [0, 1] faces in and out).

    ``swap_inputs`` are the extra inputs with their defaults (AMP's morph value); a value the merge
    settings give (``morph_value``) overrides its default.
    """

    sess: Any
    resolution: int
    face_type: FaceType
    swap_inputs: dict[str, float] = field(default_factory=dict)
    device: str = "cpu"

    def __call__(self, faces: np.ndarray, morph_value: float | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        feed = {IN_FACE: np.ascontiguousarray(faces, np.float32)}
        given = {"morph_value": morph_value}
        for name, default in self.swap_inputs.items():
            value = given.get(name)
            feed[input_name(name)] = np.float32([default if value is None else value])
        face_mask, celeb, celeb_mask = self.sess.run(list(OUTPUTS), feed)
        return celeb, celeb_mask[..., 0], face_mask[..., 0]


def load_predictor(model: bytes | Path, device: str = "cpu", threads: int = 0,
                   face_type: FaceType | None = None) -> DfmPredictor:
    """A predictor for a ``.dfm``: dfl's exports say their face type; others (DeepFaceLive's own models)
    need ``face_type``.  The extra inputs and their defaults come from the graph and the export's metadata."""
    where = str(model) if isinstance(model, Path) else ".dfm"
    sess = session(model, device, threads)
    inputs = sess.get_inputs()
    if not inputs or "in_face" not in inputs[0].name or not all(isinstance(d, int) for d in inputs[0].shape[1:3]):
        raise DflError(f"{where}: not a face-swap .dfm (no in_face input with a fixed size)")
    meta = metadata(sess)
    defaults = json.loads(meta.get("swap_inputs", "{}") or "{}")
    extra = {i.name.split(":")[0]: float(defaults.get(i.name.split(":")[0], 1.0)) for i in inputs[1:]}
    if face_type is None:
        if "face_type" not in meta:
            raise DflError(f"{where}: the file does not say which face type it was trained on; give --face-type")
        face_type = FaceType.from_string(meta["face_type"])
    return DfmPredictor(sess, int(inputs[0].shape[1]), face_type, extra, device)
