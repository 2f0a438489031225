"""Low-level CPU kernels for the models' layers, behind one entry point: :func:`conv2d`.

On the CPU in float32, oneDNN's direct convolutions already run near the cores' peak, so what is faster
does less arithmetic: large 3x3 layers by Winograd F(4x4, 3x3) (:mod:`dfl.ops.winograd`, whose
:func:`~dfl.ops.winograd.pays` holds the measured shape rules), 5x5 stride-2 training layers as Winograd
over the space-to-depth input (:mod:`dfl.ops.strided`), and 3x3 layers of tiny maps to 2048+ channels as
one GEMM (:mod:`dfl.ops.im2col`).  ``DFL_WINOGRAD=0`` turns all three off.

Besides the kernels, this package holds the per-process and per-block state their rules read: whether
freed memory is kept (:mod:`dfl.ops.memory`), float16 tiles for training (:mod:`dfl.ops.half`) and
transformed kernels kept while weights cannot change (:mod:`dfl.ops.cache`).

Only ``dfl.models`` imports this package (``blocks.py`` for the layers, ``runtime.py`` for the trainer's
and the merger's handles on that state); nothing above the models knows kernels exist.
"""

from __future__ import annotations

from torch import Tensor, nn

from dfl.ops import im2col, strided, winograd
from dfl.ops.cache import kernel_cache
from dfl.ops.half import HalfTiles, half_tiles
from dfl.ops.layout import channels_last_only, depth_to_space
from dfl.ops.memory import freed_memory_kept, keep_freed_memory

__all__ = ["HalfTiles", "channels_last_only", "conv2d", "depth_to_space", "freed_memory_kept", "half_tiles",
           "keep_freed_memory", "kernel_cache"]


def conv2d(conv: nn.Conv2d, x: Tensor, depth_to_space: bool = False) -> Tensor | None:
    """``conv(x)`` by a CPU kernel when one applies to this layer and input, else None (the caller then
    runs the stock convolution).

    ``depth_to_space``: TensorFlow's depth-to-space x2 of the result instead (DFL's Upscale), from a kernel
    that writes the output already shuffled (Winograd); None when none does, and the caller convolves and
    shuffles as usual (where the convolution itself may still take a kernel).
    """
    if winograd.applies(conv, x):
        return winograd.conv3x3(x, conv.weight, conv.bias, depth_to_space=depth_to_space)
    if depth_to_space:
        return None
    if im2col.applies(conv, x):
        return im2col.conv3x3(x, conv.weight, conv.bias)
    if strided.applies(conv, x):
        return strided.conv5x5_stride2(x, conv.weight, conv.bias)
    return None
