"""Per-face work on a thread pool with a progress bar, shared by the faceset tools.

Decoding, OpenCV and numpy release the GIL, so threads use every core without the start-up and copying
cost of processes; results come back in input order.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, TypeVar

from tqdm import tqdm

T = TypeVar("T")
R = TypeVar("R")


def _cores() -> int:
    """Cores this process may use; ``dfl.device.available_cores`` without importing torch (seconds of
    start-up for a tool that never uses it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def map_faces(fn: Callable[[T], R], items: Iterable[T], desc: str, progress: bool = True,
              unit: str = "face") -> list[R]:
    """``[fn(item) for item in items]`` on one thread per core; the first exception stops it."""
    items = list(items)
    out: list[R] = []
    with ThreadPoolExecutor(_cores()) as pool, \
            tqdm(total=len(items), desc=desc, unit=unit, disable=not progress, dynamic_ncols=True) as bar:
        for value in pool.map(fn, items):
            out.append(value)
            bar.update(1)
    return out
