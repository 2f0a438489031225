"""DFL's optimisers: AdaBelief and RMSprop exactly as ``core/leras/optimizers`` update weights.

Both differ from torch's stock versions in ways that change training: AdaBelief has no bias
correction and adds eps outside the square root only; both support DFL's learning-rate dropout
(each element's update kept with probability ``lr_dropout``, a fresh mask every step), the cosine
learning-rate cycle ``lr_cos`` and global-norm gradient clipping ``clipnorm``.  Updates use
torch's multi-tensor (``_foreach``) kernels, so a step is a handful of fused ops.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor

EPS = float(torch.finfo(torch.float32).resolution)  # DFL's np.finfo(float32).resolution = 1e-6


def _clip_by_global_norm(grads: list[Tensor], clipnorm: float) -> None:
    """Scale all gradients by ``clipnorm / norm`` when their global norm reaches ``clipnorm`` (DFL)."""
    if clipnorm <= 0.0 or not grads:
        return
    norms = torch._foreach_norm(grads)
    total = torch.linalg.vector_norm(torch.stack([n.float() for n in norms]))
    scale = torch.where(total >= clipnorm, clipnorm / total.clamp_min(1e-12), torch.ones_like(total))
    torch._foreach_mul_(grads, scale)


def _lr_factor(iterations: int, lr_cos: int) -> float:
    if lr_cos == 0:
        return 1.0
    return (math.cos(iterations * (2 * 3.1415926535 / float(lr_cos))) + 1.0) / 2.0


def _dropout_masks(params: list[Tensor], keep: float) -> list[Tensor]:
    return [torch.bernoulli(torch.full_like(p, keep)) for p in params]


class AdaBelief(torch.optim.Optimizer):
    """AdaBelief as DFL implements it (defaults: lr 5e-5, betas 0.9/0.999, eps 1e-6, no bias correction).

    m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*(g-m)^2;  w -= lr * m / (sqrt(v) + eps) [* dropout mask]
    """

    def __init__(self, params: Iterable, lr: float = 5e-5, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = EPS, lr_dropout: float = 1.0, lr_cos: int = 0, clipnorm: float = 0.0) -> None:
        defaults = dict(lr=lr, betas=betas, eps=eps, lr_dropout=lr_dropout, lr_cos=lr_cos, clipnorm=clipnorm,
                        iterations=0)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            it = int(group["iterations"])
            group["iterations"] = it + 1
            if not params:
                continue
            grads = [p.grad.float() if p.grad.dtype != torch.float32 else p.grad for p in params]
            _clip_by_global_norm(grads, group["clipnorm"])
            ms, vs = [], []
            for p in params:
                st = self.state[p]
                if not st:
                    st["m"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    st["v"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                ms.append(st["m"])
                vs.append(st["v"])
            b1, b2 = group["betas"]
            torch._foreach_lerp_(ms, grads, 1.0 - b1)  # m = b1*m + (1-b1)*g
            diff = torch._foreach_sub(grads, ms)
            torch._foreach_mul_(vs, b2)
            torch._foreach_addcmul_(vs, diff, diff, value=1.0 - b2)
            denom = torch._foreach_sqrt(vs)
            torch._foreach_add_(denom, group["eps"])
            lr = group["lr"] * _lr_factor(it, group["lr_cos"])
            if group["lr_dropout"] != 1.0:
                upd = torch._foreach_div(ms, denom)
                torch._foreach_mul_(upd, _dropout_masks(params, group["lr_dropout"]))
                torch._foreach_add_(params, upd, alpha=-lr)
            else:
                torch._foreach_addcdiv_(params, ms, denom, value=-lr)
        return loss


class RMSprop(torch.optim.Optimizer):
    """RMSprop as DFL implements it: a = rho*a + (1-rho)*g^2;  w -= lr * g / (sqrt(a) + eps)."""

    def __init__(self, params: Iterable, lr: float = 1e-3, rho: float = 0.9, eps: float = EPS,
                 lr_dropout: float = 1.0, lr_cos: int = 0, clipnorm: float = 0.0) -> None:
        defaults = dict(lr=lr, rho=rho, eps=eps, lr_dropout=lr_dropout, lr_cos=lr_cos, clipnorm=clipnorm,
                        iterations=0)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            it = int(group["iterations"])
            group["iterations"] = it + 1
            if not params:
                continue
            grads = [p.grad.float() if p.grad.dtype != torch.float32 else p.grad for p in params]
            _clip_by_global_norm(grads, group["clipnorm"])
            accs = []
            for p in params:
                st = self.state[p]
                if not st:
                    st["a"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                accs.append(st["a"])
            rho = group["rho"]
            torch._foreach_mul_(accs, rho)
            torch._foreach_addcmul_(accs, grads, grads, value=1.0 - rho)
            denom = torch._foreach_sqrt(accs)
            torch._foreach_add_(denom, group["eps"])
            lr = group["lr"] * _lr_factor(it, group["lr_cos"])
            if group["lr_dropout"] != 1.0:
                upd = torch._foreach_div(grads, denom)
                torch._foreach_mul_(upd, _dropout_masks(params, group["lr_dropout"]))
                torch._foreach_add_(params, upd, alpha=-lr)
            else:
                torch._foreach_addcdiv_(params, grads, denom, value=-lr)
        return loss


def make_optimizer(params: Iterable, options: dict, model_type: str = "SAEHD") -> torch.optim.Optimizer:
    """The optimiser DFL builds for a model's options.

    SAEHD/AMP: AdaBelief (RMSprop when ``adabelief`` is off) at lr 5e-5; ``lr_dropout`` y/cpu keeps 30%
    of updates with a 500-iteration cosine cycle; ``clipgrad`` clips the global norm at 1.0.
    Quick96: RMSprop at lr 2e-4 with lr dropout 0.3, always.  Pretraining turns lr dropout off.
    """
    if model_type == "Quick96":
        return RMSprop(params, lr=2e-4, lr_dropout=0.3)
    on = str(options.get("lr_dropout", "n")).lower() in ("y", "cpu", "true") and not options.get("pretrain", False)
    lr_dropout, lr_cos = (0.3, 500) if on else (1.0, 0)
    clipnorm = 1.0 if options.get("clipgrad", False) else 0.0
    if options.get("adabelief", True):
        return AdaBelief(params, lr=5e-5, lr_dropout=lr_dropout, lr_cos=lr_cos, clipnorm=clipnorm)
    return RMSprop(params, lr=5e-5, lr_dropout=lr_dropout, lr_cos=lr_cos, clipnorm=clipnorm)
