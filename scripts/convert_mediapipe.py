#!/usr/bin/env python3
"""Convert MediaPipe's face detection and face landmark ``.tflite`` models to dfl's safetensors graphs.

Reproducible: fetches the ``mediapipe==0.10.21`` wheel with ``pip download`` (a package registry), takes the
Apache-2.0 model files out of it, replays each flatbuffer's op list into the JSON graph that
``dfl.faces.tflite_graph.TFLiteGraph`` runs, and writes into ``dfl/weights/``:

  blazeface_short.safetensors  face_detection_short_range.tflite (128x128)
  blazeface_full.safetensors   face_detection_full_range_sparse.tflite (192x192)
  facemesh.safetensors         face_landmark.tflite (192x192, 468 points)
  facemesh_attention.safetensors  face_landmark_with_attention.tflite (192x192, 468 points + refined lips,
                               eyes/brows, irises; MediaPipe custom ops, their flexbuffer options in the graph)
  NOTICE                       Apache-2.0 attribution with the wheel and file sha256

and ``tests/data/mediapipe_reference.npz``: outputs of the original models, run by the TFLite interpreter
from PyPI (``ai-edge-litert``), on a few fixed inputs, so the test suite can check the torch graphs
without any TFLite package. The attention model's custom ops exist only in MediaPipe's runtime, so its
reference outputs come from ``mediapipe`` itself, run by the Python given with ``--mediapipe-python`` (e.g. a
venv with ``pip install mediapipe==0.10.21``; this script re-runs itself there as a worker).

Weights are stored as float16: every weight in these files is float16 already (the graph dequantizes them
to float32 with DEQUANTIZE ops), so storing them that way is lossless and halves the size; the loader casts
to float32. Sparse tensors (full range) are densified by the interpreter itself (DENSIFY op outputs).

Dev-only requirements (``pip install -e ".[convert]"``): tflite, ai-edge-litert.
Usage: python scripts/convert_mediapipe.py --mediapipe-python VENV/bin/python [--wheel PATH] [--out dfl/weights]
       [--ref tests/data/...]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MEDIAPIPE_VERSION = "0.10.21"
MODELS = {  # output stem -> (path inside the wheel, input size, input float range)
    "blazeface_short": ("mediapipe/modules/face_detection/face_detection_short_range.tflite", 128, (-1.0, 1.0)),
    "blazeface_full": ("mediapipe/modules/face_detection/face_detection_full_range_sparse.tflite", 192, (-1.0, 1.0)),
    "facemesh": ("mediapipe/modules/face_landmark/face_landmark.tflite", 192, (0.0, 1.0)),
    "facemesh_attention": ("mediapipe/modules/face_landmark/face_landmark_with_attention.tflite", 192, (0.0, 1.0)),
}
# Outputs of face_landmark_with_attention.tflite, in its order, as (name, points, values per point).
ATTENTION_OUTPUTS = (("mesh", 468, 3), ("lips", 80, 2), ("left_eye", 71, 2), ("right_eye", 71, 2),
                     ("left_iris", 5, 2), ("right_iris", 5, 2))
ACTIVATIONS = {0: "none", 1: "relu", 2: "relu_n1_1", 3: "relu6"}


def download_wheel(dest: Path) -> Path:
    """pip download the manylinux x86_64 cp311 wheel (the model files are the same in every wheel)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", f"mediapipe=={MEDIAPIPE_VERSION}",
           "--platform", "manylinux_2_28_x86_64", "--python-version", "3.11", "--only-binary=:all:",
           "-d", str(dest)]
    subprocess.run(cmd, check=True)
    wheels = sorted(dest.glob(f"mediapipe-{MEDIAPIPE_VERSION}-*.whl"))
    if not wheels:
        sys.exit(f"{dest}: pip download produced no mediapipe wheel")
    return wheels[0]


