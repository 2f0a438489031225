"""DeepFaceLab's FaceEnhancer: a 4x face super-resolution U-Net, run from DFL's own ``FaceEnhancer.npy``.

DFL ships the weights in its builds (``_internal/DeepFaceLab/facelib/FaceEnhancer.npy``) and uses the
network twice: ``faceset enhance`` (sharper faces, same size) and the merger's super-resolution power (the
predicted face enhanced to 4x and mixed in).  The network is DFL's layer for layer (names as its leras
variables, so the weights file loads as it is): a five-level encoder of 3x3 convolutions with 2x2 average
pooling, a decoder with skip connections and bilinear 2x upsampling, and three heads that add
``tanh`` corrections to the input at 1x, 2x and 4x.  Two scalar inputs (DFL always feeds 0.2 and 1.0) are
projected to the first feature map.  :func:`enhance` tiles any image into 192 px patches with DFL's
overlap and blending.  dfl never downloads the weights: copy the file into the weights folder.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

PATCH = 192
UPSCALE = 4
PARAMS = (0.2, 1.0)   # DFL's fixed inputs of dense1 and dense2

_ENCODER = ((3, 64), (64, 112), (112, 192), (192, 336), (336, 512))   # e0..e4 (in, out)
_DECODER = ((1024, 512), (848, 512), (704, 288), (400, 160), (224, 96))  # d4..d0 (in, out)


def upsample2x(x: Tensor) -> Tensor:
    """TensorFlow 1's ``resize_bilinear`` x2 (no half-pixel centres), which DFL's leras uses.

    Output pixel ``2i`` is input pixel ``i``, pixel ``2i+1`` the mean of ``i`` and ``i+1`` (the last
    one repeats at the edge); torch's ``interpolate`` has no such mode.
    """
    n, c, h, w = x.shape
    below = torch.cat((x[:, :, 1:], x[:, :, -1:]), 2)
    x = torch.stack((x, (x + below) * 0.5), 3).reshape(n, c, 2 * h, w)
    right = torch.cat((x[..., 1:], x[..., -1:]), 3)
    return torch.stack((x, (x + right) * 0.5), 4).reshape(n, c, 2 * h, 2 * w)


def _conv(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1)


class FaceEnhancerNet(nn.Module):
    """DFL's FaceEnhancer network: (N,3,H,W) in [-1, 1] and two (N,1) scalars -> (N,3,4H,4W).

    H and W must be multiples of 32 (five 2x poolings); DFL runs 192x192 patches.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = _conv(3, 64)
        self.dense1 = nn.Linear(1, 64, bias=False)
        self.dense2 = nn.Linear(1, 64, bias=False)
        for i, (cin, cout) in enumerate(_ENCODER):
            setattr(self, f"e{i}_conv0", _conv(64 if i == 0 else cin, cout))
            setattr(self, f"e{i}_conv1", _conv(cout, cout))
        for i in range(4):
            setattr(self, f"center_conv{i}", _conv(512, 512))
        for level, (cin, cout) in zip(range(4, -1, -1), _DECODER):
            setattr(self, f"d{level}_conv0", _conv(cin, cout))
            setattr(self, f"d{level}_conv1", _conv(cout, cout))
        self.out1x_conv0, self.out1x_conv1 = _conv(96, 48), _conv(48, 3)
        self.dec2x_conv0, self.dec2x_conv1 = _conv(96, 96), _conv(96, 96)
        self.out2x_conv0, self.out2x_conv1 = _conv(96, 48), _conv(48, 3)
        self.dec4x_conv0, self.dec4x_conv1 = _conv(96, 72), _conv(72, 72)
        self.out4x_conv0, self.out4x_conv1 = _conv(72, 36), _conv(36, 3)

    def _pair(self, name: str, x: Tensor) -> Tensor:
        x = F.leaky_relu(getattr(self, f"{name}_conv0")(x), 0.1)
        return F.leaky_relu(getattr(self, f"{name}_conv1")(x), 0.1)

    def forward(self, bgr: Tensor, param: Tensor, param1: Tensor) -> Tensor:
        a = self.dense1(param)[:, :, None, None]
        b = self.dense2(param1)[:, :, None, None]
        x = F.leaky_relu(self.conv1(bgr) + a + b, 0.1)
        skips = []
        for i in range(5):
            if i:
                x = F.avg_pool2d(x, 2)
            x = self._pair(f"e{i}", x)
            skips.append(x)
        x = F.avg_pool2d(x, 2)
        for i in range(4):
            x = F.leaky_relu(getattr(self, f"center_conv{i}")(x), 0.1)
        for level in range(4, -1, -1):
            x = self._pair(f"d{level}", torch.cat((upsample2x(x), skips[level]), 1))
        d0 = x
        out1x = bgr + torch.tanh(self.out1x_conv1(F.leaky_relu(self.out1x_conv0(d0), 0.1)))
        d2x = upsample2x(self._pair("dec2x", d0))
        out2x = upsample2x(out1x) + torch.tanh(self.out2x_conv1(F.leaky_relu(self.out2x_conv0(d2x), 0.1)))
        d4x = upsample2x(self._pair("dec4x", d2x))
        return upsample2x(out2x) + torch.tanh(self.out4x_conv1(F.leaky_relu(self.out4x_conv0(d4x), 0.1)))


