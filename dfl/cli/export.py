"""``dfl model export NAME --format dfm``: a trained model for DeepFaceLive (the work is in :mod:`dfl.export`)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from dfl.cli.options import ModelType, workspace_option
from dfl.cli.train import model_group
from dfl.workspace import Workspace


@model_group.command("export")
@workspace_option
@click.argument("name", required=False)
@click.option("--model", "model_type", type=ModelType("swap"), help="Model type (when several share the name, or without NAME).")
@click.option("--format", "fmt", type=click.Choice(["dfm"]), default="dfm", show_default=True,
              help="dfm: DeepFaceLive's ONNX model (also read by FaceFusion and by `dfl live --dfm`).")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="File to write [model/<name>_<Model>/<name>.dfm].")
@click.option("--force", is_flag=True, help="Replace an existing file without asking (it goes to the trash).")
@click.option("--check/--no-check", default=True, show_default=True,
              help="Compare onnxruntime with the PyTorch model on dst faces before writing (max difference printed).")
def model_export(workspace: Workspace, name: str | None, model_type: str | None, fmt: str, output: Path | None,
                 force: bool, check: bool) -> None:
    """Export model NAME (default: the most recently saved) as a .dfm for DeepFaceLive (SAEHD, AMP, Quick96).

    The file is DFL's own export layout: input in_face:0 (NHWC float32 BGR in [0, 1]; AMP also
    morph_value:0), outputs out_face_mask:0, out_celeb_face:0, out_celeb_face_mask:0, opset 12.  Needs
    onnx and onnxruntime (pip install "dfl[export]").  It is checked against DeepFaceLive's loader and
    against the PyTorch model before it appears; an existing file is never overwritten unasked.
    """
    from dfl.export import dfm, runtime
    from dfl.export.trained import find_trained

    runtime.require()
    path = find_trained(workspace.model_dir, name, model_type)
    target = output or dfm.default_output(path)
    overwrite = force
    if target.exists() and not force and sys.stdin.isatty():
        click.confirm(f"{target} exists. Move it to the trash ({workspace.trash_dir}) and write the new export?",
                      abort=True)
        overwrite = True
    result = dfm.export_dfm(path, target, trash_root=workspace.trash_dir, base=workspace.root, overwrite=overwrite,
                            check=check, faces_dir=workspace.aligned_dir("dst"), notify=click.echo)
    click.echo(dfm.describe(result))