class Converter:
    """Walks one flatbuffer and emits (graph json, named weight arrays)."""

    def __init__(self, data: bytes) -> None:
        import tflite  # dev-only
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        self.tfl = tflite
        self.model = tflite.Model.GetRootAsModel(data, 0)
        self.g = self.model.Subgraphs(0)
        self.op_names = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
        # The interpreter densifies sparse weights; keep every tensor so we can read those outputs.
        # (Without the XNNPACK delegate: with it, densified tensors are not kept.)
        self.Interpreter = Interpreter
        self._data = data
        self._interp = None
        self._resolver = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        self.producer: dict[int, tuple[str, object]] = {}
        for i in range(self.g.OperatorsLength()):
            op = self.g.Operators(i)
            for t in op.OutputsAsNumpy():
                self.producer[int(t)] = (self.opname(op), op)

    @property
    def interp(self):
        """The interpreter run once on zeros, for DENSIFY outputs (only models with sparse weights need it: it
        cannot load models with MediaPipe's custom ops)."""
        if self._interp is None:
            self._interp = self.Interpreter(model_content=self._data, experimental_preserve_all_tensors=True,
                                            experimental_op_resolver_type=self._resolver)
            self._interp.allocate_tensors()
            inp = self._interp.get_input_details()[0]
            self._interp.set_tensor(inp["index"], np.zeros(inp["shape"], np.float32))
            self._interp.invoke()
        return self._interp

    def opname(self, op) -> str:
        code = self.model.OperatorCodes(op.OpcodeIndex())
        name = self.op_names[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())]
        if name == "CUSTOM":
            return f"CUSTOM:{code.CustomCode().decode()}:v{code.Version()}"
        return name

    def has_custom_ops(self) -> bool:
        return any(self.opname(self.g.Operators(i)).startswith("CUSTOM:") for i in range(self.g.OperatorsLength()))

    @staticmethod
    def custom_options(op) -> dict:
        """A custom op's flexbuffer options as a plain dict (JSON-able)."""
        from flatbuffers import flexbuffers

        raw = op.CustomOptionsAsNumpy()
        if isinstance(raw, int) or raw.size == 0:
            return {}
        opts = flexbuffers.Loads(raw.tobytes())
        return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in opts.items()}

    def shape(self, t: int) -> list[int]:
        return [int(s) for s in self.g.Tensors(t).ShapeAsNumpy()]

    def const(self, t: int) -> np.ndarray:
        """Value of a constant tensor, following DEQUANTIZE (fp16 -> fp32, kept fp16 here) and DENSIFY."""
        if t in self.producer:
            name, op = self.producer[t]
            if name == "DEQUANTIZE":
                src = int(op.InputsAsNumpy()[0])
                if self.producer.get(src, ("",))[0] == "DENSIFY":
                    # fp16 sparse -> DENSIFY -> DEQUANTIZE: read the dense fp32 result, store it as the fp16
                    # it was (checked lossless).
                    dense = self.interp.get_tensor(t).copy()
                    half = dense.astype(np.float16)
                    if not np.array_equal(half.astype(np.float32), dense) or not np.count_nonzero(dense):
                        raise ValueError(f"tensor {t}: densified weights are not the stored float16 values")
                    return half
                return self.const(src)
            raise ValueError(f"tensor {t} is computed by {name}, not a constant")
        tensor = self.g.Tensors(t)
        if tensor.Sparsity() is not None:
            raise ValueError(f"tensor {t} is sparse without a DENSIFY op")
        raw = self.model.Buffers(tensor.Buffer()).DataAsNumpy()
        dtype = {self.tfl.TensorType.FLOAT32: np.float32, self.tfl.TensorType.FLOAT16: np.float16,
                 self.tfl.TensorType.INT32: np.int32, self.tfl.TensorType.INT64: np.int64}[tensor.Type()]
        return np.frombuffer(raw.tobytes(), dtype=dtype).reshape(self.shape(t)).copy()

    def options(self, op, cls_name: str):
        opts = getattr(self.tfl, cls_name)()
        table = op.BuiltinOptions()
        opts.Init(table.Bytes, table.Pos)
        return opts

    @staticmethod
    def same_pads(size: int, k: int, s: int, d: int) -> tuple[int, int]:
        out = -(-size // s)
        total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
        return total // 2, total - total // 2

    def convert(self) -> tuple[dict, dict[str, np.ndarray]]:
        ops: list[dict] = []
        weights: dict[str, np.ndarray] = {}
        for i in range(self.g.OperatorsLength()):
            op = self.g.Operators(i)
            name = self.opname(op)
            ins = [int(t) for t in op.InputsAsNumpy()]
            out = int(op.OutputsAsNumpy()[0])
            if name in ("DEQUANTIZE", "DENSIFY"):
                continue
            if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
                depthwise = name == "DEPTHWISE_CONV_2D"
                o = self.options(op, "DepthwiseConv2DOptions" if depthwise else "Conv2DOptions")
                w = self.const(ins[1])
                b = self.const(ins[2]) if len(ins) > 2 and ins[2] >= 0 else np.zeros(w.shape[0 if not depthwise else 3], w.dtype)
                in_shape = self.shape(ins[0])
                if depthwise:  # (1, kh, kw, C*M) -> (C*M, 1, kh, kw)
                    w = w.transpose(3, 0, 1, 2)
                    groups = in_shape[3]
                else:  # (O, kh, kw, I) -> (O, I, kh, kw)
                    w = w.transpose(0, 3, 1, 2)
                    groups = 1
                kh, kw = w.shape[2], w.shape[3]
                sh, sw, dh, dw = o.StrideH(), o.StrideW(), o.DilationHFactor(), o.DilationWFactor()
                if o.Padding() == self.tfl.Padding.SAME:
                    pads = [*self.same_pads(in_shape[1], kh, sh, dh), *self.same_pads(in_shape[2], kw, sw, dw)]
                else:
                    pads = [0, 0, 0, 0]
                key = f"op{i}"
                weights[f"{key}.weight"] = np.ascontiguousarray(w)
                weights[f"{key}.bias"] = np.ascontiguousarray(b)
                ops.append({"op": "conv", "in": [ins[0]], "out": out, "weight": f"{key}.weight",
                            "bias": f"{key}.bias", "stride": [sh, sw], "dilation": [dh, dw], "pads": pads,
                            "groups": groups, "act": ACTIVATIONS[o.FusedActivationFunction()]})
            elif name == "PRELU":
                key = f"op{i}.alpha"
                alpha = self.const(ins[1])
                if alpha.size != self.shape(ins[0])[-1]:
                    raise ValueError(f"op {i}: PReLU alpha {alpha.shape} is not per channel")
                weights[key] = alpha.reshape(-1)
                ops.append({"op": "prelu", "in": [ins[0]], "out": out, "alpha": key})
            elif name == "RELU":
                ops.append({"op": "relu", "in": [ins[0]], "out": out})
            elif name == "ADD":
                o = self.options(op, "AddOptions")
                ops.append({"op": "add", "in": ins[:2], "out": out, "act": ACTIVATIONS[o.FusedActivationFunction()]})
            elif name == "MAX_POOL_2D":
                o = self.options(op, "Pool2DOptions")
                in_shape = self.shape(ins[0])
                kh, kw, sh, sw = o.FilterHeight(), o.FilterWidth(), o.StrideH(), o.StrideW()
                pads = ([*self.same_pads(in_shape[1], kh, sh, 1), *self.same_pads(in_shape[2], kw, sw, 1)]
                        if o.Padding() == self.tfl.Padding.SAME else [0, 0, 0, 0])
                ops.append({"op": "maxpool", "in": [ins[0]], "out": out, "kernel": [kh, kw], "stride": [sh, sw],
                            "pads": pads, "act": ACTIVATIONS[o.FusedActivationFunction()]})
            elif name == "PAD":
                ops.append({"op": "pad", "in": [ins[0]], "out": out, "paddings": self.const(ins[1]).tolist()})
            elif name == "RESHAPE":
                ops.append({"op": "reshape", "in": [ins[0]], "out": out, "shape": self.shape(out)})
            elif name == "CONCATENATION":
                o = self.options(op, "ConcatenationOptions")
                ops.append({"op": "concat", "in": ins, "out": out, "axis": o.Axis(),
                            "act": ACTIVATIONS[o.FusedActivationFunction()]})
            elif name == "RESIZE_BILINEAR":
                o = self.options(op, "ResizeBilinearOptions")
                ops.append({"op": "resize_bilinear", "in": [ins[0]], "out": out,
                            "size": self.const(ins[1]).tolist(), "align_corners": bool(o.AlignCorners()),
                            "half_pixel": bool(o.HalfPixelCenters())})
            elif name == "DEPTH_TO_SPACE":
                o = self.options(op, "DepthToSpaceOptions")
                ops.append({"op": "depth_to_space", "in": [ins[0]], "out": out, "block": o.BlockSize()})
            elif name == "MUL":
                o = self.options(op, "MulOptions")
                entry = {"op": "mul", "in": ins[:2], "out": out, "act": ACTIVATIONS[o.FusedActivationFunction()]}
                try:
                    c = self.const(ins[1])
                except ValueError:  # two computed tensors
                    c = None
                if c is not None:
                    if len(self.shape(ins[0])) == 4 and c.size > 1 and c.ndim != 4:
                        raise ValueError(f"op {i}: MUL by a {c.shape} constant on a 4-D tensor")
                    key = f"op{i}.const"
                    weights[key] = np.ascontiguousarray(c)
                    entry.update({"in": [ins[0]], "const": key})
                ops.append(entry)
            elif name == "STRIDED_SLICE":
                o = self.options(op, "StridedSliceOptions")
                if o.EllipsisMask() or o.NewAxisMask() or o.ShrinkAxisMask():
                    raise ValueError(f"op {i}: STRIDED_SLICE with ellipsis/new-axis/shrink masks")
                shape = self.shape(ins[0])
                begin, end, strides = (self.const(t).tolist() for t in ins[1:4])
                slices = []
                for axis in range(len(shape)):
                    b = None if o.BeginMask() >> axis & 1 else begin[axis]
                    e = None if o.EndMask() >> axis & 1 else end[axis]
                    slices.append([b, e, strides[axis]])
                if slices[0] not in ([0, shape[0], 1], [None, None, 1], [0, None, 1], [None, shape[0], 1]):
                    raise ValueError(f"op {i}: STRIDED_SLICE across the batch axis")
                ops.append({"op": "strided_slice", "in": [ins[0]], "out": out, "slices": slices})
            elif name.startswith("CUSTOM:"):
                _, custom, version = name.split(":")
                kinds = {"Landmarks2TransformMatrix": "landmarks_to_transform_matrix",
                         "TransformTensorBilinear": "transform_tensor_bilinear",
                         "TransformLandmarks": "transform_landmarks"}
                if custom not in kinds or version != "v2":
                    raise ValueError(f"op {i}: custom op {custom} {version} is not supported by the converter")
                ops.append({"op": kinds[custom], "in": ins, "out": out, "options": self.custom_options(op)})
            else:
                raise ValueError(f"op {i}: {name} is not supported by the converter")
        graph = {"input": int(self.g.InputsAsNumpy()[0]), "outputs": [int(t) for t in self.g.OutputsAsNumpy()],
                 "ops": ops}
        return graph, weights

    def run_reference(self, x: np.ndarray) -> list[np.ndarray]:
        """Original model outputs (NHWC float input) as the TFLite interpreter computes them."""
        interp = self.Interpreter(model_content=self._data, num_threads=1)
        interp.allocate_tensors()
        interp.set_tensor(interp.get_input_details()[0]["index"], x.astype(np.float32))
        interp.invoke()
        return [interp.get_tensor(d["index"]).copy() for d in interp.get_output_details()]


def mediapipe_reference_worker(inputs_npz: Path, outputs_npz: Path) -> None:
    """Run inside a Python that has ``mediapipe==MEDIAPIPE_VERSION`` (and numpy) only: the attention model through
    MediaPipe's own InferenceCalculator, whose op resolver has the custom ops plain TFLite runtimes lack.

    Each (192, 192, 3) RGB input goes through ImageToTensorCalculator with no ROI (the whole image at its own
    size: an identity copy into [0, 1]) and the model; each output tensor comes back through
    TensorsToLandmarksCalculator (coordinates / 192, multiplied back here) and the face flag through
    TensorsToFloatsCalculator (no activation), so the values are the raw tensors."""
    import os

    import mediapipe as mp
    from mediapipe.python import packet_creator, packet_getter
    from mediapipe.python._framework_bindings import resource_util

    # Model paths in MediaPipe's graphs are relative to site-packages (as mediapipe.python.solution_base sets).
    resource_util.set_resource_dir(os.sep.join(os.path.abspath(mp.__file__).split(os.sep)[:-2]))
    n_out = len(ATTENTION_OUTPUTS) + 1
    nodes = [
        'node { calculator: "ImageToTensorCalculator" input_stream: "IMAGE:image" '
        'output_stream: "TENSORS:input_tensors" options { [mediapipe.ImageToTensorCalculatorOptions.ext] { '
        'output_tensor_width: 192 output_tensor_height: 192 output_tensor_float_range { min: 0.0 max: 1.0 } } } }',
        'node { calculator: "FaceLandmarksModelLoader" input_side_packet: "WITH_ATTENTION:with_attention" '
        'output_side_packet: "MODEL:model" }',
        'node { calculator: "TfLiteCustomOpResolverCalculator" output_side_packet: "OP_RESOLVER:op_resolver" }',
        'node { calculator: "InferenceCalculator" input_stream: "TENSORS:input_tensors" '
        'input_side_packet: "MODEL:model" input_side_packet: "OP_RESOLVER:op_resolver" '
        'output_stream: "TENSORS:output_tensors" options { [mediapipe.InferenceCalculatorOptions.ext] { '
        'delegate { tflite {} } } } }',
        'node { calculator: "SplitTensorVectorCalculator" input_stream: "output_tensors" '
        + " ".join(f'output_stream: "t{k}"' for k in range(n_out))
        + " options { [mediapipe.SplitVectorCalculatorOptions.ext] { "
        + " ".join(f"ranges {{ begin: {k} end: {k + 1} }}" for k in range(n_out)) + " } } }",
    ]
    for k, (name, points, _) in enumerate(ATTENTION_OUTPUTS):
        nodes.append(f'node {{ calculator: "TensorsToLandmarksCalculator" input_stream: "TENSORS:t{k}" '
                     f'output_stream: "NORM_LANDMARKS:{name}" options {{ '
                     f'[mediapipe.TensorsToLandmarksCalculatorOptions.ext] {{ num_landmarks: {points} '
                     f'input_image_width: 192 input_image_height: 192 }} }} }}')
    nodes.append(f'node {{ calculator: "TensorsToFloatsCalculator" input_stream: "TENSORS:t{n_out - 1}" '
                 'output_stream: "FLOAT:flag" }')
    names = [name for name, _, _ in ATTENTION_OUTPUTS] + ["flag"]
    config = "\n".join(['input_stream: "image"', 'input_side_packet: "with_attention"', *nodes,
                         *(f'output_stream: "{n}"' for n in names)])
    graph = mp.CalculatorGraph(graph_config=config)
    got: dict[str, list] = {n: [] for n in names}
    for name in names[:-1]:
        graph.observe_output_stream(name, lambda stream, p: got[stream].append(packet_getter.get_proto(p)))
    graph.observe_output_stream("flag", lambda stream, p: got[stream].append(packet_getter.get_float(p)))
    graph.start_run({"with_attention": packet_creator.create_bool(True)})
    images = np.load(inputs_npz)["images"]
    for t, img in enumerate(images):
        frame = packet_creator.create_image_frame(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(img))
        graph.add_packet_to_input_stream("image", frame.at(t))
        graph.wait_until_idle()
    graph.close()
    outs = {}
    for k, (name, points, dims) in enumerate(ATTENTION_OUTPUTS):
        xyz = np.array([[[p.x, p.y, p.z] for p in lms.landmark] for lms in got[name]], np.float64) * 192.0
        outs[f"out{k}"] = xyz[..., :dims].reshape(len(images), 1, 1, points * dims).astype(np.float32)
    outs[f"out{n_out - 1}"] = np.asarray(got["flag"], np.float32).reshape(len(images), 1, 1, 1)
    if any(len(v) != len(images) for v in got.values()):
        raise SystemExit("mediapipe reference: an output is missing for some input")
    np.savez(outputs_npz, **outs)


def attention_reference(python: str | None, inputs: np.ndarray) -> list[np.ndarray]:
    """Reference outputs of the attention model from ``mediapipe_reference_worker`` run by ``python``."""
    if not python:
        sys.exit("facemesh_attention: its reference outputs need MediaPipe's custom ops; pass --mediapipe-python "
                 f"PATH, a Python with mediapipe=={MEDIAPIPE_VERSION} installed (e.g. in a separate venv)")
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        np.savez(src, images=inputs)
        subprocess.run([python, str(Path(__file__).resolve()), "--mediapipe-reference-worker", str(src), str(dst)],
                       check=True)
        with np.load(dst) as f:
            return [f[f"out{k}"] for k in range(len(f.files))]


def reference_inputs(size: int) -> np.ndarray:
    """Fixed uint8 RGB inputs: a face (astronaut, when ../shared is there) and a smooth synthetic pattern."""
    import cv2

    imgs = []
    face = REPO.parent / "shared" / "media" / "images" / "single" / "astronaut.png"
    if face.is_file():
        bgr = cv2.imread(str(face))
        h, w = bgr.shape[:2]
        # A square around the head (top middle of this 512x512 portrait).
        side = int(min(h, w) * 0.5)
        x0 = int(w * 0.22)
        crop = bgr[0:side, x0:x0 + side]
        imgs.append(cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)[:, :, ::-1])
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    synth = np.stack([np.sin(xx * 7.0), np.cos(yy * 5.0), np.sin((xx + yy) * 3.0)], -1)
    imgs.append(((synth * 0.5 + 0.5) * 255).astype(np.uint8))
    return np.stack(imgs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--wheel", type=Path, help="an already downloaded mediapipe wheel")
    ap.add_argument("--out", type=Path, default=REPO / "dfl" / "weights")
    ap.add_argument("--ref", type=Path, default=REPO / "tests" / "data" / "mediapipe_reference.npz")
    ap.add_argument("--mediapipe-python", help="a Python with mediapipe==%s (for the attention model's reference "
                    "outputs: it has custom ops that only MediaPipe's runtime registers)" % MEDIAPIPE_VERSION)
    ap.add_argument("--mediapipe-reference-worker", nargs=2, type=Path, metavar=("IN", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.mediapipe_reference_worker:
        mediapipe_reference_worker(*args.mediapipe_reference_worker)
        return

    from safetensors.numpy import save_file

    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or download_wheel(Path(tmp))
        wheel_sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
        args.out.mkdir(parents=True, exist_ok=True)
        notice_files = []
        refs: dict[str, np.ndarray] = {}
        with zipfile.ZipFile(wheel) as zf:
            for stem, (member, size, (lo, hi)) in MODELS.items():
                data = zf.read(member)
                sha = hashlib.sha256(data).hexdigest()
                conv = Converter(data)
                graph, weights = conv.convert()
                meta = {"graph": json.dumps(graph, separators=(",", ":")), "source": f"{wheel.name}:{member}",
                        "source_sha256": sha, "input_size": str(size), "input_range": f"{lo},{hi}",
                        "license": "Apache-2.0 (MediaPipe, Google LLC); see dfl/weights/NOTICE"}
                dest = args.out / f"{stem}.safetensors"
                save_file(weights, str(dest), metadata=meta)
                dest.chmod(0o644)
                notice_files.append((dest.name, member, sha))
                inputs = reference_inputs(size)
                xs = inputs.astype(np.float32) / 255.0 * (hi - lo) + lo
                refs[f"{stem}/input"] = inputs
                if conv.has_custom_ops():
                    for k, out in enumerate(attention_reference(args.mediapipe_python, inputs)):
                        refs[f"{stem}/out{k}"] = out
                else:
                    outs = [conv.run_reference(x[None]) for x in xs]
                    for k in range(len(outs[0])):
                        refs[f"{stem}/out{k}"] = np.concatenate([o[k] for o in outs])
                n_ops = len(graph["ops"])
                n_par = sum(w.size for w in weights.values())
                print(f"{stem}: {member} -> {dest} ({n_ops} ops, {n_par} weights, {dest.stat().st_size} bytes)")
        args.ref.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(args.ref, **refs)
        print(f"reference outputs -> {args.ref} ({args.ref.stat().st_size} bytes)")
        lines = [
            "dfl/weights: model weights converted from MediaPipe",
            "",
            "The *.safetensors files in this folder are converted from TensorFlow Lite models distributed",
            f"with MediaPipe {MEDIAPIPE_VERSION} (https://github.com/google-ai-edge/mediapipe),",
            "Copyright Google LLC, licensed under the Apache License, Version 2.0",
            "(https://www.apache.org/licenses/LICENSE-2.0). The conversion (scripts/convert_mediapipe.py)",
            "changes only the storage layout (tflite flatbuffer -> safetensors + an op list); the weight",
            "values are those of the original files (float16, sparse tensors densified).",
            "",
            f"Source wheel: {wheel.name}",
            f"  sha256 {wheel_sha}",
            "",
        ]
        for dest_name, member, sha in notice_files:
            lines += [f"{dest_name}  <-  {member}", f"  sha256 {sha}"]
        (args.out / "NOTICE").write_text("\n".join(lines) + "\n")
        print(f"attribution -> {args.out / 'NOTICE'}")


if __name__ == "__main__":
    main()
