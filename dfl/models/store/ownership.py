"""Who may change a model folder: the trainer's lock, and rename and delete, which take it too.

Delete moves a model to the workspace trash (``trash/<date_time>/model/<folder>``), never erases it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from dfl.errors import DflError
from dfl.models.store.layout import LOCK, model_path
from dfl.models.store.listing import existing_model


@contextlib.contextmanager
def lock_model(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on a model folder while training it (released by the OS even on SIGKILL)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    with exclusive(path, f"{path}: another dfl train is using this model"):
        yield


@contextlib.contextmanager
def exclusive(path: Path, busy: str) -> Iterator[None]:
    """The folder's flock, or a DflError ``busy`` when another process holds it.  Rename, delete and
    restore take it too, so none of them pulls a model from under its trainer."""
    try:
        import fcntl
    except ImportError:   # Windows: no advisory locks; one trainer per model is the user's job there
        yield
        return
    f = open(Path(path) / LOCK, "a+")
    try:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise DflError(busy) from None
        yield
    finally:
        f.close()


def busy(path: Path, verb: str) -> str:
    return f"{path}: a dfl train is using this model; stop it (Ctrl+C saves) before you {verb} it"


def remove_if_unused(path: Path) -> bool:
    """Remove a model folder that holds nothing but its lock file (a new model whose creation failed
    before its first save); True when removed."""
    path = Path(path)
    try:
        if {p.name for p in path.iterdir()} - {LOCK}:
            return False
        (path / LOCK).unlink(missing_ok=True)
        path.rmdir()
        return True
    except OSError:
        return False


def rename_model(model_dir: Path, name: str, new_name: str, model_type: str | None = None) -> Path:
    """Rename a model folder (DFL's picker [r]); refuses to overwrite another model or to pull a model
    from under a running trainer."""
    info = existing_model(model_dir, name, model_type)
    target = model_path(model_dir, new_name, info.model_type)
    if target.exists():
        raise DflError(f"{target}: a model with that name already exists")
    with exclusive(info.path, busy(info.path, "rename")):
        try:
            os.replace(info.path, target)
        except OSError as exc:
            raise DflError(f"{info.path}: cannot rename to {target.name} ({exc.strerror or exc})") from None
    return target


def delete_model(model_dir: Path, name: str, model_type: str | None = None) -> Path:
    """Move a model folder with its backups to the workspace's trash (DFL's picker [d] deleted it):
    ``trash/<date_time>/model/<name>_<Type>/`` (:mod:`dfl.trash`); returns where it went.  Emptying the
    trash is the user's call."""
    info = existing_model(model_dir, name, model_type)
    with exclusive(info.path, busy(info.path, "delete")):
        folder = to_trash(Path(model_dir), [info.path])
    return folder / Path(model_dir).name / info.path.name


def to_trash(model_dir: Path, paths: list[Path]) -> Path:
    """Move ``paths`` (inside ``model_dir``) to a new folder of the workspace trash beside ``model_dir``,
    keeping their place relative to the workspace; returns that folder."""
    from dfl.trash import TRASH_DIR, move_to_trash

    workspace = Path(model_dir).absolute().parent
    folder = move_to_trash([p.absolute() for p in paths], workspace, workspace / TRASH_DIR)
    if folder is None:
        raise DflError(f"{model_dir}: nothing to move to the trash (already gone?)")
    return folder
