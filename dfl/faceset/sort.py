"""``dfl faceset sort``: DeepFaceLab's sort tool, method for method.

A sort reads every face first (so a bad file stops it before anything moves), computes one key per face,
then renames the faces ``00000.jpg, 00001.jpg, ...`` in the new order and moves the faces a method
drops (``oneface``, ``final-by-*``) to ``<folder>_trash/``.  Nothing is deleted, and ``dfl faceset
recover-names`` (:func:`recover_names`) gives every face back the name the extractor gave it, from the
``source_filename`` DFL keeps in each face.

The methods and their meaning are DFL's (``mainscripts/Sorter.py``); their list, :data:`SORT_METHODS`, is
what the CLI offers.  Two deliberate differences: ``final-by-*`` keeps exactly the target number of
faces (DFL's bucket arithmetic can keep far fewer), and files that are not faces are refused instead of
being moved to the trash.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from dfl.errors import DflError
from dfl.faces.align import hull_mask, pitch_yaw_roll
from dfl.faceset.histograms import distance_sums, similarity_chain, unit_sqrt
from dfl.faceset.io import _read_bytes, decode_pixels
from dfl.faceset.parallel import map_faces
from dfl.faceset.source import Face, load_faces
from dfl.faceset.trash import move_to_trash, rename_all, trash_dir
from dfl.imageops.sharpness import cpbd
from dfl.text import plural


@dataclass
class SortOptions:
    target: int = 2000            # final-by-*: faces to keep
    similar: bool = True          # absdiff: most similar first (else most dissimilar)
    device: str = "auto"          # absdiff: where the pairwise differences run
    progress: bool = True


@dataclass
class SortSummary:
    method: str
    folder: Path
    kept: int = 0
    trashed: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        trash = f", {self.trashed} moved to {trash_dir(self.folder)}" if self.trashed else ""
        rate = (self.kept + self.trashed) / self.seconds if self.seconds > 0 else 0.0
        return (f"sort by {self.method}: {plural(self.kept, 'face')} renamed in the new order in {self.folder}{trash}; "
                f"{rate:.1f} faces/s")


Order = tuple[list[int], list[int]]          # (kept faces in the new order, faces to the trash)


@dataclass(frozen=True)
class SortMethod:
    name: str
    description: str              # DFL's menu text
    run: Callable[["_Context"], Order]


@dataclass
class _Context:
    faces: list[Face]
    opts: SortOptions
    cache: dict = field(default_factory=dict)

    def per_face(self, fn: Callable[[Face, np.ndarray], object], desc: str) -> list:
        """``fn(face, bgr pixels)`` for every face, on all cores; a face that does not decode stops the
        sort (DflError)."""
        return map_faces(lambda face: fn(face, decode_pixels(face.path, _read_bytes(face.path))),
                         self.faces, desc, self.opts.progress)


# -- keys ------------------------------------------------------------------------------------------
def _masked(face: Face, img: np.ndarray) -> np.ndarray:
    """The face with everything outside its landmark hull black (DFL's blur and dissimilarity input)."""
    return (img * hull_mask(img.shape, face.record.landmarks)).astype(np.uint8)


def _descending(keys: list) -> Order:
    return sorted(range(len(keys)), key=lambda i: keys[i], reverse=True), []


def _sort_blur(ctx: _Context) -> Order:
    return _descending(ctx.per_face(lambda f, img: cpbd(_masked(f, img)), "sharpness"))


def _sort_motion_blur(ctx: _Context) -> Order:
    return _descending(ctx.per_face(
        lambda f, img: float(cv2.Laplacian(_masked(f, img), cv2.CV_64F, ksize=11).var()), "motion blur"))


def _pose(ctx: _Context, axis: int) -> Order:
    return _descending([pitch_yaw_roll(f.record.landmarks, f.width)[axis] for f in ctx.faces])


def _sort_rect_size(ctx: _Context) -> Order:
    return _descending([f.source_rect_area() for f in ctx.faces])


def _bgr_hist(face: Face, img: np.ndarray) -> np.ndarray:
    return np.stack([cv2.calcHist([img], [c], None, [256], [0, 256]).reshape(-1) for c in range(3)])


def _sort_hist(ctx: _Context) -> Order:
    p = unit_sqrt(np.stack(ctx.per_face(_bgr_hist, "histograms"), axis=1))    # (3, N, 256)
    n = p.shape[1]
    size = 20000                                   # DFL sorts in independent slices of this many
    count = n // size
    if count > 12:
        size = int(n / 11.9)
        count = n // size
    bounds = [(i * size, (i + 1) * size) for i in range(count)] + [(count * size, n)]
    order: list[int] = []
    for a, b in bounds:
        order += [a + i for i in similarity_chain(p[:, a:b])]
    return order, []


def _gray_hist(img: np.ndarray) -> np.ndarray:
    return cv2.calcHist([cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)], [0], None, [256], [0, 256]).reshape(-1)


