"""The training loop: batches in, optimiser steps, and a model folder that is always safe to kill.

What it adds over the model and its objective: the device and precision (autocast over fp32 master
weights, channels_last, optional ``torch.compile``), the schedule (target iteration, autosave every N
minutes and on Ctrl+C, rolling backups), what the user watches (log line with ms/iteration, data-wait
share and losses; preview grid and loss-history PNGs in the model folder; optional OpenCV window) and
multi-GPU data parallelism when started by ``torchrun``.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch

from dfl.errors import DflError
from dfl.training import checkpoint as ckpt

if TYPE_CHECKING:
    from dfl.training.samples import SampleOptions, TrainingData

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
HISTORY_MAX_POINTS = 20000   # loss history is halved (pairs averaged) beyond this


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


# -- device and precision ------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _proc_cpuinfo() -> str:
    """``/proc/cpuinfo``, read once per process ("" where there is none, e.g. macOS, Windows)."""
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The CPU's feature flags from ``cpuinfo`` (default: this machine's ``/proc/cpuinfo``)."""
    if cpuinfo is None:
        cpuinfo = _proc_cpuinfo()
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
    return flags


def cpu_has_bf16(cpuinfo: str | None = None) -> bool:
    """True when the CPU has AMX tiles for bf16 (``amx_bf16``), the only CPUs where bf16 autocast pays off.

    AVX-512 BF16 alone is not enough: there oneDNN's bf16 convolutions ran at about half the fp32 rate
    (Quick96 1886 vs 1396 ms, SAEHD df-ud 128 4619 vs 2787 ms on 2 cores), and so do its bf16 GEMMs.
    """
    return "amx_bf16" in cpu_flags(cpuinfo)


def cpu_has_fp16(cpuinfo: str | None = None) -> bool:
    """True when the CPU has AVX-512 FP16 (``avx512_fp16``): there oneDNN multiplies float16 matrices at the
    float32 rate (accumulating in float32), so ``fp16`` (float16 Winograd tiles, see
    :func:`dfl.models.runtime.half_tiles`) trains faster than fp32 by moving fewer bytes.  Elsewhere
    float16 GEMMs may be emulated, and slow."""
    return "avx512_fp16" in cpu_flags(cpuinfo)


def resolve_precision(precision: str, device: torch.device, cpuinfo: str | None = None) -> str:
    """``auto``: bf16 where the hardware does it fast (CUDA Ampere+, CPUs with AMX), fp16 on older GPUs and
    on CPUs with AVX-512 FP16 (there: float16 Winograd tiles, everything else float32), else fp32."""
    if precision not in PRECISIONS:
        raise DflError(f"--precision {precision}: one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu" and cpu_has_bf16(cpuinfo):
        return "bf16"
    if device.type == "cpu" and cpu_has_fp16(cpuinfo):
        return "fp16"
    return "fp32"


def tune_cpu_for_training() -> None:
    """Flush denormal floats to zero, as TensorFlow does on the CPU (so DFL trained that way too), and keep
    freed memory in the process for the next step (:func:`dfl.models.runtime.keep_freed_memory`).

    Tiny gradients and optimiser moments otherwise hit the CPU's slow denormal path.
    """
    from dfl.models.runtime import keep_freed_memory

    torch.set_flush_denormal(True)
    keep_freed_memory()


def autocast_ctx(device: torch.device, precision: str):
    if precision == "fp32":
        return torch.autocast(device.type, enabled=False)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


# -- loss history ----------------------------------------------------------------------------------
def history_append(hist: dict[str, Any], iteration: int, losses: dict[str, float]) -> None:
    """Append one iteration's losses; beyond HISTORY_MAX_POINTS, halve the resolution (pairs averaged)."""
    names = hist.setdefault("names", list(losses))
    hist.setdefault("iters", []).append(iteration)
    hist.setdefault("values", []).append([float(losses.get(n, float("nan"))) for n in names])
    if len(hist["iters"]) > HISTORY_MAX_POINTS:
        it, vals = hist["iters"], hist["values"]
        m = len(it) // 2 * 2
        hist["iters"] = [it[i + 1] for i in range(0, m, 2)] + it[m:]
        hist["values"] = [[(a + b) / 2 for a, b in zip(vals[i], vals[i + 1])] for i in range(0, m, 2)] + vals[m:]


def history_mean(hist: dict[str, Any], last: int = 100) -> dict[str, float]:
    """Mean of the last ``last`` recorded losses by name."""
    vals = hist.get("values", [])[-last:]
    if not vals:
        return {}
    arr = np.asarray(vals, np.float64)
    return {n: float(np.nanmean(arr[:, k])) for k, n in enumerate(hist["names"])}


def history_png(hist: dict[str, Any]) -> bytes | None:
    """A loss-history plot (PNG bytes), log scale like DFL's history view."""
    if not hist.get("iters"):
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 3), dpi=100)
    it = np.asarray(hist["iters"])
    vals = np.asarray(hist["values"], np.float64)
    shown = [n for n in hist["names"] if n.endswith("_loss") or n.startswith("D_")] or hist["names"][:2]
    for k, n in enumerate(hist["names"]):
        if n not in shown:
            continue
        ax.plot(it, vals[:, k], label=n, linewidth=0.8)
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    if np.all(vals[np.isfinite(vals)] > 0):
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    import io
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


