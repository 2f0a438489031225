"""``dfl model export NAME --format dfm``: a trained model as DeepFaceLive's ``.dfm`` (an ONNX graph).

What DeepFaceLive expects, from DFL's exporter (``export_dfm`` of SAEHD and AMP, tf2onnx at opset 12) and
DeepFaceLive's loader (``DFMModel``): input ``in_face:0``, float32 NHWC ``[N, res, res, 3]``, BGR in
[0, 1] (DeepFaceLive feeds OpenCV images divided by 255); for AMP a second input ``morph_value:0``, float32
``(1,)``, the share of the src code (DFL casts ``inter_dims * morph_value`` to an integer channel count);
outputs ``out_face_mask:0`` (the dst face's mask), ``out_celeb_face:0`` (the swapped face) and
``out_celeb_face_mask:0`` (its mask), NHWC, sigmoid outputs in [0, 1], in that order, since DeepFaceLive
unpacks ``run(None, ...)`` by position.  The loader reads the face size from the input's shape, so height
and width are fixed and only the batch is dynamic.

The graph is traced from the model's :meth:`~dfl.models.base.SwapModel.swap_graph` through the stock
convolutions (the CPU Winograd paths switch themselves off while tracing).  A dfl export also carries
``dfl.*`` metadata (model type, face type, iteration, the extra inputs' defaults) that DeepFaceLive ignores
and ``dfl live --dfm`` reads.  The file is written under a temporary name, checked against DeepFaceLive's
expectations and against the PyTorch model on the same faces, and only then renamed into place; an
existing file is replaced only when asked, and then goes to the trash.
"""

from __future__ import annotations

import io
import json
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from dfl import __version__
from dfl.atomic import remove_stale_temporaries, temp_path_for
from dfl.errors import DflError
from dfl.export import runtime
from dfl.export.runtime import IN_FACE, OPSET, OUTPUTS, input_name
from dfl.export.trained import Trained, load_trained
from dfl.trash import move_to_trash

TOLERANCE = 1e-3
"""Largest difference between onnxruntime and PyTorch outputs ([0, 1] values) that counts as faithful."""
FORMATS = ("dfm",)
CHECK_FACES = 8


class DfmGraph(nn.Module):
    """The swap as DFL exports it: NHWC in, (dst mask, swapped face, its mask) NHWC out."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, in_face: Tensor, *inputs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        celeb, celeb_mask, face_mask = self.model.swap_graph(in_face.permute(0, 3, 1, 2), *inputs)
        return tuple(t.permute(0, 2, 3, 1) for t in (face_mask, celeb, celeb_mask))  # type: ignore[return-value]


def export_bytes(trained: Trained) -> bytes:
    """The ``.dfm`` of a loaded model, as bytes (CPU, float32, batch dimension dynamic)."""
    runtime.require()
    import onnx

    model = trained.model.to("cpu").float().eval()
    res = int(model.resolution)
    extra = dict(model.swap_inputs)
    names = [IN_FACE] + [input_name(k) for k in extra]
    args = (torch.zeros(1, res, res, 3),) + tuple(torch.tensor([v], dtype=torch.float32) for v in extra.values())
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")   # the legacy exporter's deprecation and tracer notices
        torch.onnx.export(DfmGraph(model), args, buf, dynamo=False, opset_version=OPSET, input_names=names,
                          output_names=list(OUTPUTS), dynamic_axes={n: {0: "N"} for n in [IN_FACE, *OUTPUTS]},
                          do_constant_folding=True)
    proto = onnx.load_from_string(buf.getvalue())
    for out, channels in zip(proto.graph.output, (1, 3, 1)):   # the tracer leaves height and width symbolic
        dims = out.type.tensor_type.shape.dim
        for d, size in zip(dims[1:], (res, res, channels)):
            d.ClearField("dim_param")
            d.dim_value = size
    proto.graph.name = model.model_type
    proto.producer_name, proto.producer_version = "dfl", __version__
    face_type = model.face_type.to_string() if hasattr(model.face_type, "to_string") else str(model.face_type)
    meta = {"model_type": model.model_type, "face_type": face_type, "resolution": str(res),
            "iteration": str(trained.iteration), "name": trained.path.name, "swap_inputs": json.dumps(extra),
            "options": json.dumps(trained.options, sort_keys=True, default=str)}
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = runtime.META_PREFIX + key, value
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


# -- what DeepFaceLive checks, and more ---------------------------------------------------------------
@dataclass
class DfmLayout:
    """A ``.dfm``'s interface as DeepFaceLive sees it."""

    resolution: int
    inputs: list[str]
    outputs: list[str]
    opset: int
    metadata: dict[str, str] = field(default_factory=dict)


