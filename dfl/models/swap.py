"""What the face-swap models' specs share: DFL's training iteration as a recipe (:class:`SwapRecipe`), the
batches they learn from (src and dst faces), DFL's optimiser defaults, DFL's option rounding, the memory
trace and what the discriminators' weights say about the options.

Each swap model's module passes these to its :class:`~dfl.models.registry.ModelSpec`; what differs per
model (the loss terms, a fixed optimiser, a preset) is declared there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from dfl.models.base import SwapModel
from dfl.models.registry import DataRequest, OptimizerConfig, Shapes, Update, get_spec
from dfl.models.swap_loss import (build_discriminators, code_discriminator_loss, effective_options,
                                  gan_discriminator_loss, generator_loss)
from dfl.samples import BATCH_KEYS, SampleOptions, TrainingData


class SwapRecipe:
    """DFL's iteration for a face-swap model: the generator update (both autoencoders, discriminators
    frozen), then the 'true face' code discriminator's and the patch GAN's updates when enabled.

    Builds the discriminators the options call for (``networks``, saved with the model) and leaves only the
    networks the options train with gradients.
    """

    inputs = BATCH_KEYS
    conv_inputs = ("warped_src", "warped_dst")
    preview_inputs = ("target_src", "target_dst")

    def __init__(self, model: SwapModel, options: dict[str, Any]) -> None:
        self.model = model
        self.options = effective_options(model, options or {})
        self.networks = build_discriminators(model, self.options)
        trainable = set(model.trainable_networks(self.options))
        for name, net in model.networks.items():
            net.requires_grad_(name in trainable)

    def updates(self) -> list[Update]:
        model, discs = self.model, self.networks
        cfg = get_spec(model.model_type).optimizer(self.options)
        # the optimiser holds every network the model ever trains (DFL's "saveable" weights), so its
        # state survives toggling random_warp; frozen networks simply get no gradient
        optimised = set(model.trainable_networks({"random_warp": True, "pretrain": False}))
        g_params = [p for name in model.network_names if name in optimised for p in model.networks[name].parameters()]
        out = [Update("src_dst_opt", g_params, cfg, self._generator, frozen=tuple(discs.values()))]
        if "code_discriminator" in discs:
            out.append(Update("D_code_opt", list(discs["code_discriminator"].parameters()), cfg, self._code))
        if "GAN" in discs:
            out.append(Update("GAN_opt", list(discs["GAN"].parameters()), cfg, self._gan))
        return out

    def _generator(self, batch: dict[str, Tensor], carry: dict[str, Any]) -> tuple[Tensor, dict[str, Tensor]]:
        total, scalars, carry["preds"] = generator_loss(self.model, batch, self.options, self.networks)
        return total, scalars

    def _code(self, batch: dict[str, Tensor], carry: dict[str, Any]) -> tuple[Tensor, dict[str, Tensor]]:
        preds = carry["preds"]
        dl = code_discriminator_loss(self.networks["code_discriminator"], preds["src_code"], preds["dst_code"])
        return dl, {"D_code": dl.detach() / batch["warped_src"].shape[0]}

    def _gan(self, batch: dict[str, Tensor], carry: dict[str, Any]) -> tuple[Tensor, dict[str, Tensor]]:
        dl = gan_discriminator_loss(self.networks["GAN"], carry["preds"], self.model.loss_terms.gan_on_dst)
        return dl, {"D_gan": dl.detach() / batch["warped_src"].shape[0]}

    def preview(self, batch: dict[str, Tensor], morph_value: float | None = None) -> dict[str, Tensor]:
        """Predictions on the unwarped targets (``pred_*``); ``morph_value``: AMP's swap morph."""
        out = self.model.preview(batch["target_src"], batch["target_dst"], morph_value)
        return {k: v for k, v in out.items() if k.startswith("pred_")}

    def preview_columns(self, batch: dict[str, Tensor]) -> list[Tensor]:
        """DFL's preview grid: src, src recon, dst, dst recon, swap."""
        preds = self.preview(batch, self.model.preview_morph())
        return [batch["target_src"], preds["pred_src_src"], batch["target_dst"], preds["pred_dst_dst"],
                preds["pred_src_dst"]]


