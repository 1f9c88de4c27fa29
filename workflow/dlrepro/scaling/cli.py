"""``python -m dlrepro scaling ...`` and the standalone ``scaling-fit`` command.

Subcommands
-----------
``fit``         one law ``L = E + A x^-alpha`` from any CSV (same as ``scaling-fit``)::

    scaling fit --csv FILE --x COLUMN --y COLUMN [--group COLUMN] [--seed-column COLUMN]
                --out FIT.json [--out-csv FITS.csv] [--out-predictions PRED.csv]
                [--n-resamples 1000] [--seed 0] [--ci-level 0.95] [--n-starts N]
                [--bootstrap-starts 1]

``fit2``        the two-variable law ``L = E + A/N^alpha + B/D^beta``::

    scaling fit2 --csv FILE --n COLUMN --d COLUMN --y COLUMN [same options as fit]

``fit-sweeps``  the workflow's entry: several sweeps from a JSON spec (the config subtree)::

    scaling fit-sweeps --spec JSON --out-csv fits.csv --out-json fits.json
                       --out-predictions predictions.csv

``plot``        log-log figures of data, fitted law and CI band from the outputs::

    scaling plot --fits fits.json --predictions predictions.csv --out FIGPATH

The spec of ``fit-sweeps`` (keys checked; unknown keys are an error)::

    {"n_resamples": 1000, "seed": 0, "ci_level": 0.95, "huber_delta": 1e-3,
     "exponent_max": 5.0, "n_starts": null, "bootstrap_starts": 1,
     "regime_tolerance": 0.1, "grid_points": 64, "extend": 2.0,
     "sweeps": [{"name": "width-mlp", "csv": "results/width/sweep.csv",
                 "x": "n_params", "y": "test_loss", "group": "parametrization",
                 "seed_column": "seed", "filter": {"model": "mlp"},
                 "prepare": "width_sweep"},
                {"name": "chinchilla", "kind": "joint", "csv": "...",
                 "n": "n_params", "d": "n_tokens", "y": "loss"}]}

``prepare: "width_sweep"`` passes the table through
:func:`dlrepro.scaling.fit.width_sweep_points` (final loss per run, diverged runs
dropped) before fitting.  ``filter`` maps a column to a value or a list of values.

Outputs: ``fits.json`` ``{"options": {...}, "fits": [{sweep, group_column, group,
...FitResult.to_dict()}]}``; ``fits.csv`` and ``predictions.csv`` with the columns
``FIT_COLUMNS`` / ``PREDICTION_COLUMNS`` documented in :mod:`dlrepro.scaling.fit`.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import pandas as pd

from dlrepro.io import write_csv, write_json
from dlrepro.log import get_logger
from dlrepro.scaling.fit import (
    FIT_COLUMNS,
    PREDICTION_COLUMNS,
    FitOptions,
    fit_law,
    prediction_frame,
    width_sweep_points,
)

PREPARERS = {"width_sweep": width_sweep_points}


def _from_dict(cls, d: dict[str, Any], what: str):
    """Build dataclass ``cls`` from ``d``, rejecting keys it does not have."""
    if not isinstance(d, dict):
        raise ValueError(f"{what}: expected a JSON object, got {type(d).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"{what}: unknown key(s) {unknown}; known: {sorted(known)}")
    required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
    absent = [k for k in required if k not in d]
    if absent:
        raise ValueError(f"{what}: missing key(s) {absent}")
    return cls(**d)


@dataclass
class SweepSpec:
    """One table to fit: ``x`` (single) or ``n`` and ``d`` (joint) against ``y``, per ``group``."""

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
    prepare: str | None = None

    def __post_init__(self) -> None:
        if self.kind == "single":
            if not self.x or self.n or self.d:
                raise ValueError(f"sweep {self.name!r}: a single law needs 'x' (and no 'n'/'d')")
        elif self.kind == "joint":
            if not (self.n and self.d) or self.x:
                raise ValueError(f"sweep {self.name!r}: a joint law needs 'n' and 'd' (and no 'x')")
        else:
            raise ValueError(f"sweep {self.name!r}: kind must be 'single' or 'joint', got {self.kind!r}")
        if self.prepare is not None and self.prepare not in PREPARERS:
            raise ValueError(f"sweep {self.name!r}: unknown prepare {self.prepare!r}; known: {sorted(PREPARERS)}")
        if not isinstance(self.filter, dict):
            raise ValueError(f"sweep {self.name!r}: filter must be an object column -> value, got {self.filter!r}")

    @property
    def x_columns(self) -> list[str]:
        return [self.x] if self.kind == "single" else [self.n, self.d]


@dataclass
class ScalingParams:
    """The ``scaling`` config subtree: fit options, output grid and the sweeps."""

    sweeps: list[SweepSpec]
    n_resamples: int = 1000
    seed: int = 0
    ci_level: float = 0.95
    huber_delta: float = 1e-3
    exponent_max: float = 5.0
    n_starts: int | None = None
    bootstrap_starts: int = 1
    regime_tolerance: float = 0.1
    grid_points: int = 64
    extend: float = 2.0

    @classmethod
    def from_json(cls, text: str) -> "ScalingParams":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"--spec is not valid JSON: {err}") from None
        if not isinstance(d, dict) or "sweeps" not in d:
            raise ValueError("scaling spec: expected a JSON object with a 'sweeps' list")
        params = _from_dict(cls, d, "scaling spec")
        params.sweeps = [_from_dict(SweepSpec, s, f"sweep #{i}") for i, s in enumerate(params.sweeps)]
        names = [s.name for s in params.sweeps]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"scaling spec: need one or more sweeps with distinct names; got {names}")
        return params

    def options(self) -> FitOptions:
        keys = {f.name for f in fields(FitOptions)}
        return FitOptions(**{k: v for k, v in asdict(self).items() if k in keys})


def load_sweep_table(sweep: SweepSpec) -> pd.DataFrame:
    """Read, filter and prepare the table of one sweep; check its columns.

    The filter applies to the raw table (before ``prepare``, which keeps only the columns
    it needs), so it may select on any column of the CSV."""
    table = pd.read_csv(sweep.csv)
    missing = [c for c in sweep.filter if c not in table.columns]
    if missing:
        raise ValueError(f"sweep {sweep.name!r}: {sweep.csv} lacks filter column(s) {missing}; "
                         f"has {list(table.columns)}")
    for column, value in sweep.filter.items():
        values = value if isinstance(value, list) else [value]
        table = table[table[column].isin(values)]
    if table.empty:
        raise ValueError(f"sweep {sweep.name!r}: no rows left after filter {sweep.filter}")
    if sweep.prepare:
        table = PREPARERS[sweep.prepare](table, y=sweep.y)
    needed = sweep.x_columns + [sweep.y] + [c for c in (sweep.group, sweep.seed_column) if c]
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise ValueError(f"sweep {sweep.name!r}: {sweep.csv} lacks column(s) {missing}; has {list(table.columns)}")
    return table


def run_sweeps(params: ScalingParams) -> tuple[pd.DataFrame, dict, pd.DataFrame]:
    """Fit every (sweep, group); return (fits table, fits.json content, predictions table)."""
    options = params.options()
    rows, records, predictions = [], [], []
    for sweep in params.sweeps:
        table = load_sweep_table(sweep)
        groups = table.groupby(sweep.group, sort=True) if sweep.group else [("", table)]
        for group, part in groups:
            group = group[0] if isinstance(group, tuple) else group
            label = {"sweep": sweep.name, "group_column": sweep.group or "", "group": group}
            try:
                result = fit_law(
                    part[sweep.x_columns].to_numpy(dtype=float),
                    part[sweep.y].to_numpy(dtype=float),
                    x_names=sweep.x_columns,
                    y_name=sweep.y,
                    seeds=part[sweep.seed_column].to_numpy() if sweep.seed_column else None,
                    options=options,
                    log_context={"sweep": sweep.name, **({"group": group} if sweep.group else {})},
                )
            except ValueError as err:
                where = f"sweep {sweep.name!r}" + (f", {sweep.group}={group!r}" if sweep.group else "")
                raise ValueError(f"{where}: {err}") from None
            rows.append({**label, **result.to_row()})
            records.append({**label, **result.to_dict()})
            pred = prediction_frame(result, n_grid=params.grid_points, extend=params.extend)
            predictions.append(pred.assign(**label))
    fits = pd.DataFrame(rows)[FIT_COLUMNS]
    preds = pd.concat(predictions, ignore_index=True)[PREDICTION_COLUMNS]
    spec = asdict(params)
    return fits, {"options": {k: v for k, v in spec.items() if k != "sweeps"}, "sweeps": spec["sweeps"],
                  "fits": records}, preds  # fmt: skip


def _write_outputs(params: ScalingParams, out_json, out_csv=None, out_predictions=None) -> None:
    fits, record, preds = run_sweeps(params)
    write_json(out_json, record)
    if out_csv:
        write_csv(out_csv, fits)
    if out_predictions:
        write_csv(out_predictions, preds)
    get_logger("scaling").info(f"wrote {len(fits)} fit(s) to {out_json}")


# ----------------------------------------------------------------------------------
# argument parsing


def _add_fit_options(p: argparse.ArgumentParser) -> None:
    d = FitOptions()
    p.add_argument("--csv", required=True, help="input table")
    p.add_argument("--y", required=True, help="loss column")
    p.add_argument("--group", default=None, help="fit one law per value of this column")
    p.add_argument("--seed-column", default=None, help="bootstrap resamples seeds (clusters) of this column")
    p.add_argument("--out", required=True, help="FIT.json")
    p.add_argument("--out-csv", default=None, help="optional fits table (CSV)")
    p.add_argument("--out-predictions", default=None, help="optional predictions table (CSV)")
    p.add_argument("--n-resamples", type=int, default=d.n_resamples)
    p.add_argument("--seed", type=int, default=d.seed, help="bootstrap RNG seed")
    p.add_argument("--ci-level", type=float, default=d.ci_level)
    p.add_argument("--n-starts", type=int, default=d.n_starts, help="grid starts optimised (default: all)")
    p.add_argument("--bootstrap-starts", type=int, default=d.bootstrap_starts)


def _params_from_args(args: argparse.Namespace, kind: str) -> ScalingParams:
    columns = {"x": args.x} if kind == "single" else {"n": args.n, "d": args.d}
    sweep = SweepSpec(name=Path(args.csv).stem, csv=args.csv, y=args.y, kind=kind, group=args.group,
                      seed_column=args.seed_column, **columns)  # fmt: skip
    return ScalingParams(sweeps=[sweep], n_resamples=args.n_resamples, seed=args.seed, ci_level=args.ci_level,
                         n_starts=args.n_starts, bootstrap_starts=args.bootstrap_starts)  # fmt: skip


def _fit_parser(prog: str | None = None, parser: argparse.ArgumentParser | None = None):
    p = parser or argparse.ArgumentParser(prog=prog, description="Fit L = E + A*x^-alpha to a CSV.")
    _add_fit_options(p)
    p.add_argument("--x", required=True, help="scale column (model size, data size, width...)")
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dlrepro scaling", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _fit_parser(parser=sub.add_parser("fit", help="fit L = E + A*x^-alpha to one CSV"))
    p = sub.add_parser("fit2", help="fit L = E + A/N^alpha + B/D^beta to one CSV")
    _add_fit_options(p)
    p.add_argument("--n", required=True, help="model-size column")
    p.add_argument("--d", required=True, help="data-size column")
    p = sub.add_parser("fit-sweeps", help="fit the sweeps of a JSON spec (workflow entry)")
    p.add_argument("--spec", required=True, help="JSON string (the config's scaling subtree)")
    p.add_argument("--out-csv", required=True)
    p.add_argument("--out-json", required=True)
    p.add_argument("--out-predictions", required=True)
    p = sub.add_parser("plot", help="log-log figure of data, fits and CI bands")
    p.add_argument("--fits", required=True, help="fits.json")
    p.add_argument("--predictions", required=True, help="predictions.csv")
    p.add_argument("--out", required=True, help="figure path (PNG and PDF are written)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in ("fit", "fit2"):
        params = _params_from_args(args, "single" if args.command == "fit" else "joint")
        _write_outputs(params, args.out, args.out_csv, args.out_predictions)
    elif args.command == "fit-sweeps":
        _write_outputs(ScalingParams.from_json(args.spec), args.out_json, args.out_csv, args.out_predictions)
    elif args.command == "plot":
        from dlrepro.scaling.plots import plot_fits

        plot_fits(args.fits, args.predictions, args.out)
    return 0


def scaling_fit_main(argv: list[str] | None = None) -> int:
    """The ``scaling-fit`` console script: ``scaling fit`` as a command of its own."""
    args = _fit_parser(prog="scaling-fit").parse_args(sys.argv[1:] if argv is None else argv)
    _write_outputs(_params_from_args(args, "single"), args.out, args.out_csv, args.out_predictions)
    return 0


if __name__ == "__main__":
    sys.exit(main())
