"""AMP ("amplifier"): DFL's morphable model.

One encoder (5 downscales, residual blocks, pixel norm, a dense to ae_dims), two inters
(``inter_src``, ``inter_dst``: ae_dims -> inter_dims maps at resolution/32) and one decoder.
In training the src code mixes the two inters channel-wise with a random mask holding exactly
``int(inter_dims * morph_factor)`` channels of ``inter_src``; at swap time the first
``int(inter_dims * morph_value)`` channels come from ``inter_src`` and the rest from ``inter_dst``.
As in DFL, only the encoder and the decoder are optimised; the inters keep their initial projection.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from dfl.errors import DflError
from dfl.models import swap
from dfl.models.base import SwapLoss, SwapModel
from dfl.models.blocks import (Downscale, ResidualBlock, Upscale, conv2d, dense, depth_to_space, pixel_norm,
                               same_input_convs)
from dfl.models.options import COMMON_RUN, CT_MODES, option
from dfl.models.registry import DflImport, ModelSpec, register_model

OPTIONS = (
    option("resolution", "int", 224, "Resolution", min=64, max=640, changeable=False),
    option("face_type", "str", "wf", "Face type", choices=("f", "wf", "head"), changeable=False),
    option("ae_dims", "int", 256, "AutoEncoder dimensions", min=32, max=1024, changeable=False),
    option("inter_dims", "int", 1024, "Inter dimensions", min=32, max=2048, changeable=False),
    option("e_dims", "int", 64, "Encoder dimensions", min=16, max=256, changeable=False),
    option("d_dims", "int", 64, "Decoder dimensions", min=16, max=256, changeable=False),
    option("d_mask_dims", "int", None, "Decoder mask dimensions", min=16, max=256, changeable=False),
    option("morph_factor", "float", 0.5, "Morph factor.", min=0.1, max=0.5, changeable=False),
    *COMMON_RUN,
    option("uniform_yaw", "bool", False, "Uniform yaw distribution of samples"),
    option("blur_out_mask", "bool", False, "Blur out mask"),
    option("lr_dropout", "str", "n", "Use learning rate dropout", choices=("n", "y", "cpu")),
    option("random_warp", "bool", True, "Enable random warp of samples"),
    option("gan_power", "float", 0.0, "GAN power", min=0.0, max=5.0),
    option("gan_patch_size", "int", None, "GAN patch size", min=3, max=640, when="gan_power != 0"),
    option("gan_dims", "int", 16, "GAN dimensions", min=4, max=512, when="gan_power != 0"),
    option("ct_mode", "str", "none", "Color transfer for src faceset", choices=CT_MODES),
    option("clipgrad", "bool", False, "Enable gradient clipping"),
)


class AMPEncoder(nn.Module):
    def __init__(self, resolution: int, e_dims: int, ae_dims: int) -> None:
        super().__init__()
        self.down1 = Downscale(3, e_dims, 5)
        self.res1 = ResidualBlock(e_dims)
        self.down2 = Downscale(e_dims, e_dims * 2, 5)
        self.down3 = Downscale(e_dims * 2, e_dims * 4, 5)
        self.down4 = Downscale(e_dims * 4, e_dims * 8, 5)
        self.down5 = Downscale(e_dims * 8, e_dims * 8, 5)
        self.res5 = ResidualBlock(e_dims * 8)
        self.dense1 = dense((resolution // 32) ** 2 * e_dims * 8, ae_dims)

    def forward(self, x: Tensor) -> Tensor:
        x = self.res1(self.down1(x))
        x = self.down4(self.down3(self.down2(x)))
        x = self.res5(self.down5(x))
        return self.dense1(pixel_norm(torch.flatten(x, 1), -1))


class AMPInter(nn.Module):
    def __init__(self, ae_dims: int, inter_dims: int, inter_res: int) -> None:
        super().__init__()
        self.inter_dims, self.inter_res = inter_dims, inter_res
        self.dense2 = dense(ae_dims, inter_res * inter_res * inter_dims)

    def forward(self, x: Tensor) -> Tensor:
        return self.dense2(x).reshape(-1, self.inter_dims, self.inter_res, self.inter_res)


class AMPDecoder(nn.Module):
    def __init__(self, inter_dims: int, d_dims: int, d_mask_dims: int) -> None:
        super().__init__()
        self.upscale0 = Upscale(inter_dims, d_dims * 8)
        self.upscale1 = Upscale(d_dims * 8, d_dims * 8)
        self.upscale2 = Upscale(d_dims * 8, d_dims * 4)
        self.upscale3 = Upscale(d_dims * 4, d_dims * 2)
        self.res0 = ResidualBlock(d_dims * 8)
        self.res1 = ResidualBlock(d_dims * 8)
        self.res2 = ResidualBlock(d_dims * 4)
        self.res3 = ResidualBlock(d_dims * 2)
        self.upscalem0 = Upscale(inter_dims, d_mask_dims * 8)
        self.upscalem1 = Upscale(d_mask_dims * 8, d_mask_dims * 8)
        self.upscalem2 = Upscale(d_mask_dims * 8, d_mask_dims * 4)
        self.upscalem3 = Upscale(d_mask_dims * 4, d_mask_dims * 2)
        self.upscalem4 = Upscale(d_mask_dims * 2, d_mask_dims)
        self.out_convm = conv2d(d_mask_dims, 1, 1)
        self.out_conv = conv2d(d_dims * 2, 3, 1)
        self.out_conv1 = conv2d(d_dims * 2, 3, 3)
        self.out_conv2 = conv2d(d_dims * 2, 3, 3)
        self.out_conv3 = conv2d(d_dims * 2, 3, 3)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        x = self.res0(self.upscale0(z))
        x = self.res1(self.upscale1(x))
        x = self.res2(self.upscale2(x))
        x = self.res3(self.upscale3(x))
        x = same_input_convs(x, [self.out_conv, self.out_conv1, self.out_conv2, self.out_conv3])
        x = torch.sigmoid(depth_to_space(x, 2))
        return x, self.forward_mask(z)

    def forward_mask(self, z: Tensor) -> Tensor:
        """The mask branch alone (the swap needs only the dst reconstruction's mask)."""
        m = self.upscalem4(self.upscalem3(self.upscalem2(self.upscalem1(self.upscalem0(z)))))
        return torch.sigmoid(self.out_convm(m))


class AMPModel(SwapModel):
    model_type = "AMP"
    network_names = ("encoder", "inter_src", "inter_dst", "decoder")
    # DFL's AMP loss: always masked, DSSIM at two windows, eyes and mouth priority, the dst background
    # learned too, and a GAN that judges both reconstructions
    loss_terms = SwapLoss(always_masked=True, dssim_two_windows=True, eyes_mouth_always=True, dst_background=True,
                          gan_on_dst=True, code_discriminator=False)
    swap_inputs = {"morph_value": 1.0}   # DFL's merger default; DFL's .dfm export takes it as an input

    def __init__(self, options: dict) -> None:
        super().__init__(options)
        res = self.resolution
        if res % 32 != 0:
            raise DflError(f"resolution {res}: AMP needs a multiple of 32")
        ae, inter, e, d, dm = (int(options[k]) for k in ("ae_dims", "inter_dims", "e_dims", "d_dims", "d_mask_dims"))
        self.inter_dims, self.inter_res = inter, res // 32
        self.morph_factor = float(options.get("morph_factor", 0.5))
        self.encoder = AMPEncoder(res, e, ae)
        self.inter_src = AMPInter(ae, inter, self.inter_res)
        self.inter_dst = AMPInter(ae, inter, self.inter_res)
        self.decoder = AMPDecoder(inter, d, dm)
        self.code_res, self.code_ch = self.inter_res, inter

    def trainable_networks(self, options: dict | None = None) -> list[str]:
        return ["encoder", "decoder"]

    def preview_morph(self) -> float | None:
        """The training preview swaps at the morph factor the model trains with."""
        return self.options.get("morph_factor")

    def _morph_code(self, inter_src_code: Tensor, inter_dst_code: Tensor, morph_value: float) -> Tensor:
        k = int(self.inter_dims * morph_value)
        return torch.cat((inter_src_code[:, :k], inter_dst_code[:, k:]), 1)

    def forward_train(self, warped_src: Tensor, warped_dst: Tensor, **kwargs: Any) -> dict[str, Tensor]:
        n = warped_src.shape[0]
        code = self.encoder(torch.cat((warped_src, warped_dst), 0))
        isrc, idst = self.inter_src(code), self.inter_dst(code)
        # exactly int(inter_dims * morph_factor) channels from inter_src, at random, per sample
        k = int(self.inter_dims * self.morph_factor)
        order = torch.rand(n, self.inter_dims, device=code.device).argsort(1)
        mask = (order < k).to(isrc.dtype)[:, :, None, None]
        src_code = isrc[:n] * mask + idst[:n] * (1 - mask)
        dst_code = idst[n:]
        codes_in = [src_code, dst_code]
        if kwargs.get("with_swap", True):  # the loss never needs the swap; previews do
            morph_value = kwargs.get("morph_value")
            codes_in.append(self._morph_code(isrc[n:], idst[n:], 1.0 if morph_value is None else float(morph_value)))
        x, m = self.decoder(torch.cat(codes_in, 0))
        out = dict(
            src_code=src_code, dst_code=dst_code,
            pred_src_src=x[:n], pred_src_srcm=m[:n],
            pred_dst_dst=x[n : 2 * n], pred_dst_dstm=m[n : 2 * n],
        )
        if len(codes_in) == 3:
            out.update(pred_src_dst=x[2 * n :], pred_src_dstm=m[2 * n :])
        return out

    def swap(self, dst: Tensor, morph_value: float | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Swap with ``morph_value`` (0..1, DFL's merge-time default 1.0) of inter_src's channels."""
        mv = 1.0 if morph_value is None else min(1.0, max(0.0, float(morph_value)))
        code = self.encoder(dst)
        idst = self.inter_dst(code)
        src_dst_code = self._morph_code(self.inter_src(code), idst, mv)
        x, m = self.decoder(src_dst_code)
        return x, m, self.decoder.forward_mask(idst)   # the dst face itself is never used here

    def swap_graph(self, dst: Tensor, *inputs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """:meth:`swap` with the morph value a (1,) tensor: the first ``int(inter_dims * morph_value)``
        channels (truncated, as DFL's exported graph casts it) come from inter_src, chosen by a channel
        mask so the count can change per call; values outside 0..1 act as 0 or 1."""
        (morph_value,) = inputs
        code = self.encoder(dst)
        idst = self.inter_dst(code)
        k = (morph_value[0] * self.inter_dims).to(torch.int64)
        take_src = (torch.arange(self.inter_dims, device=dst.device) < k).reshape(1, -1, 1, 1)
        x, m = self.decoder(torch.where(take_src, self.inter_src(code), idst))
        return x, m, self.decoder.forward_mask(idst)


def options_from_shapes(shapes: dict[str, tuple[int, ...]]) -> tuple[dict[str, Any], dict[str, str]]:
    """What AMP weights' tensor shapes say about the options that built them (see
    :func:`dfl.models.saehd.options_from_shapes`); ``face_type`` and ``morph_factor`` leave no trace."""
    first, dense1 = shapes.get("encoder.down1.conv1.weight"), shapes.get("encoder.dense1.weight")
    inter = shapes.get("inter_src.dense2.weight")
    up0, upm0 = shapes.get("decoder.upscale0.conv1.weight"), shapes.get("decoder.upscalem0.conv1.weight")
    if first is None or dense1 is None or inter is None or up0 is None or upm0 is None:
        raise DflError("these weights are not an AMP model's (encoder, inter or decoder tensors missing)")
    e_dims, ae_dims = first[0], dense1[0]
    inter_res = max(1, math.isqrt(dense1[1] // (e_dims * 8)))
    known = {"resolution": inter_res * 32, "ae_dims": ae_dims, "e_dims": e_dims,
             "inter_dims": inter[0] // (inter_res * inter_res), "d_dims": up0[0] // 32, "d_mask_dims": upm0[0] // 32}
    unknown = {"face_type": "f, wf or head", "morph_factor": "0.1 .. 0.5"}
    return known, unknown


SPEC = register_model(ModelSpec(
    name="AMP",
    kind="swap",
    summary="DFL's morphable model: how far the swap takes the src face's shape is chosen when merging (--morph)",
    options=OPTIONS,
    build=AMPModel,
    recipe=swap.SwapRecipe,
    training_data=swap.training_data,
    optimizer=swap.optimizer,
    trace=swap.trace,
    finish_options=lambda out: swap.finish_autoencoder_options(out, 32),
    merge_defaults={"morph_value": 1.0},    # DFL's merge-time default: the src's shape fully
    options_from_weights=swap.options_from_weights(options_from_shapes),
    dfl_import=DflImport(lambda options: ["encoder", "inter_src", "inter_dst", "decoder"]),
))
