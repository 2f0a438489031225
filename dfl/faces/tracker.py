"""Faces of a video, frame by frame: landmarks from where the last frame's faces were, the detector only
when needed.

Why: frames of one video follow each other, so the last frame's landmarks say where to look.  Searching
a whole 720p frame for faces down to 40 px (BlazeFace on ~15 tiles) costs 5-10x what placing landmarks
in a known spot does.  This is MediaPipe's face-mesh tracking, with DFL's rules for what is a face:

* a tracked face gets its landmarks from a crop around its previous ones (``FaceMeshLandmarker.track``:
  one pass; other landmarkers get a box made from the previous landmarks), and is kept while the
  landmarker's face-presence score (FaceMesh) stays >= ``MIN_PRESENCE``, its box >= ``min_face_px`` and
  its confidence (:class:`dfl.faces.verify.FaceVerifier`, checked every ``VERIFY_TRACKED_EVERY`` frames:
  a face that passed the check when found rarely stops being one between two checks, and each costs
  about a third of a landmark pass) >= ``min_confidence``;
* the full search (:func:`dfl.faces.find.find_faces`) runs when nothing is tracked, when a tracked face is
  lost, every ``detect_every`` frames (so a face that enters is found within that many frames), and on a
  discontinuity: ``step(frame, continuous=False)`` (stills, frames out of order), a new frame size, or a
  cut (the frame's 32x32 thumbnail far from the last one's);
* when the detector runs, its faces replace the tracked ones they overlap; tracked faces it missed are
  still tracked (a small face the tiles did not catch this time is not dropped).

``FaceTracker`` is a small stateful object with one method per frame, so ``dfl extract-faces`` and a live
stream use it the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from dfl.faces.backends import Detector, Landmarker
from dfl.faces.find import FrameFaces, find_faces, landmark_box, one_face, rotate, rotate_points, unrotate_points
from dfl.faces.verify import DEFAULT_MIN_CONFIDENCE, FaceVerifier
from dfl.timing import StageTimes, null_times

DEFAULT_DETECT_EVERY = 10   # frames; 0.3-0.4 s at 25-30 fps
MIN_PRESENCE = 0.5          # MediaPipe's min_tracking_confidence
CUT_THRESHOLD = 40.0        # mean absolute difference of 32x32 thumbnails (0-255) that counts as a cut
VERIFY_TRACKED_EVERY = 3    # tracked faces get the confidence check every N frames (and whenever searched)


@dataclass
class TrackedFace:
    """A face as the tracker carries it to the next frame."""

    rect: np.ndarray          # (5,) l, t, r, b, score in frame pixels (the detector's framing)
    landmarks: np.ndarray     # (68, 2) frame pixels
    confidence: float
    box_offset: np.ndarray    # (4,) the detector's box minus the landmarks' box, in that box's sides
    rotation: int = 0         # the frame turn its detection needed (box-based landmarkers work upright)


@dataclass
class TrackerStats:
    frames: int = 0
    detections: int = 0       # frames where the full search ran
    lost: int = 0             # tracked faces dropped (presence, confidence or size)
    rejected: int = 0         # detector candidates rejected as not faces


def box_offset(rect: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """Where the detector framed the face relative to its landmarks (so tracked faces keep that framing)."""
    lb = landmark_box(landmarks)
    size = np.maximum(lb[2:] - lb[:2], 1e-6)
    return (np.asarray(rect[:4], np.float64) - lb) / np.tile(size, 2)


def rect_from_landmarks(landmarks: np.ndarray, offset: np.ndarray, score: float) -> np.ndarray:
    """A detector-style ``l, t, r, b, score`` box for landmarks, framed as ``offset`` (see :func:`box_offset`)."""
    lb = landmark_box(landmarks)
    size = np.tile(np.maximum(lb[2:] - lb[:2], 1e-6), 2)
    return np.append(lb + offset * size, score).astype(np.float32)


def same_face(a: TrackedFace, b: TrackedFace) -> bool:
    """Two entries for one face: their boxes or their landmarks' boxes overlap (:func:`dfl.faces.find.one_face`)."""
    return one_face(a.rect, b.rect) or one_face(landmark_box(a.landmarks), landmark_box(b.landmarks))


