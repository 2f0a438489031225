"""The speed work must not change the maths: flat-buffer optimiser steps, lr-dropout masks, precision choice."""

from __future__ import annotations

import io

import pytest
import torch

from dfl.models.blocks import conv2d, dense
from dfl.training.optim import AdaBelief, RMSprop, _FlatGroup


def _params(seed: int = 0) -> list[torch.nn.Parameter]:
    torch.manual_seed(seed)
    net = torch.nn.Sequential(conv2d(3, 8, 3), conv2d(8, 4, 5), dense(6, 5))
    net.to(memory_format=torch.channels_last)
    return list(net.parameters())


def _grads(params: list[torch.Tensor], seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(p.shape, generator=g) for p in params]


def _reference(cls: str, params: list[torch.Tensor], grads_seq: list[list[torch.Tensor]], lr: float,
               clipnorm: float) -> list[torch.Tensor]:
    """DFL's update rules written out per tensor."""
    ws = [p.detach().clone() for p in params]
    s1 = [torch.zeros_like(w) for w in ws]
    s2 = [torch.zeros_like(w) for w in ws]
    for grads in grads_seq:
        grads = [g.clone() for g in grads]
        if clipnorm:
            norm = torch.sqrt(sum((g**2).sum() for g in grads))
            if norm >= clipnorm:
                grads = [g * (clipnorm / norm) for g in grads]
        for i, g in enumerate(grads):
            if cls == "AdaBelief":
                s1[i] = 0.9 * s1[i] + 0.1 * g
                s2[i] = 0.999 * s2[i] + 0.001 * (g - s1[i]) ** 2
                ws[i] = ws[i] - lr * s1[i] / (s2[i].sqrt() + 1e-6)
            else:
                s1[i] = 0.9 * s1[i] + 0.1 * g * g
                ws[i] = ws[i] - lr * g / (s1[i].sqrt() + 1e-6)
    return ws


@pytest.mark.parametrize("chunked", [True, False])  # False: the GPU's one-pass layout, forced on the CPU
@pytest.mark.parametrize("cls", ["AdaBelief", "RMSprop"])
def test_flat_and_per_tensor_paths_match_dfl_rule(cls: str, chunked: bool, monkeypatch) -> None:
    opt_cls = {"AdaBelief": AdaBelief, "RMSprop": RMSprop}[cls]
    monkeypatch.setattr(opt_cls, "_chunked", chunked)
    monkeypatch.setattr("dfl.training.optim.CHUNK", 7)  # several chunks per parameter, and a ragged last one
    flat = _params()
    ref = _reference(cls, flat, [_grads(flat, s) for s in range(4)], lr=1e-2, clipnorm=1.0)
    # every parameter has a gradient: the flat-buffer path
    opt = opt_cls(flat, lr=1e-2, clipnorm=1.0)
    assert 0 in opt._flat_groups and opt._flat_groups[0].chunked == chunked
    for s in range(4):
        for p, g in zip(flat, _grads(flat, s)):
            p.grad = g
        opt.step()
    # one extra parameter without a gradient: the per-tensor (_foreach) path on the same state views
    sub = _params()
    idle = torch.nn.Parameter(torch.ones(7))
    opt2 = opt_cls(sub + [idle], lr=1e-2, clipnorm=1.0)
    for s in range(4):
        for p, g in zip(sub, _grads(sub, s)):
            p.grad = g
        opt2.step()
    for a, b, r in zip(flat, sub, ref):
        assert torch.allclose(a.detach(), r, atol=1e-6) and torch.allclose(b.detach(), r, atol=1e-6)
    assert torch.equal(idle.detach(), torch.ones(7))  # no gradient, no update (DFL's frozen networks)
    for p in flat:
        if p.dim() == 4:  # layouts survive the packing
            assert p.is_contiguous(memory_format=torch.channels_last)


def test_flat_state_survives_save_and_reload() -> None:
    a, b = _params(), _params()
    opt_a = AdaBelief(a, lr=1e-2)
    for p, g in zip(a, _grads(a, 0)):
        p.grad = g
    opt_a.step()
    buf = io.BytesIO()
    torch.save(opt_a.state_dict(), buf)
    buf.seek(0)
    with torch.no_grad():
        for p, q in zip(b, a):
            p.copy_(q)
    opt_b = AdaBelief(b, lr=1e-2)
    opt_b.load_state_dict(torch.load(buf, weights_only=True))
    assert opt_b.param_groups[0]["iterations"] == 1
    for s in (1, 2):
        for opt, ps in ((opt_a, a), (opt_b, b)):
            for p, g in zip(ps, _grads(ps, s)):
                p.grad = g
            opt.step()
    for p, q in zip(a, b):
        assert torch.allclose(p.detach(), q.detach(), atol=1e-7)
    # after the reload the state was packed again into the flat buffers
    fg = opt_b._flat_groups[0]
    assert fg.valid(b, opt_b.state)


@pytest.mark.parametrize("keep", [0.3, 0.5])
def test_lr_dropout_mask_keeps_each_element_with_probability(keep: float) -> None:
    fg = _FlatGroup([torch.nn.Parameter(torch.zeros(200_001))], {}, ())
    torch.manual_seed(0)
    m1 = fg.keep_mask(keep).clone()
    m2 = fg.keep_mask(keep).clone()
    assert set(m1.unique().tolist()) <= {0.0, 1.0}
    for m in (m1, m1[0::2], m1[1::2]):  # both halves of each 32-bit draw
        assert abs(float(m.mean()) - keep) < 0.006
    assert not torch.equal(m1, m2)  # a fresh mask every step
    # neighbours (which share one random draw) are independent
    both = float((m1[0:-1:2] * m1[1::2]).mean())
    assert abs(both - keep * keep) < 0.006


def test_preview_refresh_keeps_its_period_unless_it_would_cost_over_its_share() -> None:
    from dfl.training.previews import PREVIEW_SHARE, preview_period

    assert preview_period(15.0, 0.1) == 15.0                       # Quick96-sized refresh: as asked
    assert preview_period(15.0, 0.6) == pytest.approx(0.6 / PREVIEW_SHARE)   # SAEHD 128 on 2 cores: 30 s
    assert 0.6 / preview_period(15.0, 0.6) <= PREVIEW_SHARE + 1e-12
