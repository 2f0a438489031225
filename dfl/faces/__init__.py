"""Faces in frames: alignment geometry (``align``) and pluggable detectors/landmarkers.

``FaceType`` is re-exported here because nearly every layer above names it.
"""

from __future__ import annotations

from dfl.faces.align import FaceType

__all__ = ["FaceType"]
