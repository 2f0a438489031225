"""Winograd F(4x4, 3x3): the same 3x3 'same' convolution with 4x fewer multiplications, for the CPU.

Why: training DFL's autoencoders on a CPU is almost all 3x3 stride-1 convolutions, and oneDNN already runs
those near the cores' fp32 peak (about 300 GFLOP/s on 2 AVX-512 cores, the same as a large GEMM), so the
only way to be faster is less arithmetic.  Winograd's minimal filtering (Lavin & Gray, 2015) computes each
4x4 output tile from a 6x6 input tile with 36 multiplications per input/output channel pair instead of 144:
transform the tiles (``B^T d B``) and the 3x3 kernels (``G g G^T``), do 36 independent channel GEMMs, then
transform back (``A^T m A``).  The GEMMs are one ``bmm``; the transforms are small GEMMs with 36x36 and
16x36 Kronecker matrices over the tile data, so everything is stock torch ops (no compiler needed).
The backward pass is hand-written in the same domain (gradients of the GEMMs, the transposed transforms
and an overlap-add back to pixels), so it is cheap too.

Where it pays (measured on 2 cores, forward + backward, vs oneDNN's direct convolution): layers with many
output channels on feature maps of 8x8 and up: 1.6-2.4x for the 256/512-channel layers of SAEHD's and
AMP's decoders; it loses where the transforms dominate (few output channels, e.g. the RGB heads), hence the
measured shape rules of :func:`pays`.  Results equal the direct convolution to ~3e-6 relative
(fp32 rounding of the transforms), well inside what training or merging can notice.

On GPUs cuDNN picks its own Winograd kernels, so this is for float32 on the CPU only, outside autocast.
``DFL_WINOGRAD=0`` turns it off (and the other CPU convolution paths, :mod:`dfl.ops.im2col` and
:mod:`dfl.ops.strided`), and so does tracing (an ONNX export gets plain convolutions).
"""

from __future__ import annotations

import math
import os

import torch
from torch import Tensor, nn

from dfl.ops import cache, half
from dfl.ops.half import HalfTiles, tile_dtype
from dfl.ops.layout import channels_last_only
from dfl.ops.layout import depth_to_space as shuffle
from dfl.ops.memory import freed_memory_kept

_BT = ((4, 0, -5, 0, 1, 0), (0, -4, -4, 1, 1, 0), (0, 4, -4, -1, 1, 0),
       (0, -2, -1, 2, 1, 0), (0, 2, -1, -2, 1, 0), (0, 4, 0, -5, 0, 1))
_G = ((1 / 4, 0, 0), (-1 / 6, -1 / 6, -1 / 6), (-1 / 6, 1 / 6, -1 / 6),
      (1 / 24, 1 / 12, 1 / 6), (1 / 24, -1 / 12, 1 / 6), (0, 0, 1))
_AT = ((1, 1, 1, 1, 1, 0), (0, 1, -1, 2, -2, 0), (0, 1, 1, 4, 4, 0), (0, 1, -1, 8, -8, 1))
_MATS: dict[tuple[torch.device, torch.dtype], tuple[Tensor, Tensor, Tensor]] = {}

MIN_IN_CHANNELS = 64
MIN_OUT_CHANNELS = 128
# Narrower layers of large maps gain only when their large temporaries (tiles are 2.25x the map) do not
# come as fresh pages from the kernel every call: with dfl.ops.memory.keep_freed_memory() SAEHD's 8x128x64x64
# layers gain 1.7x, without it nothing (Quick96's 4x128x48x48 gains 2.6x either way).  Beyond
# LARGE_INPUT_KEPT (AMP 224's 16x128x112x112) the saved tiles cost more memory (+1.2 GB) than the ~5% is worth.
MIN_OUT_CHANNELS_LARGE_INPUT = 160
LARGE_INPUT = 1 << 21  # elements
LARGE_INPUT_KEPT = 1 << 23
MIN_SIDE = 8
# Out channels per 4x4 output tile of the batch, see pays(); with freed memory kept, wider layers gain too
# (Quick96's 12x12 512->1024 1.7x, SAEHD's 8x8 256->2048 1.35x, LIAE's 8x8 1024->2048 1.7x over im2col),
# the widest with their kernels transformed in blocks of at most MAX_KEPT_KERNEL_FLOATS (see _blocks).
MAX_KERNEL_TO_TILE_RATIO = 12
MAX_KEPT_KERNEL_FLOATS = 1 << 25
MIN_SIDE_UNCACHED_INFERENCE = 24  # below this, re-transforming the kernels every call costs the gain


