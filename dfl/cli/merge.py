"""``dfl merge`` (step 7): put the learned face into every dst frame."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import click

from dfl.cli import cli
from dfl.cli.options import workspace_option
from dfl.cli.picker import at_terminal
from dfl.errors import DflError
from dfl.merge.config import COLOR_TRANSFER_MODES, MASK_MODES, MODES, SHARPEN_MODES
from dfl.precision import CHOICES as PRECISION_CHOICES
from dfl.workspace import Workspace

# CLI flag -> MergeConfig field
FLAG_FIELDS = {
    "mode": "mode", "mask_mode": "mask_mode", "erode": "erode_mask_modifier", "blur": "blur_mask_modifier",
    "motion_blur": "motion_blur_power", "face_scale": "output_face_scale", "color_transfer": "color_transfer_mode",
    "hist_threshold": "hist_match_threshold", "masked_hist_match": "masked_hist_match",
    "sharpen_mode": "sharpen_mode", "sharpen": "blursharpen_amount", "denoise": "image_denoise_power",
    "bicubic_degrade": "bicubic_degrade_power", "color_degrade": "color_degrade_power",
    "super_resolution": "super_resolution_power", "morph": "morph_value", "visible_label": "visible_label",
}


def find_model_folder(workspace: Workspace, model: str | None, name: str | None) -> Path:
    """The model folder for ``--model`` (a type or a name) and ``--name``; the newest when several fit.
    Only face-swap models merge (a mask model, e.g. XSeg, is used by the mask modes)."""
    from dfl.models.registry import SWAP, model_names
    from dfl.models.store import list_models

    swaps = model_names(SWAP)
    listed = [m for m in list_models(workspace.model_dir) if m.model_type in swaps]
    if not listed:
        raise DflError(f"{workspace.model_dir}: no trained models; run `dfl train` first")
    mtype = next((t for t in swaps if model and t.lower() == model.lower()), None)
    if model and mtype is None and name is None:
        name = model
    wanted = [m for m in listed if (mtype is None or m.model_type == mtype) and (name is None or m.name == name)]
    # a damaged model is never picked; named, it is used when only its state.json is lost (the weights are
    # what a merge needs: a notice says what was recovered), else refused with how to recover it
    fit = [m for m in wanted if not m.damaged or (name is not None and m.state_lost)]
    if not fit:
        if wanted:
            raise DflError(wanted[0].describe_damage())
        have = ", ".join(f"{m.name} ({m.model_type})" + (" damaged" if m.damaged else "") for m in listed)
        want = " ".join(x for x in (name, mtype) if x)
        raise DflError(f"{workspace.model_dir}: no model {want!r}; found {have}")
    if len(fit) > 1:
        click.echo(f"Several models fit; using the most recently saved: {fit[0].path.name}")
    return fit[0].path


def _pick(workspace: Workspace, model: str | None) -> tuple[str | None, str | None]:
    """DFL's picker among the face-swap models (``--model`` a type narrows it; a name skips it)."""
    from dfl.cli.picker import pick_model
    from dfl.models.registry import SWAP, model_names

    swaps = model_names(SWAP)
    mtype = next((t for t in swaps if model and t.lower() == model.lower()), None)
    if model and mtype is None:
        return None, model        # a model name: nothing to ask
    name, mtype, _ = pick_model(workspace.model_dir, [mtype] if mtype else swaps, allow_new=False)
    return name, mtype


def refuse_inert(cfg, flags: dict, model_path: Path) -> None:
    """Settings given on the command line that would do nothing (``--sharpen`` without ``--sharpen-mode``,
    a setting the model does not take): one line, before anything is loaded."""
    from dfl.merge.config import inert_settings
    from dfl.models.registry import get_spec
    from dfl.models.store import parse_folder_name

    given = {FLAG_FIELDS[k] for k, v in flags.items() if v is not None and k in FLAG_FIELDS}
    parsed = parse_folder_name(model_path.name)
    defaults = get_spec(parsed[1]).merge_defaults if parsed else {}
    why = inert_settings(cfg, given, defaults)
    if why:
        kind = f" ({parsed[1]})" if parsed else ""
        raise DflError(f"{model_path.name}{kind}: " + "; ".join(why))


def build_config(config_file: Path | None, flags: dict):
    """Defaults, then the ``--config`` file, then the flags given on the command line."""
    from dfl.merge.config import MergeConfig

    cfg = MergeConfig.from_file(config_file) if config_file else MergeConfig()
    data = cfg.to_dict()
    for flag, field_name in FLAG_FIELDS.items():
        value = flags.get(flag)
        if value is not None:
            data[field_name] = value
    return MergeConfig.from_dict(data, "dfl merge")


