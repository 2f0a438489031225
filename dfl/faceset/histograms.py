"""Histogram distances for the sort methods, as OpenCV's ``compareHist(..., HISTCMP_BHATTACHARYYA)``
computes them, but for many histograms at once.

OpenCV's Bhattacharyya distance of histograms h1, h2 is ``sqrt(1 - sum(sqrt(h1 * h2)) / sqrt(sum(h1) *
sum(h2)))``; with ``p = sqrt(h / sum(h))`` that is ``sqrt(1 - p1 . p2)``, so a whole row of distances is
one matrix-vector product.
"""

from __future__ import annotations

import numpy as np

_CHUNK = 1024


def unit_sqrt(hists: np.ndarray) -> np.ndarray:
    """(N, K) histograms -> rows ``sqrt(h / sum(h))`` (float64); an empty histogram stays 0, which
    gives distance 1 to everything, as OpenCV does."""
    h = np.asarray(hists, np.float64)
    s = h.sum(axis=-1, keepdims=True)
    return np.sqrt(np.divide(h, s, out=np.zeros_like(h), where=s > 0))


def distances_to(p: np.ndarray, i: int, others: np.ndarray) -> np.ndarray:
    """Distances from histogram ``i`` to ``others`` (indices); ``p`` is (N, K) or (C, N, K) from
    :func:`unit_sqrt`, channels summed."""
    p = p[None] if p.ndim == 2 else p
    bc = np.einsum("cnk,ck->cn", p[:, others], p[:, i])
    return np.sqrt(np.maximum(1.0 - bc, 0.0)).sum(axis=0)


def distance_sums(p: np.ndarray, groups: list[np.ndarray] | None = None) -> np.ndarray:
    """For each histogram, the sum of its distances to all others (of its group when ``groups`` are
    given: lists of indices); DFL's "histogram dissimilarity" score."""
    n = p.shape[0]
    out = np.zeros(n, np.float64)
    for idx in groups if groups is not None else [np.arange(n)]:
        idx = np.asarray(idx)
        q = p[idx]
        for a in range(0, len(idx), _CHUNK):
            bc = q[a:a + _CHUNK] @ q.T
            d = np.sqrt(np.maximum(1.0 - bc, 0.0))
            rows = np.arange(a, min(a + _CHUNK, len(idx)))
            d[rows - a, rows] = 0.0                  # i == j is skipped, as DFL does
            out[idx[rows]] = d.sum(axis=1)
    return out


def similarity_chain(p: np.ndarray) -> list[int]:
    """DFL's "histogram similarity" order: start at the first face, then repeatedly swap the most
    similar remaining face into the next place (ties: the first in the current order)."""
    n = p.shape[-2]
    perm = np.arange(n)
    for i in range(n - 1):
        d = distances_to(p, perm[i], perm[i + 1:])
        j = i + 1 + int(np.argmin(d))
        perm[i + 1], perm[j] = perm[j], perm[i + 1]
    return perm.tolist()
