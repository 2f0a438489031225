"""SAEHD: DFL's main model, archi ``df`` or ``liae`` with the options ``u``, ``d``, ``t``.

* ``u``: pixel-normalise the encoder's flat code (better likeness);
* ``d``: inner resolution halved, the decoder ends in four RGB convs joined by depth-to-space;
* ``t``: deeper encoder (5 downscales with residual blocks) and decoder (4 upscales), no upscale in
  the inter.

``df`` shares one encoder and one inter between both faces, with one decoder per face.  ``liae``
shares the encoder and one decoder; ``inter_AB`` sees both faces, ``inter_B`` only dst, and the
decoder reads the two inter codes concatenated on channels (src: AB+AB, dst: B+AB, swap: AB+AB).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from dfl.errors import DflError
from dfl.models import swap
from dfl.models.base import SwapLoss, SwapModel
from dfl.models.blocks import (
    Downscale,
    DownscaleBlock,
    ResidualBlock,
    Upscale,
    conv2d,
    dense,
    depth_to_space,
    pixel_norm,
    same_input_convs,
)
from dfl.models.options import COMMON_RUN, CT_MODES, option
from dfl.models.registry import DflImport, ModelSpec, register_model

OPTIONS = (
    option("resolution", "int", 128, "Resolution", min=64, max=640, changeable=False),
    option("face_type", "str", "f", "Face type", choices=("h", "mf", "f", "wf", "head"), changeable=False),
    option("archi", "str", "liae-ud", "AE architecture", changeable=False, keep_case=True),
    option("ae_dims", "int", 256, "AutoEncoder dimensions", min=32, max=1024, changeable=False),
    option("e_dims", "int", 64, "Encoder dimensions", min=16, max=256, changeable=False),
    option("d_dims", "int", 64, "Decoder dimensions", min=16, max=256, changeable=False),
    option("d_mask_dims", "int", None, "Decoder mask dimensions", min=16, max=256, changeable=False),
    *COMMON_RUN,
    option("masked_training", "bool", True, "Masked training", when="face_type in ('wf', 'head')"),
    option("eyes_mouth_prio", "bool", False, "Eyes and mouth priority"),
    option("uniform_yaw", "bool", False, "Uniform yaw distribution of samples"),
    option("blur_out_mask", "bool", False, "Blur out mask"),
    option("adabelief", "bool", True, "Use AdaBelief optimizer?"),
    option("lr_dropout", "str", "n", "Use learning rate dropout", choices=("n", "y", "cpu")),
    option("random_warp", "bool", True, "Enable random warp of samples"),
    option("random_hsv_power", "float", 0.0, "Random hue/saturation/light intensity", min=0.0, max=0.3),
    option("gan_power", "float", 0.0, "GAN power", min=0.0, max=5.0),
    option("gan_patch_size", "int", None, "GAN patch size", min=3, max=640, when="gan_power != 0"),
    option("gan_dims", "int", 16, "GAN dimensions", min=4, max=512, when="gan_power != 0"),
    option("true_face_power", "float", 0.0, "'True face' power.", min=0.0, max=1.0, when="archi.startswith('df')"),
    option("face_style_power", "float", 0.0, "Face style power", min=0.0, max=100.0),
    option("bg_style_power", "float", 0.0, "Background style power", min=0.0, max=100.0),
    option("ct_mode", "str", "none", "Color transfer for src faceset", choices=CT_MODES),
    option("clipgrad", "bool", False, "Enable gradient clipping"),
    option("pretrain", "bool", False, "Enable pretraining mode"),
)


def parse_archi(archi: str) -> tuple[str, str]:
    """``"liae-ud"`` -> ``("liae", "ud")``; DflError for anything DFL would refuse."""
    parts = archi.lower().split("-")
    if len(parts) > 2 or parts[0] not in ("df", "liae"):
        raise DflError(f"archi {archi!r}: expected df or liae with optional -u/-d/-t suffixes (e.g. liae-ud)")
    opts = parts[1] if len(parts) == 2 else ""
    if len(parts) == 2 and (not opts or any(c not in "udt" for c in opts)):
        raise DflError(f"archi {archi!r}: suffix letters must be among u, d, t")
    return parts[0], opts


class Encoder(nn.Module):
    """Image -> flat code: 4 Downscales (or the deeper ``t`` stack), flattened, optionally normalised."""

    def __init__(self, in_ch: int, e_ch: int, opts: str) -> None:
        super().__init__()
        self.opts = opts
        self.e_ch = e_ch
        if "t" in opts:
            self.down1 = Downscale(in_ch, e_ch, 5)
            self.res1 = ResidualBlock(e_ch)
            self.down2 = Downscale(e_ch, e_ch * 2, 5)
            self.down3 = Downscale(e_ch * 2, e_ch * 4, 5)
            self.down4 = Downscale(e_ch * 4, e_ch * 8, 5)
            self.down5 = Downscale(e_ch * 8, e_ch * 8, 5)
            self.res5 = ResidualBlock(e_ch * 8)
        else:
            self.down1 = DownscaleBlock(in_ch, e_ch, n_downscales=4, kernel_size=5)

    def out_res(self, resolution: int) -> int:
        return resolution // (32 if "t" in self.opts else 16)

    def out_ch(self) -> int:
        return self.e_ch * 8

    def forward(self, x: Tensor) -> Tensor:
        if "t" in self.opts:
            x = self.res1(self.down1(x))
            x = self.down4(self.down3(self.down2(x)))
            x = self.res5(self.down5(x))
        else:
            x = self.down1(x)
        x = torch.flatten(x, 1)  # NCHW order, as DFL flattens
        if "u" in self.opts:
            x = pixel_norm(x, -1)
        return x


class Inter(nn.Module):
    """Flat code -> bottleneck (ae_dims) -> spatial code, upscaled once unless ``t``."""

    def __init__(self, in_ch: int, ae_ch: int, ae_out_ch: int, lowest_res: int, opts: str) -> None:
        super().__init__()
        self.opts = opts
        self.ae_out_ch = ae_out_ch
        self.lowest_res = lowest_res
        self.dense1 = dense(in_ch, ae_ch)
        self.dense2 = dense(ae_ch, lowest_res * lowest_res * ae_out_ch)
        if "t" not in opts:
            self.upscale1 = Upscale(ae_out_ch, ae_out_ch)

    def out_res(self) -> int:
        return self.lowest_res * 2 if "t" not in self.opts else self.lowest_res

    def forward(self, x: Tensor) -> Tensor:
        x = self.dense2(self.dense1(x))
        x = x.reshape(-1, self.ae_out_ch, self.lowest_res, self.lowest_res)
        if "t" not in self.opts:
            x = self.upscale1(x)
        return x


class Decoder(nn.Module):
    """Spatial code -> (BGR face, mask), each through sigmoid; RGB head of four convs with ``d``."""

    def __init__(self, in_ch: int, d_ch: int, d_mask_ch: int, opts: str) -> None:
        super().__init__()
        self.opts = opts
        t, d = "t" in opts, "d" in opts
        if not t:
            self.upscale0 = Upscale(in_ch, d_ch * 8)
            self.upscale1 = Upscale(d_ch * 8, d_ch * 4)
            self.upscale2 = Upscale(d_ch * 4, d_ch * 2)
            self.res0 = ResidualBlock(d_ch * 8)
            self.res1 = ResidualBlock(d_ch * 4)
            self.res2 = ResidualBlock(d_ch * 2)
            self.upscalem0 = Upscale(in_ch, d_mask_ch * 8)
            self.upscalem1 = Upscale(d_mask_ch * 8, d_mask_ch * 4)
            self.upscalem2 = Upscale(d_mask_ch * 4, d_mask_ch * 2)
        else:
            self.upscale0 = Upscale(in_ch, d_ch * 8)
            self.upscale1 = Upscale(d_ch * 8, d_ch * 8)
            self.upscale2 = Upscale(d_ch * 8, d_ch * 4)
            self.upscale3 = Upscale(d_ch * 4, d_ch * 2)
            self.res0 = ResidualBlock(d_ch * 8)
            self.res1 = ResidualBlock(d_ch * 8)
            self.res2 = ResidualBlock(d_ch * 4)
            self.res3 = ResidualBlock(d_ch * 2)
            self.upscalem0 = Upscale(in_ch, d_mask_ch * 8)
            self.upscalem1 = Upscale(d_mask_ch * 8, d_mask_ch * 8)
            self.upscalem2 = Upscale(d_mask_ch * 8, d_mask_ch * 4)
            self.upscalem3 = Upscale(d_mask_ch * 4, d_mask_ch * 2)
        self.out_conv = conv2d(d_ch * 2, 3, 1)
        if d:
            self.out_conv1 = conv2d(d_ch * 2, 3, 3)
            self.out_conv2 = conv2d(d_ch * 2, 3, 3)
            self.out_conv3 = conv2d(d_ch * 2, 3, 3)
            last_m = Upscale(d_mask_ch * 2, d_mask_ch)
            if t:
                self.upscalem4 = last_m
            else:
                self.upscalem3 = last_m
            self.out_convm = conv2d(d_mask_ch, 1, 1)
        else:
            self.out_convm = conv2d(d_mask_ch * 2, 1, 1)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        t, d = "t" in self.opts, "d" in self.opts
        x = self.res0(self.upscale0(z))
        x = self.res1(self.upscale1(x))
        x = self.res2(self.upscale2(x))
        if t:
            x = self.res3(self.upscale3(x))
        if d:
            x = same_input_convs(x, [self.out_conv, self.out_conv1, self.out_conv2, self.out_conv3])
            x = torch.sigmoid(depth_to_space(x, 2))
        else:
            x = torch.sigmoid(self.out_conv(x))

        return x, self.forward_mask(z)

    def forward_mask(self, z: Tensor) -> Tensor:
        """The mask branch alone: merging needs only the dst decoder's mask, and skipping its face
        branch saves about half of a swap's compute."""
        t, d = "t" in self.opts, "d" in self.opts
        m = self.upscalem2(self.upscalem1(self.upscalem0(z)))
        if t:
            m = self.upscalem3(m)
            if d:
                m = self.upscalem4(m)
        elif d:
            m = self.upscalem3(m)
        return torch.sigmoid(self.out_convm(m))


