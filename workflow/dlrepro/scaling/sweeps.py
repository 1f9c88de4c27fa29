"""Sweeps: which table to fit, how its rows are selected and grouped, and the fits of them.

A sweep is one CSV, the column(s) of the law, an optional row selection (``filter``: a
column -> value(s) map; ``where``: a pandas query) and an optional grouping column (one law
per group). :func:`run_sweeps` fits every (sweep, group) and returns the tables the CLI
writes. Input problems raise :class:`InputError` with one line naming the file, column,
row and value and what is valid.
"""

from __future__ import annotations

import io

import json
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dlrepro.errors import UserError
from dlrepro.io import sha256_bytes, sha256_file
from dlrepro.log import get_logger
from dlrepro.scaling.bootstrap import is_fittable
from dlrepro.scaling.result import plain_value
from dlrepro.scaling.fit import (
    FIT_COLUMNS,
    NAMINGS,
    PARAM_NAMES,
    PREDICTION_COLUMNS,
    FitOptions,
    fit_law,
    prediction_frame,
    width_sweep_points,
)

PREPARERS = {"width_sweep": width_sweep_points}


class InputError(UserError):
    """A user's input cannot be fitted; the message is one line for the terminal."""


def _from_dict(cls, d: dict[str, Any], what: str):
    """Build dataclass ``cls`` from ``d``, rejecting keys it does not have."""
    if not isinstance(d, dict):
        raise InputError(f"{what}: expected a JSON object, got {type(d).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise InputError(f"{what}: unknown key(s) {unknown}; known: {sorted(known)}")
    required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
    absent = [k for k in required if k not in d]
    if absent:
        raise InputError(f"{what}: missing key(s) {absent}")
    return cls(**d)


@dataclass
class SweepSpec:
    """One table to fit: ``x`` (single) or ``n`` and ``d`` (joint) against ``y``, per ``group``.

    ``filter`` keeps rows whose column equals the value (or one of a list of values);
    ``where`` is a pandas query (``DataFrame.query``) on the raw table; both apply before
    ``prepare``. ``param_names`` names the law's parameters (``fit.NAMINGS``)."""

    name: str
    csv: str
    y: str
    kind: str = "single"
    x: str | None = None
    n: str | None = None
    d: str | None = None
    group: str | None = None
    seed_column: str | None = None
    filter: dict[str, Any] = field(default_factory=dict)
    where: str | None = None
    prepare: str | None = None
    param_names: str = "A"

    def __post_init__(self) -> None:
        if self.kind == "single":
            if not self.x or self.n or self.d:
                raise InputError(f"sweep {self.name!r}: a single law needs 'x' (and no 'n'/'d')")
        elif self.kind == "joint":
            if not (self.n and self.d) or self.x:
                raise InputError(f"sweep {self.name!r}: a joint law needs 'n' and 'd' (and no 'x')")
        else:
            raise InputError(f"sweep {self.name!r}: kind must be 'single' or 'joint', got {self.kind!r}")
        if self.prepare is not None and self.prepare not in PREPARERS:
            raise InputError(f"sweep {self.name!r}: unknown prepare {self.prepare!r}; known: {sorted(PREPARERS)}")
        if not isinstance(self.filter, dict):
            raise InputError(f"sweep {self.name!r}: filter must be an object column -> value, got {self.filter!r}")
        if self.param_names not in NAMINGS or (self.param_names == "B" and self.kind == "joint"):
            valid = list(NAMINGS) if self.kind == "single" else ["A", "columns"]
            raise InputError(f"sweep {self.name!r}: param_names {self.param_names!r} is not one of {valid}")

    @property
    def x_columns(self) -> list[str]:
        return [self.x] if self.kind == "single" else [self.n, self.d]


@dataclass
class ScalingParams:
    """The ``scaling`` config subtree: fit options, output grid and the sweeps.

    ``skip_small_groups``: a group too small to fit (fewer than 3 distinct values of a
    variable, or fewer distinct points than parameters) is skipped with a warning
    instead of stopping the run."""

    sweeps: list[SweepSpec]
    n_resamples: int = 1000
    seed: int = 0
    ci_level: float = 0.95
    huber_delta: float = 1e-3
    exponent_min: float = 0.0
    exponent_max: float = 5.0
    grid: list | None = None
    n_starts: int | None = None
    bootstrap_starts: int = 1
    regime_tolerance: float = 0.1
    identification_span: float = 3.0
    solver: str = "batched"
    loss: str = "huber_log"
    tied_exponents: bool = False
    grid_points: int = 64
    extend: float = 2.0
    skip_small_groups: bool = False

    @classmethod
    def from_json(cls, text: str) -> "ScalingParams":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as err:
            raise InputError(f"--spec is not valid JSON: {err}") from None
        if not isinstance(d, dict) or "sweeps" not in d:
            raise InputError("scaling spec: expected a JSON object with a 'sweeps' list")
        params = _from_dict(cls, d, "scaling spec")
        params.sweeps = [_from_dict(SweepSpec, s, f"sweep #{i}") for i, s in enumerate(params.sweeps)]
        names = [s.name for s in params.sweeps]
        if not names or len(set(names)) != len(names):
            raise InputError(f"scaling spec: need one or more sweeps with distinct names; got {names}")
        params.options()  # checks the fit options
        return params

    def options(self) -> FitOptions:
        if not (isinstance(self.grid_points, int) and self.grid_points >= 2):
            raise InputError(f"scaling spec: grid_points: invalid value {self.grid_points!r}; valid: an integer >= 2")
        if not (isinstance(self.extend, (int, float)) and self.extend >= 1):
            raise InputError(f"scaling spec: extend: invalid value {self.extend!r}; valid: a number >= 1")
        if not isinstance(self.skip_small_groups, bool):
            raise InputError(f"scaling spec: skip_small_groups: invalid value {self.skip_small_groups!r}; "
                             "valid: true or false")  # fmt: skip
        keys = {f.name for f in fields(FitOptions)}
        values = {k: v for k, v in asdict(self).items() if k in keys}
        if values.get("grid") is not None:
            values["grid"] = tuple(tuple(axis) for axis in values["grid"])
        try:
            return FitOptions(**values)
        except ValueError as err:
            raise InputError(f"scaling spec: {err}".replace("FitOptions.", "")) from None


def _line(table: pd.DataFrame, i) -> str:
    """Where row ``i`` (index label of the raw table) is in its file."""
    return f"line {int(i) + 2}"  # header on line 1


_DIGESTS: dict[str, str] = {}  # path -> sha256 of the bytes read_table parsed


def read_table(path: str) -> pd.DataFrame:
    """The CSV at ``path``; a missing, empty or malformed file is an :class:`InputError`.

    The bytes are read once, hashed (for the JSON's input record) and parsed, so a pipe
    (``<(...)``, a FIFO) works as well as a file."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{path}: no such file")
    if p.is_dir():
        raise InputError(f"{path}: is a folder; expected a CSV file")
    data = p.read_bytes()
    _DIGESTS[str(path)] = sha256_bytes(data)
    try:
        return pd.read_csv(io.BytesIO(data))
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: the file is empty; expected a CSV with a header line") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: not a readable CSV: {str(err).splitlines()[0]}") from None


def _numeric(table: pd.DataFrame, column: str, csv: str) -> np.ndarray:
    """Column as floats; text in it is an error naming the line and the value."""
    raw = table[column]
    values = pd.to_numeric(raw, errors="coerce")
    bad = values.isna() & raw.notna()
    if bad.any():
        i = bad.idxmax()
        raise InputError(f"{csv}: column {column!r} must be numeric; {_line(table, i)} has {raw[i]!r}")
    missing = values.isna()
    if missing.any():
        i = missing.idxmax()
        raise InputError(f"{csv}: column {column!r} is empty on {_line(table, i)}; valid: a number > 0")
    return values.to_numpy(dtype=float)


def load_sweep_table(sweep: SweepSpec) -> pd.DataFrame:
    """Read, select and prepare the table of one sweep; check its columns.

    The filter and the query apply to the raw table (before ``prepare``, which keeps only
    the columns it needs), so they may select on any column of the CSV. The index keeps
    the raw row numbers (for messages)."""
    table = read_table(sweep.csv)
    selectors = list(sweep.filter) + [c for c in (sweep.group,) if c and not sweep.prepare]
    missing = [c for c in selectors if c not in table.columns]
    if missing:
        raise InputError(f"sweep {sweep.name!r}: {sweep.csv} has no column(s) {missing}; "
                         f"columns: {list(table.columns)}")  # fmt: skip
    for column, value in sweep.filter.items():
        values = value if isinstance(value, list) else [value]
        table = table[table[column].isin(values)]
    if sweep.where:
        try:
            table = table.query(sweep.where, engine="python")
        except Exception as err:  # pandas raises many kinds for a bad expression
            msg = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise InputError(f"--where {sweep.where!r} on {sweep.csv}: not a valid query ({msg}); "
                             f"columns: {list(table.columns)}") from None  # fmt: skip
        if not isinstance(table, pd.DataFrame) or len(table.index) != len(table):
            raise InputError(f"--where {sweep.where!r}: must be a condition selecting rows")
    if table.empty:
        what = " and ".join(x for x in (f"filter {sweep.filter}" if sweep.filter else "",
                                        f"--where {sweep.where!r}" if sweep.where else "") if x)  # fmt: skip
        raise InputError(f"sweep {sweep.name!r}: no rows of {sweep.csv} left after {what or 'reading'}")
    if sweep.prepare:
        try:
            table = PREPARERS[sweep.prepare](table, y=sweep.y)
        except ValueError as err:
            raise InputError(f"sweep {sweep.name!r} ({sweep.csv}, prepare {sweep.prepare!r}): {err}") from None
    needed = sweep.x_columns + [sweep.y] + [c for c in (sweep.group, sweep.seed_column) if c]
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise InputError(f"sweep {sweep.name!r}: {sweep.csv} has no column(s) {missing}; "
                         f"columns: {list(table.columns)}")  # fmt: skip
    for column in sweep.x_columns + [sweep.y]:
        table[column] = _numeric(table, column, sweep.csv)
    return table


def input_record(sweep: SweepSpec, table: pd.DataFrame) -> dict:
    """How fits.json names its input: the path, its sha256 and the rows selected."""
    digest = _DIGESTS.get(str(sweep.csv)) or sha256_file(sweep.csv)
    return {"path": sweep.csv, "sha256": digest, "n_rows_selected": int(len(table))}


def groups_of(sweep: SweepSpec, table: pd.DataFrame):
    """(group value, rows) of a sweep, sorted; one ("", table) without a group column."""
    if not sweep.group:
        return [("", table)]
    return [(g[0] if isinstance(g, tuple) else g, part) for g, part in table.groupby(sweep.group, sort=True)]


def run_sweeps(params: ScalingParams):
    """Fit every (sweep, group).

    Returns ``(fits table, fits.json content, predictions table, draws table, results)``;
    ``results`` are the :class:`FitResult` objects with their labels (for printing)."""
    options = params.options()
    log = get_logger("scaling")
    rows, records, predictions, draws, results, skipped = [], [], [], [], [], []
    spec = asdict(params)
    for sweep, sweep_record in zip(params.sweeps, spec["sweeps"]):
        table = load_sweep_table(sweep)
        sweep_record["input"] = input_record(sweep, table)
        for group, part in groups_of(sweep, table):
            group = plain_value(group)
            label = {"sweep": sweep.name, "group_column": sweep.group or "", "group": group}
            where = f"sweep {sweep.name!r}" + (f", {sweep.group}={group!r}" if sweep.group else "")
            X = part[sweep.x_columns].to_numpy(dtype=float)
            n_params = 1 + 2 * X.shape[1] - int(options.tied_exponents and X.shape[1] == 2)
            if params.skip_small_groups and not is_fittable(X, n_params):
                counts = {c: int(part[c].nunique()) for c in sweep.x_columns}
                reason = (f"{len(part)} rows, distinct values {counts}, {len(np.unique(X, axis=0))} distinct points "
                          f"(a law needs >= 3 distinct values of each variable and >= {n_params} points)")  # fmt: skip
                log.warning(f"{where}: skipped: {reason}")
                skipped.append({**label, "reason": reason})
                continue
            try:
                result = fit_law(
                    X,
                    part[sweep.y].to_numpy(dtype=float),
                    x_names=sweep.x_columns,
                    y_name=sweep.y,
                    seeds=part[sweep.seed_column].to_numpy() if sweep.seed_column else None,
                    options=options,
                    log_context={"sweep": sweep.name, **({"group": group} if sweep.group else {})},
                    param_names=sweep.param_names,
                    rows=[_line(table, i) for i in part.index] if not sweep.prepare else None,
                )
            except ValueError as err:
                hint = " (--skip-small-groups skips such groups)" if "distinct" in str(err) and sweep.group else ""
                raise InputError(f"{where} ({sweep.csv}): {err}{hint}") from None
            results.append((label, result))
            rows.append({**label, **result.to_row()})
            records.append({**label, **result.to_dict()})
            pred = prediction_frame(result, n_grid=params.grid_points, extend=params.extend)
            predictions.append(pred.assign(**label))
            names = [result.display(n) for n in PARAM_NAMES[len(result.x_names)]]
            d = pd.DataFrame(result.draws, columns=names)
            d.insert(0, "draw", np.arange(len(d)))
            for key, value in reversed(label.items()):
                d.insert(0, key, value)
            draws.append(d)
    if not rows:
        raise InputError(f"no group could be fitted ({len(skipped)} skipped as too small)")
    fits = pd.DataFrame(rows)[FIT_COLUMNS]
    preds = pd.concat(predictions, ignore_index=True)[PREDICTION_COLUMNS]
    draws_table = pd.concat(draws, ignore_index=True)
    record = {"options": {k: v for k, v in spec.items() if k != "sweeps"}, "sweeps": spec["sweeps"],
              "fits": records, "skipped": skipped}  # fmt: skip
    return fits, record, preds, draws_table, results

