"""Faces of whole frames: detect, turn sideways frames upright, place 68 landmarks, reject non-faces.

This is the full search every still gets, and that a video frame gets when tracking cannot help
(:mod:`dfl.faces.tracker`).  What follows DFL: the rotation retries (0, 90, 270, 180 degrees when nothing
is found; all faces of a frame share the first rotation that finds any), faces under ``min_face_px`` skipped,
largest first, at most ``max_faces``.  What DFL lacks: each landmarked face is checked
(:mod:`dfl.faces.verify`) and dropped, and counted in ``FrameFaces.rejected``, when its confidence is under
``min_confidence``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from dfl.faces.backends import Detector, Landmarker
from dfl.faces.verify import DEFAULT_MIN_CONFIDENCE, FaceVerifier
from dfl.timing import StageTimes, null_times

ROTATIONS = (0, 90, 270, 180)            # DFL's order of retries when no face is found
MIN_FRAME_SIDE = 128                      # DFL does not search frames smaller than this


@dataclass
class FrameFaces:
    """The faces found in one frame, in frame pixels, largest first."""

    rects: list[np.ndarray]                # (5,) l, t, r, b, score
    landmarks: list[np.ndarray]            # (68, 2)
    rotation: int = 0
    confidences: list[float] = field(default_factory=list)  # per face, see dfl.faces.verify
    rejected: int = 0                      # candidates dropped as not a face


# ----------------------------------------------------------------------------------- rotations
def rotate(image: np.ndarray, rot: int) -> np.ndarray:
    """The frame turned as DFL turns it for retry ``rot`` (90 = clockwise)."""
    if rot == 0:
        return image
    code = {90: cv2.ROTATE_90_CLOCKWISE, 270: cv2.ROTATE_90_COUNTERCLOCKWISE, 180: cv2.ROTATE_180}[rot]
    return cv2.rotate(image, code)


def unrotate_points(points: np.ndarray, rot: int, height: int, width: int) -> np.ndarray:
    """Points found in ``rotate(frame, rot)`` back in the frame's own pixels (``height, width`` of it)."""
    p = np.asarray(points, np.float64).reshape(-1, 2)
    x, y = p[:, 0], p[:, 1]
    if rot == 0:
        out = p.copy()
    elif rot == 90:
        out = np.stack([y, height - 1 - x], axis=1)
    elif rot == 270:
        out = np.stack([width - 1 - y, x], axis=1)
    elif rot == 180:
        out = np.stack([width - 1 - x, height - 1 - y], axis=1)
    else:
        raise ValueError(f"rotation {rot}")
    return out.reshape(np.shape(points))


def unrotate_box(box: np.ndarray, rot: int, height: int, width: int) -> np.ndarray:
    """A ``l, t, r, b, score`` box from the rotated frame as an upright box in the frame."""
    l, t, r, b = box[:4]
    pts = unrotate_points(np.array([[l, t], [r, b]]), rot, height, width)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    return np.array([lo[0], lo[1], hi[0], hi[1], box[4]], np.float32)


def rotate_points(points: np.ndarray, rot: int, height: int, width: int) -> np.ndarray:
    """Frame points (frame ``height, width``) in the pixels of ``rotate(frame, rot)``: the frame is that image
    turned back by ``360 - rot``, so this is :func:`unrotate_points` of that turn, in the rotated image's size."""
    if rot not in (0, 90, 180, 270):
        raise ValueError(f"rotation {rot}")
    rh, rw = (width, height) if rot in (90, 270) else (height, width)
    return unrotate_points(points, (360 - rot) % 360, rh, rw)


