"""Memory-layout helpers the kernels and the layers share: TF's depth-to-space, channels_last tests."""

from __future__ import annotations

import torch
from torch import Tensor


def channels_last_only(t: Tensor) -> bool:
    """``t`` is laid out channels_last and not also plainly contiguous (e.g. a 1x1 map would be both)."""
    return t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()


def depth_to_space(x: Tensor, size: int = 2) -> Tensor:
    """TensorFlow's ``depth_to_space`` (DCR order) on NCHW tensors.

    Input channel ``(i * size + j) * oc + c`` lands at output ``(c, h * size + i, w * size + j)``;
    ``nn.PixelShuffle`` would instead read channel ``c * size * size + i * size + j``.  One permuted
    copy in the tensor's own memory layout (NCHW or channels_last) does it; that is several times
    faster than regrouping channels and then pixel-shuffling.
    """
    n, c, h, w = x.shape
    oc = c // (size * size)
    if channels_last_only(x):
        y = x.permute(0, 2, 3, 1).reshape(n, h, w, size, size, oc)
        y = y.permute(0, 1, 3, 2, 4, 5).reshape(n, h * size, w * size, oc)
        return y.permute(0, 3, 1, 2)  # NCHW view of a channels_last tensor
    y = x.reshape(n, size, size, oc, h, w).permute(0, 3, 4, 1, 5, 2)
    return y.reshape(n, oc, h * size, w * size)
