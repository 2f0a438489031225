"""How the models' layers run, for the code that runs them: the trainer's and the merger's handles on the
CPU kernels of :mod:`dfl.ops`, without knowing those kernels.

* :func:`frozen_weights`: a block in which the weights cannot change (merging, live swapping), so layers
  keep what they derive from them (Winograd-transformed kernels) instead of recomputing it every call.
* :func:`half_tiles`: training with ``--precision fp16`` on the CPU: differentiated convolutions keep their
  Winograd tiles in float16 (:class:`HalfTiles` says when a step overflowed and must be redone in float32).
* :func:`keep_freed_memory`: for long-running training on the CPU: freed memory stays in the process, which
  several kernels' shape rules assume.
"""

from __future__ import annotations

from dfl.ops import HalfTiles, half_tiles, keep_freed_memory
from dfl.ops import kernel_cache as frozen_weights

__all__ = ["HalfTiles", "frozen_weights", "half_tiles", "keep_freed_memory"]
