"""``--precision fp16`` on the CPU: Winograd tiles in float16 with float32 accumulation, per-call gradient
scaling, and steps that overflow float16 recomputed in float32 instead of reaching the weights."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dfl.models import build_model
from dfl.ops import half_tiles, winograd
from dfl.training.objective import Objective
from dfl.precision import candidates, cpu_flags, emulation


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("shape", [(2, 64, 128, 16, 16), (2, 64, 96, 10, 13)])
@pytest.mark.parametrize("grad_size", [1e-9, 1.0, 1e4])
def test_half_tiles_match_the_direct_convolution_to_float16_rounding(shape, grad_size):
    # Activation gradients of a real loss are ~1e-9..1e-6 (far below float16's 6e-5 normal range); scaled
    # per call they keep float16's relative precision at every size.
    n, c, co, h, w = shape
    g = torch.Generator().manual_seed(3)
    x = torch.randn(n, c, h, w, generator=g).contiguous(memory_format=torch.channels_last).requires_grad_()
    wt = (torch.randn(co, c, 3, 3, generator=g) * 0.05).contiguous(memory_format=torch.channels_last).requires_grad_()
    b = torch.randn(co, generator=g).requires_grad_()
    gy = torch.randn(n, co, h, w, generator=g) * grad_size
    ref = F.conv2d(x.double(), wt.double(), b.double(), padding=1)
    ref_grads = torch.autograd.grad(ref, (x, wt, b), gy.double())
    with half_tiles() as status:
        out = winograd.conv3x3(x, wt, b)
    grads = torch.autograd.grad(out, (x, wt, b), gy)
    assert out.dtype == torch.float32 and not status.overflowed
    assert 1e-4 < _rel(out, ref) < 1e-2  # float16 rounding (float32 tiles give ~1e-6)
    for got, want in zip(grads, ref_grads):
        assert got.dtype == torch.float32
        assert _rel(got, want) < 1e-2


def test_half_tiles_with_depth_to_space():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 64, 8, 8, generator=g).contiguous(memory_format=torch.channels_last).requires_grad_()
    wt = (torch.randn(512, 64, 3, 3, generator=g) * 0.05).requires_grad_()
    b = torch.randn(512, generator=g).requires_grad_()
    ref = winograd.conv3x3(x, wt, b, depth_to_space=True)
    gy = torch.randn(ref.shape, generator=g) * 1e-7
    ref_grads = torch.autograd.grad(ref, (x, wt, b), gy)
    with half_tiles():
        out = winograd.conv3x3(x, wt, b, depth_to_space=True)
    assert _rel(out, ref) < 1e-2
    for got, want in zip(torch.autograd.grad(out, (x, wt, b), gy), ref_grads):
        assert _rel(got, want) < 1e-2


def test_only_differentiated_convolutions_use_half_tiles():
    # merging and previews (no autograd) keep float32 results even inside the block
    g = torch.Generator().manual_seed(5)
    x = torch.randn(1, 64, 16, 16, generator=g)
    wt = torch.randn(128, 64, 3, 3, generator=g) * 0.05
    with half_tiles(), torch.no_grad():
        out = winograd.conv3x3(x, wt)
    assert _rel(out, F.conv2d(x, wt, padding=1)) < 1e-5


def test_float16_overflow_is_flagged():
    g = torch.Generator().manual_seed(6)
    x = (torch.randn(1, 64, 8, 8, generator=g) * 1e4).requires_grad_()   # tiles beyond float16's 65504
    wt = (torch.randn(128, 64, 3, 3, generator=g) * 0.05).requires_grad_()
    with half_tiles() as status:
        out = winograd.conv3x3(x, wt)
    out.sum().backward()
    assert status.overflowed
    with half_tiles() as fine:
        out = winograd.conv3x3(x / 1e4, wt)
    out.sum().backward()
    assert not fine.overflowed


def _batch(res: int, n: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    b = {k: torch.rand(n, 3, res, res, generator=g) for k in ("warped_src", "target_src", "warped_dst", "target_dst")}
    for k in ("target_srcm", "target_dstm", "target_srcm_em", "target_dstm_em"):
        b[k] = (torch.rand(n, 1, res, res, generator=g) > 0.5).float()
    return b


def _winograd_convs(model, objective, batch) -> list[torch.nn.Conv2d]:
    """The convolutions that take the Winograd path in a training step."""
    found = []

    def hook(module, args):
        if winograd.applies(module, args[0]):
            found.append(module)

    handles = [m.register_forward_pre_hook(hook) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    objective.train_step(batch)
    for h in handles:
        h.remove()
    return found


def test_cpu_fp16_step_trains_and_an_overflowing_step_is_redone_in_float32():
    torch.manual_seed(0)
    model = build_model("SAEHD", {"archi": "df-ud", "resolution": 64, "face_type": "f", "ae_dims": 64,
                                  "e_dims": 64, "d_dims": 64, "d_mask_dims": 16, "batch_size": 2})
    obj = Objective(model, model.options, precision="fp16", channels_last=True)
    assert obj.half_tiles and obj.scaler is None
    batch = _batch(64, 2)
    first = obj.train_step(batch)["src_loss"]
    for _ in range(4):
        last = obj.train_step(batch)["src_loss"]
    assert last < first and obj.fp32_retries == 0
    convs = _winograd_convs(model, obj, batch)
    assert convs
    with torch.no_grad():  # products of this layer now overflow float16, not float32
        convs[0].weight.mul_(1e6)
    before = obj.fp32_retries
    losses = obj.train_step(batch)
    assert obj.fp32_retries == before + 1
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values())
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_auto_times_only_the_precisions_the_cpu_does_natively():
    fp16 = cpu_flags("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16 avx512_fp16\n")
    zen4 = cpu_flags("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16 avx512_vnni\n")
    old = cpu_flags("processor\t: 0\nflags\t\t: fpu avx2\n")
    assert candidates("cpu", fp16) == ["fp32", "bf16", "fp16"]
    assert candidates("cpu", zen4) == ["fp32", "bf16"]             # fp16 emulated there: not even timed
    assert candidates("cpu", old) == ["fp32"]
    assert candidates("cpu", set()) == ["fp32", "bf16", "fp16"]    # flags unknown (macOS, Windows): measure all
    assert "AVX-512 FP16" in emulation("fp16", "cpu", zen4)
    assert emulation("fp16", "cpu", fp16) is None and emulation("fp32", "cpu", old) is None
