"""``dfl xseg apply | remove | remove-labels | fetch``: XSeg masks and labels over a whole faceset.

DFL's ``XSegUtil`` steps, with dfl's promises: ``apply`` writes a mask predictor's masks into every
face's metadata in batches and resumes where an interrupted run stopped (a hidden ``.xseg_apply.json`` in
the faceset lists the faces done, for that model); ``remove`` and ``remove-labels`` first save the
metadata they are about to change into the trash as DFL's ``meta.dat`` (``dfl faceset metadata restore``
puts it back), because the file itself cannot give it back; ``fetch`` copies the labelled faces to
``<folder>_xseg/`` (or moves them, never deleting one).  Each tool reads every face's metadata first, so a
file that is not a DFL face stops it before anything changes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from dfl.atomic import atomic_write_bytes, atomic_write_text
from dfl.errors import DflError
from dfl.faceset.io import inspect_face, list_faces, read_face, read_raw_dict, read_record, write_record
from dfl.faceset.metadata import META_NAME
from dfl.faceset.pakfile import PAK_NAME
from dfl.faceset.parallel import bar
from dfl.faceset.safe_pickle import dfl_dumps
from dfl.faceset.trash import move_to_trash, rename_no_clobber
from dfl.trash import new_trash_folder
from dfl.xseg.predictor import MaskPredictor, face_masks

APPLY_STATE = ".xseg_apply.json"
WHAT_KEYS = {"labels": "seg_ie_polys", "masks": "xseg_mask"}


def loose_faces(folder: Path) -> list[Path]:
    """The face files the XSeg tools change; DflError for a packed faceset (labels must go into the loose
    files, as DFL's editor says: unpack first) or a folder without faces."""
    folder = Path(folder)
    if (folder / PAK_NAME).is_file():
        raise DflError(f"{folder}: holds a {PAK_NAME}; unpack it first (dfl faceset unpack)")
    files = list_faces(folder)
    if not files:
        raise DflError(f"{folder}: no faces")
    return files


# -- apply -----------------------------------------------------------------------------------------------
@dataclass
class ApplySummary:
    folder: Path
    model: str
    faces: int = 0
    applied: int = 0
    resumed: int = 0                 # faces an interrupted run had done already

    def line(self) -> str:
        again = f" ({self.resumed} done before the interruption)" if self.resumed else ""
        return f"xseg apply: {self.applied} of {self.faces} faces in {self.folder} masked by {self.model}{again}"


def _load_state(path: Path, key: str) -> dict[str, list[int]]:
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(state, dict) or state.get("model") != key or not isinstance(state.get("done"), dict):
        return {}
    return state["done"]


def _stamp(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def apply_masks(folder: Path, predictor: MaskPredictor, batch_size: int = 8, progress: bool = True) -> ApplySummary:
    """Write ``predictor``'s mask (:func:`~dfl.xseg.predictor.face_masks`) into every face of ``folder``.

    Faces an interrupted run of the same model finished (and that have not changed since) are skipped."""
    folder = Path(folder)
    files = loose_faces(folder)
    for p in bar(files, desc="checking faces", progress=progress, leave=False):
        read_record(p)
    state_path = folder / APPLY_STATE
    done = _load_state(state_path, predictor.key)
    todo = [p for p in files if done.get(p.name) != _stamp(p)]
    done = {name: stamp for name, stamp in done.items() if name in {p.name for p in files}}
    summary = ApplySummary(folder, predictor.name, faces=len(files), resumed=len(files) - len(todo))
    with bar(total=len(todo), desc="applying XSeg", progress=progress) as pb:
        for i in range(0, len(todo), max(1, batch_size)):
            batch = todo[i:i + batch_size]
            images, records = zip(*(read_face(p) for p in batch))
            for path, record, mask in zip(batch, records, face_masks(predictor, list(images), list(records))):
                record.xseg_mask = mask
                write_record(path, record)
                done[path.name] = _stamp(path)
                summary.applied += 1
            atomic_write_text(state_path, json.dumps({"model": predictor.key, "done": done}))
            pb.update(len(batch))
    state_path.unlink(missing_ok=True)
    return summary


# -- remove ----------------------------------------------------------------------------------------------
@dataclass
class Stored:
    """A face holding what is to be removed, with its whole metadata (for the backup)."""

    path: Path
    height: int
    width: int
    raw: dict


def find_stored(folder: Path, what: str, progress: bool = True) -> list[Stored]:
    """The faces of ``folder`` that hold ``what`` ("labels": ``seg_ie_polys``, "masks": ``xseg_mask``),
    as DFL's ``has_seg_ie_polys`` / ``has_xseg_mask`` tell.  DflError names the first unreadable face."""
    key = WHAT_KEYS[what]
    found = []
    for p in bar(loose_faces(Path(folder)), desc="reading metadata", progress=progress, leave=False):
        _, (h, w) = inspect_face(p)
        raw = read_raw_dict(p)
        if raw.get(key) is not None:
            found.append(Stored(p, int(h), int(w), raw))
    return found


@dataclass
class RemoveSummary:
    folder: Path
    what: str
    removed: int = 0
    backup: Path | None = None

    def line(self) -> str:
        if not self.removed:
            return f"xseg remove: no face in {self.folder} has XSeg {self.what}"
        return (f"xseg remove: XSeg {self.what} removed from {self.removed} faces in {self.folder}; they are "
                f"saved in {self.backup} (to put them back: move it into {self.folder} and run "
                f"dfl faceset metadata restore)")


def backup_metadata(faces: list[Stored], folder: Path, trash_root: Path, base: Path) -> Path:
    """Write the faces' metadata as DFL's ``meta.dat`` into a new trash folder, at ``folder``'s place
    relative to ``base`` (``trash/<date_time>/data_src/aligned/meta.dat``)."""
    try:
        rel = Path(folder).resolve().relative_to(Path(base).resolve())
    except ValueError:
        rel = Path(Path(folder).name)
    out = new_trash_folder(Path(trash_root)) / rel / META_NAME
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, dfl_dumps({f.path.name: ((f.height, f.width, 3), f.raw) for f in faces}))
    return out


def remove_stored(faces: list[Stored], folder: Path, what: str, trash_root: Path, base: Path,
                  progress: bool = True) -> RemoveSummary:
    """Remove ``what`` from ``faces`` (found by :func:`find_stored`), after backing up their metadata."""
    summary = RemoveSummary(Path(folder), what)
    if not faces:
        return summary
    summary.backup = backup_metadata(faces, folder, trash_root, base)
    for f in bar(faces, desc=f"removing {what}", progress=progress):
        record = read_record(f.path)
        if what == "labels":
            record.seg_ie_polys = None
        else:
            record.xseg_mask = None
        write_record(f.path, record)
        summary.removed += 1
    return summary


# -- fetch -----------------------------------------------------------------------------------------------
def fetch_dir(folder: Path) -> Path:
    """``<folder>_xseg`` beside the faceset (``data_dst/aligned_xseg``), where DFL's fetch copies to."""
    folder = Path(folder)
    return folder.parent / f"{folder.name}_xseg"


@dataclass
class FetchSummary:
    out: Path
    labelled: int = 0
    written: int = 0
    present: int = 0                 # already there, identical
    replaced: int = 0                # older copies of another content, moved to <out>_trash
    moved: bool = False

    def line(self) -> str:
        verb = "moved" if self.moved else "copied"
        parts = [f"xseg fetch: {self.labelled} labelled faces, {self.written} {verb} to {self.out}"]
        if self.present:
            parts.append(f"{self.present} already there")
        if self.replaced:
            parts.append(f"{self.replaced} older copies moved to {self.out.name}_trash")
        return ", ".join(parts)


def fetch_labelled(folder: Path, move: bool = False, progress: bool = True) -> FetchSummary:
    """Copy (``move``: move) the faces with labels to :func:`fetch_dir`.  A face already there unchanged
    is left; a different file of that name goes to ``<out>_trash`` first; with ``move`` a face whose copy
    is already there goes to ``<folder>_trash``.  Nothing is deleted."""
    folder = Path(folder)
    labelled = [p for p in bar(loose_faces(folder), desc="reading labels", progress=progress, leave=False)
                if read_record(p).has_polys]
    out = fetch_dir(folder)
    summary = FetchSummary(out, labelled=len(labelled), moved=move)
    if not labelled:
        return summary
    try:
        out.mkdir(exist_ok=True)
    except OSError as exc:
        raise DflError(f"{out}: cannot create the folder ({exc.strerror or exc})") from None
    for p in bar(labelled, desc="fetching", progress=progress):
        dest = out / p.name
        data = p.read_bytes()
        if dest.exists():
            if dest.read_bytes() == data:
                summary.present += 1
                if move:
                    move_to_trash([p], folder)
                continue
            move_to_trash([dest], out)
            summary.replaced += 1
        if move:
            rename_no_clobber(p, dest)
        else:
            atomic_write_bytes(dest, data)
        summary.written += 1
    return summary
