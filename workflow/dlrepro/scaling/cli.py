"""The ``scaling`` command (also ``python -m dlrepro scaling``) and its alias ``scaling-fit``.

Subcommands
-----------
``fit``     one law ``L = E + A x^-alpha`` per group of any CSV (``scaling-fit`` is this
            command on its own)::

    scaling fit --csv FILE --x COLUMN --y COLUMN [--group COLUMN] [--seed-column COLUMN]
                [--where QUERY] [--skip-small-groups] [--param-names A|B|columns]
                [--out FIT.json] [--out-csv FITS.csv] [--out-predictions PRED.csv]
                [--save-draws DRAWS.csv] [fitting options]

``fit2``    the two-variable law ``L = E + A/N^alpha + B/D^beta``::

    scaling fit2 --csv FILE --n COLUMN --d COLUMN --y COLUMN [--tied-exponents] [same options as fit]

``sweeps``  (alias ``fit-sweeps``, the workflow's entry) several sweeps from a JSON spec::

    scaling sweeps --spec JSON --out-csv fits.csv --out-json fits.json
                   --out-predictions predictions.csv [--save-draws draws.csv]
                   [--out-seed-fits seed_fits.csv]

``plot``    log-log figures of data, fitted law and CI band from the outputs::

    scaling plot --fits fits.json --predictions predictions.csv --out FIGPATH

Fitting options (every one with its default in ``--help``): ``--loss``, ``--huber-delta``,
``--exponent-min``/``--exponent-max``, ``--grid-e``/``--grid-a``/``--grid-alpha`` (the
starting grid), ``--n-starts``, ``--bootstrap-starts``, ``--n-resamples``, ``--seed``,
``--ci-level``, ``--regime-tolerance``, ``--identification-span``, ``--solver``,
``--grid-points``, ``--extend``; ``fit2`` also ``--tied-exponents``.

The spec of ``sweeps`` has the keys of :class:`dlrepro.scaling.sweeps.ScalingParams` (fit
options and ``skip_small_groups``) and a ``sweeps`` list of
:class:`dlrepro.scaling.sweeps.SweepSpec` (``name, csv, y, kind, x | n, d, group,
seed_column, filter, where, prepare, param_names``); unknown keys are an error.

Outputs: ``fits.json`` ``{"options", "sweeps" (each with "input": path, sha256, rows
selected), "fits": [{sweep, group_column, group, ...FitResult.to_dict()}], "skipped"}``;
``fits.csv`` and ``predictions.csv`` with the columns ``FIT_COLUMNS`` /
``PREDICTION_COLUMNS`` documented in :mod:`dlrepro.scaling.fit`; ``--save-draws``: one row
per (fit, bootstrap resample): ``sweep, group_column, group, draw`` and the parameters
under their display names. Every table goes to disk only after all fits succeeded.

Input errors (missing file or column, text in a numeric column, an option out of range,
a bad query, a group too small to fit) end in one line on stderr naming the file, column,
line and value, and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from dlrepro.errors import UserError
from dlrepro.io import write_csv, write_json
from dlrepro.log import get_logger
from dlrepro.scaling.fit import NAMINGS, PARAM_NAMES, FitOptions
from dlrepro.scaling.sweeps import InputError, ScalingParams, SweepSpec, run_sweeps


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line (and exit status 2)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults shown, except for required options and those without one (None)."""

    def _get_help_string(self, action):
        if action.required or action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def _formatter(prog):
    return _Help(prog, max_help_position=32, width=100)


def _positive_float(text: str) -> float:
    v = _float(text)
    if not v > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not > 0")
    return v


def _float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not np.isfinite(v):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return v


def _unit_interval(text: str) -> float:
    v = _float(text)
    if not 0 < v < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not in the open interval (0, 1) (e.g. 0.95 for 95%)")
    return v


def _count(minimum: int):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if v < minimum:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer >= {minimum}")
        return v

    return parse


