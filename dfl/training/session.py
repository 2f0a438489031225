"""``dfl train`` minus the CLI: pick or create the model, settle its options, lock it, train it.

Kept apart from the loop so the command stays thin and tests can drive a whole session in-process.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from dfl.errors import DflError
from dfl.interrupt import Interrupted
from dfl.models import store
from dfl.models.registry import get_spec
from dfl.training import prompts
from dfl.training.distributed import dist_info
from dfl.training.trainer import Trainer, TrainResult, TrainSettings


@dataclass
class SessionRequest:
    """What the user asked for (CLI flags, already parsed)."""

    model_dir: Path
    src_dir: Path
    dst_dir: Path
    model_type: str | None
    name: str | None
    config: dict[str, Any]
    interactive: bool
    change_options: bool = False
    pretrain_dir: Path | None = None


def choose_model(req: SessionRequest) -> tuple[str, str, bool]:
    """(name, model_type, exists): by name, else the most recently saved usable model (at a terminal the
    CLI asks first with DFL's picker, :mod:`dfl.cli.picker`, and passes the name).

    A named model is found damaged or not (a folder holding weights is never taken for a new model).
    """
    model_type = get_spec(req.model_type).name if req.model_type else None
    if not req.name and model_type and get_spec(model_type).default_name:   # DFL asks XSeg no name
        req = dataclasses.replace(req, name=get_spec(model_type).default_name)
    if req.name:
        info = store.find_model(req.model_dir, req.name, model_type)
        if info is not None:
            return info.name, info.model_type, True
        if model_type is None:
            raise DflError(f"{req.model_dir}: no model named {req.name!r}; give --model to create one")
        store.check_name(req.name)
        return req.name, model_type, False
    listed = [m for m in store.list_models(req.model_dir) if model_type in (None, m.model_type)]
    models = [m for m in listed if not m.damaged]
    damaged = [m for m in listed if m.damaged]
    if models:
        return models[0].name, models[0].model_type, True
    if damaged:
        raise DflError(f"{req.model_dir}: no usable model; {damaged[0].describe_damage()}")
    raise DflError(f"{req.model_dir}: no saved model; give --name (and --model) to create one")


@dataclass
class Settled:
    """What a session trains with, and whether it must be saved at once (a new or repaired model)."""

    options: dict[str, Any]
    state: dict[str, Any]
    weights: Any = None
    optimizer: Any = None
    save_now: bool = False


def settle_options(req: SessionRequest, model_type: str, path: Path, exists: bool,
                   recover: bool = True) -> Settled:
    """Options, state, weights and optimizer state to train with; asks what must be asked.

    A damaged model is repaired where that is safe, each repair said in one line: lost options are
    rebuilt (only when --model asks for it), a lost state.json is recovered, a damaged optimiser state
    dropped.  ``recover`` (the process that owns the folder) also finishes an interrupted save and keeps
    unreadable files aside as ``<name>.damaged``.
    """
    cfg_type = req.config.get("model_type")
    if cfg_type and str(cfg_type).lower() != model_type.lower():
        raise DflError(f"config: model_type {cfg_type!r} does not match the model ({model_type})")
    if not exists:
        options = prompts.new_model_options(model_type, req.config, req.interactive)
        return Settled(options, {"iteration": 0, "loss_history": {}}, save_now=True)
    if recover:
        store.recover(path)
    problem = store.diagnose(path)
    rebuilt = None
    if problem is not None and problem.startswith(store.OPTIONS):
        if not req.model_type:
            name = path.name.rpartition("_")[0]
            raise DflError(f"{path}: damaged model: {problem}; {store.repair_hint(path, name, model_type, problem)}")
        options, how = store.rebuild_options(path, model_type, req.config)
        click.echo(f"{path / store.OPTIONS}: {problem.partition(': ')[2] or 'missing'}; {how}")
        rebuilt = (model_type, options)
    c = store.read_checkpoint(path, options=rebuilt)
    for line in c.notices:
        click.echo(line)
    if recover and problem is not None:
        for name in (store.OPTIONS, store.STATE):
            if problem.startswith(name):
                store.set_aside(path, name)   # unreadable: kept beside as <name>.damaged, not overwritten
    if rebuilt is not None:
        options = c.options
    else:
        options = prompts.resume_options(model_type, c.options, req.config, req.change_options and req.interactive)
    state = dict(c.state)
    if c.options.get("pretrain") and not options.get("pretrain"):
        click.echo("pretraining turned off: the iteration counter starts again from 0 (as DFL)")
        state["iteration"] = 0
        state["loss_history"] = {}
    repaired = rebuilt is not None or bool(problem and problem.startswith(store.STATE))
    return Settled(options, state, c.weights, c.optimizer, save_now=repaired)


def train(req: SessionRequest, settings: dict[str, Any],
          time_limit_s: float | None = None) -> tuple[TrainResult, Path]:
    """Run a whole training session; returns the result and the model folder.

    ``time_limit_s`` stops (and saves) once that many seconds have passed, whichever comes first
    with ``target_iter``: a budget in minutes is easier to plan than an iteration count.
    A new model is saved only once its faces have loaded and its memory estimate fits the device; a
    failure before that leaves no model folder behind.
    """
    rank, world, _ = dist_info()
    if world > 1 and req.interactive:
        raise DflError("torchrun: give --non-interactive (and --name/--config) when training on several processes")
    if world > 1 and time_limit_s:
        raise DflError("--time-limit: not with torchrun (the processes would stop at different iterations); "
                       "use --target-iter")
    name, model_type, exists = choose_model(req)
    path = store.model_path(req.model_dir, name, model_type)
    reached = target_reached(req, path, exists, int(settings.get("target_iter") or 0))
    if reached is not None:
        return TrainResult(reached, {}, 0.0, 0.0, saved=False), path
    lock = store.lock_model(path) if rank == 0 else contextlib.nullcontext()
    with lock:
        try:
            trainer = _start(req, settings, model_type, path, exists, rank)
        except BaseException:
            if not exists and rank == 0:
                store.remove_if_unused(path)   # nothing was saved: no empty folder left behind
            raise
        if time_limit_s:
            return run_with_time_limit(trainer, time_limit_s), path
        return trainer.run(), path


def target_reached(req: SessionRequest, path: Path, exists: bool, target: int) -> int | None:
    """The saved iteration when it is already at or past ``target`` and nothing else was asked (no option
    changes): then there is nothing to train, said before anything is loaded (DFL: "Model already trained to
    target iteration").  None otherwise."""
    if not (exists and target) or req.config or req.change_options or store.diagnose(path) is not None:
        return None   # options to change, or a damaged model to repair: the session does its work
    state = store.read_json(path, store.STATE)
    iteration = state.get("iteration") if isinstance(state, dict) else None
    return int(iteration) if isinstance(iteration, int) and iteration >= target else None


def _start(req: SessionRequest, settings: dict[str, Any], model_type: str, path: Path, exists: bool,
           rank: int) -> Trainer:
    """Settle the options, build the trainer (model, faces) and save a new or repaired model at once."""
    st = settle_options(req, model_type, path, exists, recover=rank == 0)
    if req.pretrain_dir is not None and not st.options.get("pretrain"):
        why = ("its pretrain option is off: turn it on (--change-options, or pretrain: true in --config) or"
               if get_spec(model_type).option("pretrain") else f"{model_type} has no pretrain mode:")
        raise DflError(f"--pretrain-faces {req.pretrain_dir}: {path.name} does not pretrain; {why} leave "
                       "--pretrain-faces out")
    src, dst = req.src_dir, req.dst_dir
    if st.options.get("pretrain"):
        src = dst = req.pretrain_dir or req.src_dir
    ts = TrainSettings(model_path=path, model_type=model_type, src_dir=src, dst_dir=dst, **settings)
    if rank == 0:
        click.echo(f"{'Resuming' if exists else 'Creating'} {path.name}:\n{prompts.describe_options(st.options)}")
    trainer = Trainer(ts, st.options, st.state, st.weights, st.optimizer)
    if st.save_now:
        if trainer.rank == 0:
            trainer.save()   # the options (and a repaired state) are on disk from the first second
    else:
        trainer.options_changed = st.options != store.read_options(path)[1]
    return trainer


def run_with_time_limit(trainer: Trainer, seconds: float) -> TrainResult:
    """``trainer.run()`` that stops after ``seconds`` (at least one iteration), saving as on Ctrl+C.

    The trainer's only clean way out mid-run is its Ctrl+C path (stop, preview, save), so the clock takes
    that path from the per-iteration callback; a real Ctrl+C still propagates.
    """
    import time

    deadline = time.perf_counter() + max(0.0, float(seconds))
    user_callback = trainer.s.on_iteration
    timed_out = False

    def on_iteration(it: int, losses: dict[str, float]) -> None:
        nonlocal timed_out
        if user_callback is not None:
            user_callback(it, losses)
        if time.perf_counter() >= deadline:
            timed_out = True
            raise KeyboardInterrupt

    trainer.s.on_iteration = on_iteration
    try:
        return trainer.run()
    except Interrupted as stop:
        if not timed_out:
            raise
        result = stop.partial
    finally:
        trainer.s.on_iteration = user_callback
    trainer._echo(f"time limit of {seconds / 60:g} min reached at iteration {trainer.state['iteration']}")
    return result
