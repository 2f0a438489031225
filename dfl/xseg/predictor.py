"""Mask predictors: what ``dfl xseg apply`` and the editor's model overlay run over faces.

A :class:`MaskPredictor` wraps a network's batch function with what applying it needs: the input
resolution and the face type the model was trained on.  :func:`face_masks` does what DFL's
``XSegUtil.apply_xseg`` does around the network: a face of another face type is first re-cut to the
model's face type from its landmarks (and the mask warped back), the mask is cut at 0.5 and kept at the
model's resolution (DFL stores 256 px masks).

Where predictors come from (:func:`load_predictor`):

* ``--generic [PATH]``: DFL's XSeg weights (``XSeg_256.npy``; the generic whole_face model of DFL's builds,
  or a model DFL trained), through :mod:`dfl.interop.xseg`;
* ``--name NAME``: an XSeg model trained by dfl (``dfl train --model XSeg``) or imported from DFL
  (``dfl model import``): :func:`trained_xseg_predictor`;
* neither: the workspace's trained XSeg (dfl's, else DFL's ``model/XSeg_256.npy``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from dfl.errors import DflError
from dfl.faces.align import FaceType
from dfl.faceset.record import FaceRecord

MASK_THRESHOLD = 0.5                     # DFL's apply stores 0/1 masks
XSEG_FACE_TYPES = ("same", "h", "mf", "f", "wf", "head")     # DFL's "XSeg model face type" answers


@dataclass
class MaskPredictor:
    """A mask model ready to run.

    ``predict``: N x R x R x 3 float32 BGR faces in [0, 1] -> N x R x R float32 masks in [0, 1] (R =
    ``resolution``); ``face_type``: what the model was trained on (None: take each face as it is cut);
    ``identity``: changes whenever the weights do (an interrupted apply resumes only with the same model).
    Calling it maps a list of faces to a list of masks.
    """

    predict: Callable[[np.ndarray], np.ndarray]
    resolution: int = 256
    face_type: FaceType | None = None
    name: str = "XSeg"
    identity: str = ""

    def __call__(self, faces: list[np.ndarray]) -> list[np.ndarray]:
        if not faces:
            return []
        out = np.asarray(self.predict(np.stack([np.asarray(f, np.float32) for f in faces])), np.float32)
        return [m.reshape(self.resolution, self.resolution) for m in out]

    @property
    def key(self) -> str:
        """Identity and face type: what the masks depend on."""
        return f"{self.identity}|{self.face_type.to_string() if self.face_type is not None else 'same'}"

    def with_face_type(self, choice: str | None) -> "MaskPredictor":
        """This predictor applied as ``choice`` (one of :data:`XSEG_FACE_TYPES`; None keeps its own)."""
        if choice is None:
            return self
        return dataclasses.replace(self, face_type=None if choice == "same" else FaceType.from_string(choice))


# -- DFL's apply, around the network -------------------------------------------------------------------
def rewarp_matrix(record: FaceRecord, size: int, face_type: FaceType | None) -> np.ndarray | None:
    """The (2, 3) matrix that re-cuts a ``size`` px face of ``record``'s face type as ``face_type``
    (DFL's apply: both cuts from the frame landmarks, the model's cut expressed in the face's pixels);
    None when no re-cut is needed.  Faces without frame landmarks use their aligned ones: alignment is a
    similarity fit, so they give the same cut (all but the upright *_no_align types).  XSeg training cuts
    its labelled faces with the same matrix (:func:`dfl.mask_samples.recut_matrix`)."""
    from dfl.mask_samples import recut_matrix

    return recut_matrix(record, size, face_type)


def model_input(image: np.ndarray, mat: np.ndarray | None, resolution: int) -> np.ndarray:
    """A face (BGR uint8) as the model's input: float32 [0, 1], re-cut by ``mat`` and sized to
    ``resolution`` (Lanczos).  The re-cut is bilinear: DFL passes its Lanczos flag where OpenCV expects
    the output array, so OpenCV's default interpolation is what DFL's masks came from."""
    img = np.asarray(image).astype(np.float32) / 255.0
    w = img.shape[1]
    if mat is not None:
        img = cv2.warpAffine(img, mat, (w, w))
    if img.shape[0] != resolution or img.shape[1] != resolution:
        img = cv2.resize(img, (resolution, resolution), interpolation=cv2.INTER_LANCZOS4)
    return img


def mask_back(mask: np.ndarray, mat: np.ndarray | None, size: int, resolution: int) -> np.ndarray:
    """The model's mask as the face's stored mask: warped back onto the face's own cut when it was re-cut
    (at the face's size, Lanczos), at ``resolution``, cut at 0.5 to 0 / 1."""
    m = np.asarray(mask, np.float32)
    if mat is not None:
        m = cv2.resize(m, (size, size), interpolation=cv2.INTER_LANCZOS4)
        m = cv2.warpAffine(m, mat, (size, size), flags=cv2.WARP_INVERSE_MAP | cv2.INTER_LANCZOS4)
        m = cv2.resize(m, (resolution, resolution), interpolation=cv2.INTER_LANCZOS4)
    return (m >= MASK_THRESHOLD).astype(np.float32)


def face_masks(predictor: MaskPredictor, images: list[np.ndarray], records: list[FaceRecord]) -> list[np.ndarray]:
    """The masks DFL's apply would store for these faces (``resolution`` px, 0 / 1), one network batch."""
    res = predictor.resolution
    mats = [rewarp_matrix(r, img.shape[1], predictor.face_type) for img, r in zip(images, records)]
    outs = predictor([model_input(img, m, res) for img, m in zip(images, mats)])
    return [mask_back(o, m, img.shape[1], res) for o, img, m in zip(outs, images, mats)]


# -- where predictors come from ------------------------------------------------------------------------
def dfl_xseg_predictor(path: Path, device: object = "cpu") -> MaskPredictor:
    """DFL's XSeg weights at ``path`` (``XSeg_256.npy`` or its folder).  Its face type is the one its
    ``XSeg_data.dat`` names; without one it is DFL's generic model, trained on whole_face (DFL's step
    "5.XSeg Generic) ... whole_face mask - apply"; DFL asks, defaulting to the faces' own type)."""
    from dfl.interop.xseg import RESOLUTION, find_xseg_weights, load_dfl_xseg, xseg_mask_func

    weights = find_xseg_weights(Path(path))
    net, face_type = load_dfl_xseg(weights, device)
    st = weights.stat()
    return MaskPredictor(xseg_mask_func(net), RESOLUTION, face_type or FaceType.WHOLE_FACE,
                         name=f"DFL XSeg {weights}",
                         identity=f"dfl-xseg:{weights.resolve()}:{st.st_size}:{st.st_mtime_ns}")


def trained_xseg_predictor(model_dir: Path, name: str | None, device: object = "cpu") -> MaskPredictor | None:
    """The mask model dfl trained (or imported) in ``model_dir`` under ``name`` (None: the one there) as a
    :class:`MaskPredictor`: its network's batch function, its resolution and face type, and an identity
    that changes with its weights.  None when ``model_dir`` holds no such model and no name was asked for;
    a name that is not a mask model, or several models without a name, is a DflError saying what to do.
    Mask models are the registry's "segmenter" kind (dfl's XSeg)."""
    from dfl.interop.xseg import xseg_mask_func
    from dfl.models import store
    from dfl.models.registry import SEGMENTER, find_spec

    def is_mask_model(info: store.ModelInfo) -> bool:
        spec = find_spec(info.model_type)
        return spec is not None and spec.kind == SEGMENTER

    model_dir = Path(model_dir)
    if name is not None:
        info = next((m for m in store.list_models(model_dir) if m.name == name and is_mask_model(m)), None)
        if info is None:
            raise DflError(f"{model_dir}: no XSeg model named {name!r} (train one: dfl train --model XSeg "
                           f"--name {name})")
    else:
        found = [m for m in store.list_models(model_dir) if is_mask_model(m)] if model_dir.is_dir() else []
        usable = [m for m in found if not m.damaged]
        if len(usable) > 1:
            raise DflError(f"{model_dir}: several XSeg models ({', '.join(m.name for m in usable)}); choose one "
                           "with --name")
        if not usable:
            if found:
                raise DflError(f"{found[0].path}: damaged XSeg model: {found[0].problem}; {found[0].fix}")
            return None
        info = usable[0]
    if info.damaged:
        raise DflError(f"{info.path}: damaged XSeg model: {info.problem}; {info.fix}")
    model, options, state = store.load_model(info.path, device)
    weights = info.path / store.WEIGHTS
    st = weights.stat()
    return MaskPredictor(xseg_mask_func(model.networks[model.network_names[0]]), int(model.resolution),
                         model.face_type, name=f"{info.path.name} (iteration {state.get('iteration', 0)})",
                         identity=f"dfl-model:{info.path.resolve()}:{st.st_size}:{st.st_mtime_ns}")


def load_predictor(model_dir: Path, name: str | None = None, generic: Path | None = None,
                   device: object = "cpu", face_type: str | None = None) -> MaskPredictor:
    """The predictor the XSeg commands use: DFL's weights at ``generic``, else dfl's model ``name``, else
    the workspace's trained XSeg (dfl's, then DFL's ``model_dir/XSeg_256.npy``).  ``face_type`` (one of
    :data:`XSEG_FACE_TYPES`) overrides the model's own face type."""
    from dfl.interop.xseg import XSEG_FILE

    if generic is not None and name is not None:
        raise DflError("--generic and --name: choose one XSeg model")
    if generic is not None:
        pred = dfl_xseg_predictor(generic, device)
    else:
        pred = trained_xseg_predictor(Path(model_dir), name, device)
        if pred is None:
            if not (Path(model_dir) / XSEG_FILE).is_file():
                raise DflError(f"{model_dir}: no trained XSeg model; train one (step 5.XSeg) train) or "
                               "use DFL's generic XSeg with --generic")
            pred = dfl_xseg_predictor(Path(model_dir), device)
    return pred.with_face_type(face_type)
