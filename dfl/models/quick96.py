"""Quick96: DFL's fixed preset for a first try (96 px full face, df-ud, ae 128, e 64, d 64, mask 16).

The networks are SAEHD's df-ud at that size; what differs is the training recipe (RMSprop at
lr 2e-4 with lr dropout, masked DSSIM + MSE, batch 4), which the objective reads from the options.
"""

from __future__ import annotations

from dfl.models.options import QUICK96_FIXED
from dfl.models.saehd import SAEHDModel


class Quick96Model(SAEHDModel):
    model_type = "Quick96"

    def __init__(self, options: dict | None = None) -> None:
        opts = dict(options or {})
        opts.update(QUICK96_FIXED)
        super().__init__(opts)
