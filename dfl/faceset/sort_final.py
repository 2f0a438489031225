"""DFL's "best faces" sort (``final-by-blur``, ``final-by-size``): keep a target number of faces spread
over head poses, the sharpest (or largest) and most varied of each pose.

As DFL: faces are put in 128 yaw buckets over [-1.2, 1.2] (the yaw range 2DFAN landmarks reach); in each
bucket only the 10x-quota sharpest (largest) survive; those are spread over as many pitch buckets as the
bucket's quota, each pitch bucket ordered by histogram dissimilarity (most unusual first), and the quota
is taken round-robin over the pitch buckets.  The kept faces come out in yaw order.

DFL gives every yaw bucket ``round(target / 128)`` faces plus one share of what empty buckets leave, which
keeps far fewer faces than asked when poses cluster (and none for targets under 64).  Here the target is
filled exactly (or every face kept when there are fewer): a bucket with fewer faces than its share hands
the rest to the others, as evenly as possible.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import cv2
import numpy as np

from dfl.faces.align import hull_mask, pitch_yaw_roll
from dfl.faceset.histograms import distance_sums, unit_sqrt
from dfl.imageops.sharpness import cpbd

if TYPE_CHECKING:
    from dfl.faceset.sort import Face, Order, _Context

YAW_BUCKETS = 128
YAW_LIMIT = 1.2
KEEP_SHARPEST = 10        # per yaw bucket, this many times its quota survive the sharpness cut


def bucket_of(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """DFL's bucket index: the last edge at or below the value; below the first edge -> 0."""
    return np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(edges) - 1)


def quotas(counts: list[int], target: int) -> list[int]:
    """Split ``target`` over buckets holding ``counts`` faces as evenly as possible, no bucket over
    its count; the total is ``min(target, sum(counts))``.  Leftover singles go to buckets in order."""
    n = len(counts)
    out = [0] * n
    remaining, open_ = min(target, sum(counts)), [i for i in range(n) if counts[i] > 0]
    while remaining > 0 and open_:
        share = remaining // len(open_)
        if share == 0:
            for i in open_[:remaining]:
                out[i] += 1
            break
        still = []
        for i in open_:
            take = min(share, counts[i] - out[i])
            out[i] += take
            remaining -= take
            if out[i] < counts[i]:
                still.append(i)
        open_ = still
    return out


def _features(ctx: "_Context", by_size: bool) -> tuple[list[float], np.ndarray, np.ndarray, np.ndarray]:
    def one(face: "Face", img: np.ndarray) -> tuple[float, np.ndarray]:
        gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        hist = cv2.calcHist([gray], [0], None, [256], [0, 256]).reshape(-1)
        if by_size:
            return face.source_rect_area(), hist
        mask = hull_mask(gray.shape, face.record.landmarks)[..., 0]
        return cpbd((gray * mask).astype(np.uint8)), hist

    results = ctx.per_face(one, "face size, histograms" if by_size else "sharpness, histograms")
    quality = [q for q, _ in results]
    hists = unit_sqrt(np.stack([h for _, h in results]))
    poses = np.array([pitch_yaw_roll(f.record.landmarks, f.width) for f in ctx.faces], np.float64)
    return quality, hists, poses[:, 1], poses[:, 0]


def final_order(ctx: "_Context", by_size: bool) -> "Order":
    """Indices of the faces to keep (in DFL's output order) and of those to trash."""
    n = len(ctx.faces)
    quality, hists, yaws, pitches = _features(ctx, by_size)
    yaw_bucket = bucket_of(-yaws, np.linspace(-YAW_LIMIT, YAW_LIMIT, YAW_BUCKETS))
    members = [[i for i in range(n) if yaw_bucket[i] == g] for g in range(YAW_BUCKETS)]
    quota = quotas([len(m) for m in members], max(0, int(ctx.opts.target)))
    keep: list[int] = []
    for g, group in enumerate(members):
        q = quota[g]
        if not group or q == 0:
            continue
        group = sorted(group, key=lambda i: quality[i], reverse=True)[:KEEP_SHARPEST * q]
        pitch_bucket = bucket_of(np.array([pitches[i] for i in group]), np.linspace(-math.pi / 2, math.pi / 2, q))
        by_pitch = [[i for i, b in zip(group, pitch_bucket) if b == pb] for pb in range(q)]
        by_pitch = [lst for lst in by_pitch if lst]
        scores = distance_sums(hists, [np.array(lst) for lst in by_pitch])
        queues = [sorted(lst, key=lambda i: scores[i], reverse=True) for lst in by_pitch]
        picked = 0
        while picked < q and any(queues):
            for queue in queues:
                if queue and picked < q:
                    keep.append(queue.pop(0))
                    picked += 1
    kept = set(keep)
    return keep, [i for i in range(n) if i not in kept]
