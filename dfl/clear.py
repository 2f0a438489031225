"""Step 1, clear workspace: remove what the steps generated, keep the user's videos.

Deleting is the one thing that cannot be undone, so the rules are strict: only a folder that looks like a
workspace is touched; only the workspace's own generated folders and result videos are removed; a symlink
among them is unlinked, never followed; ``data_src.*``/``data_dst.*`` go only when asked.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from dfl.errors import DflError
from dfl.workspace import SIDES, VIDEO_EXTENSIONS, Workspace


def clear_targets(ws: Workspace, *, videos: bool = False) -> list[Path]:
    """What :func:`clear_workspace` would remove: existing generated folders and result files."""
    ws.check_usable()
    if not ws.root.is_dir():
        raise DflError(f"{ws.root}: workspace folder does not exist")
    if not ws.looks_like_workspace():
        if all(p.name.startswith(".") or p.name.lower().startswith("readme") for p in ws.root.iterdir()):
            return []  # a fresh, empty workspace (the repository's ships a README): nothing to clear
        raise DflError(f"{ws.root}: does not look like a dfl workspace (no data_src/, data_dst/, model/ or "
                       "data_*.mp4); refusing to clear it")
    targets = [ws.data_src, ws.data_dst, ws.model_dir, ws.result, ws.result_mask]
    if videos:
        for side in SIDES:
            targets += [p for p in sorted(ws.root.glob(f"data_{side}.*")) if p.suffix.lower() in VIDEO_EXTENSIONS]
    found = []
    for path in targets:
        # every target is a direct child of the root by construction; check anyway before deleting
        if path.parent != ws.root:
            raise DflError(f"{path}: outside the workspace; refusing")
        if path.is_symlink() or path.exists():
            found.append(path)
    return found


def _remove(path: Path) -> None:
    if path.is_symlink() or not path.is_dir():
        path.unlink()
    else:
        shutil.rmtree(path)  # rmtree does not follow symlinks inside the tree


def clear_workspace(ws: Workspace, *, videos: bool = False) -> list[Path]:
    """Remove the generated folders (frames, aligned, debug, merged, model) and result videos, then recreate
    the empty folders a DFL workspace starts with.  Returns what was removed."""
    removed = []
    for path in clear_targets(ws, videos=videos):
        try:
            _remove(path)
        except OSError as exc:
            raise DflError(f"{path}: cannot remove it ({exc.strerror or exc})") from None
        removed.append(path)
    for folder in (ws.aligned_dir("src"), ws.aligned_dir("dst"), ws.model_dir):
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as exc:
            raise DflError(f"{folder}: cannot create it ({exc.strerror or exc})") from None
    return removed