def training_data(model: SwapModel, options: dict[str, Any], request: DataRequest) -> TrainingData:
    """Both facesets, read once (unreadable faces skipped with a line; none at all is a DflError), as the
    options augment them; pretraining forces DFL's pretrain sampling."""
    o = options
    pretrain = bool(o.get("pretrain", False))
    sopts = SampleOptions(
        resolution=int(model.resolution),
        face_type=model.face_type,
        batch_size=request.batch_size,
        random_warp=bool(o.get("random_warp", True)) and not pretrain,
        random_src_flip=True if pretrain else bool(o.get("random_src_flip", False)),
        random_dst_flip=True if pretrain else bool(o.get("random_dst_flip", True)),
        ct_mode="none" if pretrain else str(o.get("ct_mode") or "none"),
        random_hsv_power=0.0 if pretrain else float(o.get("random_hsv_power", 0.0) or 0.0),
        uniform_yaw=bool(o.get("uniform_yaw", False)) or pretrain,
        seed=request.seed,
    )
    return TrainingData(request.src_dir, request.dst_dir, sopts, workers=request.workers, notify=request.notify)


def trace(model: SwapModel, batch: int) -> Any:
    """One training forward pass of a batch of empty faces (on the ``meta`` device: shapes only)."""
    r = model.resolution
    return model.forward_train(torch.empty(batch, 3, r, r), torch.empty(batch, 3, r, r))


def optimizer(options: dict[str, Any]) -> OptimizerConfig:
    """DFL's optimiser for SAEHD and AMP: AdaBelief (RMSprop when ``adabelief`` is off) at lr 5e-5;
    ``lr_dropout`` y/cpu keeps 30% of updates with a 500-iteration cosine cycle; ``clipgrad`` clips the
    global norm at 1.0; pretraining turns lr dropout off."""
    on = str(options.get("lr_dropout", "n")).lower() in ("y", "cpu", "true") and not options.get("pretrain", False)
    lr_dropout, lr_cos = (0.3, 500) if on else (1.0, 0)
    clipnorm = 1.0 if options.get("clipgrad", False) else 0.0
    name = "adabelief" if options.get("adabelief", True) else "rmsprop"
    return OptimizerConfig(name, lr=5e-5, lr_dropout=lr_dropout, lr_cos=lr_cos, clipnorm=clipnorm)


def finish_autoencoder_options(out: dict[str, Any], step: int) -> dict[str, Any]:
    """DFL's rounding: resolution down to a multiple of ``step`` (64..640), even dims, and the derived
    defaults of ``d_mask_dims`` (d_dims / 3) and ``gan_patch_size`` (resolution / 8)."""
    out["resolution"] = min(640, max(64, (out["resolution"] // step) * step))
    for k in ("e_dims", "d_dims"):
        out[k] += out[k] % 2
    if out["d_mask_dims"] is None:
        dm = out["d_dims"] // 3
        out["d_mask_dims"] = dm + dm % 2
    else:
        out["d_mask_dims"] += out["d_mask_dims"] % 2
    if out.get("gan_patch_size") is None:
        out["gan_patch_size"] = out["resolution"] // 8
    return out


def options_from_weights(own: Callable[[Shapes], tuple[dict[str, Any], dict[str, str]]]
                         ) -> Callable[[Shapes], tuple[dict[str, Any], dict[str, str]]]:
    """A swap model's ``options_from_weights``: what its own networks' shapes say (``own``), plus what the
    discriminators saved beside them say (``GAN.*``: its dims and a patch size that rebuilds it; either:
    that gan_power / true_face_power were above 0)."""
    def recover(shapes: Shapes) -> tuple[dict[str, Any], dict[str, str]]:
        known, unknown = own(shapes)
        if any(k.startswith("GAN.") for k in shapes):
            from dfl.models.discriminators import gan_options_from_shapes

            if known.get("resolution"):
                known.update(gan_options_from_shapes(shapes, int(known["resolution"])))
            unknown["gan_power"] = "above 0 (the weights hold a GAN; DFL's typical value is 0.1)"
        if any(k.startswith("code_discriminator.") for k in shapes):
            unknown["true_face_power"] = "above 0 (the weights hold a true-face discriminator; typical 0.01)"
        return known, unknown
    return recover
