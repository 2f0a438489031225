"""``dfl train`` (step 6) and ``dfl model list|rename|delete`` (DFL's model picker)."""

from __future__ import annotations

from pathlib import Path

import click

from dfl.cli import cli
from dfl.cli.options import ModelsHelp, ModelType, workspace_option
from dfl.cli.picker import at_terminal, pick_model
from dfl.interrupt import Interrupted
from dfl.text import plural
from dfl.precision import CHOICES as PRECISION_CHOICES
from dfl.workspace import Workspace

MODEL_CHOICES = ModelType()


@cli.command("train", cls=ModelsHelp)
@workspace_option
@click.option("--model", "model_type", type=MODEL_CHOICES,
              help="Model to create (or resume: checked); see Models below.")
@click.option("--name", help="Model name: model/<name>_<Model>/. Without it: pick from the saved models.")
@click.option("--target-iter", type=int, default=0, show_default=True, help="Stop (and save) at this iteration; 0: until Ctrl+C.")
@click.option("--time-limit", type=click.FloatRange(min=0), default=0, show_default=True,
              help="Stop (and save) after this many minutes of training; 0: no limit.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
              help="YAML or JSON file of options (answers the prompts; on resume: changes allowed options).")
@click.option("--non-interactive", is_flag=True,
              help="Ask nothing: options not in --config take their defaults (implied without a terminal).")
@click.option("--change-options", is_flag=True, help="On resume, ask again the options that may change.")
@click.option("--device", default="auto", show_default=True, help="auto (CUDA, MPS, CPU), cpu, cuda, cuda:1, mps.")
@click.option("--precision", type=click.Choice(PRECISION_CHOICES), default="auto", show_default=True,
              help="Compute precision over fp32 weights (CPU fp16: float16 Winograd tiles only). auto: the "
                   "fastest whose loss agrees with fp32, measured once per machine and model configuration "
                   "(a few steps each, cached in ~/.dfl); retune: measure again.")
@click.option("--channels-last/--no-channels-last", default=True, show_default=True, help="NHWC memory layout.")
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the model on a GPU (slow start, faster steps); ignored on the CPU.")
@click.option("--autosave-minutes", type=float, default=25.0, show_default=True)
@click.option("--backup-every", type=int, default=0, show_default=True, help="Backup every N iterations (0: off).")
@click.option("--keep-backups", type=int, default=5, show_default=True, help="Rolling backups kept.")
@click.option("--preview-seconds", type=float, default=15.0, show_default=True, help="Refresh preview.png every N s (or less often if a refresh would take over 2% of the time).")
@click.option("--preview-window", is_flag=True, help="Show the preview live in an OpenCV window (q: save and stop).")
@click.option("--workers", type=int, default=None, help="Sample worker processes (default: none on the CPU, half the cores with a GPU).")
@click.option("--src-faces", type=click.Path(file_okay=False, path_type=Path), help="Default: data_src/aligned.")
@click.option("--dst-faces", type=click.Path(file_okay=False, path_type=Path), help="Default: data_dst/aligned.")
@click.option("--pretrain-faces", type=click.Path(file_okay=False, path_type=Path),
              help="Faces for pretrain mode (both sides). Default: data_src/aligned.")
@click.option("--seed", type=int, default=None, help="Seed for weights and samples (reproducible runs).")
@click.option("--list", "list_only", is_flag=True, help="List the saved models and exit.")
def train_cmd(workspace: Workspace, model_type: str | None, name: str | None, target_iter: int, time_limit: float,
              config_file: Path | None, non_interactive: bool, change_options: bool, device: str, precision: str,
              channels_last: bool, compile_: bool, autosave_minutes: float, backup_every: int, keep_backups: int,
              preview_seconds: float, preview_window: bool, workers: int | None, src_faces: Path | None,
              dst_faces: Path | None, pretrain_faces: Path | None, seed: int | None, list_only: bool) -> None:
    """Step 6: train a model (--model) on data_src/aligned and data_dst/aligned.

    A new model asks its options once (DFL's prompts; --config / --non-interactive for scripts) and saves
    them; a resumed one keeps them (only the changeable ones may change).  Saves every
    --autosave-minutes, at --target-iter and on Ctrl+C; a killed save never loses the model.
    """
    from dfl.training.prompts import load_config
    from dfl.training.session import SessionRequest, train

    if list_only:
        _echo_models(workspace)
        return
    interactive = not non_interactive and at_terminal()
    if name is None and interactive:   # DFL's picker; without a terminal: the most recent model
        from dfl.models.registry import model_names

        name, model_type, _ = pick_model(workspace.model_dir, [model_type] if model_type else model_names(),
                                         allow_new=True, new_type=model_type)
    req = SessionRequest(
        model_dir=workspace.model_dir,
        src_dir=src_faces or workspace.aligned_dir("src"),
        dst_dir=dst_faces or workspace.aligned_dir("dst"),
        model_type=model_type, name=name,
        config=load_config(config_file) if config_file else {},
        # no terminal (scripts, CI, nohup) means nobody to answer: defaults, as with --non-interactive
        interactive=interactive, change_options=change_options,
        pretrain_dir=pretrain_faces,
    )
    workspace.model_dir.mkdir(parents=True, exist_ok=True)
    settings = dict(target_iter=target_iter, device=device, precision=precision, channels_last=channels_last,
                    compile=compile_, autosave_minutes=autosave_minutes, backup_every=backup_every,
                    keep_backups=keep_backups, preview_seconds=preview_seconds, preview_window=preview_window,
                    workers=workers, seed=seed)
    try:
        result, path = train(req, settings, time_limit_s=60 * time_limit or None)
    except Interrupted as stop:   # Ctrl+C or SIGTERM: saved; say where, not "Aborted."
        r = stop.partial
        click.echo(summary_line(r, r.path or workspace.model_dir, stop=True))
        stop.message = (f"train: stopped by {'SIGTERM' if stop.terminated else 'Ctrl+C'} at iteration {r.iteration}"
                        f" (saved); run the same command again to continue")
        raise
    if not result.saved and result.steps == 0:
        click.echo(f"{path.name} is already at iteration {result.iteration} (--target-iter {target_iter}): "
                   "nothing to train; give a higher --target-iter, or 0 to train until Ctrl+C")
        return
    click.echo(summary_line(result, path))


