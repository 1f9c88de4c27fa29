"""Small helpers shared by the package's commands."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, TypeVar

T = TypeVar("T")


def parse_params(text: str | dict, cls: type[T], where: str = "--params", **overrides: Any) -> T:
    """Build dataclass ``cls`` from a JSON object, rejecting unknown keys by name."""
    data = json.loads(text) if isinstance(text, str) else dict(text)
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; known: {sorted(known)}")
    return cls(**{**data, **overrides})
