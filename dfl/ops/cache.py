"""Transformed kernels kept while weights cannot change (inference): the state of one block."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

_STATE = threading.local()


@contextlib.contextmanager
def kernel_cache(store: dict | None = None) -> Iterator[dict]:
    """Within this block the weights do not change (merging), so each layer's transformed kernels are
    computed once and kept in ``store`` (pass the same dict again to keep them across blocks).

    Kernels are never cached outside such a block: the optimisers update weights in place through views
    that do not bump the parameters' version counters, so a cache could not tell that they changed.
    """
    prev = getattr(_STATE, "cache", None)
    _STATE.cache = {} if store is None else store
    try:
        yield _STATE.cache
    finally:
        _STATE.cache = prev


def active() -> dict | None:
    """The store of the innermost :func:`kernel_cache` block of this thread, None outside one."""
    return getattr(_STATE, "cache", None)
