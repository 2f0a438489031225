"""3x3 convolutions of small, very wide maps as one GEMM (im2col), for the CPU.

Why: the first upscale of SAEHD's decoders (and LIAE's inter) takes an 8x8 map to 2048 channels; oneDNN's
direct convolution runs such layers at about half the cores' GEMM rate (few pixels, huge kernels).
Winograd takes them first where it pays (:func:`dfl.ops.winograd.pays`: when freed memory is kept, as
in training); such layers in a process that does not keep freed memory (merging) come here.  Gathering
the 3x3 neighbourhoods of the few pixels into rows and multiplying by the flattened kernels is one large,
efficient GEMM forward and two backward (through autograd).  Measured on 2 cores, forward + backward: 8x8 maps to 2048 channels 1.3-1.5x faster,
6x6 1.7x (liae-ud 128 about 5% faster per step); 12x12 to 1024 channels gains 1.15x alone but nothing
inside Quick96, and narrower layers lose (hence :func:`applies`).  Same result as the direct convolution up
to float32 summation order.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dfl.ops import winograd
from dfl.ops.layout import channels_last_only

MIN_OUT_CHANNELS = 2048
MAX_PIXELS = 64  # output map of at most 8x8


def applies(conv: nn.Conv2d, x: Tensor) -> bool:
    """Whether ``conv(x)`` is a 3x3/stride 1/pad 1 float32 CPU convolution of a small map to many channels."""
    return (winograd.cpu_same_3x3(conv, x) and conv.out_channels >= MIN_OUT_CHANNELS
            and x.shape[2] * x.shape[3] <= MAX_PIXELS)


def conv3x3(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``F.conv2d(x, weight, bias, padding=1)`` as rows of 3x3 neighbourhoods times the flattened kernels;
    the result is channels_last (N, Co, H, W).

    The rows are laid out in the weight's own memory order, (ky, kx, c) for channels_last weights (what
    training with ``channels_last`` gives) and (c, ky, kx) otherwise, so the kernels are a free view and the
    weight gradient lands in the parameter's layout: copying a 2048x1024x3x3 weight across layouts costs
    about as much as a third of the layer's GEMMs.
    """
    n, c, h, w = x.shape
    co = weight.shape[0]
    padded = F.pad(x.permute(0, 2, 3, 1), (0, 0, 1, 1, 1, 1))             # N, H+2, W+2, C
    patches = padded.unfold(1, 3, 1).unfold(2, 3, 1)                          # N, H, W, C, ky, kx
    if channels_last_only(weight):
        rows = patches.permute(0, 1, 2, 4, 5, 3).reshape(n * h * w, 9 * c)
        kernels = weight.permute(0, 2, 3, 1).reshape(co, 9 * c).t()
    else:
        rows = patches.reshape(n * h * w, c * 9)
        kernels = weight.reshape(co, c * 9).t()
    y = torch.addmm(bias, rows, kernels) if bias is not None else rows @ kernels
    return y.view(n, h, w, co).permute(0, 3, 1, 2)
