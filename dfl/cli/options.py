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
