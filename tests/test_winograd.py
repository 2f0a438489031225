"""Winograd F(4x4, 3x3) convolutions: same values and gradients as the direct convolution, used only where
they apply, and kernel caching that can never serve stale weights."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dfl.models import build_model
from dfl.ops import im2col, kernel_cache, strided, winograd
from dfl.models.blocks import Conv2d, conv2d, same_input_convs


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).detach().abs().max() / a.detach().abs().max())


@pytest.mark.parametrize("shape", [(2, 8, 16, 12, 12), (2, 5, 7, 9, 11), (1, 3, 4, 4, 4), (3, 6, 9, 8, 5)])
@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("weight_channels_last", [True, False])
@pytest.mark.parametrize("with_bias", [True, False])
def test_matches_direct_convolution_and_its_gradients(shape, channels_last, weight_channels_last, with_bias):
    n, c, co, h, w = shape
    g = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(n, c, h, w, generator=g)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    wt = torch.randn(co, c, 3, 3, generator=g) * 0.2
    if weight_channels_last:  # what model.to(memory_format=torch.channels_last) makes of the parameters
        wt = wt.contiguous(memory_format=torch.channels_last)
    wt.requires_grad_()
    b = torch.randn(co, generator=g).requires_grad_() if with_bias else None
    ref = F.conv2d(x, wt, b, padding=1)
    out = winograd.conv3x3(x, wt, b)
    assert out.shape == ref.shape
    assert _rel(ref, out) < 2e-5
    gy = torch.randn(ref.shape, generator=g)
    inputs = (x, wt) + ((b,) if with_bias else ())
    for r, o in zip(torch.autograd.grad(ref, inputs, gy), torch.autograd.grad(out, inputs, gy)):
        assert _rel(r, o) < 2e-5
    with torch.no_grad():
        assert _rel(ref, winograd.conv3x3(x, wt, b)) < 2e-5


@pytest.mark.parametrize("shape", [(2, 8, 16, 12, 12), (1, 6, 8, 4, 8), (2, 5, 12, 9, 7)])
@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("with_bias", [True, False])
def test_depth_to_space_written_by_the_convolution(shape, channels_last, with_bias):
    """DFL's Upscale (conv, then TF's depth_to_space) with the shuffle done by the output transform: same
    values, same gradients, for training and inference, on maps of whole tiles or not (then unfused)."""
    from dfl.models.blocks import depth_to_space

    n, c, co, h, w = shape
    g = torch.Generator().manual_seed(sum(shape) + 1)
    x = torch.randn(n, c, h, w, generator=g)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    wt = (torch.randn(co, c, 3, 3, generator=g) * 0.2).contiguous(memory_format=torch.channels_last).requires_grad_()
    b = torch.randn(co, generator=g).requires_grad_() if with_bias else None
    ref = depth_to_space(F.conv2d(x, wt, b, padding=1), 2)
    out = winograd.conv3x3(x, wt, b, depth_to_space=True)
    assert out.shape == ref.shape == (n, co // 4, 2 * h, 2 * w)
    assert _rel(ref, out) < 2e-5
    gy = torch.randn(ref.shape, generator=g)  # a plain NCHW gradient, as autograd may hand it over
    inputs = (x, wt) + ((b,) if with_bias else ())
    for r, o in zip(torch.autograd.grad(ref, inputs, gy), torch.autograd.grad(out, inputs, gy)):
        assert _rel(r, o) < 2e-5
    with torch.no_grad():
        assert _rel(ref, winograd.conv3x3(x, wt, b, depth_to_space=True)) < 2e-5


def test_output_allows_in_place_activation():
    conv = Conv2d(64, 256, 3, padding=1)
    x = torch.randn(2, 64, 16, 16, requires_grad=True)
    assert winograd.applies(conv, x)
    y = F.leaky_relu(conv(x), 0.1, inplace=True)  # a view output would make autograd refuse this
    y.sum().backward()
    assert x.grad is not None and conv.weight.grad is not None


def test_traces_under_torch_compile(monkeypatch):
    """torch.compile of a model on the CPU (`dfl train` ignores --compile there, a library user may not):
    dynamo traces the Winograd function, forward and backward, when its transform matrices are first needed,
    and a tensor made inside the graph must not leak into their cache (it failed with an InternalTorchDynamoError)."""
    monkeypatch.setattr(winograd, "_MATS", {})
    torch._dynamo.reset()
    conv = Conv2d(64, 128, 3, padding=1)
    x = torch.randn(2, 64, 16, 16, requires_grad=True)
    assert winograd.applies(conv, x)
    out = torch.compile(conv, backend="eager")(x)
    ref = F.conv2d(x, conv.weight, conv.bias, padding=1)
    assert _rel(ref, out) < 2e-5
    g_out = torch.autograd.grad(out.sum(), (x, conv.weight))
    g_ref = torch.autograd.grad(ref.sum(), (x, conv.weight))
    for r, o in zip(g_ref, g_out):
        assert _rel(r, o) < 2e-5
    torch._dynamo.reset()


def test_applies_only_where_it_gains(monkeypatch):
    monkeypatch.setattr(winograd, "freed_memory_kept", lambda: False)  # as in a process that never trained
    big = conv2d(256, 512, 3)
    x = torch.randn(8, 256, 32, 32)
    assert winograd.applies(big, x.requires_grad_())
    assert not winograd.applies(conv2d(128, 3, 3), torch.randn(8, 128, 64, 64))       # RGB head
    assert not winograd.applies(conv2d(256, 256, 5, stride=2), x)                       # not 3x3 stride 1
    assert not winograd.applies(conv2d(256, 2048, 3), torch.randn(8, 256, 8, 8))        # kernels >> tiles
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not winograd.applies(big, x)
    with torch.no_grad():  # inference without a kernel cache: only on larger maps
        assert not winograd.applies(big, torch.randn(8, 256, 16, 16))
        with kernel_cache():
            assert winograd.applies(big, torch.randn(8, 256, 16, 16))


def test_narrow_layers_of_large_maps_only_when_freed_memory_is_kept(monkeypatch):
    """SAEHD's 8x128x64x64 decoder layers gain only if their large temporaries are not fresh pages."""
    conv, x = conv2d(128, 128, 3), torch.randn(8, 128, 64, 64, requires_grad=True)
    monkeypatch.setattr(winograd, "freed_memory_kept", lambda: False)
    assert not winograd.applies(conv, x)
    assert winograd.applies(conv, torch.randn(4, 128, 48, 48, requires_grad=True))  # Quick96's: small enough
    monkeypatch.setattr(winograd, "freed_memory_kept", lambda: True)
    assert winograd.applies(conv, x)
    assert not winograd.applies(conv, torch.randn(16, 128, 112, 112))  # AMP 224's: the tiles cost too much memory


