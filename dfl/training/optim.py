"""DFL's optimisers: AdaBelief and RMSprop exactly as ``core/leras/optimizers`` update weights.

Both differ from torch's stock versions in ways that change training: AdaBelief has no bias
correction and adds eps outside the square root only; both support DFL's learning-rate dropout
(each element's update kept with probability ``lr_dropout``, a fresh mask every step), the cosine
learning-rate cycle ``lr_cos`` and global-norm gradient clipping ``clipnorm``.  When every
parameter of a group has a gradient, the group's parameters and state live in a few flat buffers (the
parameters become views into them) and a step runs the update rule chunk by chunk over them, reading the
gradients where autograd left them, with no per-step allocation; otherwise torch's multi-tensor
(``_foreach``) kernels update the subset.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Iterator

import torch
from torch import Tensor

from dfl.models.registry import OptimizerConfig

EPS = float(torch.finfo(torch.float32).resolution)  # DFL's np.finfo(float32).resolution = 1e-6


def _clip_by_global_norm(grads: list[Tensor], clipnorm: float) -> None:
    """Scale all gradients by ``clipnorm / norm`` when their global norm reaches ``clipnorm`` (DFL)."""
    scale = _global_norm_scale(grads, clipnorm)
    if scale is not None:
        torch._foreach_mul_(grads, scale)


def _global_norm_scale(grads: list[Tensor], clipnorm: float) -> Tensor | None:
    """The factor DFL's global-norm clipping multiplies every gradient by (None when clipping is off)."""
    if clipnorm <= 0.0 or not grads:
        return None
    total = torch.linalg.vector_norm(torch.stack([n.float() for n in torch._foreach_norm(grads)]))
    return torch.where(total >= clipnorm, clipnorm / total.clamp_min(1e-12), torch.ones_like(total))


def _lr_factor(iterations: int, lr_cos: int) -> float:
    if lr_cos == 0:
        return 1.0
    return (math.cos(iterations * (2 * 3.1415926535 / float(lr_cos))) + 1.0) / 2.0


def _dropout_masks(params: list[Tensor], keep: float) -> list[Tensor]:
    return [torch.bernoulli(torch.full_like(p, keep)) for p in params]


def _is_dense(t: Tensor) -> bool:
    """Whether ``t`` covers its elements without gaps or overlaps (any dimension order)."""
    dims = sorted((s, d) for s, d in zip(t.stride(), t.shape) if d != 1)
    expect = 1
    for stride, size in dims:
        if stride != expect:
            return False
        expect *= size
    return True


CHUNK = 1 << 20  # elements per pass of a step: 4 MB per buffer, so each chunk's passes hit the cache