def merge_settings_options(f: Callable) -> Callable:
    """DFL's merger settings as flags (``--mode``, ``--mask-mode``, ...), shared by ``dfl merge`` and
    ``dfl live``; they arrive as keyword arguments named as :data:`FLAG_FIELDS`' keys."""
    for option in reversed(_SETTING_OPTIONS):
        f = option(f)
    return f


_SETTING_OPTIONS = [
    click.option("--mode", type=click.Choice(MODES), help="Blend mode [overlay]."),
    click.option("--mask-mode", type=click.Choice(MASK_MODES),
                 help="Mask [learned-prd*learned-dst]; XSeg modes need an XSeg model (dfl merge only)."),
    click.option("--erode", type=click.IntRange(-400, 400), help="Erode (+) / dilate (-) the mask [0]."),
    click.option("--blur", type=click.IntRange(0, 400), help="Feather the mask edge [0]."),
    click.option("--motion-blur", type=click.IntRange(0, 100), help="Motion blur power from face movement [0]."),
    click.option("--face-scale", type=click.IntRange(-50, 50), help="Output face scale [0]."),
    click.option("--color-transfer", type=click.Choice(COLOR_TRANSFER_MODES),
                 help="Colour transfer to the predicted face [rct]."),
    click.option("--hist-threshold", type=click.IntRange(0, 255), help="Hist-match threshold [238]."),
    click.option("--masked-hist-match/--no-masked-hist-match", default=None, help="Hist-match inside the mask [on]."),
    click.option("--sharpen-mode", type=click.Choice(SHARPEN_MODES), help="Sharpen filter [none]."),
    click.option("--sharpen", type=click.IntRange(-100, 100), help="Sharpen (+) / blur (-) amount [0]."),
    click.option("--denoise", type=click.IntRange(0, 500), help="Image degrade by denoise power [0]."),
    click.option("--bicubic-degrade", type=click.IntRange(0, 100), help="Image degrade by bicubic rescale [0]."),
    click.option("--color-degrade", type=click.IntRange(0, 100), help="Colour degrade power [0]."),
    click.option("--super-resolution-power", "--super-resolution", "super_resolution", type=click.IntRange(0, 100),
                 help="Enhance the face with DFL's FaceEnhancer (FaceEnhancer.npy in --weights-dir) [0]."),
    click.option("--morph", type=click.FloatRange(0, 1), help="AMP morph value [1.0]."),
    click.option("--visible-label/--no-visible-label", default=None,
                 help="Draw a small 'AI-modified' notice on every frame (the PNGs are always labelled)."),
]


@cli.command("merge")
@workspace_option
@click.option("--model", "model", help="Model type (see `dfl train --help`) or model name.")
@click.option("--name", help="Model name (model/<name>_<Model>/); default: pick at a terminal, else the most recently saved.")
@click.option("--interactive/--non-interactive", default=None,
              help="Tune settings in a window (default where a display exists) or merge straight away.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
              help="YAML/JSON file of settings (e.g. a saved data_dst/merged/merge_config.json).")
@merge_settings_options
@click.option("--xseg-name", default=None,
              help="XSeg mask modes: the XSeg model dfl trained under this name (default: the workspace's XSeg, "
                   "dfl's or DFL's model/XSeg_256.npy).")
@click.option("--xseg-generic", is_flag=False, flag_value="", default=None, metavar="[PATH]",
              help="XSeg mask modes: DFL's XSeg weights (XSeg_256.npy or its folder, e.g. DFL's "
                   "_internal/model_generic_xseg/); without PATH, XSeg_256.npy in the weights folder.")
@click.option("--weights-dir", type=click.Path(file_okay=False, path_type=str), default=None,
              help="Folder with DFL's FaceEnhancer.npy for super resolution (and XSeg_256.npy for --xseg-generic); "
                   "also $DFL_WEIGHTS; default ~/.dfl/weights.")
@click.option("--device", default="auto", show_default=True, help="auto (CUDA, MPS, CPU), cpu, cuda, cuda:1.")
@click.option("--precision", type=click.Choice(PRECISION_CHOICES), default="auto", show_default=True,
              help="Prediction precision; auto: the fastest whose faces agree with fp32, measured once per machine "
                   "and model configuration (cached in ~/.dfl); retune: measure again.")
