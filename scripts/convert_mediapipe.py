#!/usr/bin/env python3
"""Convert MediaPipe's face detection and face landmark ``.tflite`` models to dfl's safetensors graphs.

Reproducible: fetches the ``mediapipe==0.10.21`` wheel with ``pip download`` (a package registry), takes the
Apache-2.0 model files out of it, replays each flatbuffer's op list into the JSON graph that
``dfl.faces.tflite_graph.TFLiteGraph`` runs, and writes into ``dfl/weights/``:

  blazeface_short.safetensors  face_detection_short_range.tflite (128x128)
  blazeface_full.safetensors   face_detection_full_range_sparse.tflite (192x192)
  facemesh.safetensors         face_landmark.tflite (192x192, 468 points)
  NOTICE                       Apache-2.0 attribution with the wheel and file sha256

and ``tests/data/mediapipe_reference.npz``: outputs of the original models, run by the TFLite interpreter
from PyPI (``ai-edge-litert``), on a few fixed inputs, so the test suite can check the torch graphs
without any TFLite package.

Weights are stored as float16: every weight in these files is float16 already (the graph dequantizes them
to float32 with DEQUANTIZE ops), so storing them that way is lossless and halves the size; the loader casts
to float32. Sparse tensors (full range) are densified by the interpreter itself (DENSIFY op outputs).

Dev-only requirements (``pip install -e ".[convert]"``): tflite, ai-edge-litert.
Usage: python scripts/convert_mediapipe.py [--wheel PATH] [--out dfl/weights] [--ref tests/data/...]
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
}
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
        self.interp = Interpreter(model_content=data, experimental_preserve_all_tensors=True,
                                  experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        self.interp.allocate_tensors()
        inp = self.interp.get_input_details()[0]
        self.interp.set_tensor(inp["index"], np.zeros(inp["shape"], np.float32))
        self.interp.invoke()
        self.producer: dict[int, tuple[str, object]] = {}
        for i in range(self.g.OperatorsLength()):
            op = self.g.Operators(i)
            for t in op.OutputsAsNumpy():
                self.producer[int(t)] = (self.opname(op), op)

    def opname(self, op) -> str:
        code = self.model.OperatorCodes(op.OpcodeIndex())
        return self.op_names[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())]

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
    args = ap.parse_args()

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
                conv._data = data
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
                outs = [conv.run_reference(x[None]) for x in xs]
                refs[f"{stem}/input"] = inputs
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