def test_wide_layers_of_small_maps_only_when_freed_memory_is_kept(monkeypatch):
    """SAEHD's 8x8 -> 2048 upscale gains once its transformed kernels are not fresh pages every step."""
    wide, x = conv2d(256, 2048, 3), torch.randn(8, 256, 8, 8, requires_grad=True)
    monkeypatch.setattr(winograd, "freed_memory_kept", lambda: False)
    assert not winograd.applies(wide, x)
    monkeypatch.setattr(winograd, "freed_memory_kept", lambda: True)
    assert winograd.applies(wide, x)
    assert winograd.applies(conv2d(1024, 2048, 3), torch.randn(16, 1024, 8, 8, requires_grad=True))  # LIAE's
    with torch.no_grad(), kernel_cache():  # inference caches whole kernels: not 302 MB of them
        assert winograd.applies(wide, x)
        assert not winograd.applies(conv2d(1024, 2048, 3), torch.randn(16, 1024, 8, 8))


@pytest.mark.parametrize("weight_channels_last", [True, False])
def test_kernels_transformed_in_output_channel_blocks_give_the_same_result(monkeypatch, weight_channels_last):
    """Layers whose transformed kernels would be huge (LIAE's 1024 -> 2048: 302 MB) run block by block."""
    monkeypatch.setattr(winograd, "MAX_KEPT_KERNEL_FLOATS", 36 * 6 * 4)  # blocks of 4 output channels here
    assert len(winograd._blocks(6, 10)) == 3
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 6, 9, 8, generator=g).contiguous(memory_format=torch.channels_last).requires_grad_()
    wt = torch.randn(10, 6, 3, 3, generator=g)
    if weight_channels_last:
        wt = wt.contiguous(memory_format=torch.channels_last)
    wt.requires_grad_()
    b = torch.randn(10, generator=g).requires_grad_()
    ref, out = F.conv2d(x, wt, b, padding=1), winograd.conv3x3(x, wt, b)
    assert _rel(ref, out) < 2e-5
    gy = torch.randn(ref.shape, generator=g)
    for r, o in zip(torch.autograd.grad(ref, (x, wt, b), gy), torch.autograd.grad(out, (x, wt, b), gy)):
        assert _rel(r, o) < 2e-5