def check_layout(model: bytes | Path) -> DfmLayout:
    """The interface of a ``.dfm`` file, or a one-line DflError saying how it departs from what DeepFaceLive
    loads (``DFMModel``'s rules: first input named ``in_face`` with a fixed height and width, at most a second
    named ``morph_value``) and from what DFL's exporter writes (exact names and order, float32, NHWC with 3
    and 1 channels, shape ``(1,)`` for the morph value, opset 12)."""
    runtime.require()
    import onnx

    where = str(model) if isinstance(model, Path) else ".dfm"
    proto = onnx.load_from_string(model) if isinstance(model, bytes) else onnx.load(str(model))
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    sess = runtime.session(model)
    ins, outs = sess.get_inputs(), sess.get_outputs()

    def bad(problem: str) -> DflError:
        return DflError(f"{where}: not a DeepFaceLive model: {problem}")

    if not ins or "in_face" not in ins[0].name:
        raise bad("the first input is not in_face")
    if len(ins) > 2 or (len(ins) == 2 and "morph_value" not in ins[1].name):
        raise bad(f"inputs {[i.name for i in ins]}: DeepFaceLive takes in_face and at most morph_value")
    shape = list(ins[0].shape)
    if len(shape) != 4 or not all(isinstance(d, int) for d in shape[1:]) or shape[3] != 3 or shape[1] != shape[2]:
        raise bad(f"in_face has shape {shape}, expected [N, res, res, 3]")
    res = int(shape[1])
    expected_in = [IN_FACE] + ([runtime.MORPH_VALUE] if len(ins) == 2 else [])
    if [i.name for i in ins] != expected_in:
        raise bad(f"inputs are named {[i.name for i in ins]}, DFL names them {expected_in}")
    if any(i.type != "tensor(float)" for i in ins):
        raise bad("inputs must be float32")
    if len(ins) == 2 and list(ins[1].shape) != [1]:
        raise bad(f"morph_value has shape {ins[1].shape}, expected [1]")
    if [o.name for o in outs] != list(OUTPUTS):
        raise bad(f"outputs are {[o.name for o in outs]}, expected {list(OUTPUTS)} in that order")
    for o, ch in zip(outs, (1, 3, 1)):
        if o.type != "tensor(float)" or list(o.shape[1:]) != [res, res, ch]:
            raise bad(f"{o.name} is {o.type} {o.shape}, expected float32 [N, {res}, {res}, {ch}]")
    if opset != OPSET:
        raise bad(f"opset {opset}, DFL's exports and DeepFaceLive's runtime use {OPSET}")
    return DfmLayout(res, [i.name for i in ins], [o.name for o in outs], opset, runtime.metadata(sess))


# -- faithfulness --------------------------------------------------------------------------------------
def check_faces(folder: Path | None, resolution: int, n: int = CHECK_FACES) -> np.ndarray:
    """``n`` faces (N x res x res x 3 float32 BGR [0, 1]) to compare the export on: the first faces of
    ``folder`` (an aligned faceset) where it has any, the rest smooth random images (seeded)."""
    import cv2

    faces: list[np.ndarray] = []
    if folder is not None and Path(folder).is_dir():
        from dfl.faceset import list_faces, read_face

        for path in list_faces(folder)[:n]:
            try:
                image, _ = read_face(path)
            except DflError:
                continue
            faces.append(cv2.resize(image, (resolution, resolution), interpolation=cv2.INTER_AREA))
    rng = np.random.default_rng(0)
    while len(faces) < n:
        small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        faces.append(cv2.resize(small, (resolution, resolution), interpolation=cv2.INTER_CUBIC))
    return np.stack(faces).astype(np.float32) / 255.0


