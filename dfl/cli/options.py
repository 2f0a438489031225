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


class ModelType(click.ParamType):
    """A registered model's name, any letter case, converted to the registry's spelling.

    The choices come from the model registry (:mod:`dfl.models.registry`) when the command runs, so every
    registered model is one without this module naming any (the registry is imported only then: ``dfl
    --help`` stays fast).
    """

    name = "model"

    def __init__(self, kind: str | None = None) -> None:
        self.kind = kind

    def names(self) -> list[str]:
        from dfl.models.registry import model_names

        return model_names(self.kind)

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:  # type: ignore[override]
        return "[" + "|".join(self.names()) + "]"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> str:
        from dfl.models.registry import find_spec

        spec = find_spec(str(value))
        if spec is None or spec.name not in self.names():
            self.fail(f"{value!r} is not one of {', '.join(self.names())}.", param, ctx)
        return spec.name

    def shell_complete(self, ctx: click.Context, param: click.Parameter, incomplete: str) -> list:
        from click.shell_completion import CompletionItem

        return [CompletionItem(n) for n in self.names() if n.lower().startswith(incomplete.lower())]


class ModelsHelp(click.Command):
    """A command whose help ends with the registered models (of ``models_kind``), one line each."""

    models_kind: str | None = None

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from dfl.models.registry import list_specs

        super().format_epilog(ctx, formatter)
        with formatter.section("Models"):
            formatter.write_dl([(s.name, s.summary) for s in list_specs(self.models_kind)])
