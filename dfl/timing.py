"""Per-stage time accounting for pipelines whose stages run on several threads at once.

Why: a pipeline's frames/s says nothing about *what* holds it back.  Each stage adds the CPU time its
calls took on the thread that ran them (``time.thread_time``), so the totals show where the cores went
whatever else the machine is running (wall times on a loaded machine mostly measure waiting).  Work a
stage hands to other threads (torch intra-op threads beyond the first, OpenCV's pool) is not counted:
pipelines that want complete figures run those libraries single-threaded per call.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Iterator


class StageTimes:
    """Thread-safe CPU seconds and call counts per named stage: ``with times("decode"): ...``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.thread_time()
        try:
            yield
        finally:
            self.add(stage, time.thread_time() - start)

    @contextmanager
    def waiting(self, stage: str) -> Iterator[None]:
        """Wall time a thread spends blocked (e.g. the inference thread waiting for a decoded frame): where
        the stages' CPU times say what costs, these say which stage the pipeline waited for."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - start)

    def add(self, stage: str, seconds: float, calls: int = 1) -> None:
        with self._lock:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds
            self.calls[stage] = self.calls.get(stage, 0) + calls

    def ms_per(self, n: int) -> dict[str, float]:
        """Milliseconds per item (e.g. per frame) for every stage."""
        return {k: 1000.0 * v / max(n, 1) for k, v in self.seconds.items()}


def null_times() -> StageTimes:
    """A throwaway accumulator for callers that do not report stage times."""
    return StageTimes()
