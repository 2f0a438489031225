"""The loss terms of DFL's SAEHD, AMP and Quick96, batched and autocast-friendly.

Blurs and DSSIM use DFL's kernels but run as separable depthwise convolutions (two 1-D passes,
all statistics of one DSSIM in a single grouped convolution), in float32 like DFL.  Every loss
returns one value per sample (shape ``(N,)``), as DFL reports ``src_loss``/``dst_loss`` per sample.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor


@functools.lru_cache(maxsize=64)
def _gaussian_1d_cpu(size: int, sigma: float) -> Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
    k = torch.exp(-(x**2) / (2 * sigma**2))
    return (k / k.sum()).float()


def dssim_kernel_1d(filter_size: int, sigma: float = 1.5) -> Tensor:
    """DFL's DSSIM window (softmax of the 2-D squared distance) factored into its 1-D half."""
    return _gaussian_1d_cpu(max(1, int(filter_size)), float(sigma))


@functools.lru_cache(maxsize=64)
def _blur_kernel_cpu(radius: float) -> tuple[Tensor, int]:
    size = max(3, int(2 * 2 * radius))
    if size % 2 == 0:
        size += 1
    mean = math.floor(0.5 * size)
    x = torch.arange(size, dtype=torch.float64) - mean
    k = torch.exp(-(x**2) / (2 * radius**2))
    return (k / k.sum()).float(), size


def _sep_conv(x: Tensor, k1d: Tensor, padding: int) -> Tensor:
    """Depthwise separable convolution of every channel of ``x`` with ``k1d`` (rows then columns)."""
    c = x.shape[1]
    k = k1d.to(device=x.device, dtype=x.dtype)
    kh = k.view(1, 1, -1, 1).expand(c, 1, -1, 1)
    kw = k.view(1, 1, 1, -1).expand(c, 1, 1, -1)
    x = F.conv2d(x, kh, padding=(padding, 0), groups=c)
    return F.conv2d(x, kw, padding=(0, padding), groups=c)


