"""Optional dlib backends: the HOG (or MMOD CNN) face detector and the 68-point shape predictor.

dlib is an optional extra (``pip install "dfl[dlib]"``) because it needs a C++ build on many systems, so
it is imported only when one of these backends is asked for, and its model files come from the
weights folder: ``shape_predictor_68_face_landmarks.dat`` and, for the CNN detector,
``mmod_human_face_detector.dat`` (without it the built-in HOG detector runs).
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import cv2
import numpy as np

from dfl.errors import DflError
from dfl.faces.backends import empty_boxes, sort_by_area
from dfl.faces.weights import DLIB_CNN_FILES, DLIB_SHAPE_FILES, find_weights, require_weights


def import_dlib() -> ModuleType:
    """dlib, or a one-line error saying how to install it."""
    try:
        import dlib  # type: ignore[import-not-found]
    except ImportError:
        raise DflError('dlib: not installed; install it with  pip install "dfl[dlib]"  '
                       "(or pick another --detector)") from None
    return dlib


class DlibDetector:
    """dlib's face detector: MMOD CNN when its weights are present, else the built-in HOG detector."""

    name = "dlib"

    def __init__(self, weights_dir: Path, upsample: int = 1) -> None:
        dlib = import_dlib()
        self.upsample = upsample
        cnn = find_weights(weights_dir, DLIB_CNN_FILES)
        if cnn is not None:
            self._cnn = True
            self._det = dlib.cnn_face_detection_model_v1(str(cnn))
        else:
            self._cnn = False
            self._det = dlib.get_frontal_face_detector()

    def detect(self, images: list[np.ndarray]) -> list[np.ndarray]:
        out = []
        for img in images:
            rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
            found = []
            for d in self._det(rgb, self.upsample):
                rect, score = (d.rect, float(d.confidence)) if self._cnn else (d, 1.0)
                found.append([rect.left(), rect.top(), rect.right(), rect.bottom(), score])
            out.append(sort_by_area(np.asarray(found, np.float32)) if found else empty_boxes())
        return out


class DlibLandmarker:
    """dlib's 68-point shape predictor (``shape_predictor_68_face_landmarks.dat``)."""

    name = "dlib"

    def __init__(self, weights_dir: Path) -> None:
        dlib = import_dlib()
        self._dlib = dlib
        self._predictor = dlib.shape_predictor(str(require_weights(weights_dir, DLIB_SHAPE_FILES, "dlib 68-point")))

    def landmarks(self, images: list[np.ndarray], boxes: list[np.ndarray]) -> list[np.ndarray]:
        out = []
        for img, bxs in zip(images, boxes):
            rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
            res = np.zeros((len(bxs), 68, 2), np.float32)
            for k, (l, t, r, b) in enumerate(np.asarray(bxs)[:, :4]):
                shape = self._predictor(rgb, self._dlib.rectangle(int(l), int(t), int(r), int(b)))
                res[k] = [(p.x, p.y) for p in shape.parts()]
            out.append(res)
        return out