def _keep_index(boxes: np.ndarray, min_face_px: int, max_faces: int) -> np.ndarray:
    """Indices of boxes big enough, largest first, at most ``max_faces`` (0 = all)."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 5)
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    idx = np.flatnonzero(np.minimum(w, h) >= min_face_px)
    idx = idx[np.argsort(-(w * h)[idx], kind="stable")]
    return idx[:max_faces] if max_faces > 0 else idx


def upright_turn(keypoints: np.ndarray) -> int:
    """Clockwise quarter turn (0/90/180/270) that puts a face upright, from BlazeFace's keypoints.

    The eyes-to-mouth direction should point down the image; a face lying on its side is found by
    BlazeFace as is, but 68-point landmarkers expect it upright, so the frame is turned first.
    """
    eyes = (keypoints[0] + keypoints[1]) / 2.0
    v = keypoints[3] - eyes
    theta = np.degrees(np.arctan2(v[0], v[1]))   # 0 = mouth straight below the eyes
    return int(round(theta / 90.0)) % 4 * 90


def _detect(detector: Detector, images: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """Per image boxes, and keypoints when the detector offers them (BlazeFace)."""
    with_kps = getattr(detector, "detect_with_keypoints", None)
    if callable(with_kps):
        return [(np.asarray(d, np.float32).reshape(-1, 5), np.asarray(k)) for d, k in with_kps(images)]
    return [(np.asarray(d, np.float32).reshape(-1, 5), None) for d in detector.detect(images)]


def find_faces(images: list[np.ndarray], detector: Detector, landmarker: Landmarker,
               min_face_px: int = 40, max_faces: int = 0, verifier: FaceVerifier | None = None,
               min_confidence: float = DEFAULT_MIN_CONFIDENCE, times: StageTimes | None = None) -> list[FrameFaces]:
    """Boxes and 68 landmarks for a batch of frames, retrying rotated frames where no face is found.

    As in DFL, all faces of a frame share one rotation: the first of 0, 90, 270, 180 that finds any.
    When the detector also gives keypoints, a face found lying on its side turns the frame upright for
    the landmarker.  With a ``verifier``, faces whose confidence is under ``min_confidence`` are rejected,
    and a frame whose candidates were all rejected goes on to the next rotation (a sideways face whose
    keypoints BlazeFace misreads gets landmarks that fail the check, then passes turned upright).
    """
    times = times or null_times()
    results = [FrameFaces([], [], 0) for _ in images]
    counted: set[int] = set()   # frames whose rejections are counted (the first rotation with candidates)
    pending = [i for i, im in enumerate(images) if min(im.shape[:2]) >= MIN_FRAME_SIDE]
    for rot in ROTATIONS:
        if not pending:
            break
        candidates = _candidates(images, pending, rot, detector, min_face_px, times)
        with_boxes = [i for i in pending if i in candidates]
        found = _landmark_and_check(images, candidates, with_boxes, landmarker, verifier, min_confidence, times)
        still = []
        for i in pending:
            faces, rejected = found.get(i, (None, 0))
            if i in candidates and i not in counted:
                results[i].rejected, _ = rejected, counted.add(i)
            if not faces:
                still.append(i)
                continue
            h, w = images[i].shape[:2]
            r = results[i]
            r.rotation, r.rejected = candidates[i][1], rejected
            for box, pts, score in faces[:max_faces] if max_faces > 0 else faces:
                r.rects.append(unrotate_box(box, r.rotation, h, w))
                r.landmarks.append(unrotate_points(pts, r.rotation, h, w).astype(np.float32))
                r.confidences.append(float(score))
        pending = still
    return results


def _candidates(images: list[np.ndarray], pending: list[int], rot: int, detector: Detector, min_face_px: int,
                times: StageTimes) -> dict[int, tuple[np.ndarray, int]]:
    """Per frame with boxes big enough: (boxes largest first, the rotation they are in).  A face found lying
    on its side (per the detector's keypoints) moves the frame's rotation on so that it stands upright."""
    with times("detect"):
        found = _detect(detector, [rotate(images[i], rot) for i in pending])
    out = {}
    for i, (b, kps) in zip(pending, found):
        keep = _keep_index(b, min_face_px, 0)  # max_faces applies to the faces that pass the checks
        if not len(keep):
            continue
        has_kps = kps is not None and kps.ndim == 3 and len(kps) == len(b)
        turn = upright_turn(kps[keep[0]]) if has_kps else 0
        b = b[keep]
        if turn:
            h, w = images[i].shape[:2]
            b = np.asarray([_move_box(box, rot, (rot + turn) % 360, h, w) for box in b], np.float32)
        out[i] = (b, (rot + turn) % 360)
    return out


def _landmark_and_check(images: list[np.ndarray], candidates: dict[int, tuple[np.ndarray, int]], frames: list[int],
                        landmarker: Landmarker, verifier: FaceVerifier | None, min_confidence: float,
                        times: StageTimes) -> dict[int, tuple[list[tuple[np.ndarray, np.ndarray, float]], int]]:
    """Per frame: the candidates (in the rotated frame) that got landmarks and passed the check, and the
    number rejected."""
    if not frames:
        return {}
    turned = [rotate(images[i], candidates[i][1]) for i in frames]
    with times("landmarks"):
        lms = landmarker.landmarks(turned, [candidates[i][0] for i in frames])
    placed = []
    for i, lm in zip(frames, lms):
        placed.append([(box, pts) for box, pts in zip(candidates[i][0], np.asarray(lm))
                       if pts.shape == (68, 2) and np.all(np.isfinite(pts))])  # else the landmarker gave up
    if verifier is not None:
        with times("verify"):
            conf = verifier.confidence(turned, [np.asarray([p for _, p in f]).reshape(-1, 68, 2) for f in placed])
    else:
        conf = [np.ones(len(f), np.float32) for f in placed]
    out = {}
    for i, faces, c in zip(frames, placed, conf):
        passed = [(box, pts, float(score)) for (box, pts), score in zip(faces, c) if score >= min_confidence]
        kept: list[tuple[np.ndarray, np.ndarray, float]] = []
        for face in sorted(passed, key=lambda f: -f[2]):   # one entry per face: the most confident framing
            if not any(one_face(landmark_box(face[1]), landmark_box(k[1])) for k in kept):
                kept.append(face)
        kept.sort(key=lambda f: -(f[0][2] - f[0][0]) * (f[0][3] - f[0][1]))   # largest first, as DFL numbers them
        out[i] = (kept, len(faces) - len(passed))
    return out


def overlap(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(IoU, intersection over the smaller box's area) of two ``l, t, r, b`` boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    area_a, area_b = max(a[2] - a[0], 0) * max(a[3] - a[1], 0), max(b[2] - b[0], 0) * max(b[3] - b[1], 0)
    union = area_a + area_b - inter
    return (float(inter / union) if union > 0 else 0.0, float(inter / min(area_a, area_b)) if min(area_a, area_b) > 0 else 0.0)


def one_face(a: np.ndarray, b: np.ndarray) -> bool:
    """Two boxes of one face: they overlap by IoU > 0.3, or one lies mostly (> 60%) inside the other (the
    detector's NMS keeps a box nested in a bigger one, e.g. a hand over the face framed twice)."""
    iou, inside = overlap(a, b)
    return iou > 0.3 or inside > 0.6


def landmark_box(landmarks: np.ndarray) -> np.ndarray:
    """The ``l, t, r, b`` box around (68, 2) points."""
    lo, hi = np.min(landmarks, 0), np.max(landmarks, 0)
    return np.array([lo[0], lo[1], hi[0], hi[1]], np.float64)


def _move_box(box: np.ndarray, rot: int, new_rot: int, height: int, width: int) -> list[float]:
    """A box found in ``rotate(frame, rot)`` as a box in ``rotate(frame, new_rot)``."""
    corners = unrotate_points(np.array([[box[0], box[1]], [box[2], box[3]]]), rot, height, width)
    c = rotate_points(corners, new_rot, height, width)
    return [*c.min(axis=0), *c.max(axis=0), box[4]]