def enabled() -> bool:
    """The CPU paths are on: not turned off by ``DFL_WINOGRAD=0``, and not being traced (an ONNX export
    records the stock convolution, which every runtime optimises itself, never these kernels)."""
    return os.environ.get("DFL_WINOGRAD", "1") != "0" and not torch.jit.is_tracing()


def _mats(device: torch.device, dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor, Tensor]:
    """(input transform 36x36, output transform 16x36, kernel transform 36x9), as Kronecker products."""
    key = (device, dtype)
    if key in _MATS:
        return _MATS[key]
    bt, at, g = (torch.tensor(m, dtype=torch.float64) for m in (_BT, _AT, _G))
    mats: tuple[Tensor, Tensor, Tensor] = tuple(torch.kron(m, m).to(device, dtype) for m in (bt, at, g))  # type: ignore[assignment]
    if not _compiling():  # a tensor made while torch.compile traces must not escape the graph (it fails there)
        _MATS[key] = mats
    return mats


def _autocast_on() -> bool:
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # torch < 2.4
        return torch.is_autocast_cpu_enabled()


def needs_grad(x: Tensor, conv: nn.Conv2d) -> bool:
    """Whether ``conv(x)`` will be differentiated (training), so kernels are transformed every call."""
    return torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in conv.parameters()))


def cpu_fp32_conv(conv: nn.Conv2d, x: Tensor, kernel: int, stride: int, padding: int) -> bool:
    """``conv(x)`` is a plain square ``kernel`` convolution (that stride and zero padding, no dilation or
    groups) of a float32 batch on the CPU, outside autocast, with the fast paths on."""
    return (x.dim() == 4 and x.device.type == "cpu" and x.dtype == torch.float32
            and conv.weight.dtype == torch.float32 and conv.kernel_size == (kernel, kernel)
            and conv.stride == (stride, stride) and conv.padding == (padding, padding)
            and conv.dilation == (1, 1) and conv.groups == 1 and conv.padding_mode == "zeros"
            and enabled() and not _autocast_on())


def cpu_same_3x3(conv: nn.Conv2d, x: Tensor) -> bool:
    """``conv(x)`` is a 3x3, stride 1, pad 1 :func:`cpu_fp32_conv`: what both this module and
    :mod:`dfl.ops.im2col` require."""
    return cpu_fp32_conv(conv, x, 3, 1, 1)


def applies(conv: nn.Conv2d, x: Tensor) -> bool:
    """Whether ``conv(x)`` is a 3x3/stride 1/pad 1 float32 CPU convolution that gains."""
    return cpu_same_3x3(conv, x) and pays(conv.in_channels, conv.out_channels, x.shape, needs_grad(x, conv))