def max_differences(trained: Trained, model: bytes | Path, faces: np.ndarray) -> dict[str, float]:
    """Largest |onnxruntime - PyTorch| per output over ``faces``, with the model's extra inputs at their
    defaults and, where it has any, at 0.5 too (AMP: half the src code)."""
    from dfl.merge.face import ModelPredictor

    torch_predictor = ModelPredictor(trained.model, torch.device("cpu"), channels_last=False)
    onnx_predictor = runtime.load_predictor(model, "cpu", torch.get_num_threads(), torch_predictor.face_type)
    values: list[float | None] = [None]
    if trained.model.swap_inputs:
        values.append(0.5)
    worst = {name: 0.0 for name in OUTPUTS}
    for value in values:
        a = torch_predictor(faces, morph_value=value)
        b = onnx_predictor(faces, morph_value=value)
        for name, x, y in zip((runtime.OUT_CELEB_FACE, runtime.OUT_CELEB_FACE_MASK, runtime.OUT_FACE_MASK), a, b):
            worst[name] = max(worst[name], float(np.abs(np.asarray(x) - np.asarray(y)).max()))
    return worst


# -- the command's work -----------------------------------------------------------------------------
@dataclass
class ExportResult:
    path: Path
    layout: DfmLayout
    differences: dict[str, float]     # empty when the check was skipped
    faces_checked: int
    trashed: Path | None
    size: int
    seconds: float

    @property
    def max_difference(self) -> float | None:
        return max(self.differences.values()) if self.differences else None


def default_output(model_path: Path) -> Path:
    """``model/<name>_<Model>/<name>.dfm``: beside the weights it came from, named as DeepFaceLive lists it."""
    name = Path(model_path).name.rpartition("_")[0] or Path(model_path).name
    return Path(model_path) / f"{name}.dfm"


def export_dfm(model_path: Path, output: Path | None = None, *, trash_root: Path, base: Path,
               overwrite: bool = False, check: bool = True, faces_dir: Path | None = None,
               notify=lambda line: None) -> ExportResult:
    """Export the model in ``model_path`` to ``output`` (default :func:`default_output`).

    An existing ``output`` is refused unless ``overwrite``; then it goes to ``trash_root`` (its path
    relative to ``base`` kept).  With ``check`` the file is compared with the PyTorch model on faces from
    ``faces_dir`` before it is renamed into place, and a difference over :data:`TOLERANCE` keeps it out.
    """
    runtime.require()
    start = time.perf_counter()
    output = Path(output) if output is not None else default_output(model_path)
    if output.exists() and not overwrite:
        raise DflError(f"{output}: already exists; give --force to replace it (the old file goes to the trash)")
    if not output.parent.is_dir():
        raise DflError(f"{output.parent}: folder does not exist")
    trained = load_trained(model_path, "cpu", notify)
    data = export_bytes(trained)
    remove_stale_temporaries(output.parent, output)
    tmp = temp_path_for(output)
    try:
        tmp.write_bytes(data)
        layout = check_layout(tmp)
        diffs: dict[str, float] = {}
        faces = check_faces(faces_dir, layout.resolution) if check else np.zeros((0,))
        if check:
            diffs = max_differences(trained, tmp, faces)
            worst = max(diffs.values())
            if not worst <= TOLERANCE:
                raise DflError(f"{output}: the export differs from the PyTorch model by {worst:.2e} (more than "
                               f"{TOLERANCE:g}); not written")
        trashed = move_to_trash([output], base, trash_root) if output.exists() else None
        os.replace(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)
    return ExportResult(output, layout, diffs, len(faces), trashed, len(data), time.perf_counter() - start)


def describe(result: ExportResult) -> str:
    """The command's summary line."""
    lay = result.layout
    inputs = ", ".join(lay.inputs)
    line = (f"Exported {result.path} ({result.size / 2**20:.1f} MiB, {lay.resolution}x{lay.resolution}, inputs "
            f"{inputs}, opset {lay.opset}) in {result.seconds:.1f} s")
    if result.differences:
        per = ", ".join(f"{k.split(':')[0]} {v:.1e}" for k, v in result.differences.items())
        line += f"; onnxruntime vs PyTorch on {result.faces_checked} faces: max difference {result.max_difference:.1e} ({per})"
    if result.trashed is not None:
        line += f"; the previous file is in {result.trashed}"
    return line

