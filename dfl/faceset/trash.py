"""Moving and renaming faces without ever overwriting or deleting one.

Faceset tools reorder faces by renaming them and put what they remove in ``<folder>_trash/`` next to
the folder (DFL's ``aligned_trash``); the user empties it.  Every move here refuses to replace an
existing file, so no sequence of tool runs, crashes or name clashes can lose a face.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Iterable

from dfl.errors import DflError


def trash_dir(folder: str | os.PathLike) -> Path:
    """``<folder>_trash`` beside ``folder`` (``data_src/aligned`` -> ``data_src/aligned_trash``)."""
    folder = Path(folder)
    return folder.parent / f"{folder.name}_trash"


def rename_no_clobber(src: Path, dst: Path) -> None:
    """Rename ``src`` to ``dst``; DflError if ``dst`` exists (a hard link + unlink on POSIX makes the
    check and the move one step; where links are not possible the check comes just before)."""
    if os.name != "nt":
        try:
            os.link(src, dst)
        except FileExistsError:
            raise DflError(f"{dst}: already exists; {src.name} was left where it is") from None
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EXDEV, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK):
                raise DflError(f"{src}: cannot move to {dst} ({exc.strerror or exc})") from None
        else:
            os.unlink(src)
            return
    if dst.exists():
        raise DflError(f"{dst}: already exists; {src.name} was left where it is")
    try:
        os.rename(src, dst)     # on Windows this fails rather than replace an existing file
    except OSError as exc:
        raise DflError(f"{src}: cannot move to {dst} ({exc.strerror or exc})") from None


def free_name(folder: Path, name: str) -> Path:
    """``folder/name``, or ``folder/<stem>_<n><suffix>`` with the first n that is free."""
    target = folder / name
    stem, suffix = Path(name).stem, Path(name).suffix
    n = 1
    while target.exists():
        target = folder / f"{stem}_{n}{suffix}"
        n += 1
    return target


def move_to_trash(files: Iterable[Path], folder: str | os.PathLike) -> list[Path]:
    """Move ``files`` into ``folder``'s trash folder, renaming on a clash; returns where they went."""
    trash = trash_dir(folder)
    out = []
    for f in files:
        trash.mkdir(parents=True, exist_ok=True)
        dest = free_name(trash, f.name)
        rename_no_clobber(f, dest)
        out.append(dest)
    return out


def rename_all(moves: list[tuple[Path, Path]], tag: str) -> None:
    """Apply many renames inside one folder whose targets may be other files' current names.

    Every file first gets a temporary name that holds its target (``<tag>_<target>``), then its
    target name; an interrupted run leaves each face under its old, temporary or new name, never
    lost.  The caller has checked that targets are unique.
    """
    moves = [(s, d) for s, d in moves if s != d]
    sources = {s for s, _ in moves}
    for _, d in moves:
        for clash in (d, d.parent / f"{tag}_{d.name}"):
            if clash.exists() and clash not in sources:
                raise DflError(f"{clash}: already exists and is not one of the faces being renamed; "
                               "nothing was renamed")
    staged = []
    for s, d in moves:
        tmp = d.parent / f"{tag}_{d.name}"
        rename_no_clobber(s, tmp)
        staged.append((tmp, d))
    for tmp, d in staged:
        rename_no_clobber(tmp, d)
