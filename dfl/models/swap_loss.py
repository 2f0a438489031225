"""DFL's face-swap loss, as SAEHD, AMP and Quick96 compute it: the generator's loss and the discriminators'.

What differs between the models is declared by each model class as :class:`dfl.models.base.SwapLoss`
(``loss_terms``) and by the options it declares: an option a model does not declare (Quick96's GAN, AMP's
styles) is off.  Like DFL, gradients are those of the per-sample losses summed over the batch, and the
reported ``src_loss``/``dst_loss`` are batch means.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from dfl.models import losses as L
from dfl.models.base import SwapModel
from dfl.models.discriminators import CodeDiscriminator, UNetPatchDiscriminator
from dfl.models.registry import find_spec

# features a model has only when it declares their option (else off)
FEATURE_OPTIONS = {"gan_power": 0.0, "true_face_power": 0.0, "face_style_power": 0.0, "bg_style_power": 0.0,
                   "blur_out_mask": False}


def effective_options(model: SwapModel, options: dict) -> dict:
    """Options as training uses them: a preset's values stand; pretraining switches off GAN, true face and
    styles (DFL); a model that does not declare a feature's option does not have it; 'true face' needs a
    model with a place for it."""
    spec = find_spec(model.model_type)
    opts = dict(model.options)
    opts.update(options or {})
    if spec is not None:
        opts.update(spec.fixed)
    if opts.get("pretrain"):
        opts.update(gan_power=0.0, true_face_power=0.0, face_style_power=0.0, bg_style_power=0.0,
                    random_warp=False, lr_dropout="n")
    declared = spec.known_options() if spec is not None else set(opts)
    for name, off in FEATURE_OPTIONS.items():
        if name not in declared:
            opts[name] = off
    if not model.loss_terms.code_discriminator:
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


def generator_loss(model: SwapModel, batch: dict[str, Tensor], options: dict | None = None,
                   discriminators: dict[str, nn.Module] | None = None,
                   ) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor]]:
    """(total generator loss to minimise, named per-batch-mean scalar losses (detached), predictions).

    The predictions dict also carries the masked targets the discriminator steps reuse.
    """
    opts = effective_options(model, options or {})
    discriminators = discriminators or {}
    face_style = float(opts.get("face_style_power", 0.0)) / 100.0
    bg_style = float(opts.get("bg_style_power", 0.0)) / 100.0
    preds = dict(model.forward_train(batch["warped_src"], batch["warped_dst"], style_branch=face_style != 0.0,
                                     with_swap=face_style != 0.0 or bg_style != 0.0))
    f = _Faces(model, batch, preds, opts)
    src_loss, dst_loss, named = _reconstruction(model, f, opts)
    src_loss = _styles(model, f, preds, src_loss, named, face_style, bg_style)
    g = src_loss + dst_loss
    if model.loss_terms.dst_background:
        tdm_anti = 1.0 - f.tdm_blur
        g = g + L.mse(f.pdd * tdm_anti, f.td * tdm_anti, 0.1)
        g = g + 1e-6 * L.total_variation_mse(f.pdd * tdm_anti)
    g = _adversarial(model, f, preds, g, named, opts, discriminators)
    preds.update(ts_opt=f.ts_opt.detach(), td_opt=f.td_opt.detach(), pss_opt=f.pss_opt.detach(),
                 pdd_opt=f.pdd_opt.detach())
    scalars = {"src_loss": src_loss.detach().mean(), "dst_loss": dst_loss.detach().mean()}
    scalars.update({k: v.detach().mean() for k, v in named.items()})
    return g.sum(), scalars, preds


class _Faces:
    """The targets and reconstructions of one step, with the (blurred) masks the losses weigh them by."""

    def __init__(self, model: SwapModel, batch: dict[str, Tensor], preds: dict[str, Tensor], opts: dict) -> None:
        res, terms = model.resolution, model.loss_terms
        ts, td = batch["target_src"].float(), batch["target_dst"].float()
        self.tsm, self.tdm = batch["target_srcm"].float(), batch["target_dstm"].float()
        self.tsm_em, self.tdm_em = batch.get("target_srcm_em"), batch.get("target_dstm_em")
        self.pss, self.pssm = preds["pred_src_src"].float(), preds["pred_src_srcm"].float()
        self.pdd, self.pddm = preds["pred_dst_dst"].float(), preds["pred_dst_dstm"].float()
        if opts.get("blur_out_mask"):
            ts = L.blur_out_mask(ts, self.tsm, res)
            td = L.blur_out_mask(td, self.tdm, res)
        self.ts, self.td = ts, td
        self.tsm_blur = L.blur_mask_for_loss(self.tsm, res, clip=terms.clip_mask)
        self.tdm_blur = L.blur_mask_for_loss(self.tdm, res, clip=terms.clip_mask)
        self.masked = terms.always_masked or bool(opts.get("masked_training", True))
        m = self.masked
        self.ts_opt = ts * self.tsm_blur if m else ts
        self.td_opt = td * self.tdm_blur if m else td
        self.pss_opt = self.pss * self.tsm_blur if m else self.pss
        self.pdd_opt = self.pdd * self.tdm_blur if m else self.pdd


def _reconstruction(model: SwapModel, f: _Faces, opts: dict) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
    """DSSIM + MSE of both reconstructions and their masks, and eyes/mouth priority where asked."""
    res, terms = model.resolution, model.loss_terms
    two_windows = terms.dssim_two_windows
    src_struct = L.structural_loss(f.ts_opt, f.pss_opt, res, always_two=two_windows)
    dst_struct = L.structural_loss(f.td_opt, f.pdd_opt, res, always_two=two_windows)
    src_pix, dst_pix = L.mse(f.ts_opt, f.pss_opt), L.mse(f.td_opt, f.pdd_opt)
    src_mask, dst_mask = L.mse(f.tsm, f.pssm), L.mse(f.tdm, f.pddm)
    src_loss = src_struct + src_pix + src_mask
    dst_loss = dst_struct + dst_pix + dst_mask
    named = dict(src_dssim=src_struct, dst_dssim=dst_struct, src_mse=src_pix, dst_mse=dst_pix,
                 src_mask=src_mask, dst_mask=dst_mask)
    em_prio = terms.eyes_mouth_always or bool(opts.get("eyes_mouth_prio", False))
    if em_prio and f.tsm_em is not None and f.tdm_em is not None:
        src_em = L.eyes_mouth_loss(f.ts, f.pss, f.tsm_em)
        dst_em = L.eyes_mouth_loss(f.td, f.pdd, f.tdm_em)
        src_loss, dst_loss = src_loss + src_em, dst_loss + dst_em
        named.update(src_eyes_mouth=src_em, dst_eyes_mouth=dst_em)
    return src_loss, dst_loss, named


def _styles(model: SwapModel, f: _Faces, preds: dict[str, Tensor], src_loss: Tensor, named: dict[str, Tensor],
            face_style: float, bg_style: float) -> Tensor:
    """DFL's face and background style powers, added to the src loss."""
    res = model.resolution
    if face_style != 0.0:
        no_grad_swap = preds["pred_src_dst_no_code_grad"].float()
        fs = L.style_loss(no_grad_swap * preds["pred_src_dstm"].float().detach(),
                          (f.pdd * f.pddm).detach(), blur_radius=res // 8, loss_weight=10000 * face_style)
        src_loss = src_loss + fs
        named["face_style"] = fs
    if bg_style != 0.0:
        # DFL derives the style mask from the src target mask here (kept for identical behaviour)
        style_anti = 1.0 - f.tsm_blur.clamp(0.0, 1.0).detach()
        psd_anti = preds["pred_src_dst"].float() * style_anti
        td_anti = f.td * style_anti
        bs = (10 * bg_style) * L.dssim(psd_anti, td_anti, int(res / 11.6)) + L.mse(psd_anti, td_anti, 10 * bg_style)
        src_loss = src_loss + bs
        named["bg_style"] = bs
    return src_loss


def _adversarial(model: SwapModel, f: _Faces, preds: dict[str, Tensor], g: Tensor, named: dict[str, Tensor],
                 opts: dict[str, Any], discriminators: dict[str, nn.Module]) -> Tensor:
    """The generator's side of 'true face' and of the patch GAN."""
    tfp = float(opts.get("true_face_power", 0.0))
    if tfp != 0.0 and "code_discriminator" in discriminators:
        tf_g = tfp * L.d_loss(discriminators["code_discriminator"](preds["src_code"]), real=True)
        g = g + tf_g
        named["true_face"] = tf_g
    gan_power = float(opts.get("gan_power", 0.0))
    if gan_power != 0.0 and "GAN" in discriminators:
        d = discriminators["GAN"]
        c, p = d(f.pss_opt)
        gan_g = L.d_loss(c, True) + L.d_loss(p, True)
        if model.loss_terms.gan_on_dst:
            c2, p2 = d(f.pdd_opt)
            gan_g = gan_g + L.d_loss(c2, True) + L.d_loss(p2, True)
        g = g + gan_power * gan_g
        named["gan_g"] = gan_power * gan_g
        if f.masked:
            tsm_anti = 1.0 - f.tsm_blur
            g = g + 1e-6 * L.total_variation_mse(f.pss)
            g = g + L.mse(f.pss * tsm_anti, f.ts * tsm_anti, 0.02)
    return g


def code_discriminator_loss(dis: nn.Module, src_code: Tensor, dst_code: Tensor) -> Tensor:
    """DFL's D_code loss: dst codes are 'real', src codes 'fake'; summed over the batch."""
    return ((L.d_loss(dis(dst_code.detach()), True) + L.d_loss(dis(src_code.detach()), False)) * 0.5).sum()


def gan_discriminator_loss(d: nn.Module, preds: dict[str, Tensor], on_dst: bool = False) -> Tensor:
    """DFL's patch-GAN D loss on masked targets (real) and masked reconstructions (fake); ``on_dst``: of
    both sides (AMP)."""
    def pair(real: Tensor, fake: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        rc, rp = d(real)
        fc, fp = d(fake)
        return L.d_loss(rc, True), L.d_loss(rp, True), L.d_loss(fc, False), L.d_loss(fp, False)

    if on_dst:
        terms = pair(preds["ts_opt"], preds["pss_opt"]) + pair(preds["td_opt"], preds["pdd_opt"])
        return (sum(terms) * (1.0 / 8)).sum()
    rc, rp, fc, fp = pair(preds["ts_opt"], preds["pss_opt"])
    return ((rc + fc) * 0.5 + (rp + fp) * 0.5).sum()
