"""Runs a model's loss recipe: its updates, with the precision, the optimisers and the device.

The model's spec builds its recipe (:class:`dfl.models.registry.Recipe`: for the face-swap models DFL's
generator, 'true face' and GAN updates, :class:`dfl.models.swap.SwapRecipe`); this module owns what is
the same for every model: one optimiser per update (built from the recipe's
:class:`~dfl.models.registry.OptimizerConfig`), autocast or float16 Winograd tiles, the channels_last
layout, the gradient scaler, recomputing an overflowed float16 step in float32, and the optimiser state
saved with the model.  The trainer hands :meth:`Objective.train_step` a batch (a dict of NCHW float
tensors, numpy arrays accepted) and gets the named losses back as floats.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

from dfl.models import runtime
from dfl.models.registry import Update, get_spec
from dfl.training.optim import make_optimizer


@contextlib.contextmanager
def _frozen(modules: tuple[nn.Module, ...]) -> Iterator[None]:
    """No parameter gradients for ``modules`` (the discriminators during the generator pass)."""
    params = [p for m in modules for p in m.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


class Objective:
    """Owns the recipe's extra networks (``discriminators``) and the optimisers of one model and runs its
    training iteration.

    ``precision``: "fp32", "bf16" or "fp16" (autocast, weights stay fp32; fp16 uses a grad scaler).  On the
    CPU, "fp16" is not autocast but :func:`dfl.models.runtime.half_tiles`: the Winograd convolutions keep
    their tiles in float16 and everything else stays float32; a step whose gradients overflow there is
    recomputed in float32 (counted in ``fp32_retries``) instead of being applied.
    ``channels_last``: feed the networks NHWC-strided tensors (faster convolutions on CPU and GPU).
    Save ``discriminators`` with the model's networks and ``optimizer_state()`` with the optimiser file.
    """

    def __init__(self, model: nn.Module, options: dict | None = None, precision: str = "fp32",
                 channels_last: bool = False) -> None:
        self.model = model
        self.recipe = get_spec(model.model_type).recipe(model, options or {})
        self.options = self.recipe.options
        self.device = next(model.parameters()).device
        self.precision = precision
        self.channels_last = channels_last
        self.discriminators: dict[str, nn.Module] = self.recipe.networks
        for d in self.discriminators.values():
            d.to(self.device)
            if channels_last:
                d.to(memory_format=torch.channels_last)
        if channels_last:
            model.to(memory_format=torch.channels_last)
        self.updates: list[Update] = self.recipe.updates()
        self.optimizers: dict[str, torch.optim.Optimizer] = {
            u.name: make_optimizer(u.params, u.optimizer) for u in self.updates}
        self.half_tiles = precision == "fp16" and self.device.type == "cpu"
        self.fp32_retries = 0
        dtype = None if self.half_tiles else {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
        self._autocast_dtype = dtype
        self.scaler = torch.amp.GradScaler(self.device.type) if dtype == torch.float16 else None

    def _autocast(self, half_tiles: bool = False):
        if half_tiles:
            return runtime.half_tiles()
        if self._autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self._autocast_dtype)

    def prepare_batch(self, batch: dict[str, Any], conv_inputs: tuple[str, ...] | None = None) -> dict[str, Tensor]:
        """The recipe's inputs as float32 tensors on the model's device (numpy arrays accepted); those fed to
        convolutions (``conv_inputs``, default: the recipe's for training) channels_last if enabled."""
        conv = self.recipe.conv_inputs if conv_inputs is None else conv_inputs
        out = {}
        for k, v in batch.items():
            if k not in self.recipe.inputs:
                continue
            t = torch.as_tensor(v).to(self.device, dtype=torch.float32, non_blocking=True)
            if self.channels_last and t.dim() == 4 and k in conv:
                t = t.contiguous(memory_format=torch.channels_last)
            out[k] = t
        return out

    def _backward_step(self, loss: Tensor, opt: torch.optim.Optimizer,
                       half: runtime.HalfTiles | None = None) -> bool:
        """Backward and optimiser step; False (nothing applied) when ``half`` saw a gradient overflow."""
        opt.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(opt)
            self.scaler.update()
        else:
            loss.backward()
            if half is not None and half.overflowed:
                opt.zero_grad(set_to_none=True)
                return False
            opt.step()
        # Drop the gradients once applied: kept until the next zero_grad they would live through the next
        # forward pass, where a step's memory peaks (+0.22 GB for SAEHD df-ud 128, +0.33 GB liae-ud).
        opt.zero_grad(set_to_none=True)
        return True

    def _update(self, compute: Any, opt: torch.optim.Optimizer) -> tuple:
        """Run ``compute()`` (returns the loss first) under the precision's context and apply its gradients;
        with half tiles, a step that overflowed is recomputed in float32 and applied from there."""
        with self._autocast(self.half_tiles) as half:
            out = compute()
        if self._backward_step(out[0], opt, half if self.half_tiles else None):
            return out
        self.fp32_retries += 1
        out = compute()
        self._backward_step(out[0], opt)
        return out

    def train_step(self, batch: dict[str, Any]) -> dict[str, float]:
        """One iteration: the recipe's updates in order (DFL's swap models: the generator, then the code and
        GAN discriminators); returns every update's named losses."""
        self.model.train()
        b = self.prepare_batch(batch)
        carry: dict[str, Any] = {}
        scalars: dict[str, Tensor] = {}
        for u in self.updates:
            def compute(u: Update = u) -> tuple:
                with _frozen(u.frozen):
                    return u.loss(b, carry)

            _, named = self._update(compute, self.optimizers[u.name])
            scalars.update(named)
        return {k: float(v) for k, v in scalars.items()}

    @contextlib.contextmanager
    def _previewing(self) -> Iterator[None]:
        self.model.eval()
        try:
            with torch.no_grad(), self._autocast():
                yield
        finally:
            self.model.train()

    def preview(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Tensor]:
        """The recipe's predictions on the unwarped targets (``kwargs``: e.g. AMP's ``morph_value``),
        float32 NCHW on the CPU."""
        b = self.prepare_batch(batch, self.recipe.preview_inputs)
        with self._previewing():
            out = self.recipe.preview(b, **kwargs)
        return {k: v.float().cpu().contiguous() for k, v in out.items()}

    def preview_columns(self, batch: dict[str, Any]) -> list[Tensor]:
        """The columns of the model's preview grid (inputs and predictions), float32 NCHW on the CPU."""
        b = self.prepare_batch(batch, self.recipe.preview_inputs)
        with self._previewing():
            cols = self.recipe.preview_columns(b)
        return [c.detach().float().cpu().contiguous() for c in cols]

    def optimizer_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {k: o.state_dict() for k, o in self.optimizers.items()}
        if self.scaler is not None:
            state["grad_scaler"] = self.scaler.state_dict()
        return state

    def load_optimizer_state(self, state: dict[str, Any]) -> list[str]:
        """Restore what matches; returns the optimiser names that start fresh (e.g. GAN just enabled)."""
        fresh = []
        for k, o in self.optimizers.items():
            if k in state:
                try:
                    o.load_state_dict(state[k])
                    continue
                except (ValueError, KeyError, RuntimeError):
                    pass
            fresh.append(k)
        if self.scaler is not None and "grad_scaler" in state:
            self.scaler.load_state_dict(state["grad_scaler"])
        return fresh
