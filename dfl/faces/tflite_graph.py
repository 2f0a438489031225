"""Run a small convolutional graph converted from a MediaPipe ``.tflite`` file, in plain PyTorch.

Why a graph and not a hand-written class per network: MediaPipe's face models are a few hundred
elementwise ops in a fixed order (convolutions, PReLU/ReLU, residual adds, channel pads, pools). Replaying
exactly that order, with the converted weights, is what makes the torch outputs match the original
interpreter to float precision, for the short-range and full-range detectors and FaceMesh alike.

The graph description is a JSON list stored in the safetensors metadata (key ``graph``) by
``scripts/convert_mediapipe.py``; weights are the tensors of the same file. Tensors flow NCHW inside
(the tflite graph is NHWC); layout only matters for RESHAPE/CONCATENATION/PAD/DEPTH_TO_SPACE, handled here.
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

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        values: dict[int, torch.Tensor] = {self.input_id: x.contiguous(memory_format=torch.channels_last)}
        four_d: dict[int, bool] = {self.input_id: True}  # True: NCHW stand-in for an NHWC tflite tensor
        for i, op in enumerate(self.ops):
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
            else:  # pragma: no cover - the converter only emits the kinds above
                raise DflError(f"converted graph: unsupported op {kind!r}")
            values[op["out"]] = y
            four_d[op["out"]] = is4
        if self.trace is not None:  # debugging aid for conversions: every intermediate, NHWC like tflite
            self.trace.update({t: v.permute(0, 2, 3, 1) if four_d[t] else v for t, v in values.items()})
        outs = []
        for t in self.output_ids:
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
