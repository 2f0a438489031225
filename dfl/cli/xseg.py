"""``dfl xseg edit | apply | remove | remove-labels | fetch``: DFL's "5.XSeg" steps on a faceset.

Each command resolves TARGET (src / dst / a folder), finds the mask model when it needs one
(:func:`dfl.xseg.predictor.load_predictor`), calls one function of :mod:`dfl.xseg` and prints its summary.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import click

from dfl.cli import cli
from dfl.cli.options import faceset_path, trash_place, workspace_option
from dfl.errors import DflError
from dfl.workspace import Workspace
from dfl.xseg.predictor import XSEG_FACE_TYPES, MaskPredictor


@cli.group("xseg")
def xseg() -> None:
    """XSeg masks (DFL's 5.XSeg steps): label faces, apply a mask model, remove masks or labels, fetch.

    TARGET is src / dst (the workspace's aligned folders) or a folder of faces.
    """


target_argument = click.argument("target", metavar="src|dst|FOLDER")


def model_options(f: Callable) -> Callable:
    """Which XSeg model: DFL's weights (--generic), a model dfl trained (--name), its face type, device."""
    for option in reversed([
        click.option("--generic", is_flag=False, flag_value="", default=None, metavar="[PATH]",
                     help="DFL's XSeg weights: XSeg_256.npy or its folder (DFL's _internal/model_generic_xseg/, "
                          "or a model folder DFL trained); without PATH, XSeg_256.npy in the weights folder."),
        click.option("--name", default=None, help="An XSeg model trained by dfl in the workspace's model/."),
        click.option("--xseg-face-type", type=click.Choice(XSEG_FACE_TYPES), default=None,
                     help="Face type the XSeg model was trained on (default: what the model says; DFL's generic "
                          "model: wf); faces of another type are re-cut for it. same: never re-cut."),
        click.option("--weights-dir", type=click.Path(file_okay=False, path_type=str), default=None,
                     help="Weights folder for --generic without PATH (also $DFL_WEIGHTS; default ~/.dfl/weights)."),
        click.option("--device", default="auto", show_default=True, help="auto (CUDA, MPS, CPU), cpu, cuda, cuda:1."),
    ]):
        f = option(f)
    return f


def _predictor(workspace: Workspace, generic: str | None, name: str | None, face_type: str | None,
               weights_dir: str | None, device: str) -> MaskPredictor:
    from dfl.device import pick_device
    from dfl.faces.weights import weights_dir as resolve_weights_dir
    from dfl.xseg.predictor import load_predictor

    path = None if generic is None else Path(generic) if generic else resolve_weights_dir(weights_dir)
    return load_predictor(workspace.model_dir, name, path, pick_device(device), face_type)


def _folder(target: str, workspace: Workspace) -> Path:
    folder = faceset_path(target, workspace)
    if not folder.is_dir():
        raise DflError(f"{folder}: not a folder of faces")
    return folder


@xseg.command("edit")
@target_argument
@workspace_option
@model_options
@click.option("--window-size", type=click.IntRange(min=200), default=800, show_default=True,
              help="Side of the editor's square view, in screen pixels.")
def edit_cmd(target: str, workspace: Workspace, generic: str | None, name: str | None, xseg_face_type: str | None,
             weights_dir: str | None, device: str, window_size: int) -> None:
    """Label faces with include / exclude polygons (DFL's "5.XSeg) data_src/dst mask - edit").

    Labels are saved into each face when you leave it.  With --generic or --name, keys 5 and ` show that
    model's mask of the face instead of the mask stored in it.  Press h in the window for the keys.
    """
    from dfl.ui import require_display
    from dfl.xseg.session import run_editor

    folder = _folder(target, workspace)
    require_display("the XSeg editor")               # before loading a model
    predictor = None
    if generic is not None or name is not None:
        predictor = _predictor(workspace, generic, name, xseg_face_type, weights_dir, device)
    click.echo(run_editor(folder, predictor, window_size).line())


@xseg.command("apply")
@target_argument
@workspace_option
@model_options
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True, help="Faces per network pass.")
def apply_cmd(target: str, workspace: Workspace, generic: str | None, name: str | None, xseg_face_type: str | None,
              weights_dir: str | None, device: str, batch_size: int) -> None:
    """Write an XSeg model's mask into every face (DFL's "5.XSeg) ... trained mask - apply"; with --generic
    DFL's "5.XSeg Generic) ... whole_face mask - apply").

    Without --generic or --name: the workspace's trained XSeg (DFL's model/XSeg_256.npy works too).  An
    interrupted run continues where it stopped.
    """
    from dfl.xseg.tools import apply_masks, loose_faces

    folder = _folder(target, workspace)
    loose_faces(folder)                      # no faces, or a packed faceset: say so before loading a model
    predictor = _predictor(workspace, generic, name, xseg_face_type, weights_dir, device)
    click.echo(apply_masks(folder, predictor, batch_size).line())


def _remove(target: str, workspace: Workspace, what: str, yes: bool) -> None:
    from dfl.xseg.tools import find_stored, remove_stored

    folder = _folder(target, workspace)
    found = find_stored(folder, what)
    if found and not yes:
        question = (f"Remove the XSeg {what} of {len(found)} faces in {folder}? (their metadata is saved to the "
                    "trash first)")
        if not sys.stdin.isatty():
            raise DflError(f"{folder}: would remove the XSeg {what} of {len(found)} faces; pass --yes to confirm "
                           "without a prompt")
        if not click.confirm(question, default=True):
            click.echo("xseg remove: nothing changed")
            return
    click.echo(remove_stored(found, folder, what, *trash_place(folder, workspace)).line())


yes_option = click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")


@xseg.command("remove")
@target_argument
@workspace_option
@yes_option
def remove_cmd(target: str, workspace: Workspace, yes: bool) -> None:
    """Remove the applied XSeg masks (DFL's "5.XSeg) ... trained mask - remove").

    The removed masks are saved first as meta.dat in trash/<date_time>/ (dfl faceset metadata restore
    puts them back).
    """
    _remove(target, workspace, "masks", yes)


@xseg.command("remove-labels")
@target_argument
@workspace_option
@yes_option
def remove_labels_cmd(target: str, workspace: Workspace, yes: bool) -> None:
    """Remove the XSeg labels (polygons) (DFL's "5.XSeg) ... mask - remove").

    The removed labels are saved first as meta.dat in trash/<date_time>/ (dfl faceset metadata restore
    puts them back).
    """
    _remove(target, workspace, "labels", yes)


@xseg.command("fetch")
@target_argument
@workspace_option
@click.option("--move", is_flag=True, help="Move the labelled faces instead of copying them (DFL's 'delete "
                                            "original files'; nothing is deleted).")
def fetch_cmd(target: str, workspace: Workspace, move: bool) -> None:
    """Copy the labelled faces to <folder>_xseg/ (DFL's "5.XSeg) ... mask - fetch")."""
    from dfl.xseg.tools import fetch_labelled

    click.echo(fetch_labelled(_folder(target, workspace), move=move).line())
