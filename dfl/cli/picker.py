"""DeepFaceLab's model picker at a terminal, for ``dfl train`` and ``dfl merge`` without ``--name``.

    Choose one of saved models, or enter a name to create a new model.
    [r] : rename
    [d] : delete

    [0] : me (SAEHD, iteration 12000, saved 2026-12-06 08:12) - latest
    [1] : test (Quick96, iteration 300, saved 2026-12-05 17:40)
    :

A number picks a model; ``r`` / ``d`` rename or delete one (delete moves it to the workspace trash, as
``dfl model delete`` does; both are refused while the model trains) and the list comes back; any other
answer is a new model's name, then its type is asked from the registry's models.  The list, the types
and the renaming and deleting all come from :mod:`dfl.models.store` and :mod:`dfl.models.registry`.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from dfl.errors import DflError


def at_terminal() -> bool:
    """Someone can answer: stdin is a terminal (not a pipe, a file, nohup or CI)."""
    return sys.stdin is not None and sys.stdin.isatty()


def describe(info) -> str:
    """``name (Type, iteration N, saved YYYY-MM-DD HH:MM)`` of a listed model."""
    from dfl.models import store

    state = store.read_json(info.path, store.STATE) or {}
    saved = store.last_saved(info.path)
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(saved)) if saved else "never"
    return f"{info.name} ({info.model_type}, iteration {state.get('iteration', 0)}, saved {when})"


def pick_model(model_dir: Path, types: list[str], allow_new: bool, new_type: str | None = None
               ) -> tuple[str, str, bool]:
    """(name, model type, exists) chosen at the terminal among the models of ``types``.

    ``allow_new``: another answer creates a model of that name (``dfl train``); its type is ``new_type``
    when given (``--model``), else asked.  Damaged models are listed, not offered."""
    from dfl.models import store

    while True:
        listed = [m for m in store.list_models(model_dir) if m.model_type in types]
        models = [m for m in listed if not m.damaged]
        if not models and allow_new:
            name = click.prompt("No saved models. Enter a name of a new model").strip()
            return _new(model_dir, name, types, new_type)
        if not models:
            raise DflError(f"{model_dir}: no usable model"
                           + (f"; {listed[0].describe_damage()}" if listed else "; run `dfl train` first"))
        click.echo("Choose one of saved models" + (", or enter a name to create a new model." if allow_new else "."))
        click.echo("[r] : rename\n[d] : delete\n")
        for i, m in enumerate(models):
            click.echo(f"[{i}] : {describe(m)}" + (" - latest" if i == 0 else ""))
        for m in listed:
            if m.damaged:
                click.echo(f"[-] : {m.name} ({m.model_type}) damaged: {m.problem}")
        answer = click.prompt("", default="0", show_default=False, prompt_suffix=": ").strip()
        if answer.lower() in ("r", "d"):
            _rename_or_delete(model_dir, models, answer.lower())
            continue
        if answer.isdigit():
            if int(answer) < len(models):
                m = models[int(answer)]
                return m.name, m.model_type, True
            click.echo(f"no model [{answer}]")
            continue
        if not allow_new:
            click.echo(f"{answer!r}: enter the number of a model")
            continue
        return _new(model_dir, answer, types, new_type)


def _rename_or_delete(model_dir: Path, models: list, action: str) -> None:
    """DFL's [r] / [d]: which model (by number), then the new name or nothing; a refusal (the model is
    training, the name is taken) is said and the list comes back."""
    from dfl.models import store

    verb = "rename" if action == "r" else "delete"
    answer = click.prompt(f"Enter the number of the model to {verb}", default="", show_default=False).strip()
    if not answer.isdigit() or int(answer) >= len(models):
        click.echo(f"no model [{answer}]: nothing to {verb}")
        return
    m = models[int(answer)]
    try:
        if action == "r":
            new = click.prompt(f"New name for {m.name}").strip()
            store.check_name(new)
            path = store.rename_model(model_dir, m.name, new, m.model_type)
            click.echo(f"Renamed {m.path.name} -> {path.name}")
        else:
            target = store.delete_model(model_dir, m.name, m.model_type)
            click.echo(f"Deleted {m.path.name}: moved to {target} (move it back to restore it)")
    except DflError as exc:
        click.echo(str(exc))


def _new(model_dir: Path, name: str, types: list[str], new_type: str | None) -> tuple[str, str, bool]:
    """A new model's name (an existing one of that name is resumed) and its type, asked when not given."""
    from dfl.models import store
    from dfl.models.registry import get_spec

    store.check_name(name)
    if new_type is None:
        for i, t in enumerate(types):
            click.echo(f"[{i}] : {t} - {get_spec(t).summary}")
        while new_type is None:
            answer = click.prompt("Choose a model type", default="0", show_default=False, prompt_suffix=": ").strip()
            new_type = types[int(answer)] if answer.isdigit() and int(answer) < len(types) else \
                next((t for t in types if t.lower() == answer.lower()), None)
    info = store.find_model(model_dir, name, new_type)
    return name, new_type, info is not None
