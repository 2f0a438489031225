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
from dfl.ui import EventUI, OpenCVWindow, require_display
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


def _read_labels(paths: list[Path], report: Callable[[str], None],
                 summary: EditSummary) -> tuple[list[Path], list[bool]]:
    """The readable faces and whether each has labels (DFL's loader pass, for navigation and counts)."""
    kept, labelled = [], []
    for p in bar(paths, desc="reading labels", leave=False):
        try:
            labelled.append(read_record(p).has_polys)
            kept.append(p)
        except DflError as exc:
            summary.unreadable.append(p)
            report(f"{exc}; skipped")
    return kept, labelled


@dataclass
class _Session:
    """The faceset being edited, the face on screen, and what leaving, opening and showing a face does."""

    folder: Path
    paths: list[Path]
    labelled: list[bool]
    editor: XSegEditor
    ui: EventUI
    predictor: MaskPredictor | None
    report: Callable[[str], None]
    summary: EditSummary
    index: int = 0
    image: np.ndarray | None = None
    record: FaceRecord | None = None
    xseg: np.ndarray | None = None          # the mask shown by 5 and `, once computed for this face
    xseg_done: bool = False
    message: str = ""

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

    def open(self) -> bool:
        """Show face ``index``; one whose image does not read is dropped for the next.  False when no
        face is left."""
        while self.paths:
            self.index = min(self.index, len(self.paths) - 1)
            try:
                self.image, self.record = read_face(self.paths[self.index])
            except DflError as exc:
                self.report(f"{exc}; skipped")
                self.summary.unreadable.append(self.paths[self.index])
                del self.paths[self.index], self.labelled[self.index]
                continue
            self.xseg, self.xseg_done = None, False
            self.editor.start_face(self.record.seg_ie_polys, *self.image.shape[:2])
            return True
        return False

    def leave(self) -> None:
        """Save the face's labels if they changed."""
        polys = self.editor.finish()
        try:
            if save_labels(self.paths[self.index], polys):
                self.summary.saved += 1
        except DflError as exc:                       # e.g. the file was moved away meanwhile
            self.report(f"{exc}; its labels were not saved")
            return
        self.labelled[self.index] = bool(polys)

    def xseg_mask(self) -> np.ndarray | None:
        if not self.xseg_done:
            if self.predictor is not None:
                self.xseg = face_masks(self.predictor, [self.image], [self.record])[0]
            else:
                self.xseg = self.record.xseg_mask
            self.xseg_done = True
        return self.xseg

    def show(self) -> None:
        ed = self.editor
        mask = self.xseg_mask() if ed.view == View.XSEG or ed.overlay else None
        source = "model" if self.predictor is not None else "stored" if self.record.xseg_mask is not None else "none"
        status = (f"{self.paths[self.index].name}  {self.index + 1}/{len(self.paths)}  labelled "
                  f"{sum(self.labelled)}  XSeg mask: {source}" + (f"  | {self.message}" if self.message else ""))
        self.ui.show(render(ed, self.image, mask, status))

    def act(self, res: Result) -> bool:
        """Carry out a navigation / trash / quit request; False when the session ends."""
        self.message = ""
        if res.quit:
            self.leave()
            return False
        if res.trash:
            self.leave()
            move_to_trash([self.paths[self.index]], self.folder)
            del self.paths[self.index], self.labelled[self.index]
            self.summary.trashed += 1
            self.message = f"moved to {trash_dir(self.folder).name}"
            return self.open()
        target = self.find(res.nav)
        if target is None:
            self.message = {"step": "no face there", "labelled": "no labelled face that way",
                            "unlabelled": "no unlabelled face that way"}[res.nav.kind]
            return True
        self.leave()
        self.index = target
        return self.open()

    def run(self) -> None:
        running = self.open()
        if running:
            self.show()
        while running:
            events = self.ui.events()
            if events is None:                       # window closed: save and stop
                self.leave()
                break
            redraw = False
            for ev in events:
                res = self.editor.handle(ev)
                redraw = redraw or res.redraw
                if (res.nav is not None or res.trash or res.quit) and not self.act(res):
                    running = False
                    break
            if running and redraw:
                self.show()


def edit_labels(folder: Path, ui: EventUI | None = None, predictor: MaskPredictor | None = None,
                window_size: int = WINDOW_SIZE, report: Callable[[str], None] = print) -> EditSummary:
    """Label the faces of ``folder`` (see the module docstring).  ``predictor``: a mask model whose masks
    ``5`` and ````` show instead of the masks stored in the faces.  ``ui`` defaults to an OpenCV window."""
    folder = Path(folder)
    summary = EditSummary()
    paths, labelled = _read_labels(loose_faces(folder), report, summary)
    if not paths:
        raise DflError(f"{folder}: no readable faces")
    own_ui = ui is None
    ui = ui or OpenCVWindow("dfl xseg editor")
    session = _Session(folder, paths, labelled, XSegEditor(canvas=(window_size, window_size)), ui, predictor,
                       report, summary)
    try:
        session.run()
    finally:
        if own_ui:
            ui.close()
    summary.faces = len(session.paths) + summary.trashed + len(summary.unreadable)
    summary.labelled = sum(session.labelled)
    return summary


def run_editor(folder: Path, predictor: MaskPredictor | None = None, window_size: int = WINDOW_SIZE,
               ui: EventUI | None = None) -> EditSummary:
    """The CLI's entry: check that a window can open (unless ``ui`` is given), then edit."""
    loose_faces(Path(folder))
    if ui is None:
        require_display("the XSeg editor")
    return edit_labels(Path(folder), ui, predictor, window_size)
