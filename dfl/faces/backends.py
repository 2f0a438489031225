"""The two small interfaces every face detector and landmarker implements.

The extraction pipeline only talks to these, so S3FD, BlazeFace, FAN, FaceMesh, dlib (and a manual
tool later) are interchangeable, and any detector can be paired with any landmarker.  Both take a
*batch* of images so neural backends can run one forward pass per batch.

Images are ``uint8`` BGR ``HxWx3`` as read by OpenCV.  Boxes are float ``(K, 5)`` arrays
``left, top, right, bottom, score`` in image pixels, largest face first; landmarks are float ``(K, 68, 2)``
arrays ``x, y`` in image pixels in the iBUG 68-point order (a row of NaN where a face failed).

Optional: a detector may also offer ``detect_with_keypoints(images) -> [(boxes (K, 5), kps (K, P, 2))]``
with at least right eye, left eye, nose, mouth as the first four keypoints (BlazeFace does); the pipeline
then turns frames whose face lies on its side upright before placing landmarks.

Threads: extraction calls a backend from several threads at once when its class says ``thread_safe = True``
(the torch and onnxruntime ones: inference keeps no state).  Any other (dlib's detector, whose concurrent
use corrupted memory) goes through :func:`serialized`, one call at a time.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Detector(Protocol):
    """Finds face boxes."""

    name: str

    def detect(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """Per image a ``(K, 5)`` float array ``l, t, r, b, score`` (``K`` may be 0)."""
        ...


@runtime_checkable
class Landmarker(Protocol):
    """Places the 68 iBUG landmarks inside given boxes."""

    name: str

    def landmarks(self, images: list[np.ndarray], boxes: list[np.ndarray]) -> list[np.ndarray]:
        """Per image a ``(K, 68, 2)`` float array for its ``K`` boxes (same order as ``boxes``)."""
        ...


class _Serialized:
    """A backend whose methods run one call at a time (a lock around each); its other attributes as they are."""

    def __init__(self, backend: Any) -> None:
        self._backend = backend
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._backend, name)
        if not callable(attr):
            return attr

        def one_at_a_time(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return attr(*args, **kwargs)
        return one_at_a_time


def serialized(backend: Any, always: bool = False) -> Any:
    """``backend`` itself when it may be called from several threads at once (``thread_safe``, and not
    ``always``), else a wrapper whose calls wait for each other."""
    return backend if getattr(backend, "thread_safe", False) and not always else _Serialized(backend)


def empty_boxes() -> np.ndarray:
    """A ``(0, 5)`` box array (an image without faces)."""
    return np.zeros((0, 5), np.float32)


def sort_by_area(boxes: np.ndarray) -> np.ndarray:
    """Boxes ordered largest area first, as DFL numbers faces (``_0`` is the biggest)."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 5)
    if len(boxes) < 2:
        return boxes
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return boxes[np.argsort(-area, kind="stable")]


def nms(boxes: np.ndarray, threshold: float) -> np.ndarray:
    """Indices of boxes kept by greedy non-maximum suppression (highest score first).

    Overlap uses DFL's/S3FD's inclusive pixel areas (``+1``), so results match DFL's ``refine_nms``.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 5)
    if len(boxes) == 0:
        return np.zeros((0,), np.int64)
    x1, y1, x2, y2, score = boxes.T
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(-score, kind="stable")
    keep: list[int] = []
    while order.size:
        i = order[0]
        keep.append(int(i))
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = w * h
        overlap = inter / (areas[i] + areas[rest] - inter)
        order = rest[overlap <= threshold]
    return np.asarray(keep, np.int64)