def gaussian_blur(x: Tensor, radius: float) -> Tensor:
    """DFL's ``gaussian_blur``: kernel size max(3, int(4 * radius)) made odd, zero padding, same size."""
    with torch.autocast(x.device.type, enabled=False):
        k, size = _blur_kernel_cpu(float(radius))
        return _sep_conv(x.float(), k, size // 2)


def dssim(img1: Tensor, img2: Tensor, filter_size: int, max_val: float = 1.0, sigma: float = 1.5,
          k1: float = 0.01, k2: float = 0.03) -> Tensor:
    """(1 - SSIM) / 2 per sample and channel, averaged over channels -> ``(N,)``.

    Matches DFL's ``nn.dssim`` (VALID window, Gaussian sigma 1.5); DFL then averages over the channel
    axis, which we fold in here.  The five local statistics come from one grouped convolution.
    """
    with torch.autocast(img1.device.type, enabled=False):
        a, b = img1.float(), img2.float()
        n, c = a.shape[:2]
        k = dssim_kernel_1d(filter_size, sigma)
        stats = _sep_conv(torch.cat((a, b, a * b, a * a + b * b), 1), k, 0)
        mu1, mu2, s12, s_sq = stats.split(c, 1)
        c1, c2 = (k1 * max_val) ** 2, (k2 * max_val) ** 2
        num0 = mu1 * mu2 * 2.0
        den0 = mu1.square() + mu2.square()
        luminance = (num0 + c1) / (den0 + c1)
        cs = (s12 * 2.0 - num0 + c2) / (s_sq - den0 + c2)
        ssim = (luminance * cs).mean(dim=(2, 3))
        return ((1.0 - ssim) / 2.0).mean(1)


def dssim_filter_sizes(resolution: int) -> list[tuple[float, int]]:
    """DFL's (weight, filter size) pairs: one window of res/11.6 below 256 px, two halves at res/11.6 and
    res/23.2 from 256 px up."""
    if resolution < 256:
        return [(10.0, int(resolution / 11.6))]
    return [(5.0, int(resolution / 11.6)), (5.0, int(resolution / 23.2))]


def structural_loss(target: Tensor, pred: Tensor, resolution: int, always_two: bool = False) -> Tensor:
    """DFL's weighted DSSIM sum for a resolution (AMP always uses the two-window form)."""
    pairs = dssim_filter_sizes(resolution)
    if always_two and len(pairs) == 1:
        pairs = [(5.0, int(resolution / 11.6)), (5.0, int(resolution / 23.2))]
    total = None
    for w, size in pairs:
        term = w * dssim(target, pred, size)
        total = term if total is None else total + term
    return total  # type: ignore[return-value]


def mse(a: Tensor, b: Tensor, weight: float = 10.0) -> Tensor:
    """``weight * mean((a - b)^2)`` per sample (DFL's pixel and mask losses use weight 10)."""
    return weight * (a.float() - b.float()).square().flatten(1).mean(1)


def eyes_mouth_loss(target: Tensor, pred: Tensor, em_mask: Tensor, weight: float = 300.0) -> Tensor:
    """DFL's eyes-and-mouth priority: ``300 * mean|target*em - pred*em|`` per sample."""
    em = em_mask.float()
    return weight * (target.float() * em - pred.float() * em).abs().flatten(1).mean(1)


def style_loss(content: Tensor, style: Tensor, blur_radius: float = 0.0, loss_weight: float = 1.0) -> Tensor:
    """DFL's style loss: squared differences of per-channel mean and std after an optional blur."""
    if blur_radius > 0.0:
        content, style = gaussian_blur(content, blur_radius), gaussian_blur(style, blur_radius)
    content, style = content.float(), style.float()
    c_var, c_mean = torch.var_mean(content, dim=(2, 3), unbiased=False, keepdim=True)
    s_var, s_mean = torch.var_mean(style, dim=(2, 3), unbiased=False, keepdim=True)
    c_std, s_std = torch.sqrt(c_var + 1e-5), torch.sqrt(s_var + 1e-5)
    mean_loss = (c_mean - s_mean).square().sum(dim=(1, 2, 3))
    std_loss = (c_std - s_std).square().sum(dim=(1, 2, 3))
    return (mean_loss + std_loss) * (loss_weight / content.shape[1])


def total_variation_mse(images: Tensor) -> Tensor:
    """Sum of squared neighbour differences along height and width, per sample."""
    x = images.float()
    dh = (x[:, :, 1:, :] - x[:, :, :-1, :]).square().sum(dim=(1, 2, 3))
    dw = (x[:, :, :, 1:] - x[:, :, :, :-1]).square().sum(dim=(1, 2, 3))
    return dh + dw


def d_loss(logits: Tensor, real: bool) -> Tensor:
    """Sigmoid cross-entropy against all-ones (``real``) or all-zeros labels, mean per sample."""
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="none").flatten(1).mean(1)


def blur_mask_for_loss(mask: Tensor, resolution: int, clip: bool = True) -> Tensor:
    """DFL's soft training mask: blur by res/32, then (SAEHD/AMP) clip at 0.5 and double."""
    m = gaussian_blur(mask, max(1, resolution // 32))
    return m.clamp(0.0, 0.5) * 2.0 if clip else m


def blur_out_mask(img: Tensor, mask: Tensor, resolution: int) -> Tensor:
    """DFL's ``blur_out_mask``: replace the background with a mask-normalised blur of itself."""
    sigma = resolution / 128
    anti = 1.0 - mask.float()
    x = gaussian_blur(img.float() * anti, sigma)
    y = 1.0 - gaussian_blur(mask.float(), sigma)
    y = torch.where(y == 0, torch.ones_like(y), y)
    return img.float() * mask.float() + (x / y) * anti
