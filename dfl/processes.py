"""Child processes that die with dfl, and whether a process is still alive.

ffmpeg runs as a child of dfl.  If dfl is killed (kill -9, a crash, the OOM killer) the child must not go
on writing into a hidden work folder nobody will ever rename or remove: on Linux the kernel kills it
(``PR_SET_PDEATHSIG``); elsewhere the children still running are killed when the interpreter exits
(which covers errors and Ctrl+C, not kill -9).

:func:`pid_alive` tells a stale temporary (its writer is dead) from one a running dfl is still writing;
temporaries carry their writer's pid in their name (see :mod:`dfl.atomic`).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
from typing import Any, Callable

_PR_SET_PDEATHSIG = 1
_libc: Any = None
if sys.platform.startswith("linux"):
    with contextlib.suppress(OSError):
        _libc = ctypes.CDLL(None, use_errno=True)   # loaded before any fork: the child only calls it

_live: set[subprocess.Popen] = set()
_live_lock = threading.Lock()


def _die_with_parent(parent: int) -> Callable[[], None]:
    """preexec_fn for Linux: SIGKILL this child when the thread that started it dies."""
    def pre_exec() -> None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:   # dfl died between fork and prctl: nobody would ever stop us
            os._exit(1)
    return pre_exec


def start_child(cmd: list[str], **kwargs: Any) -> subprocess.Popen:
    """``subprocess.Popen(cmd, **kwargs)`` for a long-running helper (ffmpeg) that must not outlive dfl.

    On Linux the death signal is tied to the calling *thread*: call this from a thread that lives as
    long as the child (the main thread, or the thread that waits for it).
    """
    if _libc is not None and "preexec_fn" not in kwargs:
        kwargs["preexec_fn"] = _die_with_parent(os.getpid())
    proc = subprocess.Popen(cmd, **kwargs)
    with _live_lock:
        _live.add(proc)
    return proc


def child_done(proc: subprocess.Popen) -> None:
    """Forget a child started with :func:`start_child` once it has been waited for."""
    with _live_lock:
        _live.discard(proc)


@atexit.register
def _kill_children() -> None:
    """The children still running when dfl exits (an error, Ctrl+C) go with it."""
    with _live_lock:
        procs = list(_live)
        _live.clear()
    for proc in procs:
        with contextlib.suppress(OSError):
            if proc.poll() is None:
                proc.kill()


def pid_alive(pid: int) -> bool:
    """True when a process with this id exists (ours included).  Unsure means alive: a temporary is
    only removed when its writer is certainly gone."""
    if pid <= 0:
        return True
    if pid == os.getpid():
        return True
    if sys.platform == "win32":
        return _pid_alive_windows(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists but belongs to someone else
        return True
    return True


def _pid_alive_windows(pid: int) -> bool:
    from ctypes import wintypes

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
    process_query_limited_information, still_active, error_access_denied = 0x1000, 259, 5
    handle = kernel32.OpenProcess(process_query_limited_information, False, pid)
    if not handle:
        return ctypes.get_last_error() == error_access_denied  # type: ignore[attr-defined]
    try:
        code = wintypes.DWORD()
        if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
            return True
        return code.value == still_active
    finally:
        kernel32.CloseHandle(handle)