def _sort_hist_dissim(ctx: _Context) -> Order:
    hists = ctx.per_face(lambda f, img: _gray_hist(_masked(f, img)), "histograms")
    return _descending(distance_sums(unit_sqrt(np.stack(hists))).tolist())


def _hsv_mean(channel: int) -> Callable[[Face, np.ndarray], float]:
    return lambda f, img: float(cv2.cvtColor(img, cv2.COLOR_BGR2HSV)[..., channel].mean())


def _sort_brightness(ctx: _Context) -> Order:
    return _descending(ctx.per_face(_hsv_mean(2), "brightness"))


def _sort_hue(ctx: _Context) -> Order:
    return _descending(ctx.per_face(_hsv_mean(0), "hue"))


def _sort_black(ctx: _Context) -> Order:
    black = ctx.per_face(lambda f, img: int(img.size - np.count_nonzero(img)), "black pixels")
    return sorted(range(len(black)), key=lambda i: black[i]), []


def _sort_origname(ctx: _Context) -> Order:
    for f in ctx.faces:
        if f.record.source_filename is None:
            raise DflError(f"{f.path}: no source_filename in its metadata")
    return sorted(range(len(ctx.faces)), key=lambda i: ctx.faces[i].record.source_filename), []


def _sort_oneface(ctx: _Context) -> Order:
    """Faces of frames that gave more than one face go to the trash (names ``<frame>_<i>``, as
    extracted: recover the names first after another sort)."""
    parsed = {}
    for i, f in enumerate(ctx.faces):
        parts = f.path.stem.split("_")
        if len(parts) == 2 and all(p.isdigit() for p in parts):
            parsed[i] = (int(parts[0]), int(parts[1]))
    crowded = {frame for frame, idx in parsed.values() if idx != 0}
    trash = [i for i, (frame, _) in parsed.items() if frame in crowded]
    keep = [i for i in range(len(ctx.faces)) if i not in set(trash)]
    return keep, trash


def _sort_absdiff(ctx: _Context) -> Order:
    from dfl.faceset.sort_absdiff import absdiff_order
    return absdiff_order(ctx), []


def _sort_final(by_size: bool) -> Callable[[_Context], Order]:
    def run(ctx: _Context) -> Order:
        from dfl.faceset.sort_final import final_order
        return final_order(ctx, by_size)
    return run


