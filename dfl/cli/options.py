"""Options shared by every command."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import click

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