class _FlatGroup:
    """One parameter group's parameters and state packed into contiguous buffers, each parameter a view.

    Why: a step is then a handful of vectorised passes over large spans instead of several small ops per
    parameter (on the CPU the optimiser took ~40% of a Quick96 iteration before), and it runs chunk by
    chunk (``CHUNK`` elements) on the CPU so that the six or so passes of the update rule re-read data from
    the cache, not from memory, which these machines have little bandwidth for.  There the gradients stay
    autograd's own tensors (no flat copy) and the scratch space is one chunk, so packing costs no memory
    beyond the state.  On a GPU, where each op is a kernel launch, gradients are gathered into one flat
    buffer and the rule runs once over everything.
    Parameters keep their own memory layout (channels_last included); the optimiser's per-parameter state
    tensors are views too, so ``state_dict`` is unchanged.
    """

    def __init__(self, params: list[Tensor], state: dict, state_keys: tuple[str, ...],
                 chunked: bool | None = None) -> None:
        """``chunked``: run chunk-wise from autograd's gradients (default: on the CPU only)."""
        self.params = params
        self.sizes = [p.numel() for p in params]
        self.offsets = [0]
        for n in self.sizes[:-1]:
            self.offsets.append(self.offsets[-1] + n)
        total = sum(self.sizes)
        dev = params[0].device
        self.data = torch.empty(total, device=dev, dtype=torch.float32)
        self.bufs = {k: torch.zeros(total, device=dev, dtype=torch.float32) for k in state_keys}
        self.p_views = self._views(self.data)
        for p, v in zip(params, self.p_views):
            v.copy_(p.detach())
            p.data = v
        for k, buf in self.bufs.items():
            for p, v in zip(params, self._views(buf)):
                old = state.get(p, {}).get(k)
                if old is not None:
                    v.copy_(old)
                state.setdefault(p, {})[k] = v
        self.ptrs = [p.data_ptr() for p in params]
        self.state_ptrs = {k: [state[p][k].data_ptr() for p in params] for k in state_keys}
        self.chunked = dev.type == "cpu" if chunked is None else chunked
        self.work = torch.empty(min(CHUNK, max(self.sizes)) if self.chunked else total, device=dev,
                                dtype=torch.float32)
        self.flat_grad = None if self.chunked else torch.empty(total, device=dev, dtype=torch.float32)
        self.g_views = None if self.flat_grad is None else self._views(self.flat_grad)
        self._rand: Tensor | None = None
        self._keep: Tensor | None = None
        self._keep_f: Tensor | None = None

    def _views(self, flat: Tensor) -> list[Tensor]:
        return [torch.as_strided(flat, p.shape, p.stride(), off) for p, off in zip(self.params, self.offsets)]

    @staticmethod
    def fits(params: list[Tensor]) -> bool:
        return bool(params) and all(p.dtype == torch.float32 and _is_dense(p) for p in params) and \
            len({p.device for p in params}) == 1

    def valid(self, params: list[Tensor], state: dict) -> bool:
        """Still aliased (nothing replaced a parameter's or a state tensor's storage since)?"""
        if len(params) != len(self.params) or any(a is not b for a, b in zip(params, self.params)):
            return False
        if any(p.data_ptr() != q for p, q in zip(params, self.ptrs)):
            return False
        for k, ptrs in self.state_ptrs.items():
            for p, q in zip(params, ptrs):
                t = state.get(p, {}).get(k)
                if t is None or t.data_ptr() != q:
                    return False
        return True

    def chunks(self) -> "Iterator[tuple[slice, Tensor]]":
        """(span of the flat buffers, the matching gradient elements) per chunk, in the buffers' order.

        A gradient laid out like its parameter (autograd's usual case) is read in place through a 1-D view
        of its storage; any other layout is first copied into the parameter's layout, one chunk at a time.
        """
        if self.flat_grad is not None:
            assert self.g_views is not None
            torch._foreach_copy_(self.g_views, [p.grad for p in self.params])
            yield slice(0, self.flat_grad.numel()), self.flat_grad
            return
        for p, off, n in zip(self.params, self.offsets, self.sizes):
            g = p.grad
            if g.dtype != torch.float32:
                g = g.float()
            same = g.stride() == p.stride() and _is_dense(g)
            flat_g = torch.as_strided(g, (n,), (1,), g.storage_offset()) if same else None
            if flat_g is None:
                g_in_p_layout = torch.empty_strided(p.shape, p.stride(), dtype=torch.float32, device=g.device)
                g_in_p_layout.copy_(g)
                flat_g = torch.as_strided(g_in_p_layout, (n,), (1,), g_in_p_layout.storage_offset())
            for a in range(0, n, CHUNK):
                b = min(n, a + CHUNK)
                yield slice(off + a, off + b), flat_g[a:b]

    def keep_mask(self, keep: float, n: int | None = None) -> Tensor:
        """A fresh float mask of ``n`` (default: all) ones kept with probability ``keep`` (DFL's lr dropout).

        Drawn as 16 random bits per element (the CPU's generator makes 32 bits per call, so half the
        calls of ``bernoulli_``, and no float conversion): a 32-bit draw in [0, 2^31) gives one
        element its low 16 bits and the next its high 15 bits, each compared with ``keep`` scaled to
        its range, so the keep probability is within 2e-5 of ``keep``.
        """
        n = self.data.numel() if n is None else n
        if self._keep_f is None or self._keep_f.numel() < n:
            self._keep_f = torch.empty(n, dtype=torch.float32, device=self.data.device)
            self._rand = self._keep = None
        if self.data.device.type != "cpu" or sys.byteorder != "little":
            return self._keep_f[:n].bernoulli_(keep)
        if self._rand is None or self._rand.numel() < (n + 1) // 2:
            self._rand = torch.empty((self._keep_f.numel() + 1) // 2, dtype=torch.int32)
            self._keep = torch.empty(2 * self._rand.numel(), dtype=torch.bool)
        assert self._keep is not None
        rand = self._rand[:(n + 1) // 2]
        rand.random_()  # [0, 2^31): low half 16 uniform bits (signed view), high half 15
        halves = rand.view(torch.int16).view(-1, 2)
        keep2 = self._keep[:2 * rand.numel()].view(-1, 2)
        torch.lt(halves[:, 0], round(keep * 65536) - 32768, out=keep2[:, 0])
        torch.lt(halves[:, 1], round(keep * 32768), out=keep2[:, 1])
        out = self._keep_f[:n]
        out.copy_(self._keep[:n])
        return out


class _FlatOptimizer(torch.optim.Optimizer):
    """Shared machinery: flat buffers per group when every parameter has a gradient, else per-tensor."""

    _state_keys: tuple[str, ...] = ()
    _chunked: bool | None = None  # None: chunk-wise on the CPU, one flat pass elsewhere (tests force either)

    def _init_flat(self) -> None:
        """Pack each group now, so the parameters' new storage exists before anyone wraps the model."""
        self._flat_groups: dict[int, _FlatGroup] = {}
        for gi, group in enumerate(self.param_groups):
            if _FlatGroup.fits(group["params"]):
                self._flat_groups[gi] = _FlatGroup(list(group["params"]), self.state, self._state_keys, self._chunked)

    def _flat(self, gi: int, group: dict, params: list[Tensor]) -> _FlatGroup | None:
        if not hasattr(self, "_flat_groups"):
            self._flat_groups: dict[int, _FlatGroup] = {}
        if len(params) != len(group["params"]) or not _FlatGroup.fits(params):
            return None
        fg = self._flat_groups.get(gi)
        if fg is None or not fg.valid(params, self.state):
            fg = _FlatGroup(params, self.state, self._state_keys, self._chunked)
            self._flat_groups[gi] = fg
        return fg

    # The update is w -= lr * numerator / denominator [* lr-dropout mask]; subclasses say what the
    # numerator and denominator are (and update their state), the loop below does everything else.
    def _flat_terms(self, fg: "_FlatGroup", span: slice, g: Tensor, group: dict) -> tuple[Tensor, Tensor]:
        """Update the state of the elements ``span`` of the flat buffers, whose gradients are ``g``."""
        raise NotImplementedError

    def _foreach_terms(self, params: list[Tensor], grads: list[Tensor],
                       group: dict) -> tuple[list[Tensor], list[Tensor]]:
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for gi, group in enumerate(self.param_groups):
            params = [p for p in group["params"] if p.grad is not None]
            it = int(group["iterations"])
            group["iterations"] = it + 1
            if not params:
                continue
            lr = group["lr"] * _lr_factor(it, group["lr_cos"])
            keep = group["lr_dropout"]
            fg = self._flat(gi, group, params)
            if fg is not None:
                scale = _global_norm_scale([p.grad for p in params], group["clipnorm"])
                for span, g in fg.chunks():
                    if scale is not None:
                        g.mul_(scale)  # in place, as DFL's clipping replaces the gradients
                    num, den = self._flat_terms(fg, span, g, group)
                    data = fg.data[span]
                    if keep != 1.0:
                        mask = fg.keep_mask(keep, g.numel())
                        mask.div_(den)
                        data.addcmul_(num, mask, value=-lr)
                    else:
                        data.addcdiv_(num, den, value=-lr)
                continue
            grads = [p.grad.float() if p.grad.dtype != torch.float32 else p.grad for p in params]
            _clip_by_global_norm(grads, group["clipnorm"])
            nums, dens = self._foreach_terms(params, grads, group)
            if keep != 1.0:
                upd = torch._foreach_div(nums, dens)
                torch._foreach_mul_(upd, _dropout_masks(params, keep))
                torch._foreach_add_(params, upd, alpha=-lr)
            else:
                torch._foreach_addcdiv_(params, nums, dens, value=-lr)
        return loss

    def _states(self, params: list[Tensor]) -> list[list[Tensor]]:
        out: list[list[Tensor]] = [[] for _ in self._state_keys]
        for p in params:
            st = self.state[p]
            for i, k in enumerate(self._state_keys):
                if k not in st:
                    st[k] = torch.zeros_like(p, memory_format=torch.preserve_format)
                out[i].append(st[k])
        return out


class AdaBelief(_FlatOptimizer):
    """AdaBelief as DFL implements it (defaults: lr 5e-5, betas 0.9/0.999, eps 1e-6, no bias correction).

    m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*(g-m)^2;  w -= lr * m / (sqrt(v) + eps) [* dropout mask]
    """

    _state_keys = ("m", "v")

    def __init__(self, params: Iterable, lr: float = 5e-5, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = EPS, lr_dropout: float = 1.0, lr_cos: int = 0, clipnorm: float = 0.0) -> None:
        defaults = dict(lr=lr, betas=betas, eps=eps, lr_dropout=lr_dropout, lr_cos=lr_cos, clipnorm=clipnorm,
                        iterations=0)
        super().__init__(params, defaults)
        self._init_flat()

    def _flat_terms(self, fg: _FlatGroup, span: slice, g: Tensor, group: dict) -> tuple[Tensor, Tensor]:
        b1, b2 = group["betas"]
        m, v, w = fg.bufs["m"][span], fg.bufs["v"][span], fg.work[:g.numel()]
        m.lerp_(g, 1.0 - b1)  # m = b1*m + (1-b1)*g
        torch.sub(g, m, out=w)
        w.square_()
        v.lerp_(w, 1.0 - b2)  # b2*v + (1-b2)*(g-m)^2
        torch.sqrt(v, out=w)
        w.add_(group["eps"])
        return m, w

    def _foreach_terms(self, params: list[Tensor], grads: list[Tensor],
                       group: dict) -> tuple[list[Tensor], list[Tensor]]:
        b1, b2 = group["betas"]
        ms, vs = self._states(params)
        torch._foreach_lerp_(ms, grads, 1.0 - b1)
        diff = torch._foreach_sub(grads, ms)
        torch._foreach_mul_(vs, b2)
        torch._foreach_addcmul_(vs, diff, diff, value=1.0 - b2)
        denom = torch._foreach_sqrt(vs)
        torch._foreach_add_(denom, group["eps"])
        return ms, denom


class RMSprop(_FlatOptimizer):
    """RMSprop as DFL implements it: a = rho*a + (1-rho)*g^2;  w -= lr * g / (sqrt(a) + eps)."""

    _state_keys = ("a",)

    def __init__(self, params: Iterable, lr: float = 1e-3, rho: float = 0.9, eps: float = EPS,
                 lr_dropout: float = 1.0, lr_cos: int = 0, clipnorm: float = 0.0) -> None:
        defaults = dict(lr=lr, rho=rho, eps=eps, lr_dropout=lr_dropout, lr_cos=lr_cos, clipnorm=clipnorm,
                        iterations=0)
        super().__init__(params, defaults)
        self._init_flat()

    def _flat_terms(self, fg: _FlatGroup, span: slice, g: Tensor, group: dict) -> tuple[Tensor, Tensor]:
        rho = group["rho"]
        a, w = fg.bufs["a"][span], fg.work[:g.numel()]
        a.mul_(rho).addcmul_(g, g, value=1.0 - rho)
        torch.sqrt(a, out=w)
        w.add_(group["eps"])
        return g, w

    def _foreach_terms(self, params: list[Tensor], grads: list[Tensor],
                       group: dict) -> tuple[list[Tensor], list[Tensor]]:
        rho = group["rho"]
        (accs,) = self._states(params)
        torch._foreach_mul_(accs, rho)
        torch._foreach_addcmul_(accs, grads, grads, value=1.0 - rho)
        denom = torch._foreach_sqrt(accs)
        torch._foreach_add_(denom, group["eps"])
        return grads, denom


OPTIMIZERS: dict[str, type[_FlatOptimizer]] = {"adabelief": AdaBelief, "rmsprop": RMSprop}


def make_optimizer(params: Iterable, config: OptimizerConfig) -> torch.optim.Optimizer:
    """The optimiser a model's spec asks for (:class:`dfl.models.registry.OptimizerConfig`)."""
    cls = OPTIMIZERS.get(config.name)
    if cls is None:
        raise ValueError(f"optimiser {config.name!r}: one of {', '.join(OPTIMIZERS)}")
    return cls(params, lr=config.lr, lr_dropout=config.lr_dropout, lr_cos=config.lr_cos, clipnorm=config.clipnorm)


def state_tensors(config: OptimizerConfig) -> int:
    """Tensors of optimiser state per parameter (AdaBelief: m and v; RMSprop: one accumulator)."""
    return len(OPTIMIZERS[config.name]._state_keys)
