"""Rolling backups of a model folder (``backups/iter_<N>/``) and putting one back."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from dfl.atomic import atomic_write_bytes
from dfl.errors import DflError
from dfl.models.store.layout import (BACKUPS_DIR, LOCK, PREVIEWS, SAVED_FILES, SAVING_DIR, STATE, fsync_dir,
                                     list_backups, read_json, resolve)
from dfl.models.store.listing import existing_model
from dfl.models.store.ownership import busy, exclusive, to_trash
from dfl.models.store.reading import read_checkpoint
from dfl.models.store.saving import commit_save, mark_complete, recover


def make_backup(path: Path, keep: int) -> Path | None:
    """Copy the live complete save into ``backups/iter_<N>/`` and keep only the last ``keep`` backups.

    A backup that cannot be written (a full disk) leaves no partial folder and raises a DflError; the
    model's own save is not affected.
    """
    path = Path(path)
    state = read_json(path, STATE)
    if state is None or keep <= 0:
        return None
    backups = path / BACKUPS_DIR
    target = backups / f"iter_{int(state.get('iteration', 0)):09d}"
    if target.exists():
        return target
    tmp = backups / f".{target.name}.tmp"
    try:
        backups.mkdir(exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for name in SAVED_FILES:
            f = resolve(path, name)
            if f is not None:
                shutil.copy2(f, tmp / name)
        for extra in PREVIEWS:
            if (path / extra).is_file():
                shutil.copy2(path / extra, tmp / extra)
        os.replace(tmp, target)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DflError(f"{target}: backup not written ({exc.strerror or exc}); the model itself is saved") from None
    for old in list_backups(path)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def restore_backup(model_dir: Path, name: str, model_type: str | None = None,
                   backup: str | None = None) -> tuple[Path, Path, Path | None]:
    """Put a backup (default: the newest) back as the model's live save.

    The files it replaces go to the workspace trash first, so a restore loses nothing either.  Returns
    (model folder, backup used, where the replaced files went or None).
    """
    info = existing_model(model_dir, name, model_type)
    backups = list_backups(info.path)
    if not backups:
        raise DflError(f"{info.path}: no backups to restore (`dfl train --backup-every N` makes them)")
    chosen = backups[-1] if backup is None else next((b for b in backups if b.name == backup), None)
    if chosen is None:
        raise DflError(f"{info.path}: no backup {backup!r} (there are {', '.join(b.name for b in backups)})")
    with exclusive(info.path, busy(info.path, "restore")):
        read_checkpoint(chosen, with_optimizer=False)   # a damaged backup is refused, never put back
        recover(info.path)
        saving = info.path / SAVING_DIR
        try:
            shutil.rmtree(saving, ignore_errors=True)
            saving.mkdir()
            for n in SAVED_FILES:
                if (chosen / n).is_file():
                    shutil.copy2(chosen / n, saving / n)
            fsync_dir(saving)
            mark_complete(info.path)
        except OSError as exc:
            shutil.rmtree(saving, ignore_errors=True)
            raise DflError(f"{info.path}: cannot restore {chosen.name} ({exc.strerror or exc}); "
                           "nothing was changed") from None
        replaced = [f for f in info.path.iterdir() if f.is_file() and f.name != LOCK
                    and f.name.split(".damaged")[0] in (*SAVED_FILES, *PREVIEWS)]
        aside = to_trash(Path(model_dir), replaced) / Path(model_dir).name / info.path.name if replaced else None
        commit_save(info.path)
        for extra in PREVIEWS:
            if (chosen / extra).is_file():
                with contextlib.suppress(OSError):
                    atomic_write_bytes(info.path / extra, (chosen / extra).read_bytes())
    return info.path, chosen, aside