def _axis(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers") from None
    if not values or not all(np.isfinite(values)):
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of finite numbers")
    return values


def _add_fit_options(p: argparse.ArgumentParser, kind: str) -> None:
    d = FitOptions()
    io = p.add_argument_group("input and output")
    io.add_argument("--csv", required=True, help="input table (CSV with a header line)")
    io.add_argument("--y", required=True, help="loss column")
    io.add_argument("--group", default=None, help="fit one law per value of this column")
    io.add_argument("--seed-column", default=None,
                    help="the bootstrap resamples the seeds (clusters) of this column instead of rows")
    io.add_argument("--where", default=None,
                    help="pandas query selecting the rows to fit, e.g. \"loss < 4 and N > 1e7\"")
    io.add_argument("--skip-small-groups", action="store_true",
                    help="skip (with a warning) a group with < 3 distinct values of a variable or too few "
                         "points, instead of stopping")  # fmt: skip
    names = list(NAMINGS) if kind == "single" else ["A", "columns"]
    io.add_argument("--param-names", choices=names, default="A",
                    help="names of the parameters: A (E, A, alpha[, B, beta]), B (E, B, beta: a law in data "
                         "size), columns (E, A_<x>, alpha_<x>, ...)")  # fmt: skip
    io.add_argument("--out", default=None, help="fits JSON (estimates, CIs, SEs, covariance, diagnostics)")
    io.add_argument("--out-csv", default=None, help="fits table (CSV, one row per law)")
    io.add_argument("--out-predictions", default=None, help="predictions with CI band (CSV)")
    io.add_argument("--save-draws", default=None, metavar="FILE",
                    help="bootstrap estimates, one row per resample (CSV)")
    f = p.add_argument_group("fitting")
    f.add_argument("--loss", choices=["huber_log", "least_squares"], default=d.loss,
                   help="objective: huber_log = Huber loss of log residuals (Hoffmann et al.); least_squares = "
                        "sum of squared residuals in loss units (scipy.optimize.curve_fit, e.g. Gadre et al. 2024)")
    f.add_argument("--huber-delta", type=_positive_float, default=d.huber_delta,
                   help="Huber threshold on log residuals (Hoffmann et al.: 1e-3; unused by least_squares)")
    if kind == "joint":
        f.add_argument("--tied-exponents", action="store_true",
                       help="one exponent for N and D: L = E + A/N^alpha + B/D^alpha (the law of Gadre et "
                            "al. 2024, with alpha = 2 eta)")  # fmt: skip
    f.add_argument("--exponent-min", type=_float, default=d.exponent_min, help="lower bound of every exponent")
    f.add_argument("--exponent-max", type=_positive_float, default=d.exponent_max,
                   help="upper bound of every exponent")
    f.add_argument("--grid-e", type=_axis, default=None,
                   help="starting values of e = log(E / y_ref) (y_ref: geometric mean of y), comma-separated "
                        "(default: built-in grid)")  # fmt: skip
    f.add_argument("--grid-a", type=_axis, default=None,
                   help="starting values of a = log(A x_ref^-alpha / y_ref) (x_ref: geometric mean of x)")
    f.add_argument("--grid-alpha", type=_axis, default=None, help="starting values of every exponent")
    f.add_argument("--n-starts", type=_count(1), default=d.n_starts,
                   help="optimise only the best N grid points by initial objective (default: all)")
    f.add_argument("--solver", choices=["batched", "lbfgs"], default=d.solver,
                   help="batched projected Newton over all starts/resamples, or one L-BFGS-B run each")
    b = p.add_argument_group("bootstrap and diagnostics")
    b.add_argument("--n-resamples", type=_count(0), default=d.n_resamples, help="bootstrap resamples (0: no CIs)")
    b.add_argument("--seed", type=_count(0), default=d.seed, help="bootstrap RNG seed")
    b.add_argument("--ci-level", type=_unit_interval, default=d.ci_level,
                   help="confidence level of the percentile intervals, in (0, 1)")
    b.add_argument("--bootstrap-starts", type=_count(0), default=d.bootstrap_starts,
                   help="grid points refitted per resample besides the warm start from the full-data fit")
    b.add_argument("--regime-tolerance", type=_float, default=d.regime_tolerance,
                   help="exponents within this distance of 1 count as variance-limited")
    b.add_argument("--identification-span", type=_float, default=d.identification_span,
                   help="warn that an exponent is not identified when its CI spans more than this factor")
    b.add_argument("--grid-points", type=_count(2), default=64, help="points of each prediction curve")
    b.add_argument("--extend", type=_float, default=2.0, help="predictions run from min x / EXTEND to max x * EXTEND")


def _params_from_args(args: argparse.Namespace, kind: str) -> ScalingParams:
    columns = {"x": args.x} if kind == "single" else {"n": args.n, "d": args.d}
    sweep = SweepSpec(name=Path(args.csv).stem, csv=args.csv, y=args.y, kind=kind, group=args.group,
                      seed_column=args.seed_column, where=args.where, param_names=args.param_names,
                      **columns)  # fmt: skip
    axes = (args.grid_e, args.grid_a, args.grid_alpha)
    grid = None
    if any(a is not None for a in axes):
        missing = [n for n, a in zip(("--grid-e", "--grid-a", "--grid-alpha"), axes) if a is None]
        if missing:
            raise InputError(f"a starting grid needs all of --grid-e, --grid-a, --grid-alpha; missing {missing}")
        grid = [list(a) for a in axes]
    params = ScalingParams(
        sweeps=[sweep], n_resamples=args.n_resamples, seed=args.seed, ci_level=args.ci_level,
        huber_delta=args.huber_delta, exponent_min=args.exponent_min, exponent_max=args.exponent_max,
        grid=grid, n_starts=args.n_starts, bootstrap_starts=args.bootstrap_starts,
        regime_tolerance=args.regime_tolerance, identification_span=args.identification_span,
        solver=args.solver, grid_points=args.grid_points, extend=args.extend,
        skip_small_groups=args.skip_small_groups, loss=args.loss,
        tied_exponents=getattr(args, "tied_exponents", False),
    )  # fmt: skip
    flags = {"exponent_max": "--exponent-max", "exponent_min": "--exponent-min", "regime_tolerance":
             "--regime-tolerance", "identification_span": "--identification-span"}  # fmt: skip
    try:
        params.options()
    except InputError as err:
        msg = str(err).replace("scaling spec: ", "")
        for key, flag in flags.items():
            msg = msg.replace(f"{key}:", f"{flag}:", 1) if msg.startswith(key) else msg
        raise InputError(msg) from None
    return params


def _fit_parser(prog: str | None = None, parser: argparse.ArgumentParser | None = None):
    p = parser or _Parser(prog=prog, description="Fit L = E + A*x^-alpha to a CSV.", formatter_class=_formatter)
    p.add_argument("--x", required=True, help="scale column (model size, data size, width...)")
    _add_fit_options(p, "single")
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="scaling", description="Scaling-law fits with bootstrap CIs (Hoffmann et al. approach 3, "
                     "as corrected by Besiroglu et al.).", formatter_class=_formatter)  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _fit_parser(parser=sub.add_parser("fit", help="fit L = E + A*x^-alpha to one CSV", formatter_class=_formatter,
                                      description="Fit L = E + A*x^-alpha (per group) to a CSV."))  # fmt: skip
    p = sub.add_parser("fit2", help="fit L = E + A/N^alpha + B/D^beta to one CSV", formatter_class=_formatter,
                       description="Fit L = E + A/N^alpha + B/D^beta (per group) to a CSV.")  # fmt: skip
    p.add_argument("--n", required=True, help="model-size column")
    p.add_argument("--d", required=True, help="data-size column")
    _add_fit_options(p, "joint")
    for name, aliases in (("sweeps", ["fit-sweeps"]),):
        p = sub.add_parser(name, aliases=aliases, help="fit the sweeps of a JSON spec (the workflow's entry)",
                           formatter_class=_formatter)  # fmt: skip
        p.add_argument("--spec", required=True, help="JSON string (the config's scaling subtree)")
        p.add_argument("--out-csv", required=True, help="fits table")
        p.add_argument("--out-json", required=True, help="fits JSON")
        p.add_argument("--out-predictions", required=True, help="predictions table")
        p.add_argument("--save-draws", default=None, metavar="FILE", help="bootstrap estimates (CSV)")
        p.add_argument("--out-seed-fits", default=None, metavar="FILE",
                       help="each seed's own fit of every one-variable sweep with a seed column (CSV; the claims' unit)")
    p = sub.add_parser("plot", help="log-log figure of data, fits and CI bands", formatter_class=_formatter)
    p.add_argument("--fits", required=True, help="fits.json")
    p.add_argument("--predictions", required=True, help="predictions.csv")
    p.add_argument("--out", required=True, help="figure path (PNG and PDF are written)")
    return parser


