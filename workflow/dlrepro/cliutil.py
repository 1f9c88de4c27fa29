"""Small helpers shared by the package's commands: reading ``--params`` JSON the same way
everywhere (one-line errors naming the flag and the key; finite numbers only)."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, TypeVar
from dlrepro.errors import ParamsError

T = TypeVar("T")


def _check_finite(obj: Any, where: str) -> None:
    if isinstance(obj, float) and not math.isfinite(obj):
        raise ParamsError(f"{where}: {obj} is not a finite number")
    if isinstance(obj, dict):
        for k, v in obj.items():
            _check_finite(v, f"{where}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            _check_finite(v, f"{where}[{i}]")


def load_json(text: str, where: str = "--params") -> Any:
    """``text`` parsed as JSON; a ``ValueError`` naming ``where`` (and the key path of a
    NaN or infinite number, which JSON from the workflow never holds) otherwise."""
    try:
        data = json.loads(text)  # NaN / Infinity parse, and are rejected with their key below
    except json.JSONDecodeError as exc:
        raise ParamsError(f"{where} is not valid JSON: {exc}") from None
    _check_finite(data, where)
    return data


def parse_params(text: str | dict | None, cls: type[T], where: str = "--params", **overrides: Any) -> T:
    """Build dataclass ``cls`` from a JSON object, rejecting unknown keys by name."""
    if text is None:
        data: Any = {}
    elif isinstance(text, str):
        data = load_json(text, where)
    else:
        data = dict(text)
        _check_finite(data, where)
    if not isinstance(data, dict):
        raise ParamsError(f"{where}: expected a JSON object, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ParamsError(f"{where}: unknown key {unknown[0]!r} for {cls.__name__}; known: {sorted(known)}")
    return cls(**{**data, **overrides})
