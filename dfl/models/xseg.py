"""DFL's XSeg segmentation network (face mask from an aligned face), as ``core/leras/models/XSeg.py``.

A U-Net of conv3 + filter response norm + TLU blocks, anti-aliased (blur-pool) downsampling, a dense
bottleneck at 4x4 and transpose-conv upsampling with skip connections.  DFL runs it at 256 px with
``base_ch=32`` and one output channel.  Only the network lives here; training and applying XSeg
masks to a faceset are a separate step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dfl.models.blocks import conv2d, conv_transpose2d, dense

_BLUR_TAPS = {1: [1.0], 2: [1.0, 1.0], 3: [1.0, 2.0, 1.0], 4: [1.0, 3.0, 3.0, 1.0],
              5: [1.0, 4.0, 6.0, 4.0, 1.0]}


class FRNorm2d(nn.Module):
    """Filter response normalisation (Singh & Krishnan 2019) with DFL's learnable eps."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ch))
        self.bias = nn.Parameter(torch.zeros(ch))
        self.eps = nn.Parameter(torch.full((1,), 1e-6))

    def forward(self, x: Tensor) -> Tensor:
        nu2 = x.float().square().mean(dim=(2, 3), keepdim=True)
        x = x * torch.rsqrt(nu2 + self.eps.abs()).to(x.dtype)
        return x * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class TLU(nn.Module):
    """Thresholded linear unit: max(x, tau) with a learnable per-channel tau."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.tau = nn.Parameter(torch.zeros(ch))

    def forward(self, x: Tensor) -> Tensor:
        return torch.maximum(x, self.tau.view(1, -1, 1, 1).to(x.dtype))


class BlurPool(nn.Module):
    """Anti-aliased stride-2 downsampling with a binomial filter (asymmetric padding as DFL)."""

    def __init__(self, filt_size: int = 3, stride: int = 2) -> None:
        super().__init__()
        a = torch.tensor(_BLUR_TAPS[filt_size])
        k = a[:, None] * a[None, :]
        self.register_buffer("kernel", (k / k.sum())[None, None], persistent=False)
        self.stride = stride
        self.pad = ((filt_size - 1) // 2, -(-(filt_size - 1) // 2))

    def forward(self, x: Tensor) -> Tensor:
        c = x.shape[1]
        lo, hi = self.pad
        x = F.pad(x, (lo, hi, lo, hi))
        return F.conv2d(x, self.kernel.to(x.dtype).expand(c, 1, -1, -1), stride=self.stride, groups=c)


class ConvBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = conv2d(in_ch, out_ch, 3)
        self.frn = FRNorm2d(out_ch)
        self.tlu = TLU(out_ch)

    def forward(self, x: Tensor) -> Tensor:
        return self.tlu(self.frn(self.conv(x)))


class UpConvBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = conv_transpose2d(in_ch, out_ch, 3, stride=2)
        self.frn = FRNorm2d(out_ch)
        self.tlu = TLU(out_ch)

    def forward(self, x: Tensor) -> Tensor:
        return self.tlu(self.frn(self.conv(x)))


class XSeg(nn.Module):
    """XSeg U-Net; ``forward`` returns (logits, sigmoid mask).  Input resolution must be 256 (the
    bottleneck is a 4x4 dense layer after six halvings)."""

    def __init__(self, in_ch: int = 3, base_ch: int = 32, out_ch: int = 1) -> None:
        super().__init__()
        b = base_ch
        self.base_ch = b
        self.conv01, self.conv02, self.bp0 = ConvBlock(in_ch, b), ConvBlock(b, b), BlurPool(4)
        self.conv11, self.conv12, self.bp1 = ConvBlock(b, b * 2), ConvBlock(b * 2, b * 2), BlurPool(3)
        self.conv21, self.conv22, self.bp2 = ConvBlock(b * 2, b * 4), ConvBlock(b * 4, b * 4), BlurPool(2)
        self.conv31, self.conv32, self.conv33 = ConvBlock(b * 4, b * 8), ConvBlock(b * 8, b * 8), ConvBlock(b * 8, b * 8)
        self.bp3 = BlurPool(2)
        self.conv41, self.conv42, self.conv43 = ConvBlock(b * 8, b * 8), ConvBlock(b * 8, b * 8), ConvBlock(b * 8, b * 8)
        self.bp4 = BlurPool(2)
        self.conv51, self.conv52, self.conv53 = ConvBlock(b * 8, b * 8), ConvBlock(b * 8, b * 8), ConvBlock(b * 8, b * 8)
        self.bp5 = BlurPool(2)
        self.dense1 = dense(4 * 4 * b * 8, 512)
        self.dense2 = dense(512, 4 * 4 * b * 8)
        self.up5 = UpConvBlock(b * 8, b * 4)
        self.uconv53, self.uconv52, self.uconv51 = ConvBlock(b * 12, b * 8), ConvBlock(b * 8, b * 8), ConvBlock(b * 8, b * 8)
        self.up4 = UpConvBlock(b * 8, b * 4)
        self.uconv43, self.uconv42, self.uconv41 = ConvBlock(b * 12, b * 8), ConvBlock(b * 8, b * 8), ConvBlock(b * 8, b * 8)
        self.up3 = UpConvBlock(b * 8, b * 4)
        self.uconv33, self.uconv32, self.uconv31 = ConvBlock(b * 12, b * 8), ConvBlock(b * 8, b * 8), ConvBlock(b * 8, b * 8)
        self.up2 = UpConvBlock(b * 8, b * 4)
        self.uconv22, self.uconv21 = ConvBlock(b * 8, b * 4), ConvBlock(b * 4, b * 4)
        self.up1 = UpConvBlock(b * 4, b * 2)
        self.uconv12, self.uconv11 = ConvBlock(b * 4, b * 2), ConvBlock(b * 2, b * 2)
        self.up0 = UpConvBlock(b * 2, b)
        self.uconv02, self.uconv01 = ConvBlock(b * 2, b), ConvBlock(b, b)
        self.out_conv = conv2d(b, out_ch, 3)

    def forward(self, inp: Tensor, pretrain: bool = False) -> tuple[Tensor, Tensor]:
        """``pretrain=True`` zeroes the skips, as DFL's XSeg pretraining does."""
        x0 = self.conv02(self.conv01(inp))
        x1 = self.conv12(self.conv11(self.bp0(x0)))
        x2 = self.conv22(self.conv21(self.bp1(x1)))
        x3 = self.conv33(self.conv32(self.conv31(self.bp2(x2))))
        x4 = self.conv43(self.conv42(self.conv41(self.bp3(x3))))
        x5 = self.conv53(self.conv52(self.conv51(self.bp4(x4))))
        x = self.dense2(self.dense1(torch.flatten(self.bp5(x5), 1)))
        x = x.reshape(-1, self.base_ch * 8, 4, 4)

        def skip(t: Tensor) -> Tensor:
            return torch.zeros_like(t) if pretrain else t

        x = self.uconv51(self.uconv52(self.uconv53(torch.cat((self.up5(x), skip(x5)), 1))))
        x = self.uconv41(self.uconv42(self.uconv43(torch.cat((self.up4(x), skip(x4)), 1))))
        x = self.uconv31(self.uconv32(self.uconv33(torch.cat((self.up3(x), skip(x3)), 1))))
        x = self.uconv21(self.uconv22(torch.cat((self.up2(x), skip(x2)), 1)))
        x = self.uconv11(self.uconv12(torch.cat((self.up1(x), skip(x1)), 1)))
        x = self.uconv01(self.uconv02(torch.cat((self.up0(x), skip(x0)), 1)))
        logits = self.out_conv(x)
        return logits, torch.sigmoid(logits)