class SAEHDModel(SwapModel):
    """DFL's SAEHD with its networks named as DFL saves them."""

    model_type = "SAEHD"

    def __init__(self, options: dict) -> None:
        super().__init__(options)
        archi_type, opts = parse_archi(str(options["archi"]))
        self.archi_type, self.archi_opts = archi_type, opts
        res = self.resolution
        step = 32 if "d" in opts else 16
        if res % step != 0:
            raise DflError(f"resolution {res}: must be a multiple of {step} for archi {options['archi']}")
        ae, e, d, dm = (int(options[k]) for k in ("ae_dims", "e_dims", "d_dims", "d_mask_dims"))
        lowest = res // (32 if "d" in opts else 16)
        if archi_type != "df":
            self.loss_terms = SwapLoss(code_discriminator=False)   # 'true face' reads df's single code

        self.encoder = Encoder(3, e, opts)
        enc_out = self.encoder.out_ch() * self.encoder.out_res(res) ** 2
        if archi_type == "df":
            self.network_names = ("encoder", "inter", "decoder_src", "decoder_dst")
            self.inter = Inter(enc_out, ae, ae, lowest, opts)
            self.decoder_src = Decoder(ae, d, dm, opts)
            self.decoder_dst = Decoder(ae, d, dm, opts)
            self.code_res = self.inter.out_res()
            self.code_ch = ae
        else:
            self.network_names = ("encoder", "inter_AB", "inter_B", "decoder")
            self.inter_AB = Inter(enc_out, ae, ae * 2, lowest, opts)
            self.inter_B = Inter(enc_out, ae, ae * 2, lowest, opts)
            self.decoder = Decoder(ae * 2 * 2, d, dm, opts)
            self.code_res = self.inter_AB.out_res()
            self.code_ch = ae * 4

    def trainable_networks(self, options: dict | None = None) -> list[str]:
        """LIAE leaves inter_AB alone once random warp is off (pretraining turns it off), as DFL does."""
        opts = dict(self.options)
        opts.update(options or {})
        random_warp = bool(opts.get("random_warp", True)) and not opts.get("pretrain", False)
        if self.archi_type == "liae" and not random_warp:
            return ["encoder", "inter_B", "decoder"]
        return list(self.network_names)

    def forward_train(self, warped_src: Tensor, warped_dst: Tensor, **kwargs: Any) -> dict[str, Tensor]:
        """All predictions of one training step.

        ``with_swap=False`` skips the src->dst prediction, which DFL's loss only needs for the style
        powers (TF never evaluates it otherwise); ``style_branch=True`` adds the swap decoded from a
        detached dst code (``pred_src_dst_no_code_grad``), which face style power needs.
        """
        n = warped_src.shape[0]
        with_swap = kwargs.get("with_swap", True)
        codes = self.encoder(torch.cat((warped_src, warped_dst), 0))
        out: dict[str, Tensor] = {}
        if self.archi_type == "df":
            inter = self.inter(codes)
            src_code, dst_code = inter[:n], inter[n:]
            if with_swap:
                x, m = self.decoder_src(inter)  # src->src and dst->src in one pass
                out.update(pred_src_src=x[:n], pred_src_srcm=m[:n], pred_src_dst=x[n:], pred_src_dstm=m[n:])
            else:
                out["pred_src_src"], out["pred_src_srcm"] = self.decoder_src(src_code)
            out["pred_dst_dst"], out["pred_dst_dstm"] = self.decoder_dst(dst_code)
            if kwargs.get("style_branch"):
                out["pred_src_dst_no_code_grad"] = self.decoder_src(dst_code.detach())[0]
        else:
            ab = self.inter_AB(codes)
            src_ab, dst_ab = ab[:n], ab[n:]
            dst_b = self.inter_B(codes[n:])
            src_code = torch.cat((src_ab, src_ab), 1)
            dst_code = torch.cat((dst_b, dst_ab), 1)
            src_dst_code = torch.cat((dst_ab, dst_ab), 1)
            # one decoder pass over all codes: fewer, larger convolutions run faster
            codes_in = (src_code, dst_code, src_dst_code) if with_swap else (src_code, dst_code)
            x, m = self.decoder(torch.cat(codes_in, 0))
            out.update(pred_src_src=x[:n], pred_src_srcm=m[:n], pred_dst_dst=x[n : 2 * n], pred_dst_dstm=m[n : 2 * n])
            if with_swap:
                out.update(pred_src_dst=x[2 * n :], pred_src_dstm=m[2 * n :])
            if kwargs.get("style_branch"):
                out["pred_src_dst_no_code_grad"] = self.decoder(src_dst_code.detach())[0]
        out.update(src_code=src_code, dst_code=dst_code)
        return out

    def swap(self, dst: Tensor, morph_value: float | None = None) -> tuple[Tensor, Tensor, Tensor]:
        code = self.encoder(dst)
        if self.archi_type == "df":
            z = self.inter(code)
            src_dst, src_dstm = self.decoder_src(z)
            dst_dstm = self.decoder_dst.forward_mask(z)   # its face branch is never used here
        else:
            ab, b = self.inter_AB(code), self.inter_B(code)
            src_dst, src_dstm = self.decoder(torch.cat((ab, ab), 1))
            dst_dstm = self.decoder.forward_mask(torch.cat((b, ab), 1))
        return src_dst, src_dstm, dst_dstm


