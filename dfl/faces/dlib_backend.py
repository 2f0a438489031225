"""Optional dlib backends: the HOG (or MMOD CNN) face detector and the 68-point shape predictor.

dlib is an optional extra, imported only when one of these backends is asked for.  ``pip install
"dfl[dlib]"`` brings ``dlib-bin`` (dlib's prebuilt wheels for Linux, Windows and macOS: no C++ build) and
``face-recognition-models`` (CC0), which ships dlib's ``shape_predictor_68_face_landmarks.dat`` and
``mmod_human_face_detector.dat``; the files are used from that package where it is installed, so nothing
is copied by hand.  A file of the same name in the weights folder takes precedence (e.g. a model trained by
the user).  The CNN detector runs where it is fast enough (see :class:`DlibDetector`), else dlib's built-in
HOG detector.
"""

from __future__ import annotations

import importlib.util
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
        raise DflError('dlib: not installed; install it with  pip install "dfl[dlib]"  (dlib-bin and '
                       "face-recognition-models, which ships its model files), or pick another --detector") from None
    return dlib


PACKAGE = "face_recognition_models"  # pip name face-recognition-models; its files are under models/


def packaged_model(filename: str) -> Path | None:
    """``filename`` as shipped by the face-recognition-models package, or None when it is not installed.

    The package's own helpers import ``pkg_resources`` (gone from recent setuptools), so its folder is
    located without importing it."""
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "models" / filename
        if path.is_file():
            return path
    return None


def model_file(weights_dir: Path, patterns: tuple[str, ...]) -> Path | None:
    """A dlib model from the weights folder, else from face-recognition-models."""
    return find_weights(weights_dir, patterns) or packaged_model(patterns[0])


class DlibDetector:
    """dlib's face detector: MMOD CNN or the built-in HOG detector.

    The CNN runs when ``mmod_human_face_detector.dat`` is in the weights folder, or comes with
    face-recognition-models and dlib was built with CUDA.  On a CPU the CNN took 63 s per 720x1364 frame
    (s29, 2 cores; HOG 1.4 s with one upsampling), so a CPU-only dlib uses HOG unless the file is copied
    into the weights folder on purpose.
    """

    name = "dlib"

    def __init__(self, weights_dir: Path, upsample: int = 1) -> None:
        dlib = import_dlib()
        self.upsample = upsample
        cnn = find_weights(weights_dir, DLIB_CNN_FILES)
        if cnn is None and getattr(dlib, "DLIB_USE_CUDA", False):
            cnn = packaged_model(DLIB_CNN_FILES[0])
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
        path = model_file(weights_dir, DLIB_SHAPE_FILES) or require_weights(weights_dir, DLIB_SHAPE_FILES, "dlib 68-point")
        self._predictor = dlib.shape_predictor(str(path))

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
