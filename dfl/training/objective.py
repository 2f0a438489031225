"""One full training objective of SAEHD, AMP or Quick96, as DFL computes it.

The trainer hands a batch (dict of NCHW float tensors: ``warped_src, target_src, target_srcm,
target_srcm_em, warped_dst, target_dst, target_dstm, target_dstm_em``; masks are N1HW) to
:meth:`Objective.train_step`, which runs the generator update and, when enabled, the 'true face'
code discriminator and the GAN discriminator updates, and returns the named losses as floats.
:func:`generator_loss` is the same maths without the optimisers, for tests and tools.

Like DFL, gradients are those of the per-sample losses summed over the batch, and the reported
``src_loss``/``dst_loss`` are batch means.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import Tensor, nn

from dfl.models import runtime
from dfl.models.base import SwapModel
from dfl.models.discriminators import CodeDiscriminator, UNetPatchDiscriminator
from dfl.training import losses as L
from dfl.training.optim import make_optimizer

BATCH_KEYS = ("warped_src", "target_src", "target_srcm", "target_srcm_em",
              "warped_dst", "target_dst", "target_dstm", "target_dstm_em")


def effective_options(model: SwapModel, options: dict) -> dict:
    """Options as training uses them: pretraining switches off GAN, true face, styles (DFL)."""
    opts = dict(model.options)
    opts.update(options or {})
    if opts.get("pretrain"):
        opts.update(gan_power=0.0, true_face_power=0.0, face_style_power=0.0, bg_style_power=0.0,
                    random_warp=False, lr_dropout="n")
    if model.model_type == "Quick96":
        opts.update(gan_power=0.0, true_face_power=0.0, face_style_power=0.0, bg_style_power=0.0)
    if getattr(model, "archi_type", "df") != "df" or model.model_type == "AMP":
        opts["true_face_power"] = 0.0
    return opts


def build_discriminators(model: SwapModel, options: dict) -> dict[str, nn.Module]:
    """The discriminators the options call for: ``code_discriminator`` (true face, SAEHD df) and
    ``GAN`` (U-Net patch discriminator, gan_power > 0), named as DFL's files."""
    opts = effective_options(model, options)
    out: dict[str, nn.Module] = {}
    if float(opts.get("true_face_power", 0.0)) != 0.0:
        out["code_discriminator"] = CodeDiscriminator(model.code_ch, code_res=model.code_res)
    if float(opts.get("gan_power", 0.0)) != 0.0:
        patch = int(opts.get("gan_patch_size") or model.resolution // 8)
        out["GAN"] = UNetPatchDiscriminator(patch_size=patch, in_ch=3, base_ch=int(opts.get("gan_dims", 16)))
    return out


@contextlib.contextmanager
def _frozen(modules: list[nn.Module]):
    """No parameter gradients for ``modules`` (the discriminators during the generator pass)."""
    params = [p for m in modules for p in m.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def generator_loss(model: SwapModel, batch: dict[str, Tensor], options: dict | None = None,
                   discriminators: dict[str, nn.Module] | None = None,
                   ) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor]]:
    """(total generator loss to minimise, named per-batch-mean scalar losses (detached), predictions).

    The predictions dict also carries the masked targets the discriminator steps reuse.
    """
    opts = effective_options(model, options or {})
    discriminators = discriminators or {}
    res = model.resolution
    kind = model.model_type
    ws, wd = batch["warped_src"], batch["warped_dst"]
    ts, td = batch["target_src"].float(), batch["target_dst"].float()
    tsm, tdm = batch["target_srcm"].float(), batch["target_dstm"].float()
    tsm_em = batch.get("target_srcm_em")
    tdm_em = batch.get("target_dstm_em")

    face_style = float(opts.get("face_style_power", 0.0)) / 100.0
    bg_style = float(opts.get("bg_style_power", 0.0)) / 100.0
    preds = model.forward_train(ws, wd, style_branch=face_style != 0.0,
                                with_swap=face_style != 0.0 or bg_style != 0.0)
    pss, pssm = preds["pred_src_src"].float(), preds["pred_src_srcm"].float()
    pdd, pddm = preds["pred_dst_dst"].float(), preds["pred_dst_dstm"].float()

    if opts.get("blur_out_mask") and kind != "Quick96":
        ts = L.blur_out_mask(ts, tsm, res)
        td = L.blur_out_mask(td, tdm, res)

    clip = kind != "Quick96"  # Quick96 uses the plain blurred mask
    tsm_blur = L.blur_mask_for_loss(tsm, res, clip=clip)
    tdm_blur = L.blur_mask_for_loss(tdm, res, clip=clip)
    masked = True if kind in ("Quick96", "AMP") else bool(opts.get("masked_training", True))
    ts_opt = ts * tsm_blur if masked else ts
    td_opt = td * tdm_blur if masked else td
    pss_opt = pss * tsm_blur if masked else pss
    pdd_opt = pdd * tdm_blur if masked else pdd

    two_windows = kind == "AMP"
    named: dict[str, Tensor] = {}
    src_struct = L.structural_loss(ts_opt, pss_opt, res, always_two=two_windows)
    dst_struct = L.structural_loss(td_opt, pdd_opt, res, always_two=two_windows)
    src_pix, dst_pix = L.mse(ts_opt, pss_opt), L.mse(td_opt, pdd_opt)
    src_mask, dst_mask = L.mse(tsm, pssm), L.mse(tdm, pddm)
    src_loss = src_struct + src_pix + src_mask
    dst_loss = dst_struct + dst_pix + dst_mask
    named.update(src_dssim=src_struct, dst_dssim=dst_struct, src_mse=src_pix, dst_mse=dst_pix,
                 src_mask=src_mask, dst_mask=dst_mask)

    em_prio = kind == "AMP" or (kind == "SAEHD" and bool(opts.get("eyes_mouth_prio", False)))
    if em_prio and tsm_em is not None and tdm_em is not None:
        src_em = L.eyes_mouth_loss(ts, pss, tsm_em)
        dst_em = L.eyes_mouth_loss(td, pdd, tdm_em)
        src_loss, dst_loss = src_loss + src_em, dst_loss + dst_em
        named.update(src_eyes_mouth=src_em, dst_eyes_mouth=dst_em)

    if face_style != 0.0:
        no_grad_swap = preds["pred_src_dst_no_code_grad"].float()
        fs = L.style_loss(no_grad_swap * preds["pred_src_dstm"].float().detach(),
                          (pdd * pddm).detach(), blur_radius=res // 8, loss_weight=10000 * face_style)
        src_loss = src_loss + fs
        named["face_style"] = fs
    if bg_style != 0.0:
        # DFL derives the style mask from the src target mask here (kept for identical behaviour)
        style_anti = 1.0 - tsm_blur.clamp(0.0, 1.0).detach()
        psd_anti = preds["pred_src_dst"].float() * style_anti
        td_anti = td * style_anti
        bs = (10 * bg_style) * L.dssim(psd_anti, td_anti, int(res / 11.6)) + L.mse(psd_anti, td_anti, 10 * bg_style)
        src_loss = src_loss + bs
        named["bg_style"] = bs

    g = src_loss + dst_loss
    if kind == "AMP":
        tdm_anti = 1.0 - tdm_blur
        g = g + L.mse(pdd * tdm_anti, td * tdm_anti, 0.1)
        g = g + 1e-6 * L.total_variation_mse(pdd * tdm_anti)

    tfp = float(opts.get("true_face_power", 0.0))
    if tfp != 0.0 and "code_discriminator" in discriminators:
        tf_g = tfp * L.d_loss(discriminators["code_discriminator"](preds["src_code"]), real=True)
        g = g + tf_g
        named["true_face"] = tf_g

    gan_power = float(opts.get("gan_power", 0.0))
    if gan_power != 0.0 and "GAN" in discriminators:
        d = discriminators["GAN"]
        c, p = d(pss_opt)
        gan_g = L.d_loss(c, True) + L.d_loss(p, True)
        if kind == "AMP":
            c2, p2 = d(pdd_opt)
            gan_g = gan_g + L.d_loss(c2, True) + L.d_loss(p2, True)
        g = g + gan_power * gan_g
        named["gan_g"] = gan_power * gan_g
        if masked:
            tsm_anti = 1.0 - tsm_blur
            g = g + 1e-6 * L.total_variation_mse(pss)
            g = g + L.mse(pss * tsm_anti, ts * tsm_anti, 0.02)

    preds = dict(preds)
    preds.update(ts_opt=ts_opt.detach(), td_opt=td_opt.detach(), pss_opt=pss_opt.detach(), pdd_opt=pdd_opt.detach())
    scalars = {"src_loss": src_loss.detach().mean(), "dst_loss": dst_loss.detach().mean()}
    scalars.update({k: v.detach().mean() for k, v in named.items()})
    return g.sum(), scalars, preds


def code_discriminator_loss(dis: nn.Module, src_code: Tensor, dst_code: Tensor) -> Tensor:
    """DFL's D_code loss: dst codes are 'real', src codes 'fake'; summed over the batch."""
    return ((L.d_loss(dis(dst_code.detach()), True) + L.d_loss(dis(src_code.detach()), False)) * 0.5).sum()


def gan_discriminator_loss(d: nn.Module, preds: dict[str, Tensor], model_type: str) -> Tensor:
    """DFL's patch-GAN D loss on masked targets (real) and masked reconstructions (fake)."""
    def pair(real: Tensor, fake: Tensor) -> Tensor:
        rc, rp = d(real)
        fc, fp = d(fake)
        return L.d_loss(rc, True), L.d_loss(rp, True), L.d_loss(fc, False), L.d_loss(fp, False)

    if model_type == "AMP":
        terms = pair(preds["ts_opt"], preds["pss_opt"]) + pair(preds["td_opt"], preds["pdd_opt"])
        return (sum(terms) * (1.0 / 8)).sum()
    rc, rp, fc, fp = pair(preds["ts_opt"], preds["pss_opt"])
    return ((rc + fc) * 0.5 + (rp + fp) * 0.5).sum()


class Objective:
    """Owns the discriminators and the optimisers of one model and runs DFL's training iteration.

    ``precision``: "fp32", "bf16" or "fp16" (autocast, weights stay fp32; fp16 uses a grad scaler).  On the
    CPU, "fp16" is not autocast but :func:`dfl.models.runtime.half_tiles`: the Winograd convolutions keep
    their tiles in float16 and everything else stays float32; a step whose gradients overflow there is
    recomputed in float32 (counted in ``fp32_retries``) instead of being applied.
    ``channels_last``: feed the networks NHWC-strided tensors (faster convolutions on CPU and GPU).
    Save ``discriminators`` with the model's networks and ``optimizer_state()`` with the optimiser file.
    """

    def __init__(self, model: SwapModel, options: dict | None = None, precision: str = "fp32",
                 channels_last: bool = False) -> None:
        self.model = model
        self.options = effective_options(model, options or {})
        self.device = next(model.parameters()).device
        self.precision = precision
        self.channels_last = channels_last
        self.discriminators = build_discriminators(model, self.options)
        for d in self.discriminators.values():
            d.to(self.device)
            if channels_last:
                d.to(memory_format=torch.channels_last)
        if channels_last:
            model.to(memory_format=torch.channels_last)
        trainable = set(model.trainable_networks(self.options))
        for name, net in model.networks.items():
            net.requires_grad_(name in trainable)
        # the optimiser holds every network the model ever trains (DFL's "saveable" weights), so its
        # state survives toggling random_warp; frozen networks simply get no gradient
        optimised = set(model.trainable_networks({"random_warp": True, "pretrain": False}))
        g_params = [p for name in model.network_names if name in optimised for p in model.networks[name].parameters()]
        self.optimizers: dict[str, torch.optim.Optimizer] = {
            "src_dst_opt": make_optimizer(g_params, self.options, model.model_type)}
        if "code_discriminator" in self.discriminators:
            self.optimizers["D_code_opt"] = make_optimizer(self.discriminators["code_discriminator"].parameters(), self.options, model.model_type)
        if "GAN" in self.discriminators:
            self.optimizers["GAN_opt"] = make_optimizer(self.discriminators["GAN"].parameters(), self.options, model.model_type)
        self.half_tiles = precision == "fp16" and self.device.type == "cpu"
        self.fp32_retries = 0
        dtype = None if self.half_tiles else {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
        self._autocast_dtype = dtype
        self.scaler = torch.amp.GradScaler(self.device.type) if dtype == torch.float16 else None

    def _autocast(self, half_tiles: bool = False):
        if half_tiles:
            return runtime.half_tiles()
        if self._autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self._autocast_dtype)

    def prepare_batch(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        """Tensors on the model's device (numpy arrays accepted), channels_last inputs if enabled."""
        out = {}
        for k, v in batch.items():
            if k not in BATCH_KEYS:
                continue
            t = torch.as_tensor(v).to(self.device, dtype=torch.float32, non_blocking=True)
            if self.channels_last and t.dim() == 4 and k.startswith("warped"):
                t = t.contiguous(memory_format=torch.channels_last)
            out[k] = t
        return out

    def _backward_step(self, loss: Tensor, opt: torch.optim.Optimizer,
                       half: runtime.HalfTiles | None = None) -> bool:
        """Backward and optimiser step; False (nothing applied) when ``half`` saw a gradient overflow."""
        opt.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(opt)
            self.scaler.update()
        else:
            loss.backward()
            if half is not None and half.overflowed:
                opt.zero_grad(set_to_none=True)
                return False
            opt.step()
        # Drop the gradients once applied: kept until the next zero_grad they would live through the next
        # forward pass, where a step's memory peaks (+0.22 GB for SAEHD df-ud 128, +0.33 GB liae-ud).
        opt.zero_grad(set_to_none=True)
        return True

    def _update(self, compute: Any, opt: torch.optim.Optimizer) -> tuple:
        """Run ``compute()`` (returns the loss first) under the precision's context and apply its gradients;
        with half tiles, a step that overflowed is recomputed in float32 and applied from there."""
        with self._autocast(self.half_tiles) as half:
            out = compute()
        if self._backward_step(out[0], opt, half if self.half_tiles else None):
            return out
        self.fp32_retries += 1
        out = compute()
        self._backward_step(out[0], opt)
        return out

    def train_step(self, batch: dict[str, Any]) -> dict[str, float]:
        """One DFL iteration: generator update, then the code and GAN discriminator updates."""
        self.model.train()
        b = self.prepare_batch(batch)
        discs = list(self.discriminators.values())

        def generator() -> tuple:
            with _frozen(discs):
                return generator_loss(self.model, b, self.options, self.discriminators)

        total, scalars, preds = self._update(generator, self.optimizers["src_dst_opt"])
        if "code_discriminator" in self.discriminators:
            (dl,) = self._update(lambda: (code_discriminator_loss(
                self.discriminators["code_discriminator"], preds["src_code"], preds["dst_code"]),),
                self.optimizers["D_code_opt"])
            scalars["D_code"] = dl.detach() / b["warped_src"].shape[0]
        if "GAN" in self.discriminators:
            (dl,) = self._update(lambda: (gan_discriminator_loss(self.discriminators["GAN"], preds, self.model.model_type),),
                                 self.optimizers["GAN_opt"])
            scalars["D_gan"] = dl.detach() / b["warped_src"].shape[0]
        return {k: float(v) for k, v in scalars.items()}

    @torch.no_grad()
    def preview(self, batch: dict[str, Any], morph_value: float | None = None) -> dict[str, Tensor]:
        """Predictions on the unwarped targets for DFL's preview grid, float32 NCHW on the CPU."""
        self.model.eval()
        b = self.prepare_batch(batch)
        ts, td = b["target_src"], b["target_dst"]
        if self.channels_last:
            ts, td = ts.contiguous(memory_format=torch.channels_last), td.contiguous(memory_format=torch.channels_last)
        with self._autocast():
            out = self.model.preview(ts, td, morph_value)
        self.model.train()
        return {k: v.float().cpu().contiguous() for k, v in out.items() if k.startswith("pred_")}

    def optimizer_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {k: o.state_dict() for k, o in self.optimizers.items()}
        if self.scaler is not None:
            state["grad_scaler"] = self.scaler.state_dict()
        return state

    def load_optimizer_state(self, state: dict[str, Any]) -> list[str]:
        """Restore what matches; returns the optimiser names that start fresh (e.g. GAN just enabled)."""
        fresh = []
        for k, o in self.optimizers.items():
            if k in state:
                try:
                    o.load_state_dict(state[k])
                    continue
                except (ValueError, KeyError, RuntimeError):
                    pass
            fresh.append(k)
        if self.scaler is not None and "grad_scaler" in state:
            self.scaler.load_state_dict(state["grad_scaler"])
        return fresh