SORT_METHODS: dict[str, SortMethod] = {m.name: m for m in (
    SortMethod("blur", "blur (sharpest first)", _sort_blur),
    SortMethod("motion-blur", "motion blur (sharpest first)", _sort_motion_blur),
    SortMethod("face-yaw", "face yaw direction", lambda ctx: _pose(ctx, 1)),
    SortMethod("face-pitch", "face pitch direction", lambda ctx: _pose(ctx, 0)),
    SortMethod("face-source-rect-size", "face rect size in source image (largest first)", _sort_rect_size),
    SortMethod("hist", "histogram similarity", _sort_hist),
    SortMethod("hist-dissim", "histogram dissimilarity", _sort_hist_dissim),
    SortMethod("brightness", "brightness", _sort_brightness),
    SortMethod("hue", "hue", _sort_hue),
    SortMethod("black", "amount of black pixels (least first)", _sort_black),
    SortMethod("origname", "original filename", _sort_origname),
    SortMethod("oneface", "one face in image (frames with several faces to the trash)", _sort_oneface),
    SortMethod("absdiff", "absolute pixel difference", _sort_absdiff),
    SortMethod("final-by-blur", "best faces: yaw/pitch spread, sharpest (keeps --target faces)",
               _sort_final(False)),
    SortMethod("final-by-size", "best faces faster: yaw/pitch spread, largest in the frame",
               _sort_final(True)),
)}


# -- running ---------------------------------------------------------------------------------------
def sort_faceset(folder: str | os.PathLike, method: str, opts: SortOptions | None = None) -> SortSummary:
    """Sort the faces of ``folder`` by ``method`` (a key of :data:`SORT_METHODS`): rename them in the
    new order, move the dropped ones to the trash."""
    import time

    opts = opts or SortOptions()
    folder = Path(folder)
    if method not in SORT_METHODS:
        raise DflError(f"sort method {method!r}: choose one of {', '.join(SORT_METHODS)}")
    if not folder.is_dir():
        raise DflError(f"{folder}: no such folder")
    start = time.perf_counter()
    ctx = _Context(load_faces(folder, opts.progress), opts)
    keep, trash = SORT_METHODS[method].run(ctx)
    if sorted(keep + trash) != list(range(len(ctx.faces))):
        raise AssertionError(f"sort {method} lost or repeated faces")
    summary = SortSummary(method, folder, kept=len(keep), trashed=len(trash))
    move_to_trash([ctx.faces[i].path for i in trash], folder)
    moves = [(ctx.faces[i].path, folder / f"{n:05d}{ctx.faces[i].path.suffix}") for n, i in enumerate(keep)]
    rename_all(moves, f"sorting{os.getpid()}")
    summary.seconds = time.perf_counter() - start
    return summary


# -- recover original names -------------------------------------------------------------------------
@dataclass
class RecoverSummary:
    folder: Path
    renamed: int = 0
    unchanged: int = 0

    def line(self) -> str:
        their = "its" if self.unchanged == 1 else "their"
        return (f"recover-names: {plural(self.renamed, 'face')} renamed, {self.unchanged} already had {their} name, "
                f"in {self.folder}")


def recover_names(folder: str | os.PathLike, progress: bool = True) -> RecoverSummary:
    """Give every face the name extraction gave it: ``<source frame stem>_<i>``, faces of one frame
    numbered largest in the frame first (as the extractor numbers them)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DflError(f"{folder}: no such folder")
    faces = load_faces(folder, progress)
    by_frame: dict[str, list[Face]] = {}
    for f in faces:
        if not f.record.source_filename:
            raise DflError(f"{f.path}: no source_filename in its metadata; its original name is unknown")
        by_frame.setdefault(Path(f.record.source_filename).stem, []).append(f)
    moves = []
    for stem, group in by_frame.items():
        areas = [-f.source_rect_area() if f.record.source_rect is not None else 0.0 for f in group]
        ordered = [group[i] for i in sorted(range(len(group)), key=lambda i: areas[i])]
        moves += [(f.path, folder / f"{stem}_{i}{f.path.suffix}") for i, f in enumerate(ordered)]
    targets = [d for _, d in moves]
    if len(set(targets)) != len(targets):
        raise DflError(f"{folder}: two faces would get the same name; nothing was renamed")
    rename_all(moves, f"recovering{os.getpid()}")
    unchanged = sum(s == d for s, d in moves)
    return RecoverSummary(folder, renamed=len(moves) - unchanged, unchanged=unchanged)
