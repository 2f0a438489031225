"""Manual face extraction (``dfl extract-faces --manual / --fix / --manual-fix``): DFL's "Manual pass".

Which frames: every frame (``manual``), the frames whose debug image the user deleted from
``aligned_debug`` (``fix``: DFL's "MANUAL RE-EXTRACT DELETED ALIGNED_DEBUG"), or the frames that have no
face after an automatic pass (``missing``: DFL's "extract + manual fix").

The session joins three parts: the editor (:mod:`dfl.faces.manual`, events -> state), the drawing
(:mod:`dfl.faces.manual_draw`) and a UI that shows pictures and hands over events (an OpenCV window, or
a test's script).  Faces are written as soon as a frame is done, by the extractor's own writer, so an
interrupted session keeps every face accepted so far.  A face accepted for a frame replaces that frame's
``<frame>_0`` face; a replaced face from an earlier run goes to ``aligned_trash/``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from dfl.errors import DflError
from dfl.extract import ExtractOptions, FrameFaces, read_frame, write_frame_faces
from dfl.faces.align import FaceType
from dfl.faces.backends import Landmarker
from dfl.faces.manual import FaceMark, ManualEditor
from dfl.faces.manual_draw import render, view_image
from dfl.faceset.io import FACE_EXTENSIONS, inspect_face, list_faces, read_record
from dfl.faceset.trash import move_to_trash
from dfl.ui import EventUI, OpenCVWindow, require_display
from dfl.workspace import list_images

MODES = ("manual", "fix", "missing")


# -- which frames ------------------------------------------------------------------------------------
def _faces_by_frame(aligned_dir: Path) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {}
    if aligned_dir.is_dir():
        for p in aligned_dir.iterdir():
            if p.suffix.lower() in FACE_EXTENSIONS and "_" in p.stem and not p.name.startswith("."):
                out.setdefault(p.stem.rsplit("_", 1)[0], []).append(p)
    return out


def _frames_with_faces(aligned_dir: Path) -> set[str]:
    """Stems of the frames that have a face: by the faces' names, and by the source frame their
    metadata names (sorted faces are called 00000.jpg ...)."""
    stems = set(_faces_by_frame(aligned_dir))
    for p in list_faces(aligned_dir) if aligned_dir.is_dir() else []:
        try:
            source = read_record(p).source_filename
        except DflError:
            continue
        if source:
            stems.add(Path(source).stem)
    return stems


def select_frames(mode: str, frames_dir: Path, aligned_dir: Path, debug_dir: Path) -> list[Path]:
    """The frames a manual session of ``mode`` goes through, in name order."""
    frames = list_images(frames_dir)
    if not frames:
        raise DflError(f"{frames_dir}: no frames; run  dfl extract-frames  first")
    if mode == "manual":
        return frames
    if mode == "fix":
        if not debug_dir.is_dir():
            raise DflError(f"{debug_dir}: no debug images; extract the faces with --output-debug, delete the "
                           "debug images of the frames to fix, then run --fix")
        kept = {p.stem for p in list_images(debug_dir)}
        return [p for p in frames if p.stem not in kept]
    if mode == "missing":
        return [p for p in frames if p.stem not in _frames_with_faces(aligned_dir)]
    raise ValueError(f"mode {mode!r}")


def faceset_options(aligned_dir: Path) -> tuple[FaceType, int] | None:
    """Face type and size of the faces already in ``aligned_dir`` (DFL's --fix takes them from there)."""
    for faces in sorted(_faces_by_frame(aligned_dir).values()):
        for p in sorted(faces):
            try:
                rec, (h, _) = inspect_face(p)
                return rec.face_type_enum, int(h)
            except DflError:
                continue
    return None


# -- landmarks -------------------------------------------------------------------------------------------
def find_landmarks(landmarker: Landmarker, frame: np.ndarray, rect: tuple[int, int, int, int],
                   accurate: bool = True) -> np.ndarray | None:
    """68 landmarks of the face in the square ``rect``; ``accurate`` runs a second pass on the box the
    first pass's landmarks span (DFL's accurate mode refines its first guess the same way)."""
    box = np.array([[*rect, 1.0]], np.float32)
    for _ in range(2 if accurate else 1):
        found = np.asarray(landmarker.landmarks([frame], [box])[0])
        if found.ndim != 3 or not len(found) or not np.all(np.isfinite(found[0])):
            return None
        lm = found[0].astype(np.float32)
        box = np.array([[*lm.min(axis=0), *lm.max(axis=0), 1.0]], np.float32)
    return lm


# -- UI --------------------------------------------------------------------------------------------------
ManualUI = EventUI            # show(image), events() -> list | None (closed), close()


def _open_window() -> EventUI:
    return OpenCVWindow("dfl manual extract")


# -- the session ---------------------------------------------------------------------------------------
@dataclass
class ManualSummary:
    frames: int = 0               # frames to go through
    faces: int = 0                # faces written
    skipped: int = 0              # frames done without a face
    replaced: int = 0             # earlier faces moved to the trash
    unreadable: list[Path] = field(default_factory=list)
    stopped_at: int | None = None

    def line(self, side: str | None = None) -> str:
        head = f"extract-faces {side} (manual): " if side else "extract-faces (manual): "
        stop = f"; stopped at frame {self.stopped_at + 1}" if self.stopped_at is not None else ""
        return (f"{head}{self.frames} frames, {self.faces} faces written, {self.skipped} skipped, "
                f"{self.replaced} earlier faces moved to aligned_trash, {len(self.unreadable)} unreadable{stop}")


@dataclass
class _Session:
    frames: list[Path]
    aligned_dir: Path
    opts: ExtractOptions
    debug_dir: Path | None
    landmarker: Landmarker
    report: Callable[[str], None]
    summary: ManualSummary
    written: dict[int, Path] = field(default_factory=dict)      # faces this session wrote, by frame
    image: np.ndarray | None = None
    image_index: int = -1

    def load(self, i: int) -> np.ndarray | None:
        if self.image_index != i:
            self.image, self.image_index = read_frame(self.frames[i]), i
        return self.image

    def commit(self, i: int, mark: FaceMark | None) -> None:
        """Write frame ``i``'s face (or only its debug image), replacing the frame's ``_0`` face."""
        path = self.frames[i]
        image = self.load(i)
        if image is None:
            return
        if mark is None:
            if i in self.written:                                 # a face accepted earlier, now skipped
                move_to_trash([self.written.pop(i)], self.aligned_dir)
            self.summary.skipped += 1
            write_frame_faces(path, image, FrameFaces([], []), self.aligned_dir, self.opts, self.debug_dir, [])
            return
        if i not in self.written:
            old = [p for p in self.aligned_dir.glob(f"{path.stem}_0.*") if p.suffix.lower() in FACE_EXTENSIONS]
            move_to_trash(old, self.aligned_dir)
            self.summary.replaced += len(old)
        rect = np.array([*mark.rect, 1.0], np.float32)
        n = write_frame_faces(path, image, FrameFaces([rect], [mark.landmarks]), self.aligned_dir, self.opts,
                              self.debug_dir, [])
        if n:
            self.written[i] = self.aligned_dir / f"{path.stem}_0.jpg"
            self.summary.faces += 1
        else:
            self.report(f"{path}: the square is too small for its landmarks (DFL's sanity check); face not written")


def manual_extract(frames: list[Path], aligned_dir: Path, landmarker: Landmarker, opts: ExtractOptions,
                   debug_dir: Path | None = None, ui: ManualUI | None = None, window_size: int = 1368,
                   report: Callable[[str], None] = print) -> ManualSummary:
    """Place faces by hand in ``frames`` (see the module docstring); faces go to ``aligned_dir``, debug
    images to ``debug_dir`` when given.  ``ui`` defaults to an OpenCV window."""
    aligned_dir = Path(aligned_dir)
    aligned_dir.mkdir(parents=True, exist_ok=True)
    if debug_dir is not None:
        Path(debug_dir).mkdir(parents=True, exist_ok=True)
    summary = ManualSummary(frames=len(frames))
    if not frames:
        return summary
    session = _Session(list(frames), aligned_dir, opts, debug_dir, landmarker, report, summary)
    editor = ManualEditor(len(frames), window_size=window_size)
    face_type, size = FaceType(opts.face_type), opts.image_size
    own_ui = ui is None
    ui = ui or _open_window()
    view = None

    def show_frame() -> bool:
        """Open ``editor.index``; False when every frame is done."""
        nonlocal view
        while editor.index < len(frames):
            image = session.load(editor.index)
            if image is not None:
                editor.start_frame(*image.shape[:2])
                view = view_image(image, editor.view_scale)
                return True
            summary.unreadable.append(frames[editor.index])
            report(f"{frames[editor.index]}: unreadable or corrupt image, skipped")
            editor.index += 1
        return False

    def refresh(landmarks: bool) -> None:
        if landmarks and not editor.locked and not editor.by_hand:
            editor.set_landmarks(find_landmarks(landmarker, session.image, editor.rect, editor.accurate))
        ui.show(render(editor, view, face_type, size, frames[editor.index].name))

    try:
        if not show_frame():
            return summary
        refresh(True)
        while True:
            events = ui.events()
            if events is None:
                summary.stopped_at = editor.index
                break
            need = redraw = quit_ = False
            for ev in events:
                res = editor.handle(ev)
                for i, mark in res.done:
                    session.commit(i, mark)
                if res.quit:
                    quit_ = True
                    break
                if res.moved and not show_frame():
                    return summary
                need, redraw = need or res.landmarks_needed, redraw or res.redraw
            if quit_:
                summary.stopped_at = editor.index
                break
            if need or redraw:
                refresh(need)
    finally:
        if own_ui:
            ui.close()
    return summary


def run_manual(mode: str, frames_dir: Path, aligned_dir: Path, debug_dir: Path, landmarker: Landmarker,
               opts: ExtractOptions, window_size: int = 1368, ui: ManualUI | None = None) -> ManualSummary:
    """The CLI's entry: pick the frames for ``mode`` (one of :data:`MODES`), check that a window can
    open, run the session.  Debug images go to ``debug_dir`` when ``opts.output_debug`` (always for fix,
    so a fixed frame's debug image is back)."""
    frames = select_frames(mode, Path(frames_dir), Path(aligned_dir), Path(debug_dir))
    if frames and ui is None:
        require_display("manual extraction")
    write_debug = opts.output_debug or mode == "fix"
    return manual_extract(frames, aligned_dir, landmarker, opts, Path(debug_dir) if write_debug else None, ui,
                          window_size)
