"""``dfl xseg edit``: the XSeg editor over a faceset folder (DFL's "5.XSeg) data_src/dst mask - edit").

Joins the editor (:mod:`dfl.xseg.editor`, events -> labels), the picture (:mod:`dfl.xseg.draw`) and a UI
that shows pictures and hands over events (:class:`dfl.ui.OpenCVWindow`, or a test's script).  A face's
labels are saved into its metadata when the editor leaves it (next / previous face, trash, quit, window
closed), only when they changed, by replacing the metadata in place atomically (pixels kept byte for
byte), as DFL's editor saves; a crash loses at most the labels of the face on screen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from dfl.errors import DflError
from dfl.faceset.io import read_face, read_record, write_record
from dfl.faceset.parallel import bar
from dfl.faceset.record import FaceRecord
from dfl.faceset.trash import move_to_trash, trash_dir
from dfl.ui import EventUI, OpenCVWindow, display_available
from dfl.xseg.draw import render
from dfl.xseg.editor import Nav, Result, View, XSegEditor
from dfl.xseg.polygons import same_polys
from dfl.xseg.predictor import MaskPredictor, face_masks
from dfl.xseg.tools import loose_faces

WINDOW_SIZE = 800


def save_labels(path: Path, polys: list[dict]) -> bool:
    """Write ``polys`` as the face's labels if they differ from what the file holds; True if written."""
    record = read_record(path)
    if same_polys(record.seg_ie_polys or [], polys):
        return False
    record.seg_ie_polys = [dict(p) for p in polys] or None
    write_record(path, record)
    return True


@dataclass
class EditSummary:
    faces: int = 0
    labelled: int = 0                # faces with labels at the end
    saved: int = 0                   # faces whose labels this session changed
    trashed: int = 0
    unreadable: list[Path] = field(default_factory=list)

    def line(self) -> str:
        extra = f", {self.trashed} moved to the trash" if self.trashed else ""
        bad = f", {len(self.unreadable)} unreadable skipped" if self.unreadable else ""
        return (f"xseg edit: {self.faces} faces, {self.labelled} labelled; labels saved for {self.saved} "
                f"faces{extra}{bad}")


@dataclass
class _Faces:
    """The faceset being edited: files, which have labels, the face on screen."""

    folder: Path
    paths: list[Path]
    labelled: list[bool]
    index: int = 0
    image: np.ndarray | None = None
    record: FaceRecord | None = None
    xseg: np.ndarray | None = None          # the mask shown by 5 and `, once computed for this face
    xseg_done: bool = False

    def find(self, nav: Nav) -> int | None:
        """The face ``nav`` leads to from the current one, or None (nothing there)."""
        n = len(self.paths)
        if nav.kind == "step":
            i = min(max(self.index + nav.step, 0), n - 1)
            return None if i == self.index else i
        want = nav.kind == "labelled"
        i = self.index + nav.step
        while 0 <= i < n:
            if self.labelled[i] == want:
                return i
            i += nav.step
        return None


def _read_labels(paths: list[Path], report: Callable[[str], None],
                 summary: EditSummary) -> tuple[list[Path], list[bool]]:
    kept, labelled = [], []
    for p in bar(paths, desc="reading labels", leave=False):
        try:
            labelled.append(read_record(p).has_polys)
            kept.append(p)
        except DflError as exc:
            summary.unreadable.append(p)
            report(f"{exc}; skipped")
    return kept, labelled


def edit_labels(folder: Path, ui: EventUI | None = None, predictor: MaskPredictor | None = None,
                window_size: int = WINDOW_SIZE, report: Callable[[str], None] = print) -> EditSummary:
    """Label the faces of ``folder`` (see the module docstring).  ``predictor``: a mask model whose masks
    ``5`` and ````` show instead of the masks stored in the faces.  ``ui`` defaults to an OpenCV window."""
    folder = Path(folder)
    summary = EditSummary()
    paths, labelled = _read_labels(loose_faces(folder), report, summary)
    if not paths:
        raise DflError(f"{folder}: no readable faces")
    faces = _Faces(folder, paths, labelled)
    editor = XSegEditor(canvas=(window_size, window_size))
    own_ui = ui is None
    if ui is None:
        ui = OpenCVWindow("dfl xseg editor")
    message = ""

    def open_face() -> None:
        faces.image, faces.record = read_face(faces.paths[faces.index])
        faces.xseg, faces.xseg_done = None, False
        editor.start_face(faces.record.seg_ie_polys, *faces.image.shape[:2])

    def leave_face() -> None:
        path = faces.paths[faces.index]
        polys = editor.finish()
        try:
            if save_labels(path, polys):
                summary.saved += 1
        except DflError as exc:                       # e.g. the file was moved away meanwhile
            report(f"{exc}; its labels were not saved")
            return
        faces.labelled[faces.index] = bool(polys)

    def xseg_mask() -> np.ndarray | None:
        if not faces.xseg_done:
            if predictor is not None:
                faces.xseg = face_masks(predictor, [faces.image], [faces.record])[0]
            else:
                faces.xseg = faces.record.xseg_mask
            faces.xseg_done = True
        return faces.xseg

    def show() -> None:
        wants_mask = editor.view == View.XSEG or editor.overlay
        mask = xseg_mask() if wants_mask else None
        source = "model" if predictor is not None else ("stored" if faces.record.xseg_mask is not None else "none")
        status = (f"{faces.paths[faces.index].name}  {faces.index + 1}/{len(faces.paths)}  "
                  f"labelled {sum(faces.labelled)}  XSeg mask: {source}" + (f"  | {message}" if message else ""))
        ui.show(render(editor, faces.image, mask, status))

    def act(res: Result) -> bool:
        """Carry out a navigation / trash / quit request; False when the session ends."""
        nonlocal message
        if res.quit:
            leave_face()
            return False
        if res.trash:
            leave_face()
            move_to_trash([faces.paths[faces.index]], folder)
            del faces.paths[faces.index], faces.labelled[faces.index]
            summary.trashed += 1
            if not faces.paths:
                return False
            faces.index = min(faces.index, len(faces.paths) - 1)
            message = f"moved to {trash_dir(folder).name}"
            open_face()
            return True
        target = faces.find(res.nav)
        if target is None:
            message = {"step": "no face there", "labelled": "no labelled face that way",
                       "unlabelled": "no unlabelled face that way"}[res.nav.kind]
            return True
        leave_face()
        faces.index = target
        open_face()
        return True

    try:
        open_face()
        show()
        running = True
        while running:
            events = ui.events()
            if events is None:                       # window closed: save and stop
                leave_face()
                break
            redraw = False
            for ev in events:
                res = editor.handle(ev)
                redraw = redraw or res.redraw
                if res.nav is not None or res.trash or res.quit:
                    message = ""
                    if not act(res):
                        running = False
                        break
            if running and redraw:
                show()
    finally:
        if own_ui:
            ui.close()
    summary.faces = len(faces.paths) + summary.trashed
    summary.labelled = sum(faces.labelled)
    return summary


def run_editor(folder: Path, predictor: MaskPredictor | None = None, window_size: int = WINDOW_SIZE,
               ui: EventUI | None = None) -> EditSummary:
    """The CLI's entry: check that a window can open (unless ``ui`` is given), then edit."""
    loose_faces(Path(folder))
    if ui is None:
        ok, why = display_available()
        if not ok:
            raise DflError(f"the XSeg editor needs a window: {why}")
    return edit_labels(Path(folder), ui, predictor, window_size)
