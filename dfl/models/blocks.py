"""Building blocks shared by DFL's autoencoders (SAEHD, AMP, Quick96) and discriminators.

The layer shapes, activations and initialisation follow DeepFaceLab's ``leras`` layers so that
parameter counts, behaviour and intuition carry over:

* convolutions pad symmetrically by ``kernel_size // 2`` (DFL pads explicitly, then runs VALID);
* weights start Glorot-uniform and biases at zero (TensorFlow's ``get_variable`` default, which
  DFL's Conv2D/Dense inherit), not torch's Kaiming default;
* depth-to-space uses TensorFlow's channel order (DCR), which differs from ``nn.PixelShuffle`` (CRD).

Everything works under ``torch.autocast`` and with ``channels_last`` tensors.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dfl import ops
from dfl.ops.layout import depth_to_space


def init_glorot(module: nn.Module) -> nn.Module:
    """Glorot-uniform weights and zero biases, as TF's default initialiser gives DFL's layers."""
    weight = getattr(module, "weight", None)
    if weight is not None:
        nn.init.xavier_uniform_(weight)
    bias = getattr(module, "bias", None)
    if bias is not None:
        nn.init.zeros_(bias)
    return module


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` (same parameters and state dict) that runs on a CPU kernel of :mod:`dfl.ops` where one
    applies (large 3x3 float32 CPU convolutions by Winograd F(4x4, 3x3), about twice as fast there to train;
    small maps to very many channels as one GEMM; large 5x5 stride-2 ones as Winograd over the
    space-to-depth input), else as ``nn.Conv2d``."""

    def forward(self, x: Tensor) -> Tensor:
        y = ops.conv2d(self, x)
        return super().forward(x) if y is None else y


def conv2d(in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, padding: int | None = None) -> nn.Conv2d:
    """A Conv2d padded like DFL's ``padding='SAME'`` (``kernel_size // 2`` each side)."""
    pad = kernel_size // 2 if padding is None else padding
    return init_glorot(Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=pad))  # type: ignore[return-value]


class ConvTranspose2dSame(nn.ConvTranspose2d):
    """TensorFlow's ``conv2d_transpose`` with ``padding='SAME'`` (DFL's Conv2DTranspose): output = input x stride.

    TF pads the matching forward convolution by ``max(k - s, 0)`` in total, the smaller half first, so the
    transposed result drops that half from its start and the rest from its end.  ``nn.ConvTranspose2d``'s
    ``padding`` drops equal amounts from both ends, which for an odd total (DFL's 3x3 stride-2 layers) puts
    every output one pixel off DFL's.  Same parameters and state dict as ``nn.ConvTranspose2d``.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1) -> None:
        super().__init__(in_ch, out_ch, kernel_size, stride=stride, padding=0)

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        y = super().forward(x)
        k, s = self.kernel_size[0], self.stride[0]
        before = max(k - s, 0) // 2
        h, w = x.shape[-2] * s, x.shape[-1] * s
        return y[..., before:before + h, before:before + w]


def conv_transpose2d(in_ch: int, out_ch: int, kernel_size: int, stride: int = 2) -> ConvTranspose2dSame:
    """A transposed convolution as DFL's Conv2DTranspose (SAME padding, Glorot init, zero bias)."""
    return init_glorot(ConvTranspose2dSame(in_ch, out_ch, kernel_size, stride))  # type: ignore[return-value]


def same_input_convs(x: Tensor, convs: list[nn.Conv2d]) -> Tensor:
    """``torch.cat([c(x) for c in convs], 1)`` as one convolution (1x1 kernels zero-padded to the largest).

    DFL's ``-d`` RGB head is a 1x1 and three 3x3 convolutions of the same 128-channel map, each with only 3
    outputs; run separately each re-reads the whole map for almost no arithmetic (4 passes of ~12 ms per
    decoder per step on 2 CPU cores, vs one of ~14 ms).  Same parameters, same result up to rounding.
    """
    k = max(c.kernel_size[0] for c in convs)
    weights = []
    for c in convs:
        pad = (k - c.kernel_size[0]) // 2
        weights.append(F.pad(c.weight, (pad, pad, pad, pad)) if pad else c.weight)
    bias = torch.cat([c.bias for c in convs])
    return F.conv2d(x, torch.cat(weights), bias, padding=k // 2)


def dense(in_ch: int, out_ch: int) -> nn.Linear:
    """A fully connected layer initialised like DFL's Dense."""
    return init_glorot(nn.Linear(in_ch, out_ch))  # type: ignore[return-value]


def pixel_norm(x: Tensor, dim: int = -1, eps: float = 1e-6) -> Tensor:
    """DFL's pixel norm: divide by the root mean square along ``dim`` (the ``-u`` archi option)."""
    xf = x.float()
    return (xf * torch.rsqrt(xf.square().mean(dim=dim, keepdim=True) + eps)).to(x.dtype)


class Downscale(nn.Module):
    """Conv (kernel 5 by default) with stride 2, then LeakyReLU 0.1."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 5) -> None:
        super().__init__()
        self.out_ch = out_ch
        self.conv1 = conv2d(in_ch, out_ch, kernel_size, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return F.leaky_relu(self.conv1(x), 0.1, inplace=True)


class DownscaleBlock(nn.Module):
    """``n`` Downscales whose widths double per step up to 8x ``ch`` (DFL's non-``t`` encoder)."""

    def __init__(self, in_ch: int, ch: int, n_downscales: int, kernel_size: int = 5) -> None:
        super().__init__()
        layers = []
        last = in_ch
        for i in range(n_downscales):
            cur = ch * min(2**i, 8)
            layers.append(Downscale(last, cur, kernel_size))
            last = cur
        self.downs = nn.ModuleList(layers)
        self.out_ch = last

    def forward(self, x: Tensor) -> Tensor:
        for down in self.downs:
            x = down(x)
        return x


class Upscale(nn.Module):
    """Conv3 to 4x ``out_ch``, LeakyReLU 0.1, TF depth-to-space x2."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.conv1 = conv2d(in_ch, out_ch * 4, kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        y = ops.conv2d(self.conv1, x, depth_to_space=True)  # shuffled as a kernel writes it (LeakyReLU commutes)
        if y is not None:
            return F.leaky_relu(y, 0.1, inplace=True)
        return depth_to_space(F.leaky_relu(self.conv1(x), 0.1, inplace=True), 2)


class ResidualBlock(nn.Module):
    """conv3, LeakyReLU 0.2, conv3, add the input, LeakyReLU 0.2."""

    def __init__(self, ch: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.conv1 = conv2d(ch, ch, kernel_size)
        self.conv2 = conv2d(ch, ch, kernel_size)

    def forward(self, inp: Tensor) -> Tensor:
        x = F.leaky_relu(self.conv1(inp), 0.2, inplace=True)
        x = self.conv2(x)
        return F.leaky_relu(inp + x, 0.2, inplace=True)


def count_parameters(module: nn.Module) -> int:
    """Trainable parameter count, the number DFL's conformance file lists per network."""
    return sum(p.numel() for p in module.parameters())
