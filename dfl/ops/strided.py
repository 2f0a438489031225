"""5x5 stride-2 convolutions (DFL's Downscale) as 3x3 stride-1 convolutions of the space-to-depth input,
so that Winograd (:mod:`dfl.ops.winograd`) applies to them on the CPU.

Why: the encoder's 5x5/stride-2 convolutions are a tenth of a SAEHD training step on 2 CPU cores, and
oneDNN already runs them at the cores' peak, so only less arithmetic helps.  Splitting the zero-padded
input into its four pixel phases (space-to-depth: C channels at HxW -> 4C at H/2xW/2) turns the layer into
an exact 3x3 'same' convolution over 4C channels whose kernels are the 5x5 ones zero-padded to 6x6 and
regrouped by phase.  That costs 36/25 of the multiplications, which Winograd F(4x4, 3x3) then divides by 4.
Measured on 2 cores, forward + backward: SAEHD 128's 128->256 layer (32x32 input, batch 16) 75 -> 52 ms,
the 64->128 one 72 -> 65 ms; on 8x8 outputs (the last encoder layer) it loses (the kernels grow 36/25 x 4
wider while the tiles shrink), so it runs only for training (where the kernels are transformed each step
anyway) on outputs of at least ``MIN_OUT_SIDE`` pixels a side.  Results equal the direct convolution up to
float32 rounding (about 1e-5 relative); gradients reach the 5x5 weights through the regrouping.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from dfl.ops import winograd

MIN_OUT_SIDE = 16


def applies(conv: nn.Conv2d, x: Tensor) -> bool:
    """Whether ``conv(x)`` is a float32 CPU 5x5/stride 2/pad 2 training convolution that gains."""
    if not winograd.cpu_fp32_conv(conv, x, 5, 2, 2):
        return False
    n, c, h, w = x.shape
    if h % 2 or w % 2 or min(h, w) // 2 < MIN_OUT_SIDE or not winograd.needs_grad(x, conv):
        return False
    return winograd.pays(4 * c, conv.out_channels, (n, 4 * c, h // 2, w // 2), True)


def space_to_depth(x: Tensor) -> Tensor:
    """(N, C, H, W) -> (N, 4C, H/2, W/2), channel ``(2p + q) * C + c`` holding pixel ``(2i + p, 2j + q)``;
    channels_last (one copy)."""
    n, c, h, w = x.shape
    z = x.permute(0, 2, 3, 1).reshape(n, h // 2, 2, w // 2, 2, c).permute(0, 1, 3, 2, 4, 5)
    return z.reshape(n, h // 2, w // 2, 4 * c).permute(0, 3, 1, 2)


def phase_kernels(weight: Tensor) -> Tensor:
    """(Co, C, 5, 5) stride-2 kernels -> (Co, 4C, 3, 3) kernels over :func:`space_to_depth` channels:
    tap ``(2a + p, 2b + q)`` of the 6x6 zero-padded kernel goes to channel ``(2p + q) * C + c``, tap (a, b)."""
    co, c = weight.shape[:2]
    w6 = F.pad(weight, (0, 1, 0, 1)).view(co, c, 3, 2, 3, 2)  # co, c, a, p, b, q
    return w6.permute(0, 3, 5, 1, 2, 4).reshape(co, 4 * c, 3, 3)


def conv5x5_stride2(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``F.conv2d(x, weight, bias, stride=2, padding=2)`` for 5x5 kernels and even H, W, by Winograd."""
    return winograd.conv3x3(space_to_depth(x), phase_kernels(weight), bias)
