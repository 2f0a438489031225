"""What every registered model offers (:class:`Model`), and what face-swap models offer besides
(:class:`SwapModel`) to the trainer, the merger and the exporters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

# DFL's short face-type codes as the option stores them.
FACE_TYPE_CODES = {"h": "half_face", "mf": "midfull_face", "f": "full_face", "wf": "whole_face", "head": "head"}


def face_type_from_code(code: str) -> Any:
    """``FaceType`` for an option code ("f", "wf", ...); the plain name if the faces layer is absent."""
    name = FACE_TYPE_CODES.get(code, code)
    try:
        from dfl.faces.align import FaceType
    except ImportError:  # the faces layer is built in parallel; keep models importable without it
        return name
    return FaceType.from_string(name)


class Model(nn.Module):
    """A registered model: its options, the face it works on and its networks by DFL's names.

    Subclasses register their networks as attributes named as DFL names its files (``encoder``,
    ``inter``, ``decoder_src``, ...), so ``state_dict()`` keys read ``<network>.<param>`` and the model
    store saves ``<network>.<param>`` tensors; ``forward_train`` is the forward pass the model's recipe
    trains (``torch.compile`` compiles it on a GPU).
    """

    model_type: str = ""                      # the registered name
    network_names: tuple[str, ...] = ()
    swap_inputs: dict[str, float] = {}
    """Inputs the swap takes besides the dst face, with their merge-time defaults (AMP: its morph value).
    Exports and the live swap ask this instead of the model's name."""

    def __init__(self, options: dict) -> None:
        super().__init__()
        self.options = dict(options)
        self.resolution = int(options["resolution"])
        self.face_type = face_type_from_code(str(options["face_type"]))

    @property
    def networks(self) -> dict[str, nn.Module]:
        """The networks by DFL's names, in DFL's order."""
        return {name: getattr(self, name) for name in self.network_names}

    def trainable_networks(self, options: dict | None = None) -> list[str]:
        """Networks the optimiser updates under ``options`` (DFL freezes some in some modes)."""
        return list(self.network_names)

    def reinit_networks(self, names: list[str]) -> None:
        """Fresh DFL-style initialisation (Glorot weights, zero biases) for the named networks."""
        from dfl.models.blocks import init_glorot

        for name in names:
            for module in self.networks[name].modules():
                if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                    init_glorot(module)

    def forward_train(self, *inputs: Tensor, **kwargs: Any) -> dict[str, Tensor]:
        raise NotImplementedError


@dataclass(frozen=True)
class SwapLoss:
    """How a face-swap model's DFL loss differs from SAEHD's (read by :mod:`dfl.models.swap_loss`)."""

    always_masked: bool = False       # masked DSSIM/MSE whatever ``masked_training`` says (AMP, Quick96)
    clip_mask: bool = True            # the blurred loss mask clipped to [0, 1] (Quick96: not)
    dssim_two_windows: bool = False   # DSSIM at two window sizes at every resolution (AMP)
    eyes_mouth_always: bool = False   # eyes and mouth priority whatever ``eyes_mouth_prio`` says (AMP)
    dst_background: bool = False     # AMP's extra terms: dst background MSE and its total variation
    gan_on_dst: bool = False          # the GAN also judges dst reconstructions (AMP)
    code_discriminator: bool = True   # 'true face' possible at all (SAEHD df only)


class SwapModel(Model):
    """An autoencoder pair that learns src and dst faces and swaps them."""

    loss_terms = SwapLoss()
    code_res: int = 0                 # the spatial code the 'true face' discriminator reads
    code_ch: int = 0

    def pretrain_reset_networks(self) -> list[str]:
        """Networks DFL re-initialises when pretraining is switched off (the inters)."""
        return [n for n in self.network_names if n.startswith("inter")]

    def forward_train(self, warped_src: Tensor, warped_dst: Tensor, **kwargs: Any) -> dict[str, Tensor]:
        raise NotImplementedError

    def swap(self, dst: Tensor, morph_value: float | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """dst NCHW BGR [0,1] -> (pred_src_dst, pred_src_dstm, pred_dst_dstm): the swapped face, its mask
        and the dst reconstruction's mask, masks N1HW.  This is the model's whole use outside training
        (merging, export, live swapping); ``morph_value`` is AMP's (others ignore it)."""
        raise NotImplementedError

    def swap_graph(self, dst: Tensor, *inputs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """:meth:`swap` with each of :attr:`swap_inputs` as a float32 tensor of shape (1,), in that order,
        and no Python-side branching on their values: one traced graph (an ONNX export) serves them all."""
        return self.swap(dst)

    def forward(self, warped_src: Tensor, warped_dst: Tensor) -> dict[str, Tensor]:
        return self.forward_train(warped_src, warped_dst)

    @torch.no_grad()
    def preview(self, target_src: Tensor, target_dst: Tensor, morph_value: float | None = None) -> dict[str, Tensor]:
        """Predictions for DFL's preview grid (src, src recon, dst, dst recon, swap), no gradients."""
        out = self.forward_train(target_src, target_dst)
        if morph_value is not None:
            out["pred_src_dst"], out["pred_src_dstm"], _ = self.swap(target_dst, morph_value)
        return out

    def preview_morph(self) -> float | None:
        """The morph value the training preview swaps with (AMP: its morph factor; others none)."""
        return None
