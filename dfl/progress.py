"""Progress bars: tqdm with a rate, and never an empty one.

A bar for no work at all ("Merging: 0frame [00:00, ?frame/s]") tells a user nothing and looks like a
failure, so :func:`progress_bar` hides a bar whose total is known to be 0; the step's summary line says
what (nothing) was done.
"""

from __future__ import annotations

from typing import Iterable

from tqdm import tqdm


def progress_bar(iterable: Iterable | None = None, *, total: int | None = None, desc: str | None = None,
                 unit: str = "it", progress: bool | None = True, leave: bool = True) -> tqdm:
    """A tqdm bar with a rate (``dynamic_ncols``) over ``iterable`` or up to ``total``.

    ``progress``: True shows it, False hides it, None shows it only on a terminal (tqdm's ``disable=None``).
    A bar whose total is 0 (given, or the length of ``iterable``) is always hidden; one without a known
    total is shown, since it counts work as it happens.
    """
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    disable: bool | None = None if progress is None else not progress
    if total == 0:
        disable = True
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=disable, leave=leave, dynamic_ncols=True)
