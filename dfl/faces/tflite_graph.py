"""Run a small convolutional graph converted from a MediaPipe ``.tflite`` file, in plain PyTorch.

Why a graph and not a hand-written class per network: MediaPipe's face models are a few hundred
elementwise ops in a fixed order (convolutions, PReLU/ReLU, residual adds, channel pads, pools). Replaying
exactly that order, with the converted weights, is what makes the torch outputs match the original
interpreter to float precision, for the short-range and full-range detectors and FaceMesh alike.

The graph description is a JSON list stored in the safetensors metadata (key ``graph``) by
``scripts/convert_mediapipe.py``; weights are the tensors of the same file. Tensors flow NCHW inside
(the tflite graph is NHWC); layout only matters for RESHAPE/CONCATENATION/PAD/DEPTH_TO_SPACE/MUL/STRIDED_SLICE,
handled here. MediaPipe's three custom ops of the attention landmark model (Landmarks2TransformMatrix,
TransformTensorBilinear, TransformLandmarks, version 2) are reimplemented below from their definitions in
MediaPipe's ``mediapipe/util/tflite/operations/``, with the options the converter copies from the flatbuffer.
No TFLite dependency at run time.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import safe_open
from torch import nn

from dfl.errors import DflError

_NHWC_TO_NCHW_AXIS = {0: 0, 1: 2, 2: 3, 3: 1}


def _activate(x: torch.Tensor, act: str) -> torch.Tensor:
    if act == "relu":
        return F.relu(x)
    if act == "relu6":
        return F.relu6(x)
    if act == "relu_n1_1":
        return x.clamp(-1.0, 1.0)
    return x


class TFLiteGraph(nn.Module):
    """A feed-forward net replayed op by op; ``forward(x)`` takes NCHW float and returns the graph outputs.

    Outputs keep the tflite layout of their final op (e.g. ``(N, 896, 16)`` for BlazeFace regressors,
    ``(N, 1, 1, 1404)`` for FaceMesh, transposed back to NHWC when they are 4-D).
    """

    def __init__(self, graph: dict, tensors: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.ops: list[dict] = _simplify([dict(op) for op in graph["ops"]], graph["outputs"])
        self.input_id: int = graph["input"]
        self.output_ids: list[int] = graph["outputs"]
        self.layers = nn.ModuleDict()
        self.trace: dict[int, torch.Tensor] | None = None
        self._plans: dict[tuple[int, ...], list[int]] = {}
        for i, op in enumerate(self.ops):
            kind = op["op"]
            if kind == "conv":
                w = tensors[op["weight"]].float()
                out_ch, in_per_group, kh, kw = w.shape
                groups = op["groups"]
                pads = op["pads"]  # top, bottom, left, right
                symmetric = pads[0] == pads[1] and pads[2] == pads[3]
                conv = nn.Conv2d(in_per_group * groups, out_ch, (kh, kw), stride=tuple(op["stride"]),
                                 padding=(pads[0], pads[2]) if symmetric else 0,
                                 dilation=tuple(op["dilation"]), groups=groups, bias=True)
                conv.weight.data.copy_(w)
                conv.bias.data.copy_(tensors[op["bias"]].float())
                op["prepad"] = None if symmetric else (pads[2], pads[3], pads[0], pads[1])
                self.layers[str(i)] = conv
            elif kind == "prelu":
                alpha = tensors[op["alpha"]].float().reshape(-1)
                prelu = nn.PReLU(alpha.numel())
                prelu.weight.data.copy_(alpha)
                self.layers[str(i)] = prelu
            elif kind == "mul" and "const" in op:
                self.register_buffer(f"const{i}", tensors[op["const"]].float(), persistent=False)

    @classmethod
    def load(cls, path: str | Path) -> "TFLiteGraph":
        """Build from a converted ``.safetensors``; a missing or foreign file is a user-facing error."""
        path = Path(path)
        if not path.is_file():
            raise DflError(f"{path}: converted MediaPipe weights not found (run scripts/convert_mediapipe.py)")
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if "graph" not in meta:
                raise DflError(f"{path}: not a converted MediaPipe graph (no 'graph' metadata)")
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        model = cls(json.loads(meta["graph"]), tensors)
        model.metadata = {k: v for k, v in meta.items() if k != "graph"}
        # channels_last: 30-40% faster on CPU for these depthwise-heavy nets (measured, 1 thread).
        return model.to(memory_format=torch.channels_last).eval()

    def _plan(self, outputs: tuple[int, ...]) -> list[int]:
        """Indices of the ops that the graph outputs at positions ``outputs`` depend on, in graph order."""
        if outputs not in self._plans:
            needed = {self.output_ids[k] for k in outputs}
            keep = []
            for i in range(len(self.ops) - 1, -1, -1):
                if self.ops[i]["out"] in needed:
                    keep.append(i)
                    needed.update(self.ops[i]["in"])
            self._plans[outputs] = keep[::-1]
        return self._plans[outputs]

    def forward(self, x: torch.Tensor, outputs: tuple[int, ...] | None = None) -> list[torch.Tensor]:
        """All graph outputs, or only those at the positions ``outputs`` (then only the ops they need run: the
        attention landmark model's mesh alone costs a third of its full run)."""
        outputs = tuple(range(len(self.output_ids))) if outputs is None else tuple(outputs)
        values: dict[int, torch.Tensor] = {self.input_id: x.contiguous(memory_format=torch.channels_last)}
        four_d: dict[int, bool] = {self.input_id: True}  # True: NCHW stand-in for an NHWC tflite tensor
        for i in self._plan(outputs):
            op = self.ops[i]
            kind = op["op"]
            a = values[op["in"][0]]
            is4 = four_d[op["in"][0]]
            if kind == "conv":
                if op["prepad"] is not None:
                    a = F.pad(a, op["prepad"])
                y = _activate(self.layers[str(i)](a), op["act"])
            elif kind == "prelu":
                y = self.layers[str(i)](a)
            elif kind == "relu":
                y = F.relu(a)
            elif kind == "add":
                y = _activate(a + values[op["in"][1]], op["act"])
            elif kind == "maxpool":
                pads = op["pads"]
                if any(pads):
                    a = F.pad(a, (pads[2], pads[3], pads[0], pads[1]), value=float("-inf"))
                y = _activate(F.max_pool2d(a, tuple(op["kernel"]), tuple(op["stride"])), op["act"])
            elif kind == "pad":
                p = op["paddings"]  # NHWC [[before, after]] per axis
                if is4:
                    y = F.pad(a, (p[2][0], p[2][1], p[1][0], p[1][1], p[3][0], p[3][1]))
                else:
                    flat: list[int] = []
                    for before, after in reversed(p):
                        flat += [before, after]
                    y = F.pad(a, tuple(flat))
            elif kind == "reshape":
                if is4:
                    a = a.permute(0, 2, 3, 1)
                y = a.reshape([a.shape[0]] + list(op["shape"][1:]))
                is4 = False
            elif kind == "concat":
                axis = op["axis"]
                if is4:
                    axis = _NHWC_TO_NCHW_AXIS[axis % 4]
                y = _activate(torch.cat([values[t] for t in op["in"]], dim=axis), op["act"])
            elif kind == "resize_bilinear":
                if op["half_pixel"] or op["align_corners"]:
                    y = F.interpolate(a, size=tuple(op["size"]), mode="bilinear",
                                      align_corners=bool(op["align_corners"]))
                else:
                    y = _resize_asymmetric(a, op["size"])
            elif kind == "depth_to_space":
                b = op["block"]
                n, c, h, w = a.shape
                y = a.reshape(n, b, b, c // (b * b), h, w).permute(0, 3, 4, 1, 5, 2)
                y = y.reshape(n, c // (b * b), h * b, w * b)
            elif kind == "mul":
                other = getattr(self, f"const{i}") if "const" in op else values[op["in"][1]]
                if is4 and other.dim() == 4:
                    other = other.permute(0, 3, 1, 2)  # an NHWC constant against an NCHW stand-in
                y = _activate(a * other, op["act"])
            elif kind == "strided_slice":
                index: list[slice] = [slice(None)] * a.dim()
                for axis, (begin, end, step) in enumerate(op["slices"]):
                    if axis > 0:  # the batch axis is always kept whole
                        index[_NHWC_TO_NCHW_AXIS[axis] if is4 else axis] = slice(begin, end, step)
                y = a[tuple(index)]
            elif kind == "landmarks_to_transform_matrix":
                y = landmarks_to_transform_matrix(a, **op["options"])
            elif kind == "transform_tensor_bilinear":
                y = transform_tensor_bilinear(a, values[op["in"][1]], op["options"]["output_height"],
                                              op["options"]["output_width"])
            elif kind == "transform_landmarks":
                y = transform_landmarks(a, values[op["in"][1]])
            else:  # pragma: no cover - the converter only emits the kinds above
                raise DflError(f"converted graph: unsupported op {kind!r}")
            values[op["out"]] = y
            four_d[op["out"]] = is4
        if self.trace is not None:  # debugging aid for conversions: every intermediate, NHWC like tflite
            self.trace.update({t: v.permute(0, 2, 3, 1) if four_d[t] else v for t, v in values.items()})
        outs = []
        for k in outputs:
            t = self.output_ids[k]
            v = values[t]
            outs.append(v.permute(0, 2, 3, 1) if four_d[t] else v)
        return outs


def _simplify(ops: list[dict], outputs: list[int]) -> list[dict]:
    """Fold spatial zero PADs into the next convolution and lone RELUs into the op before (same maths,
    fewer passes over memory: the full-range detector pads explicitly before 43 of its convolutions)."""
    uses: dict[int, int] = {}
    for op in ops:
        for t in op["in"]:
            uses[t] = uses.get(t, 0) + 1
    for t in outputs:
        uses[t] = uses.get(t, 0) + 1
    producer = {op["out"]: op for op in ops}
    dropped: set[int] = set()
    for op in ops:
        src = producer.get(op["in"][0])
        if src is None or uses.get(src["out"], 0) != 1:
            continue
        if (op["op"] == "conv" and src["op"] == "pad" and len(src["paddings"]) == 4
                and src["paddings"][0] == [0, 0] and src["paddings"][3] == [0, 0]):
            (t0, t1), (l0, l1) = src["paddings"][1], src["paddings"][2]
            p = op["pads"]
            op["pads"] = [p[0] + t0, p[1] + t1, p[2] + l0, p[3] + l1]
            op["in"] = [src["in"][0]]
            dropped.add(id(src))
        elif op["op"] == "relu" and src["op"] in ("conv", "add") and src["act"] == "none":
            src["act"] = "relu"
            src["out"] = op["out"]
            dropped.add(id(op))
    return [op for op in ops if id(op) not in dropped]


def _resize_asymmetric(x: torch.Tensor, size: list[int]) -> torch.Tensor:
    """TF1-style bilinear resize (no half-pixel offset, no corner alignment): src = dst * in / out."""
    n, c, h, w = x.shape
    oh, ow = size
    ys = torch.arange(oh, dtype=x.dtype, device=x.device) * (h / oh)
    xs = torch.arange(ow, dtype=x.dtype, device=x.device) * (w / ow)
    y0 = ys.floor().long().clamp(max=h - 1)
    x0 = xs.floor().long().clamp(max=w - 1)
    y1 = (y0 + 1).clamp(max=h - 1)
    x1 = (x0 + 1).clamp(max=w - 1)
    wy = (ys - y0.to(x.dtype)).view(1, 1, oh, 1)
    wx = (xs - x0.to(x.dtype)).view(1, 1, 1, ow)
    top = x[:, :, y0][:, :, :, x0] * (1 - wx) + x[:, :, y0][:, :, :, x1] * wx
    bot = x[:, :, y1][:, :, :, x0] * (1 - wx) + x[:, :, y1][:, :, :, x1] * wx
    return top * (1 - wy) + bot * wy


# MediaPipe's custom ops (mediapipe/util/tflite/operations/, version 2 of each), used by the face landmark model
# with attention. Batched: one landmark set / matrix / feature map per batch item.


def landmarks_to_transform_matrix(landmarks: torch.Tensor, *, left_rotation_idx: int, right_rotation_idx: int,
                                  subset_idxs: list[int], output_height: int, output_width: int,
                                  scale_x: float, scale_y: float, target_rotation_radians: float = 0.0,
                                  **_: object) -> torch.Tensor:
    """``Landmarks2TransformMatrix`` v2: (N, L, 3) landmarks -> (N, 4, 4) matrix taking the pixel coordinates of
    an ``output_height`` x ``output_width`` crop to landmark coordinates.

    The crop is rotated so that the line from landmark ``left_rotation_idx`` to ``right_rotation_idx`` is at
    ``target_rotation_radians``, centred on the box of the ``subset_idxs`` landmarks in that rotated frame, and
    spans ``scale_x`` x the box width by ``scale_y`` x its height. Row-major 4x4, z passes through.
    """
    xy = landmarks[..., :2]
    d = xy[:, right_rotation_idx] - xy[:, left_rotation_idx]
    rot = target_rotation_radians - torch.atan2(d[:, 1], d[:, 0])
    cos, sin = torch.cos(rot), torch.sin(rot)
    pts = xy[:, list(subset_idxs)]
    x, y = pts[..., 0], pts[..., 1]
    rx = cos[:, None] * x - sin[:, None] * y  # rotate by rot into the levelled frame
    ry = sin[:, None] * x + cos[:, None] * y
    lo_x, hi_x = rx.amin(1), rx.amax(1)
    lo_y, hi_y = ry.amin(1), ry.amax(1)
    mx, my = (lo_x + hi_x) / 2, (lo_y + hi_y) / 2
    cx = cos * mx + sin * my  # the box centre rotated back (by -rot)
    cy = -sin * mx + cos * my
    sx = scale_x * (hi_x - lo_x) / output_width
    sy = scale_y * (hi_y - lo_y) / output_height
    # shift(centre) @ rotate(-rot) @ scale(sx, sy) @ shift(-output size / 2)
    a00, a01 = cos * sx, sin * sy
    a10, a11 = -sin * sx, cos * sy
    tx = cx - a00 * (output_width / 2) - a01 * (output_height / 2)
    ty = cy - a10 * (output_width / 2) - a11 * (output_height / 2)
    zero, one = torch.zeros_like(cos), torch.ones_like(cos)
    rows = [a00, a01, zero, tx, a10, a11, zero, ty, zero, zero, one, zero, zero, zero, zero, one]
    return torch.stack(rows, 1).reshape(-1, 4, 4)


def transform_tensor_bilinear(features: torch.Tensor, matrix: torch.Tensor, output_height: int,
                              output_width: int) -> torch.Tensor:
    """``TransformTensorBilinear`` v2: sample (N, C, H, W) features at ``matrix`` @ (x, y, 0, 1) of every output
    pixel, pixel centres aligned (the matrix maps continuous coordinates, pixel i covering [i, i + 1)).

    As in MediaPipe, an output pixel whose source point falls outside [0, W-1] x [0, H-1] is 0 (not blended with
    the border), inside it is plain bilinear."""
    n, _, h, w = features.shape
    m = matrix.to(features.dtype)
    oy, ox = torch.meshgrid(torch.arange(output_height, dtype=m.dtype, device=m.device),
                            torch.arange(output_width, dtype=m.dtype, device=m.device), indexing="ij")
    ox, oy = ox + 0.5, oy + 0.5  # output pixel centres ...
    tx = m[:, 0, 0, None, None] * ox + m[:, 0, 1, None, None] * oy + m[:, 0, 3, None, None] - 0.5
    ty = m[:, 1, 0, None, None] * ox + m[:, 1, 1, None, None] * oy + m[:, 1, 3, None, None] - 0.5  # ... to indices
    inside = (tx >= 0) & (tx <= w - 1) & (ty >= 0) & (ty <= h - 1)
    grid = torch.stack([tx * (2.0 / max(w - 1, 1)) - 1.0, ty * (2.0 / max(h - 1, 1)) - 1.0], -1)
    out = F.grid_sample(features, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return out * inside[:, None].to(out.dtype)


def transform_landmarks(landmarks: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """``TransformLandmarks`` v2: (N, L, 2 or 3) points -> x, y through ``matrix`` (N, 4, 4) with z taken as 0
    (so the matrix's z column does not act), any z column copied unchanged."""
    m = matrix.to(landmarks.dtype)
    xy = landmarks[..., :2] @ m[:, :2, :2].transpose(1, 2) + m[:, None, :2, 3]
    return torch.cat([xy, landmarks[..., 2:]], -1)