@click.option("--batch", type=click.IntRange(1, 256), default=None, help="Frames predicted at once [GPU 16, CPU 4].")
@click.option("--workers", type=click.IntRange(1, 64), default=None, help="Blend/write threads [all cores].")
@click.option("--force", is_flag=True, help="Merge every frame again, even those merged with these settings.")
@click.option("--new-session", is_flag=True, help="Interactive: start over instead of the saved per-frame settings.")
def merge_command(workspace: Workspace, model: str | None, name: str | None, interactive: bool | None,
                  config_file: Path | None, device: str, precision: str, batch: int | None, workers: int | None, force: bool,
                  new_session: bool, weights_dir: str | None, xseg_name: str | None, xseg_generic: str | None,
                  **flags) -> None:
    """Step 7: merge the learned face into data_dst/merged/ (and the masks into merged_mask/).

    Settings are DFL's merger options; they are saved to data_dst/merged/merge_config.json, and a re-run
    skips frames already merged with the same settings and model.  Every merged PNG carries a text
    chunk marking it AI-modified.  The XSeg mask modes run an XSeg model on the predicted and the dst
    faces (the workspace's, --xseg-name or --xseg-generic), loaded when first needed.
    """
    from dfl.merge import frames as merge_frames
    from dfl.merge import interactive as inter

    cfg = build_config(config_file, flags)
    xseg = xseg_model(workspace, xseg_name, xseg_generic, weights_dir, device)
    if cfg.needs_xseg and xseg.ready():
        raise DflError(f"--mask-mode {cfg.mask_mode}: {xseg.ready()}")
    if name is None and interactive is not False and at_terminal():
        name, model = _pick(workspace, model)
    model_path = find_model_folder(workspace, model, name)
    refuse_inert(cfg, flags, model_path)
    if interactive is None or interactive:
        ok, why = inter.display_available()
        if not ok:
            if interactive:
                click.echo(f"Interactive merge needs a window: {why}; merging non-interactively.")
            interactive = False
        else:
            interactive = True
    enhancer = face_enhancer(weights_dir, device, required=cfg.super_resolution_power != 0)
    ctx = merge_frames.prepare_merge(workspace, model_path, device=device, precision=precision)
    click.echo(f"Merging {len(ctx.infos)} frames with {model_path.name} "
               f"(iteration {ctx.model_info.get('iteration', 0)}) on {ctx.device_type} "
               f"({ctx.model_info.get('precision', 'fp32')})")
    if interactive:
        session_path = model_path / inter.SESSION_NAME
        if new_session and session_path.is_file():
            kept = inter.set_aside_session(session_path)
            click.echo(f"Starting a new session; the previous per-frame settings are kept in {kept}")
        summary = inter.merge_interactive(ctx, cfg, session_path=session_path, batch_frames=batch,
                                          workers=workers, force=force, enhancer=enhancer, xseg=xseg)
        click.echo(f"Per-frame settings saved to {session_path}")
    else:
        summary = merge_frames.merge_context(ctx, cfg, batch_frames=batch, workers=workers, force=force,
                                             enhancer=enhancer, xseg=xseg)
    click.echo(summary.line(workspace.merged_dir))


def face_enhancer(weights_dir: str | None, device: str, required: bool):
    """DFL's face enhancer for super resolution, loaded when first used (the interactive merger's t/g keys
    can turn it on later); missing weights are reported now when the settings already ask for it."""
    from dfl.faces.enhancer import LazyFaceEnhancer
    from dfl.faces.weights import FACE_ENHANCER_FILES, require_weights
    from dfl.faces.weights import weights_dir as resolve_weights_dir

    folder = resolve_weights_dir(weights_dir)
    if required:
        require_weights(folder, FACE_ENHANCER_FILES, "FaceEnhancer (super resolution)")
    return LazyFaceEnhancer(folder, device)


def xseg_model(workspace: Workspace, name: str | None, generic: str | None, weights_dir: str | None, device: str):
    """The XSeg model of the XSeg mask modes, loaded when first needed (as DFL's merger does): DFL's weights
    (``--xseg-generic``), dfl's model ``--xseg-name``, else the workspace's trained XSeg."""
    from dfl.merge.xseg import LazyXSeg

    def load():
        from dfl.device import pick_device
        from dfl.faces.weights import weights_dir as resolve_weights_dir
        from dfl.xseg.predictor import load_predictor

        path = None if generic is None else Path(generic) if generic else resolve_weights_dir(weights_dir)
        try:
            return load_predictor(workspace.model_dir, name, path, pick_device(device))
        except DflError as exc:     # the XSeg commands' flags are --name / --generic; here they are these
            raise DflError(str(exc).replace("--generic", "--xseg-generic").replace("with --name", "with --xseg-name")) \
                from None

    return LazyXSeg(load)