def _distinct(faces: list[TrackedFace]) -> list[TrackedFace]:
    """One entry per face (the first listed: fresh detections come before tracked faces), so two tracks
    that drift onto one face, or a track beside a detection framed differently, never write it twice."""
    out: list[TrackedFace] = []
    for f in faces:
        if not any(same_face(f, o) for o in out):
            out.append(f)
    return out


def _thumb(frame: np.ndarray) -> np.ndarray:
    """32x32 for the cut check, from every 8th pixel first (INTER_AREA over a whole 720p frame costs ~5 ms)."""
    return cv2.resize(frame[::8, ::8], (32, 32), interpolation=cv2.INTER_AREA).astype(np.int16)


class FaceTracker:
    """``step(frame) -> FrameFaces`` for consecutive frames of one video (see the module docstring)."""

    def __init__(self, detector: Detector, landmarker: Landmarker, verifier: FaceVerifier | None = None, *,
                 min_face_px: int = 40, max_faces: int = 0, detect_every: int = DEFAULT_DETECT_EVERY,
                 min_confidence: float = DEFAULT_MIN_CONFIDENCE, times: StageTimes | None = None) -> None:
        self.detector, self.landmarker, self.verifier = detector, landmarker, verifier
        self.min_face_px, self.max_faces = min_face_px, max_faces
        self.detect_every = max(1, int(detect_every))
        self.min_confidence = min_confidence
        self.times = times or null_times()
        self.stats = TrackerStats()
        self.reset()

    def reset(self) -> None:
        """Forget the faces: the next frame gets the full search."""
        self.faces: list[TrackedFace] = []
        self._since_detect = 0
        self._tracked_frames = 0
        self._thumb: np.ndarray | None = None
        self._shape: tuple[int, ...] | None = None

    def observe(self, frame: np.ndarray, faces: FrameFaces) -> None:
        """Take ``faces``, found by a full search of ``frame`` elsewhere (a batch of stills), as the faces to
        track into the next frame."""
        self.reset()
        self._thumb, self._shape = _thumb(frame), frame.shape
        self.faces = [TrackedFace(np.asarray(r, np.float32), np.asarray(lm, np.float32), c, box_offset(r, lm), faces.rotation)
                      for r, lm, c in zip(faces.rects, faces.landmarks, faces.confidences or [1.0] * len(faces.rects))]

    def step(self, frame: np.ndarray, continuous: bool = True) -> FrameFaces:
        """The faces of ``frame``, the frame after the last one stepped unless ``continuous`` is False."""
        self.stats.frames += 1
        thumb = _thumb(frame)
        cut = (not continuous or frame.shape != self._shape or self._thumb is None
               or float(np.abs(thumb - self._thumb).mean()) > CUT_THRESHOLD)
        self._thumb, self._shape = thumb, frame.shape
        previous = [] if cut else self.faces
        due = not previous or self.detect_every <= 1 or self._since_detect + 1 >= self.detect_every
        rejected = 0
        if due:
            faces, rejected = self._detect_and_keep(frame, previous)
        else:
            faces, lost = self._track(frame, previous)
            self._since_detect += 1
            if lost:  # a face left, turned away or was covered: look again, keeping the ones still tracked
                faces, rejected = self._detect_and_keep(frame, faces, retrack=False)
        faces = _distinct(faces)
        faces.sort(key=lambda f: -(f.rect[2] - f.rect[0]) * (f.rect[3] - f.rect[1]))
        if self.max_faces > 0:
            faces = faces[:self.max_faces]
        self.faces = faces
        return FrameFaces([f.rect for f in faces], [f.landmarks for f in faces], 0,
                          [f.confidence for f in faces], rejected)

    # ------------------------------------------------------------------------------- the two paths
    def _detect_and_keep(self, frame: np.ndarray, previous: list[TrackedFace],
                         retrack: bool = True) -> tuple[list[TrackedFace], int]:
        """Full search; previous faces it did not find again are tracked (``retrack``) or kept as they are
        (already tracked on this frame).  Returns the faces and the number of candidates rejected."""
        self.stats.detections += 1
        self._since_detect = 0
        (found,) = find_faces([frame], self.detector, self.landmarker, self.min_face_px, 0, self.verifier,
                              self.min_confidence, self.times)
        self.stats.rejected += found.rejected
        faces = [TrackedFace(r, lm, c, box_offset(r, lm), found.rotation)
                 for r, lm, c in zip(found.rects, found.landmarks, found.confidences)]
        missed = [p for p in previous if not any(same_face(p, f) for f in faces)]
        if missed and retrack:
            missed, _ = self._track(frame, missed, verify=True)
        return faces + [m for m in missed if not any(same_face(m, f) for f in faces)], found.rejected

    def _track(self, frame: np.ndarray, previous: list[TrackedFace],
               verify: bool = False) -> tuple[list[TrackedFace], bool]:
        """Landmarks for ``previous`` faces from their last position; returns the kept ones and whether any was
        lost.  The confidence check runs when ``verify`` or on every ``VERIFY_TRACKED_EVERY``-th tracked frame."""
        if not previous:
            return [], False
        with self.times("landmarks"):
            landmarks, presence = self._track_landmarks(frame, previous)
        self._tracked_frames += 1
        if self.verifier is not None and (verify or self._tracked_frames % VERIFY_TRACKED_EVERY == 0):
            with self.times("verify"):
                (conf,) = self.verifier.confidence([frame], [landmarks])
        else:
            conf = np.array([p.confidence for p in previous], np.float32)
        kept = []
        for p, lm, pr, c in zip(previous, landmarks, presence, conf):
            rect = rect_from_landmarks(lm, p.box_offset, float(p.rect[4]))
            side = min(rect[2] - rect[0], rect[3] - rect[1])
            if pr < MIN_PRESENCE or c < self.min_confidence or side < self.min_face_px or not np.all(np.isfinite(lm)):
                continue
            kept.append(TrackedFace(rect, lm.astype(np.float32), float(c), p.box_offset, p.rotation))
        self.stats.lost += len(previous) - len(kept)
        return kept, len(kept) < len(previous)

    def _track_landmarks(self, frame: np.ndarray, previous: list[TrackedFace]) -> tuple[np.ndarray, np.ndarray]:
        """(K, 68, 2) landmarks and (K,) presence (1 where the landmarker has no such score)."""
        track = getattr(self.landmarker, "track", None)
        if callable(track):
            ((lms, presence),) = track([frame], [np.stack([p.landmarks for p in previous])])
            return np.asarray(lms, np.float64), np.asarray(presence, np.float64)
        h, w = frame.shape[:2]
        out = np.zeros((len(previous), 68, 2))
        for rot in sorted({p.rotation for p in previous}):
            idx = [i for i, p in enumerate(previous) if p.rotation == rot]
            boxes = []
            for i in idx:
                p = previous[i]
                r = rect_from_landmarks(p.landmarks, p.box_offset, float(p.rect[4]))
                c = rotate_points(np.array([[r[0], r[1]], [r[2], r[3]]]), rot, h, w)
                boxes.append([*c.min(0), *c.max(0), r[4]])
            (lms,) = self.landmarker.landmarks([rotate(frame, rot)], [np.asarray(boxes, np.float32)])
            for i, lm in zip(idx, np.asarray(lms)):
                out[i] = unrotate_points(lm, rot, h, w)
        return out, np.ones(len(previous))
