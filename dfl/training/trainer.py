"""The training loop: batches in, optimiser steps, and a model folder that is always safe to kill.

What it adds over the model's spec (its recipe, run by :class:`~dfl.training.objective.Objective`, and its
batches): the device and precision (:mod:`dfl.training.cpu`; autocast over fp32 master weights,
channels_last, optional ``torch.compile``), the schedule (target iteration, autosave every N minutes and on
Ctrl+C or SIGTERM, rolling backups), what the user watches (log line with ms/iteration, data-wait share and
losses; the preview grid and loss history in the model folder, :mod:`~dfl.training.previews`,
:mod:`~dfl.training.history`) and multi-GPU data parallelism when started by ``torchrun``
(:mod:`~dfl.training.distributed`).  It never asks which model it trains.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from dfl.atomic import atomic_write_bytes
from dfl.errors import DflError
from dfl.interrupt import Interrupted, stop_between_steps
from dfl.models import store
from dfl.models.registry import BatchSource, DataRequest, create_model, get_spec
from dfl.samples import default_workers
from dfl.training import distributed
from dfl.precision import PRECISIONS, emulation
from dfl.training.cpu import setup_cpu_training
from dfl.training.history import history_append, history_mean, history_png
from dfl.training.memory import check_fits
from dfl.training.objective import Objective
from dfl.training.precision import training_precision
from dfl.training.previews import PreviewWindow, preview_grid, preview_period, write_png


@dataclass
class TrainSettings:
    """How to train (not what: that is the model's options)."""

    model_path: Path
    model_type: str
    src_dir: Path
    dst_dir: Path
    target_iter: int = 0                 # 0: until Ctrl+C
    device: str = "auto"
    precision: str = "auto"
    channels_last: bool = True
    compile: bool = False
    autosave_minutes: float = 25.0
    backup_every: int = 0                # iterations between backups (0: none)
    keep_backups: int = 5
    preview_seconds: float = 15.0
    log_seconds: float = 30.0
    preview_window: bool = False
    workers: int | None = None
    seed: int | None = None
    quiet: bool = False
    on_iteration: Callable[[int, dict[str, float]], None] | None = None   # tests and benches


@dataclass
class TrainResult:
    iteration: int
    losses: dict[str, float]
    ms_per_iter: float
    data_wait_share: float
    saved: bool = True
    history: dict[str, Any] = field(default_factory=dict)
    steps: int = 0                 # iterations trained by this run
    path: Path | None = None       # the model folder
    seconds: float = 0.0           # their wall time (previews and autosaves between them included)


class Trainer:
    """Owns one model folder while training it (locked), from load to the last save."""

    def __init__(self, settings: TrainSettings, options: dict[str, Any], state: dict[str, Any],
                 weights: dict[str, torch.Tensor] | None, optimizer_state: dict[str, Any] | None) -> None:
        self.s = settings
        self.spec = get_spec(settings.model_type)
        self.options = dict(options)
        self.options_changed = False   # set by the session when a resume changed options
        self._preview_failed = False   # a preview write failed once (said once, not again)
        self.state = dict(state)
        self.state.setdefault("iteration", 0)
        self.state.setdefault("loss_history", {})
        self.rank, self.world, local_rank = distributed.dist_info()
        self.device = distributed.training_device(settings.device, self.world, local_rank)
        if self.device.type == "cpu":
            setup_cpu_training()
        if settings.seed is not None:
            torch.manual_seed(settings.seed + self.rank)
        # the memory check comes before anything is built; a measured choice is checked again below
        guess = settings.precision if settings.precision in PRECISIONS else "bf16"
        check_fits(settings.model_type, self.options, self.device, guess, settings.model_path)
        self.model = create_model(settings.model_type, dict(self.options))
        self.model.to(self.device)
        if weights is not None:
            store.load_weights(self.model.networks, weights, settings.model_path)
        self.channels_last = settings.channels_last and self.device.type in ("cpu", "cuda")
        self.data = self._load_faces()
        self._first_batch: dict[str, Any] | None = None   # the batch precision was measured on: trained first
        try:
            self.precision = self._choose_precision()
        except BaseException:
            self.data.close()   # no sample workers left behind by a failed or interrupted measurement
            raise
        if self.precision != guess:
            check_fits(settings.model_type, self.options, self.device, self.precision, settings.model_path)
        self.objective = Objective(self.model, self.options, precision=self.precision,
                                   channels_last=self.channels_last)
        if weights is not None:
            fresh = store.load_weights(self.objective.discriminators, weights, settings.model_path, optional=True)
            if fresh:
                self._echo(f"new networks (starting from scratch): {', '.join(fresh)}")
        if optimizer_state:
            fresh = self.objective.load_optimizer_state(optimizer_state)
            if fresh:
                self._echo(f"optimizer state starts afresh for: {', '.join(fresh)}")
        if self.world > 1:
            distributed.share_networks(list(self.networks().values()), self.world)
        self.compiled = settings.compile and self.device.type != "cpu"
        if self.compiled:
            self.model.forward_train = torch.compile(self.model.forward_train)
        elif settings.compile:
            # measured with PyTorch 2.13 on 2 cores: SAEHD df-ud 128 compiled for 11 minutes, then ran 2590 ms
            # per iteration against 1530 eager (the CPU convolutions are already hand-written GEMMs), and
            # Quick96 crashed in the compiled code after 9 minutes
            self._echo("--compile is ignored on the CPU: there it was slower than without it (and crashed)")
        self.model.train()

    def _choose_precision(self) -> str:
        """``--precision``: forced, or measured on this run's first batch (:mod:`dfl.training.precision`);
        under torchrun the first process decides for all."""
        requested = self.s.precision
        if requested in PRECISIONS and self.world == 1:
            if emulation(requested, self.device.type) is None:
                return requested
        choice = requested
        if self.rank == 0:
            self._first_batch = self.data.next()
            choice = training_precision(requested, self.model, self.options, self._first_batch, self.device,
                                        self.channels_last, self._echo)
        if self.world > 1:
            choice = distributed.broadcast_choice(choice)
        return choice

    def next_batch(self) -> dict[str, Any]:
        """The next training batch (first the one the precision was measured on)."""
        batch, self._first_batch = self._first_batch, None
        return batch if batch is not None else self.data.next()

    def _load_faces(self) -> BatchSource:
        """The model's batches (its spec's ``training_data``): the faces are read now, so unreadable ones
        are skipped with a line and none at all is a DflError before a new model is ever saved."""
        s = self.s
        self.batch_size = int(self.options.get("batch_size", 4))
        if self.world > 1:
            self.batch_size = max(1, self.batch_size // self.world)
        workers = default_workers(self.device.type) if s.workers is None else s.workers
        request = DataRequest(s.src_dir, s.dst_dir, self.batch_size,
                              seed=None if s.seed is None else s.seed + 1000 * self.rank, workers=workers,
                              notify=self._echo if self.rank == 0 else None)
        return self.spec.training_data(self.model, self.options, request)

    def networks(self) -> dict[str, torch.nn.Module]:
        """Everything saved in weights.safetensors: the model's networks and the discriminators."""
        return {**self.model.networks, **self.objective.discriminators}

    def _echo(self, msg: str) -> None:
        if self.rank == 0 and not self.s.quiet:
            from tqdm import tqdm
            tqdm.write(msg)

    def save(self, backup: bool = False, preview_batch: dict[str, torch.Tensor] | None = None) -> None:
        """Save the model (a failure is a DflError and changes nothing on disk), then refresh the
        previews from ``preview_batch`` and make a backup when asked (their failures are only said)."""
        if self.rank != 0:
            return
        t0 = time.perf_counter()
        store.save_checkpoint(self.s.model_path, self.s.model_type, self.options, self.state,
                              self.networks(), self.objective.optimizer_state())
        msg = f"saved {self.s.model_path.name} at iteration {self.state['iteration']} ({time.perf_counter() - t0:.1f} s)"
        if preview_batch is not None:
            self.previews(preview_batch)
        if backup and self.s.keep_backups > 0:
            try:
                b = store.make_backup(self.s.model_path, self.s.keep_backups)
            except DflError as exc:
                self._echo(str(exc))
                b = None
            if b is not None:
                msg += f", backup {b.name}"
        self._echo(msg)

    def previews(self, preview_batch: dict[str, torch.Tensor]) -> np.ndarray | None:
        """Refresh preview.png and history.png; a file that cannot be written (a full disk) is said once
        and costs nothing else."""
        if self.rank != 0:
            return None
        grid = preview_grid(self.objective.preview_columns(preview_batch))
        try:
            write_png(self.s.model_path / "preview.png", grid)
            png = history_png(self.state["loss_history"])
            if png is not None:
                atomic_write_bytes(self.s.model_path / "history.png", png)
        except OSError as exc:
            if not self._preview_failed:
                self._echo(f"{self.s.model_path}: preview not written ({exc.strerror or exc})")
            self._preview_failed = True
        return grid

    def run(self) -> TrainResult:
        """Train until the target iteration (or Ctrl+C); saves on the way out either way."""
        s = self.s
        data = self.data
        preview_batch = data.fixed_preview_batch()
        it0 = int(self.state["iteration"])
        target = int(s.target_iter or 0)
        hist = self.state["loss_history"]
        t_start = time.perf_counter()
        window = PreviewWindow() if s.preview_window and self.rank == 0 else None
        self._echo(f"training {s.model_path.name} on {self.device} ({self.precision}"
                   f"{', channels_last' if s.channels_last else ''}{', compiled' if self.compiled else ''}"
                   f"{f', {self.world} processes' if self.world > 1 else ''}), batch {self.batch_size}, "
                   f"from iteration {it0}" + (f" to {target}" if target else ""))
        loop = _Loop(self, preview_batch, window, t_start)
        stop: KeyboardInterrupt | None = None
        try:
            # Ctrl+C and SIGTERM (kill, timeout, a container stop) ask for a stop that happens between
            # iterations, where nothing (a save, the data threads' queues) is half done; a second one stops at once
            with stop_between_steps() as check_stop:
                if target and it0 >= target:
                    self._echo(f"already at iteration {it0} (target {target})")
                while not target or self.state["iteration"] < target:
                    self._stop_if_asked(check_stop)
                    if loop.step(target):
                        break
        except KeyboardInterrupt as exc:
            stop = exc
        finally:
            loop.bar.close()
            data.close()
            if window is not None:
                window.close()
        if loop.step_times or self.options_changed:
            self.save(backup=loop.final_backup, preview_batch=preview_batch)
        steps = len(loop.step_times)
        seconds = loop.last_end - loop.first_start if steps else 0.0   # this run's iterations, wall time
        result = TrainResult(int(self.state["iteration"]), history_mean(hist, 50), 1000 * seconds / max(steps, 1),
                             data.wait_s / max(seconds, 1e-9), True, hist, steps=steps, seconds=seconds,
                             path=s.model_path)
        if stop is not None:   # saved above: the CLI prints this summary instead of "Aborted."
            raise Interrupted.from_stop(stop, result) from None
        return result

    def _stop_if_asked(self, check_stop: Callable[[], None]) -> None:
        """Raise the stop that was asked for (KeyboardInterrupt / Terminated); under torchrun every rank raises
        before the same iteration when any one was asked."""
        try:
            check_stop()
        except KeyboardInterrupt:
            if self.world > 1:
                distributed.any_rank(True, self.device)
            raise
        if self.world > 1 and distributed.any_rank(False, self.device):
            raise KeyboardInterrupt


class _Loop:
    """One run's schedule: what happens around each training step (log line, previews, saves, backups)."""

    def __init__(self, trainer: Trainer, preview_batch: dict[str, torch.Tensor], window: PreviewWindow | None,
                 start: float) -> None:
        from tqdm import tqdm

        s = trainer.s
        self.t, self.preview_batch, self.window = trainer, preview_batch, window
        self.last_save = self.last_preview = self.last_log = start
        self.preview_every = s.preview_seconds
        self.step_times: list[float] = []
        self.first_start = self.last_end = 0.0   # wall clock of this run's first step and the end of its last
        self.wait0 = 0.0
        self.final_backup = False
        target = int(s.target_iter or 0)
        self.bar = tqdm(total=target or None, initial=int(trainer.state["iteration"]), unit="it",
                        desc=s.model_path.name, disable=trainer.rank != 0 or s.quiet, dynamic_ncols=True)

    def step(self, target: int) -> bool:
        """One iteration and what is due after it; True when the user asked to stop (preview window)."""
        t, s = self.t, self.t.s
        t0 = time.perf_counter()
        if not self.step_times:
            self.first_start = t0
        batch = t.next_batch()
        losses = t.objective.train_step(batch)
        t.state["iteration"] += 1
        it = t.state["iteration"]
        self.step_times.append(time.perf_counter() - t0)
        self.last_end = time.perf_counter()
        history_append(t.state["loss_history"], it, losses)
        self.bar.update(1)
        if s.on_iteration is not None:
            s.on_iteration(it, losses)
        now = time.perf_counter()
        if now - self.last_log >= s.log_seconds or (target and it >= target):
            self._log(it, losses, now)
        if now - self.last_preview >= self.preview_every:
            grid = t.previews(self.preview_batch)
            self.last_preview = time.perf_counter()
            self.preview_every = preview_period(s.preview_seconds, self.last_preview - now)
            if self.window is not None and grid is not None:
                self.window.show(grid)
        backup_due = s.backup_every > 0 and it % s.backup_every == 0
        if bool(target) and it >= target:
            self.final_backup = backup_due
        elif backup_due or now - self.last_save >= s.autosave_minutes * 60:
            t.save(backup=backup_due)
            self.last_save = time.perf_counter()
        self.last_end = time.perf_counter()
        return self.window is not None and self.window.quit_requested()

    def _log(self, it: int, losses: dict[str, float], now: float) -> None:
        t = self.t
        ms = 1000 * float(np.mean(self.step_times[-100:]))
        share = (t.data.wait_s - self.wait0) / max(1e-9, now - self.last_log)
        self.wait0, self.last_log = t.data.wait_s, now
        retries = t.objective.fp32_retries  # fp16 steps that overflowed and were redone in fp32
        t._echo(f"[{time.strftime('%H:%M:%S')}][#{it:06d}][{ms:.0f}ms][data wait {100 * share:.0f}%]"
                + (f"[fp32 retries {retries}]" if retries else "")
                + "".join(f"[{k} {v:.4f}]" for k, v in losses.items()))
        self.bar.set_postfix({k: f"{v:.4f}" for k, v in list(losses.items())[:2]}, refresh=False)
