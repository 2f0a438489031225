"""A new model's options, asked once like DFL (or read from a config file), and the rules on resume.

Everything comes from the option declarations in the model's registered spec (:mod:`dfl.models.registry`):
each option is asked with DFL's prompt text, its default in brackets and its range; ``?`` prints DFL's help
and asks again.  A config
file (YAML or JSON, a flat mapping of option names) answers questions without asking; with
``--non-interactive`` the rest take their defaults.  On resume the saved options stand; a config file
(or ``--change-options`` in a terminal) may change only the options DFL lets change after creation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import click

from dfl.config_file import load_mapping
from dfl.errors import DflError
from dfl.models.options import OptionSpec, check_range, coerce, option_applies
from dfl.models.registry import get_spec

Asker = Callable[[str, str], str]   # (question, default shown) -> raw answer


def load_config(path: Path) -> dict[str, Any]:
    """A flat ``{option: value}`` mapping from a YAML or JSON file (``model_type`` is allowed and checked
    by the caller)."""
    return load_mapping(path, "config")


def _show(value: Any, type_: str) -> str:
    if type_ == "bool":
        return "y" if value else "n"
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _click_ask(question: str, default: str) -> str:
    return click.prompt(question, default=default, show_default=False, type=str)


def ask_one(spec: OptionSpec, default: Any, ask: Asker) -> Any:
    """Ask one option until the answer is valid; ``?`` shows the help; empty keeps the default."""
    rng = spec.describe_range()
    extra = " ".join(x for x in (rng, "?:help" if spec.help else "") if x)
    shown = _show(default, spec.type)
    question = f"[{shown}] {spec.prompt}" + (f" ( {extra} )" if extra else "")
    while True:
        raw = ask(question, shown).strip()
        if raw == "?" and spec.help:
            click.echo(spec.help)
            continue
        if raw == "" or raw == shown:
            return default
        try:
            return check_range(spec, coerce(spec, raw))
        except DflError as exc:
            click.echo(f"  {exc}")


def new_model_options(model_type: str, given: dict[str, Any], interactive: bool,
                      ask: Asker | None = None) -> dict[str, Any]:
    """Options of a new model: ``given`` (config) first, then asked (or defaults), then validated."""
    model = get_spec(model_type)
    given = {k: v for k, v in given.items() if k != "model_type"}
    model.check_given(given)
    specs = model.options
    unknown = sorted(set(given) - model.known_options())
    if unknown:
        raise DflError(f"options for {model.name}: unknown option(s) {', '.join(unknown)}")
    answers: dict[str, Any] = {}
    ask = ask or _click_ask
    for spec in specs:
        current = {**{s.name: s.default for s in specs}, **given, **answers}
        if not option_applies(spec, current):
            continue
        if spec.name in given:
            answers[spec.name] = given[spec.name]
        elif interactive:
            answers[spec.name] = ask_one(spec, spec.default, ask)
    answers.update({k: v for k, v in given.items() if k not in answers})
    return model.validate(answers)


def resume_options(model_type: str, saved: dict[str, Any], given: dict[str, Any], ask_changes: bool,
                   ask: Asker | None = None) -> dict[str, Any]:
    """Options to resume with: saved ones, changed by ``given`` and (``ask_changes``) the user's answers to
    the changeable options; changing a fixed option is a DflError that names it."""
    model = get_spec(model_type)
    given = {k: v for k, v in given.items() if k != "model_type"}
    merged = model.check_changes(saved, given)
    if ask_changes:
        ask = ask or _click_ask
        changes = dict(given)
        for spec in model.options:
            if not spec.changeable or spec.name in given or not option_applies(spec, merged):
                continue
            value = ask_one(spec, merged.get(spec.name), ask)
            if value != merged.get(spec.name):
                changes[spec.name] = value
        merged = model.check_changes(saved, changes)
    return merged


def describe_options(options: dict[str, Any]) -> str:
    """The options block DFL prints when a model starts (name: value per line)."""
    width = max((len(k) for k in options), default=0)
    return "\n".join(f"  {k.rjust(width)}: {_show(v, 'bool' if isinstance(v, bool) else '')}" for k, v in options.items())