def options_from_shapes(shapes: dict[str, tuple[int, ...]]) -> tuple[dict[str, Any], dict[str, str]]:
    """What SAEHD weights' tensor shapes say about the options that built them.

    Returns (the options the shapes determine, the fixed options they cannot tell -> what to give).
    ``archi``'s ``-u`` (a pixel norm, no weights) and ``face_type`` leave no trace in the weights.
    """
    liae = "inter_AB.dense1.weight" in shapes
    inter, dec = ("inter_AB", "decoder") if liae else ("inter", "decoder_src")
    t = "encoder.down5.conv1.weight" in shapes
    d = f"{dec}.out_conv1.weight" in shapes
    first = shapes.get("encoder.down1.conv1.weight" if t else "encoder.down1.downs.0.conv1.weight")
    dense1 = shapes.get(f"{inter}.dense1.weight")
    up0, upm0 = shapes.get(f"{dec}.upscale0.conv1.weight"), shapes.get(f"{dec}.upscalem0.conv1.weight")
    if first is None or dense1 is None or up0 is None or upm0 is None:
        raise DflError("these weights are not an SAEHD model's (encoder, inter or decoder tensors missing)")
    e_dims, ae_dims = first[0], dense1[0]
    enc_res = math.isqrt(dense1[1] // (e_dims * 8))
    flags = ("d" if d else "") + ("t" if t else "")
    base = ("liae" if liae else "df") + (f"-{flags}" if flags else "")
    with_u = ("liae" if liae else "df") + f"-u{flags}"
    known = {"resolution": enc_res * (32 if t else 16), "ae_dims": ae_dims, "e_dims": e_dims,
             "d_dims": up0[0] // 32, "d_mask_dims": upm0[0] // 32}
    unknown = {"archi": f"{base} or {with_u} (-u leaves no trace in the weights)",
               "face_type": "h, mf, f, wf or head"}
    return known, unknown


def finish_options(out: dict[str, Any]) -> dict[str, Any]:
    """DFL's SAEHD rules: archi normalised, resolution a multiple of 16 (32 with ``-d``), 'true face' for
    df only, then the autoencoders' rounding and derived defaults."""
    archi_type, opts = parse_archi(out["archi"])
    out["archi"] = archi_type + (f"-{opts}" if opts else "")
    if archi_type != "df":
        out["true_face_power"] = 0.0
    return swap.finish_autoencoder_options(out, 32 if "d" in opts else 16)


def dfl_networks(options: dict[str, Any]) -> list[str]:
    """The network files DFL saves for these options (named as dfl's networks)."""
    if str(options.get("archi", "df")).startswith("liae"):
        return ["encoder", "inter_AB", "inter_B", "decoder"]
    return ["encoder", "inter", "decoder_src", "decoder_dst"]


SPEC = register_model(ModelSpec(
    name="SAEHD",
    kind="swap",
    summary="DFL's main model: df or liae archi (-u/-d/-t), resolution, dims and face type of your choice",
    options=OPTIONS,
    build=SAEHDModel,
    recipe=swap.SwapRecipe,
    training_data=swap.training_data,
    optimizer=swap.optimizer,
    trace=swap.trace,
    finish_options=finish_options,
    options_from_weights=swap.options_from_weights(options_from_shapes),
    # SAEHD's GAN is saved as GAN.npy but built as "D_src"; its code discriminator as "dis"
    dfl_import=DflImport(dfl_networks, scopes={"GAN": "D_src", "code_discriminator": "dis"}),
))
