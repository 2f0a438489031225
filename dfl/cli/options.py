"""Options shared by every command."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import click

from dfl.errors import DflError
from dfl.workspace import ENV_VAR, Workspace


def _to_workspace(ctx: click.Context, param: click.Parameter, value: str | None) -> Workspace:
    ws = Workspace(Path(value) if value else Path("workspace"))
    ws.check_usable()
    return ws


def workspace_option(f: Callable) -> Callable:
    """``--workspace DIR`` (default ./workspace, or $DFL_WORKSPACE), passed as a Workspace."""
    return click.option(
        "--workspace", "-w", "workspace", envvar=ENV_VAR, default="workspace", show_default=True,
        type=click.Path(file_okay=True, dir_okay=True, path_type=str), callback=_to_workspace,
        help=f"Workspace folder (also ${ENV_VAR}).",
    )(f)


side_argument = click.argument("side", type=click.Choice(["src", "dst"]))


def faceset_path(target: str, ws: Workspace) -> Path:
    """The path TARGET names: src / dst -> the workspace's aligned folders (DflError if not extracted yet),
    anything else a file or folder that must exist."""
    path = Path(target)
    if not path.exists() and target in ("src", "dst"):
        aligned = ws.aligned_dir(target)  # type: ignore[arg-type]
        if not aligned.is_dir():
            raise DflError(f"{aligned}: no such folder (run dfl extract-faces {target} first)")
        return aligned
    if not path.exists():
        raise DflError(f"{path}: no such file or folder")
    return path


def trash_place(folder: Path, ws: Workspace) -> tuple[Path, Path]:
    """(trash root, base) for what a tool sets aside from ``folder``: the workspace's trash/ with paths
    relative to the workspace, or trash/ beside a folder outside it."""
    root = ws.root.resolve()
    folder = Path(folder).resolve()
    if folder.is_relative_to(root):
        return ws.trash_dir, root
    return folder.parent / "trash", folder.parent
