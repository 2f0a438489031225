"""Sharpness of an image as DeepFaceLab's "sort by blur" measures it: the CPBD metric.

CPBD (cumulative probability of blur detection, Narvekar & Karam 2011) looks at the width of every
vertical edge: in each 64x64 block that has edges, an edge's width is compared with the "just
noticeable blur" width for the block's contrast, giving a probability that the eye sees it as blurred;
the score is the share of edges whose probability stays under 64%.  Sharp faces score near 1, blurred
ones lower.

DFL runs a per-pixel Python loop for this (seconds per face).  The same quantities are computed here with
array operations: the monotonic run on each side of an edge pixel, which DFL walks pixel by pixel (up to
100 steps), is the run length of "still rising" / "still falling" at the neighbouring pixel, computed for
a whole row at once.  DFL's quirks are kept, since they decide the order of a sorted faceset: the edge
angle is taken as 0 wherever the horizontal gradient is 0, and only edges quantised to 0 or 180 degrees
get a width.
"""

from __future__ import annotations

import cv2
import numpy as np

BLOCK = 64                  # CPBD's block side
EDGE_BLOCK_SHARE = 0.002    # a block is an edge block above this share of Canny edge pixels
BETA = 3.6                  # fitting parameter of the blur-detection probability
MAX_WALK = 100              # DFL walks at most 100 pixels to each side of an edge
# horizontal-derivative Sobel kernel normalised by the sum of its absolute values (1/8)
_SOBEL_X = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], np.float64) / 8.0


def _gray(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY) if img.shape[2] > 1 else img[..., 0]
    return img.astype(np.float64)


def _sobel_edges(img: np.ndarray) -> np.ndarray:
    """Thinned vertical edges: squared horizontal Sobel response above 2*RMS, local maxima across
    rows or columns (the Octave-style ``edge(..., 'sobel')`` CPBD was written against)."""
    s = cv2.filter2D(img, cv2.CV_64F, _SOBEL_X[::-1, ::-1], borderType=cv2.BORDER_REFLECT) ** 2
    s[s <= 2.0 * np.sqrt(s.mean())] = 0.0
    p = np.pad(s, 1)
    c = p[1:-1, 1:-1]
    horiz = (c > p[1:-1, :-2]) & (c > p[1:-1, 2:])
    vert = (c > p[:-2, 1:-1]) & (c > p[2:, 1:-1])
    return horiz | vert


def _runs_ending_at(cond: np.ndarray) -> np.ndarray:
    """Per row, how many consecutive True values end at each column (0 where False)."""
    idx = np.arange(cond.shape[1])
    last_false = np.maximum.accumulate(np.where(cond, -1, idx), axis=1)
    return np.where(cond, idx - last_false, 0)


def _runs_starting_at(cond: np.ndarray) -> np.ndarray:
    """Per row, how many consecutive True values start at each column going right."""
    return _runs_ending_at(cond[:, ::-1])[:, ::-1]


def _edge_widths(img: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Marziliano edge widths at the edge pixels with a horizontal gradient direction (else 0).

    Left of an edge the walk continues while each step outwards keeps the intensity moving away from
    the edge (rising for a falling edge, falling for a rising one), right of it the other way round;
    the width is both walks plus one pixel each, at most 101 per side.
    """
    h, w = img.shape
    widths = np.zeros((h, w), np.float64)
    if h < 3 or w < 3:
        return widths
    gy, gx = np.gradient(img)
    # DFL quantises atan2 of the gradient, but leaves the angle 0 where the x gradient is 0
    if not np.any((gx < 0) | ((gx > 0) & (gy != 0))):
        return widths
    inner = np.zeros_like(edges)
    inner[1:-1, 1:-1] = edges[1:-1, 1:-1]
    rows, cols = np.nonzero(inner)
    if rows.size == 0:
        return widths
    gxe, gye = gx[rows, cols], gy[rows, cols]
    angle = np.where(gxe != 0, np.degrees(np.arctan2(gye, gxe)), 0.0)
    q = 45.0 * np.round(angle / 45.0)
    falling, rising = np.abs(q) == 180, q == 0

    d_out_left = np.zeros((h, w))            # img[k-1] - img[k]: one step further left, minus here
    d_out_left[:, 1:] = img[:, :-1] - img[:, 1:]
    d_out_right = np.zeros((h, w))           # img[k+1] - img[k]
    d_out_right[:, :-1] = img[:, 1:] - img[:, :-1]
    valid_left = np.ones((h, w), bool)
    valid_left[:, 0] = False
    valid_right = np.ones((h, w), bool)
    valid_right[:, -1] = False

    def walk_left(cond: np.ndarray) -> np.ndarray:
        return 1 + np.minimum(_runs_ending_at(cond & valid_left)[rows, cols - 1], MAX_WALK)

    def walk_right(cond: np.ndarray) -> np.ndarray:
        return 1 + np.minimum(_runs_starting_at(cond & valid_right)[rows, cols + 1], MAX_WALK)

    width_falling = walk_left(d_out_left > 0) + walk_right(d_out_right < 0)
    width_rising = walk_left(d_out_left < 0) + walk_right(d_out_right > 0)
    widths[rows, cols] = np.where(falling, width_falling, np.where(rising, width_rising, 0))
    return widths


def cpbd(image: np.ndarray) -> float:
    """CPBD sharpness in [0, 1] of a BGR or grey image (DFL's ``estimate_sharpness``); higher is sharper."""
    from skimage.feature import canny

    img = _gray(image)
    h, w = img.shape
    nby, nbx = h // BLOCK, w // BLOCK
    if nby == 0 or nbx == 0:
        return 0.0
    canny_edges = canny(img)
    widths = _edge_widths(img, _sobel_edges(img))

    def blocks(a: np.ndarray) -> np.ndarray:
        return a[:nby * BLOCK, :nbx * BLOCK].reshape(nby, BLOCK, nbx, BLOCK).swapaxes(1, 2).reshape(
            nby * nbx, BLOCK * BLOCK)

    edge_counts = np.count_nonzero(blocks(canny_edges), axis=1)
    is_edge_block = edge_counts > BLOCK * BLOCK * EDGE_BLOCK_SHARE
    pix = blocks(img)
    contrast = (pix.max(axis=1) - pix.min(axis=1)).astype(np.int64)
    jnb = np.where(contrast <= 50, 5.0, 3.0)                  # just-noticeable blur width
    bw = blocks(widths)
    sel = is_edge_block[:, None] & (bw != 0)
    if not sel.any():
        return 0.0
    ratio = bw / jnb[:, None]
    prob = 1.0 - np.exp(-np.abs(ratio[sel]) ** BETA)
    hist = np.bincount(np.rint(prob * 100).astype(np.int64), minlength=101) / prob.size
    return float(np.sum(hist[:64]))
