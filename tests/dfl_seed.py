"""The seed rule behind the DFL oracle vectors in ``tests/data/dfl_oracle/`` (pure numpy, no dfl import).

``scripts/dfl_oracle/make_vectors.py`` fills DeepFaceLab's own networks with these values and stores what
DFL's code computes from them; the tests regenerate the same values for dfl's networks, so the large
networks' weights never need to be committed.  Every variable is seeded by its leras name, so the rule
does not depend on the order in which either side walks its variables.  ``RandomState`` is used because
numpy keeps its stream frozen across versions (the oracle runs numpy 1.x, the tests numpy 2.x).
"""

from __future__ import annotations

import zlib

import numpy as np

# Kernel gains that keep outputs near 1 where the plain rule would not: S3FD's first layer sees 0..255
# pixels, and FAN's residual blocks without trained BatchNorm statistics would grow every block.
_GAINS = {"S3FD/conv1_1/": 1.0 / 128, "FAN/": 0.25}


def leras_value(name: str, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Value of the leras variable ``name`` with its leras ``shape``.

    ``name`` is the full TensorFlow name, network first (``decoder_src/upscale0/conv1/weight:0``), so two
    networks of the same shape (decoder_src and decoder_dst) get different values.

    Kernels (4-D ``(kh, kw, in, out)`` and 2-D ``(in, out)``) are uniform with variance ``2 / fan_in``, so
    activations keep their scale through (leaky) ReLU stacks; the rest stays near what training leaves:
    biases and shifts small, scales near 1, variances positive.
    """
    rs = np.random.RandomState((zlib.crc32(name.encode()) + seed * 7919) % (2**32))
    leaf = name.rsplit("/", 1)[-1].split(":")[0]
    shape = tuple(int(s) for s in shape)
    if leaf == "weight" and len(shape) in (2, 4):
        fan_in = shape[0] if len(shape) == 2 else shape[0] * shape[1] * shape[2]
        gain = next((g for prefix, g in _GAINS.items() if name.startswith(prefix)), 1.0)
        a = gain * np.sqrt(6.0 / max(1, fan_in))
        v = rs.uniform(-a, a, shape)
    elif leaf == "weight":                       # norm scales (FRN, BatchNorm, L2Norm)
        v = 1.0 + rs.uniform(-0.1, 0.1, shape)
    elif leaf == "running_var":
        v = rs.uniform(0.5, 1.5, shape)
    elif leaf == "eps":
        v = rs.uniform(1e-6, 1e-3, shape)
    else:                                        # bias, tau, running_mean
        v = rs.uniform(-0.1, 0.1, shape)
    return v.astype(np.float32)


def image_batch(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """A float32 batch in [0, 1] (NHWC) that both sides feed to a network."""
    return np.random.RandomState(seed).uniform(0.0, 1.0, shape).astype(np.float32)


def image_u8(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """A uint8 image (smooth blobs over noise, so detectors and landmarkers see some structure)."""
    rs = np.random.RandomState(seed)
    h, w = shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = rs.uniform(0, 60, shape)
    for _ in range(6):
        cy, cx, r = rs.uniform(0, h), rs.uniform(0, w), rs.uniform(h / 8, h / 3)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))[..., None]
        img += blob * rs.uniform(60, 190, (1, 1, shape[2]))
    return np.clip(img, 0, 255).astype(np.uint8)