def test_can_be_switched_off(monkeypatch):
    monkeypatch.setenv("DFL_WINOGRAD", "0")
    assert not winograd.applies(conv2d(256, 512, 3), torch.randn(8, 256, 32, 32))


def test_conv_keeps_the_stock_state_dict():
    a, b = conv2d(64, 256, 3), torch.nn.Conv2d(64, 256, 3, padding=1)
    assert isinstance(a, torch.nn.Conv2d)
    assert {k: v.shape for k, v in a.state_dict().items()} == {k: v.shape for k, v in b.state_dict().items()}


def test_kernel_cache_is_used_inside_its_block_and_never_outside():
    conv = conv2d(64, 256, 3).eval()
    x = torch.randn(2, 64, 32, 32)
    with torch.no_grad():
        before = conv(x)
        conv.weight.data.mul_(2.0)  # an optimiser-style update that does not bump the version counter
        assert torch.allclose(conv(x), 2 * before - conv.bias[None, :, None, None], rtol=1e-4, atol=1e-4)
        store: dict = {}
        with kernel_cache(store):
            first = conv(x)
        assert len(store) == 1
        conv.weight.data.mul_(0.5)
        with kernel_cache(store):  # the same store: frozen weights are this block's promise
            assert torch.equal(conv(x), first)
        with kernel_cache():       # a fresh block sees the new weights
            assert torch.allclose(conv(x), before, rtol=1e-4, atol=1e-4)


def test_same_input_convs_equals_separate_convs():
    convs = [conv2d(16, 3, 1), conv2d(16, 3, 3), conv2d(16, 3, 3), conv2d(16, 3, 3)]
    x = torch.randn(2, 16, 10, 10, requires_grad=True)
    ref = torch.cat([c(x) for c in convs], 1)
    out = same_input_convs(x, convs)
    assert torch.allclose(ref, out, atol=1e-5)
    gy = torch.randn_like(ref)
    params = [p for c in convs for p in c.parameters()]
    for r, o in zip(torch.autograd.grad(ref, [x] + params, gy), torch.autograd.grad(out, [x] + params, gy)):
        assert torch.allclose(r, o, atol=1e-5)


def _saehd_step(model, x) -> list[torch.Tensor]:
    model.zero_grad(set_to_none=True)
    preds = model.forward_train(x, x, style_branch=False, with_swap=False)
    loss = sum(v.square().mean() for k, v in preds.items() if k.startswith("pred_"))
    loss.backward()
    return [preds["pred_src_src"].detach()] + [p.grad.clone() for p in model.parameters() if p.grad is not None]


_SMALL_SAEHD = {"archi": "df-ud", "resolution": 64, "face_type": "f", "batch_size": 2, "ae_dims": 64,
                "e_dims": 32, "d_dims": 32, "d_mask_dims": 16}


def test_saehd_step_in_float64_is_exactly_the_direct_one(monkeypatch):
    """The whole model's forward and backward through the Winograd path, in float64 so that rounding cannot
    hide a mistake: equal to the direct convolutions to 1e-10."""
    torch.manual_seed(0)
    model = build_model("SAEHD", _SMALL_SAEHD).double()
    x = torch.rand(2, 3, 64, 64, dtype=torch.float64)
    direct = _saehd_step(model, x)
    used = []

    def applies_in_float64(conv, inp):  # the float32 rule's shape conditions, without its dtype ones
        ok = (conv.kernel_size == (3, 3) and conv.stride == (1, 1) and conv.padding == (1, 1)
              and conv.out_channels >= winograd.MIN_OUT_CHANNELS and min(inp.shape[2:]) >= winograd.MIN_SIDE)
        used.append(ok)
        return ok

    monkeypatch.setattr(winograd, "applies", applies_in_float64)
    monkeypatch.setattr(winograd, "_MATS", {})
    monkeypatch.setattr(winograd, "_mats", lambda device, dtype=None: tuple(
        torch.kron(m, m) for m in (torch.tensor(t, dtype=torch.float64) for t in (winograd._BT, winograd._AT, winograd._G))))
    wino = _saehd_step(model, x)
    assert any(used), "no layer of this model took the Winograd path"
    for a, b in zip(direct, wino):
        assert _rel(a, b) < 1e-10


