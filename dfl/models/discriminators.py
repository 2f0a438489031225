"""DFL's discriminators: the code discriminator of 'true face' and the U-Net patch GAN."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dfl.models.blocks import conv2d, conv_transpose2d


class CodeDiscriminator(nn.Module):
    """Tells src codes from dst codes (SAEHD df 'true face power')."""

    def __init__(self, in_ch: int, code_res: int, ch: int = 256) -> None:
        super().__init__()
        n_down = 1 + code_res // 8
        convs = []
        prev = in_ch
        for i in range(n_down):
            cur = ch * min(2**i, 8)
            convs.append(conv2d(prev, cur, 4 if i == 0 else 3, stride=2))
            prev = cur
        self.convs = nn.ModuleList(convs)
        self.out_conv = conv2d(prev, 1, 1, padding=0)

    def forward(self, x: Tensor) -> Tensor:
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.1)
        return self.out_conv(x)


def _receptive_field(layers: list[tuple[int, int]]) -> int:
    rf, ts = 0, 1
    for i, (k, s) in enumerate(layers):
        rf = k if i == 0 else rf + (k - 1) * ts
        ts *= s
    return rf


def find_patch_archi(target_patch_size: int, max_layers: int = 9) -> list[tuple[int, int]]:
    """The 3x3 conv stack (kernel, stride) whose receptive field is closest to the patch size,
    preferring fewer layers and then more downsampling, as DFL's UNetPatchDiscriminator chooses."""
    best: dict[int, tuple[int, int, list[tuple[int, int]]]] = {}
    for count in range(1, max_layers + 1):
        val = 1 << (count - 1)
        while True:
            val -= 1
            layers = [(3, 2)]
            sum_st = 2
            for i in range(count - 1):
                st = 2 if val & (1 << i) else 1
                layers.append((3, st))
                sum_st += st
            rf = _receptive_field(layers)
            cur = best.get(rf)
            if cur is None or count < cur[0] or (count == cur[0] and sum_st > cur[1]):
                best[rf] = (count, sum_st, layers)
            if val == 0:
                break
    keys = sorted(best)
    q = keys[int(np.abs(np.array(keys) - target_patch_size).argmin())]
    return best[q][2]


class UNetPatchDiscriminator(nn.Module):
    """U-Net discriminator (Schonfeld et al. 2020) as DFL builds it: returns (center logits, per-pixel logits)."""

    def __init__(self, patch_size: int, in_ch: int = 3, base_ch: int = 16) -> None:
        super().__init__()
        layers = find_patch_archi(patch_size)
        chs = {i - 1: min(base_ch * (2**i), 512) for i in range(len(layers) + 1)}
        self.in_conv = conv2d(in_ch, chs[-1], 1, padding=0)
        convs, upconvs = [], []
        for i, (k, s) in enumerate(layers):
            convs.append(conv2d(chs[i - 1], chs[i], k, stride=s))
            up_in = chs[i] * (2 if i != len(layers) - 1 else 1)
            upconvs.insert(0, conv_transpose2d(up_in, chs[i - 1], k, stride=s))
        self.convs = nn.ModuleList(convs)
        self.upconvs = nn.ModuleList(upconvs)
        last = chs[len(layers) - 1]
        self.out_conv = conv2d(chs[-1] * 2, 1, 1, padding=0)
        self.center_out = conv2d(last, 1, 1, padding=0)
        self.center_conv = conv2d(last, last, 1, padding=0)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = F.leaky_relu(self.in_conv(x), 0.2)
        encs = []
        for conv in self.convs:
            encs.insert(0, x)
            x = F.leaky_relu(conv(x), 0.2)
        center_out, x = self.center_out(x), F.leaky_relu(self.center_conv(x), 0.2)
        for upconv, enc in zip(self.upconvs, encs):
            x = F.leaky_relu(upconv(x), 0.2)
            if x.shape[-2:] != enc.shape[-2:]:  # odd sizes: crop the transpose conv's extra row/column
                x = x[..., : enc.shape[-2], : enc.shape[-1]]
            x = torch.cat((enc, x), 1)
        return center_out, self.out_conv(x)


def gan_options_from_shapes(shapes: dict[str, tuple[int, ...]], resolution: int) -> dict[str, int]:
    """``gan_dims`` and a ``gan_patch_size`` that rebuild the saved ``GAN.*`` tensors ({} without a GAN).

    Many patch sizes give the same network; the model's default (resolution / 8) is tried first.
    """
    saved = {k[len("GAN."):]: tuple(v) for k, v in shapes.items() if k.startswith("GAN.")}
    if "in_conv.weight" not in saved:
        return {}
    dims = int(saved["in_conv.weight"][0])
    seen: set[tuple] = set()
    for patch in [max(3, resolution // 8), *range(3, 641)]:
        layers = tuple(find_patch_archi(patch))
        if layers in seen:
            continue
        seen.add(layers)
        with torch.device("meta"):
            net = UNetPatchDiscriminator(patch, 3, dims)
        if {k: tuple(v.shape) for k, v in net.state_dict().items()} == saved:
            return {"gan_dims": dims, "gan_patch_size": patch}
    return {"gan_dims": dims}
