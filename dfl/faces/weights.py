"""Where optional third-party model weights (S3FD, 2DFAN-4, dlib, DFL's FaceEnhancer) are looked for.

These files are not ours to ship and dfl never downloads anything, so the user copies them into one
folder: ``--weights-dir`` if given, else ``$DFL_WEIGHTS``, else ``~/.dfl/weights``.  A backend that needs
a missing file fails with one line naming the file and the folder, so the fix is obvious.
"""

from __future__ import annotations

import os
from pathlib import Path

from dfl.errors import DflError

ENV_VAR = "DFL_WEIGHTS"
DEFAULT_DIR = Path("~/.dfl/weights")

# Accepted file names per model, most specific first.  Globs: the hash suffix differs between releases.
# ``S3FD.npy``, ``2DFAN.npy`` and ``FaceEnhancer.npy`` are DeepFaceLab's own files, as its builds ship
# them in ``_internal/DeepFaceLab/facelib/`` (read with the restricted unpickler, see :mod:`dfl.leras`).
S3FD_FILES = ("s3fd-619a316812.pth", "s3fd*.pth", "S3FD.npy")
FAN_FILES = ("2DFAN4-*.pth.tar", "2DFAN4-*.zip", "2DFAN4*.pth", "2DFAN-4*.pth.tar", "2DFAN.npy")
FACE_ENHANCER_FILES = ("FaceEnhancer.npy",)
DLIB_SHAPE_FILES = ("shape_predictor_68_face_landmarks.dat",)
DLIB_CNN_FILES = ("mmod_human_face_detector.dat",)


def weights_dir(option: str | os.PathLike | None = None) -> Path:
    """The weights folder: the ``--weights-dir`` option, else ``$DFL_WEIGHTS``, else ``~/.dfl/weights``.

    A folder given with ``--weights-dir`` must exist (a typo there would otherwise quietly fall back to
    the built-in backends, or report a missing file in a folder the user never meant); the environment's
    and the default folder need not, and a backend asking for a file in them reports what is missing.
    """
    if option:
        folder = Path(option).expanduser()
        if not folder.is_dir():
            problem = "is a file, not a folder" if folder.exists() else "no such folder"
            raise DflError(f"{folder}: --weights-dir {problem}; give the folder that holds the weights files")
        return folder
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    return DEFAULT_DIR.expanduser()


def find_weights(folder: Path, patterns: tuple[str, ...]) -> Path | None:
    """The first file in ``folder`` matching one of ``patterns`` (in order), or None."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    for pattern in patterns:
        hits = sorted(p for p in folder.glob(pattern) if p.is_file())
        if hits:
            return hits[0]
    return None


def require_weights(folder: Path, patterns: tuple[str, ...], what: str) -> Path:
    """Like :func:`find_weights` but a missing file is a :class:`DflError` naming the file and folder."""
    found = find_weights(folder, patterns)
    if found is None:
        others = [p for p in patterns[1:] if "*" not in p]
        alternatives = f" (or {' or '.join(others)})" if others else ""
        raise DflError(
            f"{Path(folder) / patterns[0]}: {what} weights not found; copy the file{alternatives} into {folder} "
            f"(or point --weights-dir / ${ENV_VAR} at the folder that holds it); dfl never downloads weights"
        )
    return found
