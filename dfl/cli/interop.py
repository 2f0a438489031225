"""``dfl model import``: bring a DeepFaceLab model folder along (the work is in :mod:`dfl.interop`)."""

from __future__ import annotations

from pathlib import Path

import click

from dfl.cli.options import workspace_option
from dfl.cli.train import model_group
from dfl.text import plural
from dfl.workspace import Workspace


@model_group.command("import")
@workspace_option
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--name", help="The DFL model to import when PATH holds several (DFL's name, or <name>_<Model>).")
@click.option("--as", "new_name", help="Name of the dfl model [DFL's name].")
@click.option("--list", "list_only", is_flag=True, help="Only show what PATH holds.")
def model_import(workspace: Workspace, path: Path, name: str | None, new_name: str | None, list_only: bool) -> None:
    """Import a DeepFaceLab SAEHD, AMP, Quick96 or XSeg model into model/.

    PATH is DFL's workspace/model folder (or one <name>_<Model>_data.dat in it).  The dfl model gets the
    same weights, options, iteration count and loss history, so `dfl train` continues it and `dfl merge`
    uses it.  DFL's files are read without running anything they contain; nothing in PATH changes.
    """
    from dfl.interop.model_import import describe, import_model, scan

    if list_only:
        found = scan(path)
        for model in found:
            click.echo(describe(model))
        click.echo(f"{plural(len(found), 'model')} in {path}" if found else f"{path}: no DFL models here")
        return
    result = import_model(path, workspace.model_dir, name=name, new_name=new_name)
    o, src = result.options, result.source
    shape = " ".join(str(o[k]) for k in ("archi", "resolution", "face_type") if k in o)
    extra = f", discriminators {', '.join(result.discriminators)}" if result.discriminators else ""
    extra += f", optimizer state {', '.join(result.optimizers)}" if result.optimizers else ", fresh optimizer state"
    click.echo(f"Imported {src.prefix} ({src.model_type} {shape}, iteration {src.iteration or 0}{extra}) -> {result.path}")
    if result.dropped:
        click.echo("Not carried: " + "; ".join(f"{k} ({why})" for k, why in sorted(result.dropped.items())))