def _starts(size: int) -> list[int]:
    """Patch origins along one axis: every half patch, the last one flush with the end (as DFL)."""
    last = size - PATCH
    out, p = [0], 0
    while p < last:
        p = min(p + PATCH // 2, last)
        out.append(p)
    return out


def _blend_window() -> np.ndarray:
    """DFL's patch weight: a pyramid rising from 0 at the border to 1 in the middle, per output pixel."""
    half = PATCH // 2 * UPSCALE
    ramp = np.concatenate([np.linspace(0, 1, half), np.linspace(1, 0, half)])
    return (ramp[None, :] * ramp[:, None])[..., None].astype(np.float32)


class FaceEnhancer:
    """DFL's face enhancer on a torch device: :meth:`enhance` one image at a time, patches batched."""

    def __init__(self, weights: Path, device: torch.device | str = "cpu", batch: int | None = None) -> None:
        from dfl.leras import load_leras

        self.device = torch.device(device)
        self.net = load_leras(FaceEnhancerNet(), Path(weights)).eval().to(self.device)
        self.batch = batch or (4 if self.device.type == "cuda" else 1)
        self._window = _blend_window()

    @torch.inference_mode()
    def _run(self, patches: np.ndarray) -> np.ndarray:
        outs = []
        for i in range(0, len(patches), self.batch):
            x = torch.from_numpy(np.ascontiguousarray(patches[i:i + self.batch].transpose(0, 3, 1, 2))).to(self.device)
            p = torch.tensor([[PARAMS[0]]] * len(x), device=self.device)
            p1 = torch.tensor([[PARAMS[1]]] * len(x), device=self.device)
            outs.append(self.net(x, p, p1).permute(0, 2, 3, 1).float().cpu().numpy())
        return np.concatenate(outs)

    def enhance(self, image: np.ndarray, is_tanh: bool = False, preserve_size: bool = True) -> np.ndarray:
        """DFL's ``FaceEnhancer.enhance``: HxWx3 float32 BGR -> enhanced (4x unless ``preserve_size``).

        ``is_tanh=False`` maps [0, 1] to the network's [-1, 1] and back (faceset enhance);
        the merger passes its [0, 1] face with ``is_tanh=True`` and mixes the raw result, as DFL does.
        """
        img = np.asarray(image, np.float32)
        if not is_tanh:
            img = np.clip(img * 2 - 1, -1, 1)
        ih, iw = img.shape[:2]
        top, left = max(0, PATCH - ih) // 2, max(0, PATCH - iw) // 2
        bottom, right = max(0, PATCH - ih) - top, max(0, PATCH - iw) - left
        if top or bottom or left or right:
            img = np.pad(img, ((top, bottom), (left, right), (0, 0)))
        h, w = img.shape[:2]
        origins = [(y, x) for y in _starts(h) for x in _starts(w)]
        patches = np.stack([img[y:y + PATCH, x:x + PATCH] for y, x in origins])
        results = self._run(patches)
        acc = np.zeros((h * UPSCALE, w * UPSCALE, 3), np.float32)
        weight = np.zeros((h * UPSCALE, w * UPSCALE, 1), np.float32)
        s = PATCH * UPSCALE
        for (y, x), r in zip(origins, results):
            acc[y * UPSCALE:y * UPSCALE + s, x * UPSCALE:x * UPSCALE + s] += r * self._window
            weight[y * UPSCALE:y * UPSCALE + s, x * UPSCALE:x * UPSCALE + s] += self._window
        weight[weight == 0] = 1.0
        out = acc / weight
        out = out[top * UPSCALE:(h - bottom) * UPSCALE, left * UPSCALE:(w - right) * UPSCALE]
        if preserve_size:
            out = cv2.resize(out, (iw, ih), interpolation=cv2.INTER_LANCZOS4)
        if not is_tanh:
            out = np.clip(out / 2 + 0.5, 0, 1)
        return out.astype(np.float32)


class LazyFaceEnhancer:
    """A :class:`FaceEnhancer` loaded on the first :meth:`enhance` (the merger may never need it).

    Thread-safe: the merger blends faces on several threads."""

    def __init__(self, weights_dir: Path, device: torch.device | str = "auto") -> None:
        import threading

        self.weights_dir, self.device = Path(weights_dir), device
        self._enhancer: FaceEnhancer | None = None
        self._lock = threading.Lock()

    def enhance(self, image: np.ndarray, is_tanh: bool = False, preserve_size: bool = True) -> np.ndarray:
        with self._lock:
            if self._enhancer is None:
                from dfl.device import pick_device

                dev = self.device if isinstance(self.device, torch.device) else pick_device(self.device)
                self._enhancer = load_face_enhancer(self.weights_dir, dev)
            return self._enhancer.enhance(image, is_tanh, preserve_size)


def load_face_enhancer(weights_dir: Path, device: torch.device | str = "cpu") -> FaceEnhancer:
    """The enhancer from ``FaceEnhancer.npy`` in the weights folder (DflError naming file and folder)."""
    from dfl.faces.weights import FACE_ENHANCER_FILES, require_weights

    return FaceEnhancer(require_weights(Path(weights_dir), FACE_ENHANCER_FILES, "FaceEnhancer"), device)
