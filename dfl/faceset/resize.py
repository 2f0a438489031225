"""``dfl faceset resize``: DFL's faceset resizer, a new image size and/or face type for every face.

The faces are re-warped from their own metadata, as DFL does: a new face type is cut out of the aligned
face with the transform its landmarks give for that type (so a narrower type is exact, and a wider one
has black where the old face ended); a new size alone is a Lanczos resize.  Everything the metadata says
about pixels follows the face: landmarks, XSeg polygons, the XSeg mask (warped and cut at 0.5 as DFL
does) and the frame-to-face matrix (recomputed from the source landmarks, so merging stays exact).  With
``frames_dir`` each face is cut again from its source frame instead, when that frame is there: a wider
face type then has real pixels, and the result is what a fresh extraction would give.

Results go to ``<folder>_resized/`` (DFL's folder); merging them (the default, as DFL asks) moves each
original to ``<folder>_trash/`` and the resized face into its place.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from dfl.errors import DflError
from dfl.faces.align import FaceType, transform_matrix, transform_points
from dfl.faceset.io import read_face, write_face
from dfl.faceset.parallel import map_faces
from dfl.faceset.record import FaceRecord
from dfl.faceset.source import Face, load_faces
from dfl.faceset.trash import free_name, rename_no_clobber, trash_dir
from dfl.text import plural

FRAME_INTERPOLATION = cv2.INTER_LINEAR     # as the extractor cuts faces (see dfl.extract.INTERPOLATIONS)
# DFL's choices ('same' keeps each face's type), by DFL's short names and full names
RESIZE_FACE_TYPES = ("same", "h", "mf", "f", "wf", "head", "half_face", "midfull_face", "full_face", "whole_face")


@dataclass
class ResizeOptions:
    image_size: int = 512
    face_type: str | None = None          # None: keep each face's type
    jpeg_quality: int = 100               # DFL writes resized faces at 100
    merge: bool = True                    # replace the faces in the folder (originals to the trash)
    frames_dir: Path | None = None        # cut faces again from these frames where possible
    progress: bool = True


@dataclass
class ResizeSummary:
    folder: Path
    output: Path
    faces: int = 0
    from_frames: int = 0
    merged: bool = False
    seconds: float = 0.0

    def line(self, size: int, face_type: str | None) -> str:
        what = f"{size}px" + (f" {face_type}" if face_type else "")
        rate = self.faces / self.seconds if self.seconds > 0 else 0.0
        frames = f" ({self.from_frames} cut again from their frames)" if self.from_frames else ""
        where = (f"in {self.folder} (originals in {trash_dir(self.folder)})" if self.merged
                 else f"in {self.output}")
        return f"resize: {plural(self.faces, 'face')} to {what}{frames} {where}; {rate:.1f} faces/s"


def _affine3(mat: np.ndarray) -> np.ndarray:
    return np.vstack([np.asarray(mat, np.float64), [0.0, 0.0, 1.0]])


def _new_face_mat(rec: FaceRecord, old_mat: np.ndarray, size: int, ft: FaceType) -> np.ndarray | None:
    """The frame -> new face matrix: from the source landmarks (DFL), else the old one composed."""
    if rec.image_to_face_mat is None:
        return None
    if rec.source_landmarks is not None:
        return transform_matrix(rec.source_landmarks, size, ft)
    return (_affine3(old_mat) @ _affine3(rec.image_to_face_mat))[:2]


def _frame_for(rec: FaceRecord, frames_dir: Path | None) -> np.ndarray | None:
    if frames_dir is None or not rec.source_filename or rec.source_landmarks is None:
        return None
    path = frames_dir / rec.source_filename
    if not path.is_file():
        return None
    img = cv2.imdecode(np.fromfile(str(path), np.uint8), cv2.IMREAD_COLOR)
    return img


def resize_face(img: np.ndarray, rec: FaceRecord, size: int, face_type: FaceType | None,
                frame: np.ndarray | None = None) -> tuple[np.ndarray, FaceRecord]:
    """One face at ``size`` (and ``face_type``), with its metadata moved along; ``frame`` (its source
    frame, optional) is cut again instead of re-warping the aligned face."""
    h, w = img.shape[:2]
    rec = rec.copy()
    cur_ft = rec.face_type_enum
    ft = cur_ft if face_type is None else FaceType(face_type)
    if face_type is None and frame is None:
        mat = np.array([[size / w, 0, 0], [0, size / h, 0]], np.float64)     # a plain resize
        out = cv2.resize(img, (size, size), interpolation=cv2.INTER_LANCZOS4)
    else:
        mat = transform_matrix(rec.landmarks, size, ft)                     # aligned face -> new face
        out = cv2.warpAffine(img, mat, (size, size), flags=cv2.INTER_LANCZOS4) if frame is None else img
    landmarks = transform_points(np.asarray(rec.landmarks, np.float32), mat)
    if frame is not None:                                                   # as a fresh extraction
        frame_mat = transform_matrix(rec.source_landmarks, size, ft)
        out = cv2.warpAffine(frame, frame_mat, (size, size), flags=FRAME_INTERPOLATION)
        landmarks = transform_points(np.asarray(rec.source_landmarks, np.float32), frame_mat)
    if rec.xseg_mask is not None and ft != cur_ft:
        m = rec.xseg_mask.shape[0]
        mmat = transform_matrix(np.asarray(rec.landmarks, np.float64) * (m / w), m, ft)
        mask = cv2.warpAffine(rec.xseg_mask.astype(np.float32), mmat, (m, m), flags=cv2.INTER_LANCZOS4)
        rec.xseg_mask = (mask >= 0.5).astype(np.float32)
    if rec.seg_ie_polys:
        rec.seg_ie_polys = [{"type": p["type"], "pts": transform_points(np.asarray(p["pts"], np.float32), mat)}
                            for p in rec.seg_ie_polys]
    rec.landmarks = landmarks
    rec.image_to_face_mat = _new_face_mat(rec, mat, size, ft)
    rec.face_type = ft.to_string()
    return out, rec


def resize_faceset(folder: str | os.PathLike, opts: ResizeOptions) -> ResizeSummary:
    """Resize (and/or change the face type of) every face in ``folder``; see the module docstring."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DflError(f"{folder}: no such folder")
    if not 64 <= opts.image_size <= 4096:
        raise DflError(f"--image-size {opts.image_size}: must be between 64 and 4096")
    ft = None if opts.face_type in (None, "same") else FaceType.from_string(opts.face_type)
    if ft == FaceType.MARK_ONLY:
        raise DflError("--face-type mark_only: mark_only faces are not aligned, there is nothing to resize to")
    start = time.perf_counter()
    faces = load_faces(folder, opts.progress)
    for f in faces:
        if f.height != f.width:
            raise DflError(f"{f.path}: {f.width}x{f.height} is not a square aligned face")
        if f.record.face_type_enum == FaceType.MARK_ONLY:
            raise DflError(f"{f.path}: a mark_only face (a whole frame) cannot be resized")
    out_dir = folder.parent / f"{folder.name}_resized"
    out_dir.mkdir(exist_ok=True)
    summary = ResizeSummary(folder, out_dir)

    def one(face: Face) -> bool:
        img, rec = read_face(face.path)
        frame = _frame_for(rec, opts.frames_dir)
        new_img, new_rec = resize_face(img, rec, opts.image_size, ft, frame)
        write_face(out_dir / face.path.name, new_img, new_rec, opts.jpeg_quality)
        return frame is not None

    used_frames = map_faces(one, faces, "resize", opts.progress)
    summary.faces, summary.from_frames = len(faces), sum(used_frames)
    if opts.merge:
        trash = trash_dir(folder)
        trash.mkdir(exist_ok=True)
        for f in faces:
            rename_no_clobber(f.path, free_name(trash, f.path.name))
            rename_no_clobber(out_dir / f.path.name, f.path)
        try:
            out_dir.rmdir()
        except OSError:
            pass                      # other files were there before: leave the folder
        summary.merged = True
    summary.seconds = time.perf_counter() - start
    return summary
