"""Step 1, clear workspace: remove what the steps generated, and nothing of the user's.

Deleting cannot be undone, so the rules are strict:

* Only a dfl workspace is touched: a folder with dfl's marker (:data:`dfl.workspace.MARKER`, written by
  the steps), or holding what dfl makes (numbered frames, faceset JPEGs with DFL metadata, a merge's
  settings, model folders).  A fresh one (videos, README, empty DFL folders) has nothing to clear;
  anything else is refused.
* Deleted outright: only what can be made again from what stays: numbered frames (from data_*.mp4),
  debug images, merged frames and masks (from the frames and the model), dfl's stale temporaries.
* Moved to ``trash/<date_time>/`` instead: the faces (``aligned/``: hours of sorting and labelling),
  result videos, numbered frames whose video is gone, models (only with ``models=True``) and the
  videos: data_src.* / data_dst.* and the cuts made of them, data_*_cut.* (only with ``videos=True``).
* Other files in those folders are the user's and stay.  A symlink is removed or moved, never followed.
"""

from __future__ import annotations

import os
import re
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from dfl.atomic import stale_temp_dirs, stale_temporaries
from dfl.demo import MARKER_NAME as DEMO_MARKER
from dfl.errors import DflError
from dfl.text import plural
from dfl.trash import folder_size, move_to_trash
from dfl.workspace import SIDES, Workspace, list_frames, list_images

# dfl.merge.frames.CONFIG_NAME and dfl.extract.STATE_FILE, named here because those modules load torch
MERGE_CONFIG = "merge_config.json"
EXTRACT_STATE = ".dfl_extract.json"
WORK_DIR_PREFIXES = (".extracting-", ".denoising-")
_DFL_MODEL_FILE = re.compile(r"^.+_data\.dat$")  # DeepFaceLab's own model folder: <name>_<Model>_data.dat


@dataclass
class ClearPlan:
    """What clearing would do, so it can be shown before anything happens."""

    delete: list[Path] = field(default_factory=list)      # files (and symlinks) to delete
    trash: list[Path] = field(default_factory=list)       # to move into trash/<date_time>/
    empty_dirs: list[Path] = field(default_factory=list)  # generated folders removed when left empty
    kept_models: list[Path] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.delete or self.trash)

    def describe(self, root: Path) -> str:
        """One line: what goes, what moves to the trash, which models stay."""
        parts = []
        if self.delete:
            parts.append(f"delete {_count(self.delete, root)}")
        if self.trash:
            parts.append(f"move {', '.join(_rel(p, root) for p in self.trash[:6])}"
                         f"{', ...' if len(self.trash) > 6 else ''} to trash/")
        if self.kept_models:
            them = "it" if len(self.kept_models) == 1 else "them"
            parts.append(f"keep {plural(len(self.kept_models), 'model')} in model/ (--models moves {them} to trash/)")
        return "; ".join(parts)


@dataclass
class ClearResult:
    deleted: int
    trash: Path | None
    trashed: int
    trash_bytes: int
    kept_models: int

    def line(self, root: Path) -> str:
        """The one summary line of ``dfl clear`` (and of ``dfl demo --run``'s clear step)."""
        line = f"clear: deleted {plural(self.deleted, 'generated file')} in {root}"
        if self.trash is not None:
            line += (f"; moved {plural(self.trashed, 'item')} ({self.trash_bytes / 1e6:.1f} MB) to {self.trash} "
                     "(delete it to free the space)")
        if self.kept_models:
            line += f"; kept {plural(self.kept_models, 'model')} in model/"
        return line


def _rel(path: Path, root: Path) -> str:
    try:
        rel = path.relative_to(root).as_posix()
    except ValueError:
        rel = str(path)
    return rel + ("/" if path.is_dir() and not path.is_symlink() else "")


