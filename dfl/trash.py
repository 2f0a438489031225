"""The trash: where dfl puts faces, models, videos and results instead of deleting them.

A tool never deletes what took hours to make or cannot be made again.  ``move_to_trash`` moves paths
into ``<trash root>/<date_time>/``, keeping their place relative to a base folder (``data_src/aligned``
becomes ``trash/2026-11-27_10-31-05/data_src/aligned``), so moving them back restores them.  Moves are
renames (instant) on one file system; across file systems the copy is complete before the original goes.
"""

from __future__ import annotations

import errno
import os
import shutil
import time
from pathlib import Path

from dfl.errors import DflError

TRASH_DIR = "trash"


def new_trash_folder(trash_root: Path) -> Path:
    """A fresh ``<trash_root>/<date_time>[-N]/`` (created)."""
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    for n in range(1, 1000):
        folder = trash_root / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            folder.mkdir(parents=True)
            return folder
        except FileExistsError:
            continue
        except OSError as exc:
            raise DflError(f"{trash_root}: cannot create the trash folder ({exc.strerror or exc})") from None
    raise DflError(f"{trash_root}: too many trash folders named {stamp}")


def move_to_trash(paths: list[Path], base: Path, trash_root: Path) -> Path | None:
    """Move ``paths`` (files, folders or symlinks under ``base``) into a new folder of ``trash_root``.

    Returns that folder, or None when there was nothing to move.  A symlink is moved as a link, never
    followed.  Fails with a DflError naming the first path that could not be moved; what was moved
    before it stays in the trash folder.
    """
    paths = [p for p in paths if p.is_symlink() or p.exists()]
    if not paths:
        return None
    folder = new_trash_folder(trash_root)
    for path in paths:
        try:
            rel = path.relative_to(base)
        except ValueError:
            rel = Path(path.name)
        dest = folder / rel
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(path, dest)
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                shutil.move(str(path), str(dest))  # another file system: the copy completes before the original goes
        except OSError as exc:
            raise DflError(f"{path}: cannot move it to {folder} ({exc.strerror or exc}); nothing of it was "
                           "deleted") from None
    return folder


def folder_size(path: Path) -> int:
    """Bytes in the files under ``path`` (symlinks not followed)."""
    if path.is_symlink() or path.is_file():
        return path.lstat().st_size
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total