# -- preview ---------------------------------------------------------------------------------------
PREVIEW_SHARE = 0.02   # of the training time, at most, spent refreshing the preview files


def preview_period(seconds: float, cost: float) -> float:
    """Seconds until the next preview refresh: ``seconds``, or longer when one refresh (``cost`` seconds:
    three predictions, the grid and the loss plot) would take more than ``PREVIEW_SHARE`` of the time.
    SAEHD 128 on 2 CPU cores spends ~0.6 s per refresh, which every 15 s was 4% of its training time; DFL
    itself renders previews only when saving or asked to."""
    return max(seconds, cost / PREVIEW_SHARE)


def preview_grid(objective: Any, batch: dict[str, torch.Tensor]) -> np.ndarray:
    """Rows of (src, src recon, dst, dst recon, swap), BGR uint8, as DFL's preview."""
    model = objective.model
    morph = model.options.get("morph_factor") if getattr(model, "model_type", "") == "AMP" else None
    out = objective.preview(batch, morph)
    s, d = batch["target_src"].float().cpu(), batch["target_dst"].float().cpu()
    cols = [s, out["pred_src_src"], d, out["pred_dst_dst"], out["pred_src_dst"]]
    cols = [c.detach().float().clamp(0, 1).cpu() for c in cols]
    r = s.shape[-1]
    cols = [torch.nn.functional.interpolate(c, size=(r, r), mode="bilinear", align_corners=False)
            if c.shape[-1] != r else c for c in cols]
    grid = torch.cat([torch.cat(list(c), dim=1) for c in cols], dim=2)   # C x (N*r) x (5*r)
    return (grid.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)


def sample_options(model: torch.nn.Module, options: dict[str, Any], seed: int | None = None) -> "SampleOptions":
    """What the samples must look like for this model (pretrain forces DFL's pretrain sampling)."""
    from dfl.training.samples import SampleOptions

    o = options
    pretrain = bool(o.get("pretrain", False))
    return SampleOptions(
        resolution=int(model.resolution),
        face_type=model.face_type,
        batch_size=int(o.get("batch_size", 4)),
        random_warp=bool(o.get("random_warp", True)) and not pretrain,
        random_src_flip=True if pretrain else bool(o.get("random_src_flip", False)),
        random_dst_flip=True if pretrain else bool(o.get("random_dst_flip", True)),
        ct_mode="none" if pretrain else str(o.get("ct_mode") or "none"),
        random_hsv_power=0.0 if pretrain else float(o.get("random_hsv_power", 0.0) or 0.0),
        uniform_yaw=bool(o.get("uniform_yaw", False)) or pretrain,
        seed=seed,
    )


def write_png(path: Path, img: np.ndarray) -> None:
    import cv2
    ok, buf = cv2.imencode(".png", img)
    if ok:
        ckpt.write_file_atomic(path, buf.tobytes())


# -- distributed -----------------------------------------------------------------------------------
def dist_info() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) when not distributed."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def _broadcast_from_rank0(nets: list[torch.nn.Module]) -> None:
    """Every rank starts from rank 0's weights (a new model is initialised randomly per process)."""
    import torch.distributed as dist

    with torch.no_grad():
        for net in nets:
            for t in list(net.parameters()) + list(net.buffers()):
                dist.broadcast(t.data, src=0)


def _sync_grads_on_backward(params: list[torch.nn.Parameter], world: int) -> None:
    """Average each gradient over the ranks as soon as backward has produced it (data parallelism
    without touching the objective's update code)."""
    import torch.distributed as dist

    def hook(p: torch.Tensor) -> None:
        dist.all_reduce(p.grad)
        p.grad.div_(world)

    for p in params:
        p.register_post_accumulate_grad_hook(hook)