def _count(paths: list[Path], root: Path) -> str:
    """'75 file(s) in data_src/, 75 file(s) in data_dst/merged/': grouped by folder."""
    by_dir = Counter("the workspace" if p.parent == root else _rel(p.parent, root) for p in paths)
    return ", ".join(f"{plural(n, 'file')} in {d}" for d, n in by_dir.items())


# -- is this a workspace? ------------------------------------------------------------------------------
def _is_dfl_face(path: Path) -> bool:
    from dfl.faceset.io import read_record

    try:
        read_record(path)
        return True
    except (DflError, OSError, ValueError):
        return False


def is_model_folder(path: Path) -> bool:
    """A model folder dfl saved (options.json with its state or weights), or DeepFaceLab's own files."""
    if path.is_symlink():
        return False
    if path.is_file():
        return bool(_DFL_MODEL_FILE.match(path.name))
    return path.is_dir() and (path / "options.json").is_file() and any(
        (path / f).exists() for f in ("state.json", "weights.safetensors", ".saving"))


def workspace_evidence(ws: Workspace) -> str | None:
    """Why ``ws`` is a dfl workspace (the marker, or something dfl made there), or None."""
    if ws.marker.is_file():
        return f"{ws.marker.name} marker"
    if (ws.root / DEMO_MARKER).is_file():
        return f"{DEMO_MARKER}"
    for side in SIDES:
        frames_dir = ws.frames_dir(side)
        if frames_dir.is_symlink():
            continue
        if list_frames(frames_dir):
            return f"numbered frames in data_{side}/"
        aligned = ws.aligned_dir(side)
        if aligned.is_dir() and not aligned.is_symlink():
            if (aligned / EXTRACT_STATE).is_file() or any(_is_dfl_face(p) for p in list_images(aligned)[:3]):
                return f"faces in data_{side}/aligned/"
    if (ws.merged_dir / MERGE_CONFIG).is_file():
        return "a merge in data_dst/merged/"
    cuts = ws.cut_videos()
    if cuts:
        return f"{cuts[0].name} (a cut of the workspace's video)"
    if ws.model_dir.is_dir() and not ws.model_dir.is_symlink():
        if any(is_model_folder(p) for p in ws.model_dir.iterdir()):
            return "a model in model/"
    return None


def _holds_files(folder: Path) -> bool:
    """True when anything but empty folders is under ``folder`` (a symlink counts as something)."""
    if folder.is_symlink() or not folder.is_dir():
        return folder.is_symlink() or folder.exists()
    for top, dirs, files in os.walk(folder):
        if files or any(os.path.islink(os.path.join(top, d)) for d in dirs):
            return True
    return False


def is_fresh(ws: Workspace) -> bool:
    """A workspace nothing has run in yet: hidden files, READMEs, the videos and empty DFL folders only."""
    videos = set(ws.input_videos())
    for p in ws.root.iterdir():
        if p.name.startswith(".") or p.name.lower().startswith("readme") or p in videos:
            continue
        if p in (ws.data_src, ws.data_dst, ws.model_dir) and not _holds_files(p):
            continue
        return False
    return True


def check_workspace(ws: Workspace) -> bool:
    """True for a dfl workspace, False for a fresh one; a DflError for any other folder."""
    ws.check_usable()
    if not ws.root.is_dir():
        raise DflError(f"{ws.root}: workspace folder does not exist")
    if workspace_evidence(ws) is not None:
        return True
    if is_fresh(ws):
        return False
    raise DflError(f"{ws.root}: does not look like a dfl workspace (no {ws.marker.name} marker, no frames, "
                   "faces, merge or model made by dfl); refusing to clear it")


# -- what to clear -----------------------------------------------------------------------------------
def _generated_files(folder: Path, extra: tuple[str, ...] = ()) -> list[Path]:
    """Images (and the named files) dfl wrote into one of its output folders; a symlinked folder is
    one item, removed as a link."""
    if folder.is_symlink():
        return [folder]
    if not folder.is_dir():
        return []
    files = list_images(folder) + [folder / n for n in extra if (folder / n).is_file()]
    return files + stale_temporaries(folder)


