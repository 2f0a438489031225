"""DFL's XSeg weights (a trained ``workspace/model`` XSeg or the generic one DFL builds ship) in dfl.

DFL keeps the network in ``XSeg_256.npy`` (``XSegNet(name='XSeg', resolution=256)``), beside
``XSeg_data.dat`` when it was trained in a workspace; the generic model of DFL's builds is the same file in
``_internal/model_generic_xseg/``.  :func:`load_dfl_xseg` gives dfl's :class:`~dfl.models.xseg.XSeg` with
those weights; :func:`xseg_mask_func` turns it into the merger's ``XSegFunc`` with DFL's ``extract``
post-processing, which is what applying masks to a faceset and the XSeg mask modes of the merger call.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from dfl.errors import DflError
from dfl.faces.align import FaceType

XSEG_FILE = "XSeg_256.npy"
XSEG_DATA = "XSeg_data.dat"
RESOLUTION = 256
NOISE_FLOOR = 0.1     # DFL's XSegNet.extract zeroes mask values below this


def find_xseg_weights(path: Path) -> Path:
    """``XSeg_256.npy`` given it or the folder holding it; DflError naming what is missing."""
    path = Path(path)
    if path.is_dir():
        path = path / XSEG_FILE
    if not path.is_file():
        raise DflError(f"{path}: no DFL XSeg weights here (DFL keeps them as {XSEG_FILE} in its model folder "
                       f"or in _internal/model_generic_xseg/)")
    return path


def xseg_face_type(folder: Path) -> FaceType | None:
    """The face type a trained XSeg was made for (its ``XSeg_data.dat``); None for the generic model."""
    from dfl.leras import read_pickle
    from dfl.models.base import face_type_from_code

    dat = Path(folder) / XSEG_DATA
    if not dat.is_file():
        return None
    data = read_pickle(dat, "DFL model data file")
    options = data.get("options") if isinstance(data, dict) else None
    code = options.get("face_type") if isinstance(options, dict) else None
    if code is None:
        return None
    try:
        return face_type_from_code(str(code))
    except (KeyError, ValueError):
        raise DflError(f"{dat}: unknown XSeg face type {code!r}") from None


def load_dfl_xseg(path: Path, device: torch.device | str = "cpu") -> tuple[torch.nn.Module, FaceType | None]:
    """(dfl's XSeg network with DFL's weights, in eval mode on ``device``; the face type it was trained
    for, None when the folder does not say).  ``path``: the ``.npy`` or its folder."""
    from dfl.leras import load_leras
    from dfl.models.xseg import XSeg

    weights = find_xseg_weights(path)
    net = load_leras(XSeg(), weights).eval().to(device)
    return net, xseg_face_type(weights.parent)


def xseg_mask_func(net: torch.nn.Module, batch: int = 8) -> Callable[[np.ndarray], np.ndarray]:
    """The merger's ``XSegFunc`` for ``net``: N x 256 x 256 x 3 float32 BGR faces in [0, 1] ->
    N x 256 x 256 float32 masks, as DFL's ``XSegNet.extract`` (clipped, values below 0.1 set to 0)."""
    device = next(net.parameters()).device

    @torch.inference_mode()
    def run(faces: np.ndarray) -> np.ndarray:
        faces = np.asarray(faces, np.float32)
        if faces.shape[1:] != (RESOLUTION, RESOLUTION, 3):
            raise DflError(f"XSeg: faces must be {RESOLUTION}x{RESOLUTION}x3, got {faces.shape[1:]}")
        out = []
        for i in range(0, len(faces), batch):
            x = torch.from_numpy(np.ascontiguousarray(faces[i:i + batch])).permute(0, 3, 1, 2).to(device)
            out.append(net(x)[1][:, 0].float().cpu().numpy())
        masks = np.clip(np.concatenate(out) if out else np.zeros((0, RESOLUTION, RESOLUTION), np.float32), 0, 1)
        masks[masks < NOISE_FLOOR] = 0.0
        return masks

    return run