def test_saehd_step_in_float32_differs_only_by_rounding(monkeypatch):
    torch.manual_seed(0)
    model = build_model("SAEHD", dict(_SMALL_SAEHD, archi="df"))
    x = torch.rand(2, 3, 64, 64)
    with_w = _saehd_step(model, x)
    monkeypatch.setenv("DFL_WINOGRAD", "0")
    without = _saehd_step(model, x)
    # ~1e-3 at most (measured); an untrained net amplifies float32 rounding: perturbing these layers' direct
    # outputs by 5e-6 of their scale moves its gradients by up to 1e-2 ('-u' archi) as well
    for a, b in zip(without, with_w):
        assert float((a - b).norm() / a.norm()) < 1e-2


def test_unbatched_input_takes_the_stock_path():
    conv = conv2d(64, 256, 3)
    x = torch.randn(64, 16, 16)
    assert not winograd.applies(conv, x)
    assert conv(x).shape == (256, 16, 16)


@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("weight_channels_last", [True, False])
def test_im2col_matches_direct_convolution_and_its_gradients(with_bias, weight_channels_last):
    g = torch.Generator().manual_seed(3)
    conv = conv2d(32, 2048, 3)
    if not with_bias:
        conv.bias = None
    if weight_channels_last:
        conv.to(memory_format=torch.channels_last)
    x = torch.randn(2, 32, 6, 7, generator=g).contiguous(memory_format=torch.channels_last).requires_grad_()
    assert im2col.applies(conv, x) and not winograd.applies(conv, x)
    out = conv(x)
    ref = F.conv2d(x, conv.weight, conv.bias, padding=1)
    assert _rel(ref, out) < 2e-5
    gy = torch.randn(ref.shape, generator=g)
    inputs = [x] + list(conv.parameters())
    for r, o in zip(torch.autograd.grad(ref, inputs, gy), torch.autograd.grad(out, inputs, gy)):
        assert _rel(r, o) < 2e-5
    y = F.leaky_relu(conv(x), 0.1, inplace=True)  # in-place after it is allowed
    y.sum().backward()


def test_im2col_only_for_small_maps_to_many_channels(monkeypatch):
    assert im2col.applies(conv2d(256, 2048, 3), torch.randn(8, 256, 8, 8))
    assert not im2col.applies(conv2d(256, 704, 3), torch.randn(8, 256, 8, 8))      # not wide enough
    assert not im2col.applies(conv2d(256, 2048, 3), torch.randn(8, 256, 16, 16))   # map too large
    monkeypatch.setenv("DFL_WINOGRAD", "0")                                       # one switch for both
    assert not im2col.applies(conv2d(256, 2048, 3), torch.randn(8, 256, 8, 8))


@pytest.mark.parametrize("shape", [(2, 16, 8, 16, 16), (1, 3, 5, 10, 6)])
@pytest.mark.parametrize("channels_last", [True, False])
def test_strided_5x5_matches_direct_convolution_and_its_gradients(shape, channels_last):
    n, c, co, h, w = shape
    g = torch.Generator().manual_seed(sum(shape))
    conv = conv2d(c, co, 5, stride=2)
    torch.nn.init.normal_(conv.bias, generator=g)
    x = torch.randn(n, c, h, w, generator=g)
    if channels_last:
        conv.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    ref = F.conv2d(x, conv.weight, conv.bias, stride=2, padding=2)
    out = strided.conv5x5_stride2(x, conv.weight, conv.bias)
    assert out.shape == ref.shape == (n, co, h // 2, w // 2)
    assert _rel(ref, out) < 2e-5
    gy = torch.randn(ref.shape, generator=g)
    inputs = [x] + list(conv.parameters())
    for r, o in zip(torch.autograd.grad(ref, inputs, gy), torch.autograd.grad(out, inputs, gy)):
        assert _rel(r, o) < 2e-5


def test_strided_5x5_only_for_training_on_larger_maps(monkeypatch):
    monkeypatch.setattr(winograd, "freed_memory_kept", lambda: True)
    layer = conv2d(128, 256, 5, stride=2)                        # SAEHD 128's third encoder layer
    x = torch.randn(16, 128, 32, 32)
    assert strided.applies(layer, x.requires_grad_())
    y = layer(x)
    assert y.shape == (16, 256, 16, 16) and y.grad_fn is not None
    with torch.no_grad():                                       # merging: no per-step kernel transform to share
        assert not strided.applies(layer, x)
    assert not strided.applies(conv2d(256, 512, 5, stride=2), torch.randn(16, 256, 16, 16))  # 8x8 out
    assert not strided.applies(layer, torch.randn(16, 128, 33, 33))                        # odd size
    assert not strided.applies(conv2d(3, 64, 5, stride=2), torch.randn(16, 3, 128, 128))   # too few channels
    assert not strided.applies(conv2d(128, 256, 3, stride=2), x)                           # not 5x5
