"""DFL's "absolute pixel difference" sort: a chain from the first face, each next face the one whose
pixels differ least (or, with ``similar=False``, most) in sum of absolute differences.

Every pair of faces is compared, so the work grows with the square of the faceset (DFL runs it on the
GPU); here it runs in blocks on the chosen torch device, and all faces are held in memory as uint8.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from dfl.errors import DflError
from dfl.faceset.parallel import bar

if TYPE_CHECKING:
    from dfl.faceset.sort import _Context

_BLOCK = 32


def pairwise_absdiff(images: torch.Tensor, device: torch.device, progress: bool = True) -> np.ndarray:
    """(N, ...) uint8 images -> (N, N) float64 sums of absolute differences."""
    n = images.shape[0]
    flat = images.reshape(n, -1)
    out = np.zeros((n, n), np.float64)
    blocks = range(0, n, _BLOCK)
    with bar(total=len(blocks) * (len(blocks) + 1) // 2, desc="pixel differences", unit="block",
             progress=progress) as shown:
        for a in blocks:
            xa = flat[a:a + _BLOCK].to(device, torch.float32)
            for b in range(a, n, _BLOCK):
                xb = flat[b:b + _BLOCK].to(device, torch.float32)
                d = torch.stack([(xb - row).abs_().sum(dim=1, dtype=torch.float64) for row in xa]).cpu().numpy()
                out[a:a + len(xa), b:b + len(xb)] = d
                out[b:b + len(xb), a:a + len(xa)] = d.T
                shown.update(1)
    return out


def chain(dist: np.ndarray, similar: bool = True) -> list[int]:
    """From face 0, repeatedly the nearest (or farthest) face not yet placed (ties: lower index)."""
    n = dist.shape[0]
    used = np.zeros(n, bool)
    order = [0]
    used[0] = True
    for _ in range(n - 1):
        row = dist[order[-1]]
        cand = np.flatnonzero(~used)
        vals = row[cand]
        j = int(cand[np.argmin(vals) if similar else np.flatnonzero(vals == vals.max())[-1]])
        order.append(j)
        used[j] = True
    return order


def absdiff_order(ctx: "_Context") -> list[int]:
    from dfl.device import pick_device

    faces = ctx.faces
    shape = (faces[0].height, faces[0].width)
    for f in faces:
        if (f.height, f.width) != shape:
            raise DflError(f"{f.path}: {f.width}x{f.height}, but {faces[0].path.name} is "
                           f"{shape[1]}x{shape[0]}; absdiff compares faces of one size (resize the faceset first)")
    pixels = ctx.per_face(lambda f, img: torch.from_numpy(img), "loading")
    dist = pairwise_absdiff(torch.stack(pixels), pick_device(ctx.opts.device), ctx.opts.progress)
    return chain(dist, ctx.opts.similar)