def pays(in_ch: int, out_ch: int, shape: tuple[int, ...], training: bool) -> bool:
    """Whether Winograd beats direct convolution for ``in_ch`` -> ``out_ch`` 3x3 on an input of ``shape``.

    The arithmetic saved grows with the tile data (batch x 4x4 output tiles x channels), while the cost of
    transforming the kernels (36 x in x out values, through memory every step) does not shrink with the
    feature map: on small maps with very wide layers (SAEHD's 8x8 -> 2048-channel upscale, Quick96's 12x12
    decoder layers) direct convolution is as fast or faster (measured), hence the kernel-to-tile ratio limit,
    unless freed memory is kept (then the transformed kernels are not fresh pages every step; the widest
    layers transform them in blocks).  ``training``: differentiated, so the kernels are transformed anyway.
    """
    if in_ch < MIN_IN_CHANNELS or out_ch < MIN_OUT_CHANNELS:
        return False
    n, _, h, w = shape
    tiles = n * (-(-h // 4)) * (-(-w // 4))
    if out_ch > MAX_KERNEL_TO_TILE_RATIO * tiles and not (
            freed_memory_kept() and (training or 36 * in_ch * out_ch <= MAX_KEPT_KERNEL_FLOATS)):
        return False  # (inference transforms, and may cache, a layer's kernels whole: not the widest)
    numel = n * in_ch * h * w
    if out_ch < MIN_OUT_CHANNELS_LARGE_INPUT and numel > LARGE_INPUT and (
            numel > LARGE_INPUT_KEPT or not freed_memory_kept()):
        return False
    min_side = MIN_SIDE
    if cache.active() is None and not training:
        min_side = MIN_SIDE_UNCACHED_INFERENCE
    return min(h, w) >= min_side


def _kernel_transform(weight: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    """(Co, C, 3, 3) kernels -> (36, C, Co) Winograd-domain matrices (a transposed view).

    A channels_last weight (as training with ``channels_last`` keeps them) is regrouped tap-major with
    whole rows of C contiguous; reading it as (Co*C, 9) would gather every ninth float instead (the whole
    transform about 8% slower for SAEHD's 512x512 and 1024x512 layers, measured).
    """
    co, c = weight.shape[:2]
    dtype = dtype or weight.dtype
    kg = _mats(weight.device, dtype)[2]
    if channels_last_only(weight):
        taps = weight.permute(2, 3, 0, 1).reshape(9, co * c).to(dtype)
    else:
        taps = weight.reshape(co * c, 9).t().to(dtype)
    return (kg @ taps).view(36, co, c).transpose(1, 2)


def _input_tiles(x: Tensor, th: int, tw: int, dtype: torch.dtype | None = None) -> Tensor:
    """(N, C, H, W) -> (36, N*th*tw, C): transformed 6x6 tiles at stride 4 of the zero-padded input."""
    n, c, h, w = x.shape
    xn = x.permute(0, 2, 3, 1)  # NHWC (a free view of a channels_last tensor)
    dtype = dtype or x.dtype
    xp = xn.new_empty(n, 4 * th + 2, 4 * tw + 2, c, dtype=dtype)
    xp[:, 0].zero_()
    xp[:, h + 1:].zero_()
    xp[:, :, 0].zero_()
    xp[:, :, w + 1:].zero_()
    xp[:, 1:h + 1, 1:w + 1].copy_(xn)
    tiles = xp.unfold(1, 6, 4).unfold(2, 6, 4).permute(4, 5, 0, 1, 2, 3).reshape(36, -1)
    return (_mats(x.device, dtype)[0] @ tiles).view(36, n * th * tw, c)


def _output(m: Tensor, bias: Tensor | None, n: int, h: int, w: int, th: int, tw: int,
            d2s: bool = False, dtype: torch.dtype | None = None) -> Tensor:
    """(36, P, Co) products -> (N, Co, H, W) channels_last output (+ bias), a tensor of its own (not a view,
    so that in-place activations after it are allowed), in ``dtype`` (default: that of ``m``).

    ``d2s``: TensorFlow's depth_to_space x2 of that output instead, (N, Co/4, 2H, 2W), written in the same
    pass (DFL's Upscale; maps of whole tiles only): the separate regrouping copy, and its copy back in the
    backward pass, are saved.
    """
    co = m.shape[-1]
    dtype = dtype or m.dtype
    t = _mats(m.device, m.dtype)[1] @ m.reshape(36, -1)
    if d2s:  # (conv3x3 sees to whole tiles and eager mode)
        oc = co // 4
        out = torch.empty((n, oc, 2 * h, 2 * w), dtype=dtype, device=m.device, memory_format=torch.channels_last)
        src = t.view(4, 4, n, th, tw, 2, 2, oc)
        _write_biased(_d2s_tiles(out), src, None if bias is None else bias.view(2, 2, oc))
        return out
    y = t.view(4, 4, n, th, tw, co).permute(2, 3, 0, 4, 1, 5)
    if _compiling():  # traced graphs: plain ops (no data pointers, no out= into views); the compiler fuses them
        full = y.reshape(n, 4 * th, 4 * tw, co)[:, :h, :w].to(dtype)
        if bias is not None:
            full = full + bias
        return full.permute(0, 3, 1, 2).clone(memory_format=torch.channels_last)
    out = torch.empty((n, co, h, w), dtype=dtype, device=m.device, memory_format=torch.channels_last)
    exact = 4 * th == h and 4 * tw == w
    dst = out.permute(0, 2, 3, 1).view(n, th, 4, tw, 4, co) if exact else out.new_empty(n, th, 4, tw, 4, co)
    _write_biased(dst, y, bias)
    if not exact:
        out.permute(0, 2, 3, 1).copy_(dst.view(n, 4 * th, 4 * tw, co)[:, :h, :w])
    return out


def _write_biased(dst: Tensor, src: Tensor, bias: Tensor | None) -> None:
    """``dst[...] = src + bias``; a float16 ``src`` is converted by a copy and the bias added in place, which
    is faster than one mixed-dtype add (measured 0.77 vs 1.11 ms for an 8x128x64x64 output)."""
    if bias is None:
        dst.copy_(src)
    elif src.dtype == dst.dtype:
        torch.add(src, bias, out=dst)
    else:
        dst.copy_(src)
        dst.add_(bias)


def _d2s_tiles(z: Tensor) -> Tensor:
    """A view of a channels_last depth_to_space x2 result (N, oc, 2H, 2W) in the order of the output
    transform's tiles: (4 tile rows, 4 tile columns, N, H/4, W/4, 2, 2, oc), where (2, 2, oc) is the
    pre-shuffle channel ((i * 2 + j) * oc + c, TF's DCR order), landing at pixel (2y + i, 2x + j)."""
    n, oc, h2, w2 = z.shape
    th, tw = h2 // 8, w2 // 8
    return z.permute(0, 2, 3, 1).view(n, th, 4, 2, tw, 4, 2, oc).permute(2, 5, 0, 1, 4, 3, 6, 7)


def _compiling() -> bool:
    is_compiling = getattr(getattr(torch, "compiler", None), "is_compiling", None)
    return bool(is_compiling and is_compiling())


def _overlap_add(dt: Tensor, n: int, h: int, w: int, c: int, th: int, tw: int,
                 dtype: torch.dtype | None = None) -> Tensor:
    """Adjoint of the tiling: (36, P*C) tile gradients -> (N, C, H, W) channels_last in ``dtype`` (default:
    that of ``dt``), overlaps summed."""
    d = dt.view(6, 6, n, th, tw, c)
    if 4 * th == h and 4 * tw == w:
        return _overlap_add_exact(d, dtype).view(n, h, w, c).permute(0, 3, 1, 2)
    gx = dt.new_zeros(n, h, w, c, dtype=dtype or dt.dtype)

    def span(a: int, tiles: int, size: int) -> tuple[slice, slice] | None:
        first = a - 1  # image row of tile 0's row a (the padding is one pixel)
        lo = 1 if first < 0 else 0
        hi = min(tiles, (size - 1 - first) // 4 + 1)
        if hi <= lo:
            return None
        return slice(first + 4 * lo, first + 4 * (hi - 1) + 1, 4), slice(lo, hi)

    for a in range(6):
        rows = span(a, th, h)
        if rows is None:
            continue
        for b in range(6):
            cols = span(b, tw, w)
            if cols is None:
                continue
            gx[:, rows[0], cols[0]] += d[a, b, :, rows[1], cols[1]]
    return gx.permute(0, 3, 1, 2)


def _tile_terms(q: int, tiles: int) -> list[tuple[int, slice, slice]]:
    """Along one axis, what lands on output offset ``q`` (0..3) of each 4-pixel tile: (row of the 6-row
    input tile, output tiles, source tiles).  Input tiles overlap by two rows, so offset 0 also receives row 5
    of the previous tile and offset 3 row 0 of the next one."""
    every = slice(0, tiles)
    terms = [(q + 1, every, every)]
    if q == 0:
        terms.append((5, slice(1, tiles), slice(0, tiles - 1)))
    if q == 3:
        terms.append((0, slice(0, tiles - 1), slice(1, tiles)))
    return terms


def _overlap_add_exact(d: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    """:func:`_overlap_add` for maps of whole tiles: (6, 6, N, th, tw, C) -> (N, th, 4, tw, 4, C), each
    output written once from its 1, 2 or 4 sources (instead of zeroing it and adding all 36 tile rows into it,
    which moves about twice the memory)."""
    _, _, n, th, tw, c = d.shape
    gx = d.new_empty(n, th, 4, tw, 4, c, dtype=dtype or d.dtype)
    for qr in range(4):
        rows = _tile_terms(qr, th)
        for qc in range(4):
            cols = _tile_terms(qc, tw)
            dst = gx[:, :, qr, :, qc]
            base = d[rows[0][0], cols[0][0]]
            extra = [(a, b, rd, rs, cd, cs) for a, rd, rs in rows for b, cd, cs in cols][1:]
            if len(extra) == 1:
                a, b, rd, rs, cd, cs = extra[0]
                torch.add(base[:, rd, cd], d[a, b][:, rs, cs], out=dst[:, rd, cd])
                if rd.stop - rd.start < th:  # the tile row the extra term misses
                    edge = slice(th - 1, th) if rd.start == 0 else slice(0, 1)
                    dst[:, edge].copy_(base[:, edge])
                else:
                    edge = slice(tw - 1, tw) if cd.start == 0 else slice(0, 1)
                    dst[:, :, edge].copy_(base[:, :, edge])
                continue
            dst.copy_(base)
            for a, b, rd, rs, cd, cs in extra:
                dst[:, rd, cd] += d[a, b][:, rs, cs]
    return gx


def _blocks(c: int, co: int) -> list[slice]:
    """Output-channel blocks whose transformed kernels (36 x C x block floats) stay under
    ``MAX_KEPT_KERNEL_FLOATS``: LIAE's 8x8 1024 -> 2048 layer has 302 MB of them, more than its GEMM saves
    in memory traffic if made at once (and 0.5 GB of peak); in blocks of 75 MB it runs 1.7x faster than im2col."""
    per = max(1, MAX_KEPT_KERNEL_FLOATS // (36 * c))
    return [slice(a, min(co, a + per)) for a in range(0, co, per)]


def _grad_scale(gy: Tensor) -> float:
    """The power of two that brings ``gy``'s largest magnitude to (0.5, 1] before it becomes float16.

    Activation gradients are mostly far below float16's smallest normal number (6e-5: a loss gradient is
    spread over every pixel of the batch), so unscaled they would flush to zero; scaled to a maximum of 1,
    the transforms and channel sums that follow (growth well under 10^4) stay inside its range (6.5e4).
    Scaling by a power of two is exact.  A non-finite ``gy`` gives NaN (the caller flags its step).
    """
    # max |gy| as max(max, -min) over a flat view: plain reductions run ~10x faster than abs().amax()
    # (whose copy is the cost) or an inf-norm
    flat = gy.permute(0, 2, 3, 1).reshape(-1) if channels_last_only(gy) else gy.reshape(-1)
    amax = max(float(flat.amax()), -float(flat.amin()))
    if not math.isfinite(amax):
        return math.nan
    return 2.0 ** math.ceil(math.log2(amax)) if amax > 0 else 1.0


def _check_finite(status: HalfTiles | None, t: Tensor) -> None:
    """Flag ``status`` when ``t`` (a gradient just written, still in cache) holds an inf or NaN."""
    if status is not None and not status.overflowed and not torch.isfinite(t.sum()):
        status.overflowed = True


class _Winograd3x3(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, d2s: bool = False) -> Tensor:  # type: ignore[override]
        n, c, h, w = x.shape
        th, tw = -(-h // 4), -(-w // 4)
        dt = tile_dtype(x.dtype)
        v = _input_tiles(x, th, tw, dt)
        blocks = _blocks(c, weight.shape[0])
        u = None
        if len(blocks) == 1:
            u = _kernel_transform(weight, dt)
            prod = torch.bmm(v, u)
        else:
            prod = v.new_empty(36, v.shape[1], weight.shape[0])
            for b in blocks:  # each block's products straight into their columns (no concatenating copy)
                torch.bmm(v, _kernel_transform(weight[b], dt), out=prod[:, :, b])
        out = _output(prod, bias, n, h, w, th, tw, d2s, x.dtype)
        # u is 4x the weight and the weight is kept anyway: in float32, transforming it again in backward costs
        # 0-5% of a step and saves about 0.2 GB of a SAEHD df-ud 128 step's peak (the u of every layer at once);
        # in float16 u is half that, and keeping it made df-ud steps 0-4% faster (+0.15-0.3 GB, measured)
        keep_u = u is not None and dt != x.dtype
        ctx.save_for_backward(v, weight, u if keep_u else None)
        ctx.dims = (n, c, h, w, th, tw)
        ctx.has_bias = bias is not None
        ctx.d2s = d2s
        ctx.half = half.active() if dt != x.dtype else None
        return out

    @staticmethod
    def backward(ctx, gy: Tensor):  # type: ignore[override]
        v, weight, u = ctx.saved_tensors
        n, c, h, w, th, tw = ctx.dims
        co = weight.shape[0]
        dt = v.dtype
        kt, at, kg = _mats(gy.device, dt)
        scale = 1.0
        if ctx.half is not None:
            scale = _grad_scale(gy)
            if not math.isfinite(scale):
                ctx.half.overflowed = True
        if ctx.d2s:  # gy is the gradient of the shuffled output: gather the tiles straight from it
            src = _d2s_tiles(gy.contiguous(memory_format=torch.channels_last))
        else:
            gn = gy.permute(0, 2, 3, 1)
            if 4 * th != h or 4 * tw != w:
                padded = gn.new_zeros(n, 4 * th, 4 * tw, co)
                padded[:, :h, :w] = gn
                gn = padded
            src = gn.reshape(n, th, 4, tw, 4, co).permute(2, 4, 0, 1, 3, 5)
        if ctx.half is not None:  # scaled into range as it is gathered and converted
            g_tiles = torch.mul(src, 1.0 / scale, out=torch.empty(src.shape, dtype=dt, device=gy.device)).view(16, -1)
        else:
            g_tiles = src.reshape(16, -1)
        dm = (at.t() @ g_tiles).view(36, n * th * tw, co)
        blocks = _blocks(c, co)
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            u0 = u if u is not None else _kernel_transform(weight[blocks[0]], dt)
            dv = torch.bmm(dm[:, :, blocks[0]], u0.transpose(1, 2))
            for b in blocks[1:]:
                dv.baddbmm_(dm[:, :, b], _kernel_transform(weight[b], dt).transpose(1, 2))
            gx = _overlap_add(kt.t() @ dv.view(36, -1), n, h, w, c, th, tw, gy.dtype)
            if ctx.half is not None:
                gx.mul_(scale)
                _check_finite(ctx.half, gx)
        if ctx.needs_input_grad[1]:
            gw = torch.empty_like(weight) if len(blocks) > 1 else None
            # in float16 the sums over all P tiles are scaled by about 1/sqrt(P) before they are rounded: unscaled,
            # df-ud's 64x64 layers reached 1.35e4 at initialisation and overflowed (6.5e4) a few steps later;
            # by 1/P, 1% of the values fell below float16's normal range (measured); by 1/sqrt(P), none
            shrink = 2.0 ** -((v.shape[1].bit_length() - 1) // 2) if ctx.half is not None else 1.0
            for b in blocks:
                lhs = dm[:, :, b].transpose(1, 2)
                du = torch.baddbmm(lhs.new_empty(36, b.stop - b.start, c), lhs, v, beta=0, alpha=shrink)
                part = (kg.t() @ du.view(36, -1)).t().reshape(b.stop - b.start, c, 3, 3)
                if ctx.half is not None:  # float32 and unscaled (a mixed-dtype mul would compute in float16)
                    part = part.to(weight.dtype).mul_(scale / shrink)
                    _check_finite(ctx.half, part)
                if gw is None:
                    gw = part
                else:
                    gw[b] = part
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = gy.sum((0, 2, 3)) if not ctx.d2s else g_tiles.reshape(-1, co).sum(0, dtype=gy.dtype) * scale
        return gx, gw, gb, None


def conv3x3(x: Tensor, weight: Tensor, bias: Tensor | None = None, depth_to_space: bool = False) -> Tensor:
    """``F.conv2d(x, weight, bias, padding=1)`` for 3x3 kernels, by Winograd F(4x4, 3x3).

    ``depth_to_space``: TensorFlow's depth_to_space x2 of it instead (DFL's Upscale), shuffled as it is written.
    Without autograd (merging, previews), inside :func:`dfl.ops.cache.kernel_cache` the transformed kernels are reused.
    """
    if depth_to_space and (x.shape[-2] % 4 or x.shape[-1] % 4 or _compiling()):
        return shuffle(conv3x3(x, weight, bias), 2)
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad
                                    or (bias is not None and bias.requires_grad)):
        return _Winograd3x3.apply(x, weight, bias, depth_to_space)
    with torch.no_grad():
        n, _, h, w = x.shape
        th, tw = -(-h // 4), -(-w // 4)
        store = cache.active()
        hit = store.get(id(weight)) if store is not None else None
        if hit is not None and hit[0] is weight:
            u = hit[1]
        else:
            u = _kernel_transform(weight).contiguous()
            if store is not None:
                store[id(weight)] = (weight, u)  # the weight itself is kept so that its id stays unique
        return _output(torch.bmm(_input_tiles(x, th, tw), u), bias, n, h, w, th, tw, depth_to_space)