def plan_clear(ws: Workspace, *, models: bool = False, videos: bool = False) -> ClearPlan:
    """What :func:`clear_workspace` would do (see the module docstring); nothing is changed."""
    plan = ClearPlan()
    for side in SIDES:
        frames_dir = ws.frames_dir(side)
        if frames_dir.is_symlink():
            plan.delete.append(frames_dir)
            continue
        if not frames_dir.is_dir():
            continue
        frames = list_frames(frames_dir)
        (plan.delete if ws.video(side) is not None else plan.trash).extend(frames)
        plan.delete += stale_temporaries(frames_dir) + stale_temp_dirs_of(frames_dir)
        aligned = ws.aligned_dir(side)
        if aligned.is_symlink() or (aligned.is_dir() and any(aligned.iterdir())):
            plan.trash.append(aligned)
        debug = ws.debug_dir(side)
        plan.delete += _generated_files(debug)
        plan.empty_dirs.append(debug)
    for folder in (ws.merged_dir, ws.merged_mask_dir) if not ws.data_dst.is_symlink() else ():
        plan.delete += _generated_files(folder, (MERGE_CONFIG,))
        plan.empty_dirs.append(folder)
    plan.trash += [p for p in (ws.result, ws.result_mask) if p.is_symlink() or p.is_file()]
    plan.delete += stale_temporaries(ws.root)   # a killed ``dfl video``'s .result.<pid>-*.tmp.mp4
    if ws.model_dir.is_symlink():
        (plan.trash if models else plan.kept_models).append(ws.model_dir)
    elif ws.model_dir.is_dir():
        entries = sorted(ws.model_dir.iterdir())
        if models:
            plan.trash += entries
        else:
            plan.kept_models += [p for p in entries if is_model_folder(p)]
    if videos:
        plan.trash += ws.input_videos() + ws.cut_videos()
    return plan


def stale_temp_dirs_of(folder: Path) -> list[Path]:
    """extract-frames' and denoise-frames' work folders whose process is gone."""
    return [d for prefix in WORK_DIR_PREFIXES for d in stale_temp_dirs(folder, prefix)]


def clear_targets(ws: Workspace, *, models: bool = False, videos: bool = False) -> ClearPlan:
    """The plan for a workspace (refusing a folder that is not one); empty for a fresh workspace."""
    if not check_workspace(ws):
        return ClearPlan()
    return plan_clear(ws, models=models, videos=videos)


def clear_workspace(ws: Workspace, *, models: bool = False, videos: bool = False) -> ClearResult:
    """Carry out :func:`plan_clear`, then recreate the empty folders a DFL workspace starts with."""
    plan = clear_targets(ws, models=models, videos=videos)
    trash_bytes = sum(folder_size(p) for p in plan.trash)
    # the trash first: if a move fails, nothing has been deleted yet
    trash = move_to_trash(plan.trash, ws.root, ws.trash_dir)
    deleted = 0
    for path in plan.delete:
        try:
            if path.is_symlink() or not path.is_dir():
                path.unlink()
            else:
                shutil.rmtree(path)  # a stale work folder; rmtree does not follow symlinks
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise DflError(f"{path}: cannot remove it ({exc.strerror or exc})") from None
        deleted += 1
    for folder in plan.empty_dirs:
        if folder.is_dir() and not folder.is_symlink():
            try:
                folder.rmdir()
            except OSError:
                pass  # the user's files are in it: it stays
    for folder in (ws.aligned_dir("src"), ws.aligned_dir("dst"), ws.model_dir):
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as exc:
            raise DflError(f"{folder}: cannot create it ({exc.strerror or exc})") from None
    ws.mark()
    return ClearResult(deleted=deleted, trash=trash, trashed=len(plan.trash), trash_bytes=trash_bytes,
                       kept_models=len(plan.kept_models))
