"""JSON files of models and their companions: written atomically, read with clear errors."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np

from threattune.errors import ModelError


def write_json(path: Path, content: Any) -> None:
    """Write ``content`` beside ``path`` and rename it over ``path`` once complete."""
    partial = path.with_suffix(path.suffix + ".tmp")
    partial.write_text(json.dumps(content, indent=2, default=_plain), encoding="utf-8")
    partial.replace(path)


def read_json(path: Path, *, what: str = "model") -> Any:
    """Read a JSON file of a ``what`` folder; a missing or broken file is a ModelError."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ModelError(
            f"a {what} file is missing",
            path=path,
            fix=f"the {what} folder is incomplete; copy it again or retrain",
        ) from exc
    except json.JSONDecodeError as exc:
        raise ModelError(f"not valid JSON: {exc.msg}", path=path, line=exc.lineno) from exc


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (Path, datetime, date)):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")
