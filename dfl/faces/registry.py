"""Face detectors and landmarkers by name, and the ``auto`` choice between them.

``auto`` runs DeepFaceLab's own pair, S3FD + 2DFAN-4, when both weight files are in the weights folder
(results then match DFL's facesets), and otherwise the embedded BlazeFace + FaceMesh, which work
offline with nothing to install.  Names:

* detectors: ``auto``, ``blazeface`` (short range, falling back to full range and tiles when no
  big face is found), ``blazeface-short``, ``blazeface-full`` (small faces), ``s3fd``, ``dlib``
* landmarkers: ``auto`` (the detector's natural partner), ``facemesh``, ``fan``, ``dlib``
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from dfl.errors import DflError
from dfl.faces.backends import Detector, Landmarker
from dfl.faces.weights import FAN_FILES, S3FD_FILES, find_weights, require_weights

DETECTORS = ("auto", "blazeface", "blazeface-short", "blazeface-full", "s3fd", "dlib")
LANDMARKERS = ("auto", "facemesh", "fan", "dlib")


def _device(device: torch.device | str) -> torch.device:
    if isinstance(device, torch.device):
        return device
    from dfl.device import pick_device

    return pick_device(device)


def dfl_pair_available(weights_dir: Path) -> bool:
    """True when both S3FD and 2DFAN-4 weights are in ``weights_dir`` (``auto`` then picks them)."""
    return find_weights(weights_dir, S3FD_FILES) is not None and find_weights(weights_dir, FAN_FILES) is not None


def resolve_names(detector: str = "auto", landmarker: str = "auto", weights_dir: Path | None = None) -> tuple[str, str]:
    """Concrete ``(detector, landmarker)`` names for possibly-``auto`` choices."""
    if detector not in DETECTORS:
        raise DflError(f"--detector {detector}: unknown detector; choose one of {', '.join(DETECTORS)}")
    if landmarker not in LANDMARKERS:
        raise DflError(f"--landmarker {landmarker}: unknown landmarker; choose one of {', '.join(LANDMARKERS)}")
    wd = Path(weights_dir) if weights_dir is not None else Path("/nonexistent")
    if detector == "auto":
        if landmarker in ("auto", "fan") and dfl_pair_available(wd):
            detector = "s3fd"
        elif landmarker == "dlib":
            detector = "dlib"
        else:
            detector = "blazeface"
    if landmarker == "auto":
        if detector == "s3fd" and find_weights(wd, FAN_FILES) is not None:
            landmarker = "fan"
        elif detector == "dlib":
            landmarker = "dlib"
        else:
            landmarker = "facemesh"
    return detector, landmarker


def get_detector(name: str, device: torch.device | str, weights_dir: Path) -> Detector:
    """Build the detector ``name`` (``auto`` resolves as in :func:`resolve_names`)."""
    name, _ = resolve_names(name, "auto", weights_dir)
    dev = _device(device)
    if name.startswith("blazeface"):
        from dfl.faces.blazeface import BlazeFaceDetector

        return BlazeFaceDetector(dev, {"blazeface": "auto", "blazeface-short": "short", "blazeface-full": "full"}[name])
    if name == "s3fd":
        from dfl.faces.s3fd import S3FDDetector

        return S3FDDetector(require_weights(weights_dir, S3FD_FILES, "S3FD"), dev)
    if name == "dlib":
        from dfl.faces.dlib_backend import DlibDetector

        return DlibDetector(Path(weights_dir))
    raise DflError(f"--detector {name}: unknown detector")  # pragma: no cover - resolve_names checks


def get_landmarker(name: str, device: torch.device | str, weights_dir: Path,
                   second_pass: Detector | None = None) -> Landmarker:
    """Build the landmarker ``name``.

    For ``fan``, ``second_pass`` is the detector used for DFL's refinement pass; when not given, S3FD
    is loaded for it if its weights are present (DFL always refines with S3FD), else no refinement.
    """
    if name == "auto":
        _, name = resolve_names("auto", "auto", weights_dir)
    if name not in LANDMARKERS:
        raise DflError(f"--landmarker {name}: unknown landmarker; choose one of {', '.join(LANDMARKERS)}")
    dev = _device(device)
    if name == "facemesh":
        from dfl.faces.facemesh import FaceMeshLandmarker

        return FaceMeshLandmarker(dev)
    if name == "fan":
        from dfl.faces.fan import FANLandmarker

        weights = require_weights(weights_dir, FAN_FILES, "2DFAN-4")
        if second_pass is None and find_weights(weights_dir, S3FD_FILES) is not None:
            second_pass = get_detector("s3fd", dev, weights_dir)
        return FANLandmarker(weights, dev, second_pass=second_pass)
    from dfl.faces.dlib_backend import DlibLandmarker

    return DlibLandmarker(Path(weights_dir))


@dataclass
class Backends:
    """A detector and a landmarker chosen together, with the label the summary line prints."""

    detector: Detector
    landmarker: Landmarker

    @property
    def label(self) -> str:
        return f"{self.detector.name}+{self.landmarker.name}"


def get_backends(detector: str = "auto", landmarker: str = "auto", device: torch.device | str = "auto",
                 weights_dir: Path | None = None) -> Backends:
    """The detector/landmarker pair for the given (possibly ``auto``) names; S3FD is shared with FAN."""
    from dfl.faces.weights import weights_dir as default_weights_dir

    wd = Path(weights_dir) if weights_dir is not None else default_weights_dir(None)
    det_name, lm_name = resolve_names(detector, landmarker, wd)
    dev = _device(device)
    det = get_detector(det_name, dev, wd)
    second = det if det_name == "s3fd" else None
    lm = get_landmarker(lm_name, dev, wd, second_pass=second)
    return Backends(det, lm)