def _fmt(v: float) -> str:
    return "nan" if not np.isfinite(v) else f"{v:.4g}"


def summary(results) -> str:
    """The fits as text: one block per law with estimate, SE and CI per parameter."""
    lines = []
    for label, r in results:
        group = f" ({label['group_column']}={label['group']})" if label["group_column"] else ""
        boot = r.bootstrap
        lines.append(f"{label['sweep']}{group}: {r.formula()}  [{r.n_points} points, {boot['n_resamples']} "
                     f"resamples by {boot['unit']}]")  # fmt: skip
        level = f"{r.ci_level:.0%} CI"
        for name in PARAM_NAMES[len(r.x_names)]:
            lo, hi = r.ci[name]
            regime = f"  {r.regime[name]}" if name in r.regime else ""
            lines.append(f"  {r.display(name):<10} {_fmt(r.params[name]):>10}  SE {_fmt(r.se[name]):>9}  "
                         f"{level} [{_fmt(lo)}, {_fmt(hi)}]{regime}")  # fmt: skip
        lines.extend(f"  warning: {w}" for w in r.warnings)
    return "\n".join(lines)


def _write_outputs(params: ScalingParams, out_json=None, out_csv=None, out_predictions=None, draws=None,
                   echo: bool = False, out_seed_fits=None) -> None:  # fmt: skip
    fits, record, preds, draws_table, results = run_sweeps(params)
    if out_seed_fits:
        from dlrepro.scaling.per_seed import seed_fits_table

        write_csv(out_seed_fits, seed_fits_table(params))
    if echo:
        print(summary(results), flush=True)
    for path, write, obj in ((out_json, write_json, record), (out_csv, write_csv, fits),
                             (out_predictions, write_csv, preds), (draws, write_csv, draws_table)):  # fmt: skip
        if path:
            write(path, obj)
    get_logger("scaling").info(f"wrote {len(fits)} fit(s)" + (f" to {out_json}" if out_json else ""))


