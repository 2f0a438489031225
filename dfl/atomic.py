"""Atomic file writes: a temp file in the same folder, fsync, then rename over the target.

A crash, Ctrl+C or full disk in the middle of a write leaves either the old file or the new one,
never half of either.  Everything a user would miss (faces, models, merged frames, configs) is
written through these helpers.

Temporaries are hidden and carry the writer's process id: ``.<name>.<pid>-<random>.tmp`` (files) and
``<prefix><pid>-<random>`` (work folders).  Only kill -9 or a power cut leaves one behind; the next run of
the same step removes those whose writer is dead (:func:`remove_stale_temporaries`,
:func:`remove_stale_temp_dirs`) and never one that a running dfl is still writing.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import IO, Iterator

from dfl.processes import pid_alive

# mkstemp/mkdtemp add 8 characters from [a-z0-9_]
_TEMP_FILE = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)-[a-z0-9_]{8}\.tmp(?P<suffix>\.[^.]+)?$")
_RANDOM_TAIL = r"(?P<pid>\d+)-[a-z0-9_]{8}$"


def _owner_prefix(stem: str) -> str:
    return f".{stem}.{os.getpid()}-"


def _umask_mode() -> int:
    """The mode a plain ``open()`` would give a new file (mkstemp makes them private, 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temp file next to ``path``; on clean exit it replaces ``path``, on error it is removed."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=_owner_prefix(path.name), suffix=".tmp", dir=path.parent)
    os.chmod(tmp, _umask_mode())
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def temp_path_for(path: str | os.PathLike) -> Path:
    """A unique temp path in ``path``'s folder, keeping its extension (for writers that need a name,
    such as ffmpeg or ``cv2.imwrite``); rename it over ``path`` with ``os.replace`` when complete."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=_owner_prefix(path.stem), suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, _umask_mode())
    return Path(tmp)


def make_temp_dir(parent: str | os.PathLike, prefix: str) -> Path:
    """A new hidden work folder ``<parent>/<prefix><pid>-<random>`` (``prefix`` starts with a dot)."""
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=parent))


def _is_temp_of(match: re.Match, target: Path | None) -> bool:
    if target is None:
        return True
    name, suffix = match["name"], match["suffix"]
    return (name == target.name and not suffix) or (name == target.stem and suffix == target.suffix)


def stale_temporaries(folder: str | os.PathLike, target: str | os.PathLike | None = None) -> list[Path]:
    """Temp files in ``folder`` left by a dfl process that is gone (of ``target`` only, when given)."""
    folder = Path(folder)
    target = Path(target) if target is not None else None
    found = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            m = _TEMP_FILE.match(entry.name)
            if m and _is_temp_of(m, target) and not entry.is_dir(follow_symlinks=False) \
                    and not pid_alive(int(m["pid"])):
                found.append(folder / entry.name)
    return sorted(found)


def remove_stale_temporaries(folder: str | os.PathLike, target: str | os.PathLike | None = None) -> int:
    """Delete :func:`stale_temporaries`; returns how many went.  Never fails the step that calls it."""
    removed = 0
    for path in stale_temporaries(folder, target):
        with contextlib.suppress(OSError):
            path.unlink()
            removed += 1
    return removed


def stale_temp_dirs(parent: str | os.PathLike, prefix: str) -> list[Path]:
    """Work folders ``<prefix><pid>-<random>`` in ``parent`` whose process is gone."""
    pattern = re.compile(re.escape(prefix) + _RANDOM_TAIL)
    parent = Path(parent)
    found = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(parent):
            m = pattern.match(entry.name)
            if m and entry.is_dir(follow_symlinks=False) and not pid_alive(int(m["pid"])):
                found.append(parent / entry.name)
    return sorted(found)


def remove_stale_temp_dirs(parent: str | os.PathLike, prefix: str) -> int:
    """Delete :func:`stale_temp_dirs` with what is in them; returns how many went."""
    removed = 0
    for path in stale_temp_dirs(parent, prefix):
        shutil.rmtree(path, ignore_errors=True)
        removed += not path.exists()
    return removed