# -- the loop --------------------------------------------------------------------------------------
class Trainer:
    """Owns one model folder while training it (locked), from load to the last save."""

    def __init__(self, settings: TrainSettings, options: dict[str, Any], state: dict[str, Any],
                 weights: dict[str, torch.Tensor] | None, optimizer_state: dict[str, Any] | None) -> None:
        from dfl.device import pick_device, use_all_cores
        from dfl.models import build_model
        from dfl.training.objective import Objective

        self.s = settings
        self.options = dict(options)
        self.options_changed = False   # set by the session when a resume changed options
        self._preview_failed = False   # a preview write failed once (said once, not again)
        self.state = dict(state)
        self.state.setdefault("iteration", 0)
        self.state.setdefault("loss_history", {})
        self.rank, self.world, local_rank = dist_info()
        if self.world > 1:
            import torch.distributed as dist
            if not dist.is_initialized():
                backend = "nccl" if torch.cuda.is_available() else "gloo"
                dist.init_process_group(backend)
            if torch.cuda.is_available() and settings.device in ("auto", "cuda"):
                torch.cuda.set_device(local_rank)
                self.device = torch.device("cuda", local_rank)
            else:
                self.device = pick_device(settings.device)
        else:
            self.device = pick_device(settings.device)
        if self.device.type == "cpu":
            use_all_cores()
            tune_cpu_for_training()
        self.precision = resolve_precision(settings.precision, self.device)
        if settings.seed is not None:
            torch.manual_seed(settings.seed + self.rank)
        from dfl.training.memory import check_fits

        check_fits(settings.model_type, self.options, self.device, self.precision, settings.model_path)
        self.model = build_model(settings.model_type, dict(self.options))
        self.model.to(self.device)
        channels_last = settings.channels_last and self.device.type in ("cpu", "cuda")
        self.objective = Objective(self.model, self.options, precision=self.precision, channels_last=channels_last)
        if weights is not None:
            ckpt.load_weights(self.model.networks, weights, settings.model_path)
            fresh = ckpt.load_weights(self.objective.discriminators, weights, settings.model_path, optional=True)
            if fresh:
                self._echo(f"new networks (starting from scratch): {', '.join(fresh)}")
        if optimizer_state:
            fresh = self.objective.load_optimizer_state(optimizer_state)
            if fresh:
                self._echo(f"optimizer state starts afresh for: {', '.join(fresh)}")
        if self.world > 1:
            nets = list(self.networks().values())
            _broadcast_from_rank0(nets)
            _sync_grads_on_backward([p for n in nets for p in n.parameters() if p.requires_grad], self.world)
        self.compiled = settings.compile and self.device.type != "cpu"
        if self.compiled:
            self.model.forward_train = torch.compile(self.model.forward_train)
        elif settings.compile:
            # measured with PyTorch 2.13 on 2 cores: SAEHD df-ud 128 compiled for 11 minutes, then ran 2590 ms
            # per iteration against 1530 eager (the CPU convolutions are already hand-written GEMMs), and
            # Quick96 crashed in the compiled code after 9 minutes
            self._echo("--compile is ignored on the CPU: there it was slower than without it (and crashed)")
        self.model.train()
        self.data = self._load_faces()

    def _load_faces(self) -> "TrainingData":
        """Both facesets, read once; unreadable faces are skipped with a line, none at all is a DflError
        (before a new model is ever saved)."""
        from dfl.training.samples import TrainingData, default_workers

        s = self.s
        sopts = sample_options(self.model, self.options, seed=None if s.seed is None else s.seed + 1000 * self.rank)
        if self.world > 1:
            sopts.batch_size = max(1, sopts.batch_size // self.world)
        workers = default_workers(self.device.type) if s.workers is None else s.workers
        return TrainingData(s.src_dir, s.dst_dir, sopts, workers=workers,
                            notify=self._echo if self.rank == 0 else None)

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
        ckpt.save_checkpoint(self.s.model_path, self.s.model_type, self.options, self.state,
                             self.networks(), self.objective.optimizer_state())
        msg = f"saved {self.s.model_path.name} at iteration {self.state['iteration']} ({time.perf_counter() - t0:.1f} s)"
        if preview_batch is not None:
            self.previews(preview_batch)
        if backup and self.s.keep_backups > 0:
            try:
                b = ckpt.make_backup(self.s.model_path, self.s.keep_backups)
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
        grid = preview_grid(self.objective, preview_batch)
        try:
            write_png(self.s.model_path / "preview.png", grid)
            png = history_png(self.state["loss_history"])
            if png is not None:
                ckpt.write_file_atomic(self.s.model_path / "history.png", png)
        except OSError as exc:
            if not self._preview_failed:
                self._echo(f"{self.s.model_path}: preview not written ({exc.strerror or exc})")
            self._preview_failed = True
        return grid

    def run(self) -> TrainResult:
        """Train until the target iteration (or Ctrl+C); saves on the way out either way."""
        from tqdm import tqdm

        s = self.s
        data = self.data
        sopts = data.opts
        preview_batch = data.fixed_preview_batch()
        it0 = int(self.state["iteration"])
        target = int(s.target_iter or 0)
        hist = self.state["loss_history"]
        losses: dict[str, float] = {}
        t_start = time.perf_counter()
        last_save = last_preview = last_log = t_start
        preview_every = s.preview_seconds
        step_times: list[float] = []
        wait0 = 0.0
        window = None
        if s.preview_window and self.rank == 0:
            window = _PreviewWindow()
        self._echo(f"training {s.model_path.name} on {self.device} ({self.precision}"
                   f"{', channels_last' if s.channels_last else ''}{', compiled' if self.compiled else ''}"
                   f"{f', {self.world} processes' if self.world > 1 else ''}), batch {sopts.batch_size}, "
                   f"from iteration {it0}" + (f" to {target}" if target else ""))
        bar = tqdm(total=target or None, initial=it0, unit="it", desc=s.model_path.name, disable=self.rank != 0 or s.quiet,
                   dynamic_ncols=True)
        interrupted = False
        final_backup = False
        old_term = _term_as_interrupt()
        try:
            if target and it0 >= target:
                self._echo(f"already at iteration {it0} (target {target})")
            while not target or self.state["iteration"] < target:
                t0 = time.perf_counter()
                batch = data.next()
                losses = self.objective.train_step(batch)
                self.state["iteration"] += 1
                it = self.state["iteration"]
                dt = time.perf_counter() - t0
                step_times.append(dt)
                history_append(hist, it, losses)
                bar.update(1)
                if s.on_iteration is not None:
                    s.on_iteration(it, losses)
                now = time.perf_counter()
                if now - last_log >= s.log_seconds or (target and it >= target):
                    ms = 1000 * float(np.mean(step_times[-100:]))
                    wait = data.wait_s - wait0
                    share = wait / max(1e-9, now - last_log)
                    wait0, last_log = data.wait_s, now
                    retries = self.objective.fp32_retries  # fp16 steps that overflowed and were redone in fp32
                    self._echo(f"[{time.strftime('%H:%M:%S')}][#{it:06d}][{ms:.0f}ms][data wait {100 * share:.0f}%]"
                               + (f"[fp32 retries {retries}]" if retries else "")
                               + "".join(f"[{k} {v:.4f}]" for k, v in losses.items()))
                    bar.set_postfix({k: f"{v:.4f}" for k, v in list(losses.items())[:2]}, refresh=False)
                if now - last_preview >= preview_every:
                    grid = self.previews(preview_batch)
                    last_preview = time.perf_counter()
                    preview_every = preview_period(s.preview_seconds, last_preview - now)
                    if window is not None and grid is not None:
                        window.show(grid)
                backup_due = s.backup_every > 0 and it % s.backup_every == 0
                final = bool(target) and it >= target
                if final:
                    final_backup = backup_due
                elif backup_due or now - last_save >= s.autosave_minutes * 60:
                    self.save(backup=backup_due)
                    last_save = time.perf_counter()
                if window is not None and window.quit_requested():
                    break
        except KeyboardInterrupt:
            interrupted = True
        finally:
            _restore_term(old_term)
            bar.close()
            data.close()
            if window is not None:
                window.close()
        if step_times or self.options_changed:
            self.save(backup=final_backup, preview_batch=preview_batch)
        elapsed = time.perf_counter() - t_start
        ms = 1000 * float(np.mean(step_times[-100:])) if step_times else 0.0
        result = TrainResult(int(self.state["iteration"]), history_mean(hist, 50), ms,
                             data.wait_s / max(elapsed, 1e-9), True, hist)
        if interrupted:
            raise KeyboardInterrupt
        return result


def _term_as_interrupt() -> Any:
    """SIGTERM (``kill``, ``timeout``, a container stop) saves like Ctrl+C instead of dying unsaved."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGTERM"):
        return None

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, handler)


def _restore_term(old: Any) -> None:
    import signal

    if old is not None:
        signal.signal(signal.SIGTERM, old)


class _PreviewWindow:
    """An OpenCV window with the preview grid; 'q' or Esc stops training (after a save)."""

    def __init__(self) -> None:
        import cv2
        self.cv2 = cv2
        self.ok = True
        self._quit = False
        headless = sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
        if headless:   # OpenCV's Qt backend aborts the process without a display: never try
            self.ok = False
            from tqdm import tqdm
            tqdm.write("--preview-window: no display here; the preview is still written to preview.png")
            return
        try:
            cv2.namedWindow("dfl train preview", cv2.WINDOW_NORMAL)
        except cv2.error:
            self.ok = False

    def show(self, img: np.ndarray) -> None:
        if self.ok:
            try:
                self.cv2.imshow("dfl train preview", img)
            except self.cv2.error:
                self.ok = False

    def quit_requested(self) -> bool:
        if not self.ok:
            return False
        key = self.cv2.waitKey(1) & 0xFF
        self._quit = self._quit or key in (ord("q"), 27)
        return self._quit

    def close(self) -> None:
        if self.ok:
            try:
                self.cv2.destroyWindow("dfl train preview")
            except self.cv2.error:
                pass
