"""Stopping a step by Ctrl+C or SIGTERM: it keeps what it did and says so.

Ctrl+C raises ``KeyboardInterrupt`` in the main thread; every step already stops cleanly on it (atomic
writes, resume state saved, ffmpeg killed).  :func:`sigterm_as_interrupt` makes SIGTERM (``kill``,
``timeout``, a container or job scheduler stopping dfl) do the same, raising :class:`Terminated`, a
``KeyboardInterrupt``, instead of killing the process where it stands.

A step that can say what it finished before the stop raises :class:`Interrupted` with its partial summary;
the CLI prints that summary, not a bare "Aborted.", and exits 130 (Ctrl+C) or 143 (SIGTERM), the codes a
shell gives a process stopped by those signals.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Callable, Iterator

EXIT_SIGINT = 130    # 128 + SIGINT
EXIT_SIGTERM = 143   # 128 + SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived (see :func:`sigterm_as_interrupt`); handled wherever Ctrl+C is."""


class Interrupted(KeyboardInterrupt):
    """A step stopped by Ctrl+C or SIGTERM after keeping its finished work.

    ``partial``: the step's summary object so far (what the CLI prints).  ``terminated``: the stop was
    SIGTERM.  ``message``: what the CLI prints on stderr instead of "Interrupted." (how to go on).
    """

    def __init__(self, partial: Any = None, *, terminated: bool = False, message: str = "") -> None:
        super().__init__(message)
        self.partial = partial
        self.terminated = terminated
        self.message = message

    @classmethod
    def from_stop(cls, stop: BaseException, partial: Any) -> "Interrupted":
        """The Interrupted for a caught ``KeyboardInterrupt``/``Terminated``, carrying ``partial``."""
        return cls(partial, terminated=isinstance(stop, Terminated) or getattr(stop, "terminated", False))


def exit_code(stop: BaseException | None) -> int:
    """130 for Ctrl+C, 143 for SIGTERM."""
    terminated = isinstance(stop, Terminated) or bool(getattr(stop, "terminated", False))
    return EXIT_SIGTERM if terminated else EXIT_SIGINT


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated()


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block SIGTERM raises :class:`Terminated` in the main thread; the old handler comes back
    after.  Does nothing off the main thread or where there is no SIGTERM (signals are the main thread's)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGTERM"):
        yield
        return
    try:
        old = signal.signal(signal.SIGTERM, _raise_terminated)
    except (ValueError, OSError):   # an embedding interpreter that owns its signals
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


@contextlib.contextmanager
def stop_between_steps() -> Iterator[Callable[[], None]]:
    """Ctrl+C and SIGTERM only ask the block to stop; it stops where the returned ``check()`` is called.

    A ``KeyboardInterrupt`` raised wherever the main thread happens to be can land between a lock's
    acquire and the ``with`` that releases it (a thread pool's, a progress bar's): the step then hangs in
    its cleanup instead of stopping.  Inside this block the first signal sets a flag and ``check()``, called
    by the step between frames, raises :class:`KeyboardInterrupt` (Ctrl+C) or :class:`Terminated` (SIGTERM)
    at a point where nothing is half done.  A second signal raises at once, for a step that does not get to
    its next check.  Off the main thread it changes nothing and ``check()`` never raises.
    """
    asked: list[int] = []

    def check() -> None:
        if asked:
            raise Terminated() if asked[0] == getattr(signal, "SIGTERM", None) else KeyboardInterrupt()

    def handler(signum: int, frame: Any) -> None:
        if asked:
            raise Terminated() if signum == getattr(signal, "SIGTERM", None) else KeyboardInterrupt()
        asked.append(signum)

    if threading.current_thread() is not threading.main_thread():
        yield lambda: None
        return
    wanted = [s for s in (signal.SIGINT, getattr(signal, "SIGTERM", None)) if s is not None]
    old: dict[int, Any] = {}
    try:
        for sig in wanted:
            if signal.getsignal(sig) is signal.SIG_IGN:   # a shell that ignores it (nohup, &): keep ignoring
                continue
            old[sig] = signal.signal(sig, handler)
    except (ValueError, OSError):
        for sig, h in old.items():
            signal.signal(sig, h)
        yield lambda: None
        return
    try:
        yield check
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)
