"""Reading the YAML/JSON option files that ``dfl train --config`` and ``dfl merge --config`` take.

One reader so both commands accept the same files and report a bad one the same way: one line naming
the file and what is wrong with it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from dfl.errors import DflError


def load_mapping(path: str | Path, what: str = "config") -> dict[str, Any]:
    """A flat ``{name: value}`` mapping from a ``.json`` file, or YAML for any other extension.

    An empty file is an empty mapping; anything but a mapping is refused.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DflError(f"{path}: cannot read {what} ({exc.strerror})") from None
    is_json = path.suffix.lower() == ".json"
    try:
        data = json.loads(text) if is_json else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DflError(f"{path}: not valid {'JSON' if is_json else 'YAML'} ({first})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise DflError(f"{path}: {what} must be a mapping of names to values")
    return {str(k): v for k, v in data.items()}
