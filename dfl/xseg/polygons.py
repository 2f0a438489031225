"""XSeg label polygons for editing: DFL's ``SegIEPoly`` rules on top of the faceset's polygon dicts.

A face's labels are include polygons (what the mask covers) and exclude polygons (cut out of it again:
hands, hair, a microphone), in aligned-face pixels.  They are kept includes first, each kind in the order
drawn, as DFL's editor and reader keep them, so what is saved reads back identically in DFL.  The
geometry here (distances to points and edges in view pixels) is what the editor's hit tests use.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dfl.faceset.record import EXCLUDE, INCLUDE


@dataclass
class Polygon:
    """One label polygon: ``type`` INCLUDE (1) or EXCLUDE (0), ``pts`` float32 (N, 2) in face pixels."""

    type: int
    pts: np.ndarray

    def copy(self) -> "Polygon":
        return Polygon(int(self.type), np.array(self.pts, np.float32).reshape(-1, 2))


def from_record(polys: list | None) -> list[Polygon]:
    """The faceset's ``seg_ie_polys`` dicts as editable polygons, in DFL's order."""
    return sort_polys([Polygon(int(p["type"]), np.array(p["pts"], np.float32).reshape(-1, 2)) for p in polys or []])


def to_record(polys: list[Polygon]) -> list[dict]:
    """Polygons as the faceset's ``seg_ie_polys`` dicts (copies)."""
    return [{"type": int(p.type), "pts": np.array(p.pts, np.float32).reshape(-1, 2)} for p in sort_polys(polys)]


def sort_polys(polys: list[Polygon]) -> list[Polygon]:
    """Includes first, then excludes, each kind keeping its order (DFL's ``SegIEPolys.sort``)."""
    return [p for p in polys if p.type == INCLUDE] + [p for p in polys if p.type != INCLUDE]


def same_polys(a: list, b: list) -> bool:
    """Whether two polygon lists (dicts or :class:`Polygon`) hold the same polygons in the same order."""
    def items(polys: list) -> list[tuple[int, np.ndarray]]:
        return [(int(p["type"]), np.asarray(p["pts"], np.float32).reshape(-1, 2)) if isinstance(p, dict)
                else (int(p.type), np.asarray(p.pts, np.float32).reshape(-1, 2)) for p in polys]
    ia, ib = items(a), items(b)
    return len(ia) == len(ib) and all(ta == tb and pa.shape == pb.shape and np.array_equal(pa, pb)
                                      for (ta, pa), (tb, pb) in zip(ia, ib))


def type_name(t: int) -> str:
    return "include" if t == INCLUDE else "exclude" if t == EXCLUDE else f"type {t}"


# -- geometry (view pixels) -------------------------------------------------------------------------------
def dist_to_edges(pts: np.ndarray, pt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance from ``pt`` to every edge of the closed polygon ``pts`` (edge i runs from point i to point
    i+1, the last back to the first) and the nearest point of each edge."""
    a = np.asarray(pts, np.float64)
    b = np.roll(a, -1, axis=0)
    ab = b - a
    length2 = np.einsum("ij,ij->i", ab, ab)
    length2[length2 == 0] = 1.0
    t = np.clip(np.einsum("ij,ij->i", np.asarray(pt, np.float64) - a, ab) / length2, 0.0, 1.0)
    proj = a + ab * t[:, None]
    return np.linalg.norm(proj - pt, axis=1), proj


def point_under(pts: np.ndarray, pt: np.ndarray, radius: float) -> int | None:
    """Index of the point of ``pts`` within ``radius`` of ``pt`` (the last such, drawn on top), or None."""
    if not len(pts):
        return None
    near = np.flatnonzero(np.linalg.norm(np.asarray(pts, np.float64) - pt, axis=1) <= radius)
    return int(near[-1]) if len(near) else None


def edge_under(pts: np.ndarray, pt: np.ndarray, radius: float) -> tuple[int | None, np.ndarray | None]:
    """(edge index, nearest point on it) of the edge of a polygon of 3+ points within ``radius`` of
    ``pt``, nearest first; (None, None) when none is."""
    if len(pts) < 3:
        return None, None
    dists, proj = dist_to_edges(pts, pt)
    i = int(np.argmin(dists))
    return (i, proj[i]) if dists[i] <= radius else (None, None)


def near_outline(pts: np.ndarray, pt: np.ndarray, radius: float) -> bool:
    """Whether ``pt`` is within ``radius`` of a closed polygon's outline or one of its points (3+ points)."""
    if len(pts) < 3:
        return False
    return bool(dist_to_edges(pts, pt)[0].min() <= radius or point_under(pts, pt, radius) is not None)
