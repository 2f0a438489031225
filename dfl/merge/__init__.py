"""Merge: put the learned face back into every dst frame (DFL's step 7).

:mod:`config` holds the settings, :mod:`face` merges one face, :mod:`frames` a whole folder,
:mod:`interactive` the tuning window and its session, :mod:`xseg` the XSeg model of the XSeg mask modes
(loaded when first needed).
"""

from dfl.merge.config import MergeConfig

__all__ = ["MergeConfig"]
