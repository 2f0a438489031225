"""Quick96: DFL's fixed preset for a first try (96 px full face, df-ud, ae 128, e 64, d 64, mask 16).

The networks are SAEHD's df-ud at that size; what differs is the training recipe (RMSprop at
lr 2e-4 with lr dropout, masked DSSIM + MSE on the plain blurred mask, batch 4), declared here.
"""

from __future__ import annotations

from typing import Any

from dfl.models import swap
from dfl.models.base import SwapLoss
from dfl.models.options import option
from dfl.models.registry import DflImport, ModelSpec, OptimizerConfig, register_model
from dfl.models.saehd import SAEHDModel, dfl_networks

FIXED: dict[str, Any] = {
    "resolution": 96, "face_type": "f", "archi": "df-ud", "ae_dims": 128, "e_dims": 64, "d_dims": 64,
    "d_mask_dims": 16, "batch_size": 4, "masked_training": True, "eyes_mouth_prio": False,
    "random_warp": True, "lr_dropout": "y", "adabelief": False, "ct_mode": "none",
}
# Quick96 is a fixed preset: nothing about the networks is asked, only the run-time flips.
# DFL's Quick96 never flips its samples; the flips stay switchable here, off by default as there.
OPTIONS = (
    option("random_src_flip", "bool", False, "Flip SRC faces randomly"),
    option("random_dst_flip", "bool", False, "Flip DST faces randomly"),
)


class Quick96Model(SAEHDModel):
    model_type = "Quick96"
    loss_terms = SwapLoss(always_masked=True, clip_mask=False)   # the plain blurred mask, unclipped

    def __init__(self, options: dict | None = None) -> None:
        opts = dict(options or {})
        opts.update(FIXED)
        super().__init__(opts)


def optimizer(options: dict[str, Any]) -> OptimizerConfig:
    """RMSprop at lr 2e-4 with lr dropout 0.3, always (DFL's Quick96)."""
    return OptimizerConfig("rmsprop", lr=2e-4, lr_dropout=0.3)


SPEC = register_model(ModelSpec(
    name="Quick96",
    kind="swap",
    summary="96 full face df-ud (fixed preset)",
    options=OPTIONS,
    build=Quick96Model,
    fixed=FIXED,
    recipe=swap.SwapRecipe,
    training_data=swap.training_data,
    optimizer=optimizer,
    trace=swap.trace,
    # its shapes are checked against the preset when options are rebuilt; nothing to infer from them
    dfl_import=DflImport(dfl_networks, ignored=("batch_size",)),   # DFL's Quick96 is SAEHD df-ud at fixed dims
    demo=True,
))