def _run(args: argparse.Namespace) -> int:
    if args.command in ("fit", "fit2"):
        params = _params_from_args(args, "single" if args.command == "fit" else "joint")
        _write_outputs(params, args.out, args.out_csv, args.out_predictions, args.save_draws, echo=True)
    elif args.command in ("sweeps", "fit-sweeps"):
        _write_outputs(ScalingParams.from_json(args.spec), args.out_json, args.out_csv, args.out_predictions,
                       args.save_draws, out_seed_fits=args.out_seed_fits)  # fmt: skip
    elif args.command == "plot":
        from dlrepro.scaling.plots import plot_fits

        plot_fits(args.fits, args.predictions, args.out)
    return 0


def _guarded(prog: str, args: argparse.Namespace) -> int:
    """Run; an input error (any :class:`dlrepro.errors.UserError`, :class:`InputError` among
    them) is one line on stderr and exit status 2; anything else keeps its traceback."""
    try:
        return _run(args)
    except UserError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    """``scaling ...`` (and ``python -m dlrepro scaling ...``)."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    return _guarded(f"scaling {args.command}", args)


def scaling_fit_main(argv: list[str] | None = None) -> int:
    """The ``scaling-fit`` console script: ``scaling fit`` as a command of its own."""
    args = _fit_parser(prog="scaling-fit").parse_args(sys.argv[1:] if argv is None else argv)
    args.command = "fit"
    return _guarded("scaling-fit", args)


if __name__ == "__main__":
    sys.exit(main())