def summary_line(result, path: Path, stop: bool = False) -> str:
    """What a run did: iterations, their real average time, the losses and where the model is saved."""
    losses = " ".join(f"{k} {v:.4f}" for k, v in result.losses.items())
    ran = f"{plural(result.steps, 'iteration')} this run, {result.ms_per_iter:.0f} ms/iteration" if result.steps \
        else "no iteration this run"
    return (f"{'Stopped' if stop else 'Trained'} {path.name} {'at' if stop else 'to'} iteration {result.iteration} "
            f"({ran}, data wait {100 * result.data_wait_share:.0f}%{'; ' + losses if losses else ''}); saved in {path}")


def _echo_models(workspace: Workspace) -> None:
    """One line per model, newest first; a damaged one says what is wrong and how to recover it."""
    from dfl.models import store

    models = store.list_models(workspace.model_dir)
    if not models:
        click.echo(f"No models in {workspace.model_dir}")
        return
    usable = [m for m in models if not m.damaged]
    for i, m in enumerate(usable):
        state = store.read_json(m.path, store.STATE) or {}
        click.echo(f"[{i}] {m.name} ({m.model_type}) iteration {state.get('iteration', 0)}"
                   + ("  - latest" if i == 0 else ""))
    for m in models:
        if m.damaged:
            click.echo(f"[!] {m.name} ({m.model_type}) DAMAGED: {m.problem}; {m.fix}")


@cli.group("model")
def model_group() -> None:
    """List, rename, delete or restore trained models (DFL's model picker)."""


@model_group.command("list")
@workspace_option
def model_list(workspace: Workspace) -> None:
    """Saved models, most recent first; damaged ones marked, with how to recover them."""
    _echo_models(workspace)


@model_group.command("rename")
@workspace_option
@click.argument("name")
@click.argument("new_name")
@click.option("--model", "model_type", type=MODEL_CHOICES, help="When several models share the name.")
def model_rename(workspace: Workspace, name: str, new_name: str, model_type: str | None) -> None:
    """Rename model NAME to NEW_NAME (refused while it is training)."""
    from dfl.models import store

    path = store.rename_model(workspace.model_dir, name, new_name, model_type)
    click.echo(f"Renamed {name} -> {path.name}")


@model_group.command("delete")
@workspace_option
@click.argument("name")
@click.option("--model", "model_type", type=MODEL_CHOICES, help="When several models share the name.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def model_delete(workspace: Workspace, name: str, model_type: str | None, yes: bool) -> None:
    """Move model NAME with its backups to trash/<date_time>/model/ (refused while it is training).

    Nothing is erased: move the folder back to restore it, or remove it from the trash yourself to free
    the space.
    """
    from dfl.errors import DflError
    from dfl.models import store

    info = store.find_model(workspace.model_dir, name, model_type)
    if info is None:
        raise DflError(f"{workspace.model_dir}: no model named {name!r}")
    if not yes:
        click.confirm(f"Move {info.path} to the trash ({workspace.trash_dir})?", abort=True)
    target = store.delete_model(workspace.model_dir, name, model_type)
    click.echo(f"Deleted {info.path.name}: moved to {target} (move it back to restore it)")


@model_group.command("restore")
@workspace_option
@click.argument("name")
@click.option("--backup", help="Backup folder name (e.g. iter_000005000); default: the newest.")
@click.option("--model", "model_type", type=MODEL_CHOICES, help="When several models share the name.")
def model_restore(workspace: Workspace, name: str, backup: str | None, model_type: str | None) -> None:
    """Put a backup of model NAME back in place (the files it replaces go to the trash)."""
    from dfl.models import store

    path, used, aside = store.restore_backup(workspace.model_dir, name, model_type, backup)
    state = store.read_json(path, store.STATE) or {}
    click.echo(f"Restored {path.name} from {used.name} (iteration {state.get('iteration', 0)})"
               + (f"; the replaced files are in {aside}" if aside else ""))
