"""Per-face work on a thread pool, and the progress bars, shared by the faceset tools.

Decoding, OpenCV and numpy release the GIL, so threads use every core without the start-up and copying
cost of processes; results come back in input order.  Bars show on a terminal only (tqdm's own rule), so
logs and captured output hold just the summary or the one-line error.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, TypeVar

from tqdm import tqdm

from dfl.progress import progress_bar

T = TypeVar("T")
R = TypeVar("R")


def _cores() -> int:
    """Cores this process may use; ``dfl.device.available_cores`` without importing torch (seconds of
    start-up for a tool that never uses it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def bar(iterable: Iterable | None = None, *, desc: str, progress: bool = True, unit: str = "face",
        total: int | None = None, leave: bool = True) -> tqdm:
    """A tqdm bar with a rate; ``leave=False`` for checking passes, whose bar would linger above an error."""
    return progress_bar(iterable, total=total, desc=desc, unit=unit, progress=None if progress else False, leave=leave)


def map_faces(fn: Callable[[T], R], items: Iterable[T], desc: str, progress: bool = True,
              unit: str = "face") -> list[R]:
    """``[fn(item) for item in items]`` on one thread per core; the first exception stops it."""
    items = list(items)
    out: list[R] = []
    with ThreadPoolExecutor(_cores()) as pool, \
            bar(total=len(items), desc=desc, unit=unit, progress=progress) as b:
        for value in pool.map(fn, items):
            out.append(value)
            b.update(1)
    return out
