"""Fit saturating power laws ``L(x) = E + A * x**-alpha`` (and ``E + A/N**alpha + B/D**beta``).

The fitting practice follows Hoffmann et al. (2022, "Training Compute-Optimal Large
Language Models", approach 3) as corrected by Besiroglu et al. (2024, "Chinchilla
Scaling: A replication attempt"):

* the law is fitted in log space with the log-sum-exp parametrisation
  ``log L_hat = LSE(e, a_1 - alpha_1 log x_1, ..., a_k - alpha_k log x_k)``,
  ``E = exp(e)``, ``A_j = exp(a_j)``, which keeps ``E`` and ``A`` positive;
* the loss is a Huber loss (``delta = 1e-3``) of the log residuals ``log L_hat - log L``;
* it is minimised from a grid of starting points, keeping the best optimum;
* the optimiser must not stop early (the replication's lesson: Hoffmann et al.'s
  reported fit and its implausibly narrow intervals are consistent with a solver that
  stopped before converging). The objective is scaled to order one (divided by
  ``delta``); every start is solved to a projected gradient below ``1e-10`` (L-BFGS-B's
  ``gtol``), and the best optimum is polished by L-BFGS-B (``ftol=1e-15``);
* confidence intervals come from a bootstrap over runs (rows), clustered by seed when a
  seed column is given; every resample is refitted, warm-started from the full-data
  optimum and from the best few points of a small starting grid.

Two options depart from that practice where a paper did: ``loss="least_squares"`` minimises
the sum of squared residuals ``L_hat - L`` in loss units (the objective of
``scipy.optimize.curve_fit``) instead of the Huber loss of log residuals, and
``tied_exponents=True`` fits the two-variable law with one exponent, ``E + A/N^alpha +
B/D^alpha`` (e.g. Gadre et al. 2024, "Language models scale reliably with over-training and
on downstream tasks": ``E + (a M^eta + b M^-eta) C^-eta`` with ``C = 6ND``, ``M = D/N``
is this law with ``alpha = 2 eta``); the estimates then report ``beta = alpha``.

The solvers live in :mod:`dlrepro.scaling.problem` (L-BFGS-B one start at a time, and a
batched projected Newton method that solves all grid starts, resamples or leave-one-out
subsets together); the refits in :mod:`dlrepro.scaling.bootstrap`; the result class in
:mod:`dlrepro.scaling.result`.

The fit is cross-checked by variable projection: for fixed exponents, ``E`` and ``A`` are
the non-negative least-squares solution (``scipy.optimize.nnls``) of the relative
residuals ``(E + A x**-alpha - L) / L``; the exponents are then profiled on a grid and
refined with Nelder-Mead. Its solution is also one of the starting points of the Huber
fit, so a grid that misses the global basin is caught.

Each fit is classified after Bahri et al. (2021, "Explaining Neural Scaling Laws"): in
the *variance-limited* regime (model or data size large compared with the other) the
reducible loss falls as ``1/x`` (exponent 1); in the *resolution-limited* regime the
exponent is set by the intrinsic dimension ``d`` of the data manifold (``~4/d``) and
is generally different from 1. :func:`classify_regime` calls an exponent
variance-limited when its confidence interval reaches ``1 +- tol`` and is informative
(narrower than 1), resolution-limited when the interval excludes ``1 +- tol``, and
undetermined otherwise -- and undetermined whenever the exponent is not identified
(its interval spans more than a factor ``identification_span`` or reaches a bound).

Input is validated before any fitting: non-finite or non-positive values, fewer than
three distinct values of a variable, or fewer distinct points than parameters raise a
``ValueError`` naming the column, the row and the value.

Public API
----------
``FitOptions``                 fitting settings (Huber delta, bounds, grid, bootstrap...).
``fit_law(X, y, ...)``         fit one law (one or two variables) -> ``FitResult``.
``FitResult``                  estimates, CIs, SEs, covariance, diagnostics; ``predict``,
                               ``band``, ``to_dict`` (for fits.json), ``to_row`` (fits.csv).
``prediction_frame(result, ...)``  rows of predictions.csv for one fit.
``classify_regime(lo, hi, tol)``   Bahri et al. regime of an exponent.
``width_sweep_points(table)``  the points to fit from a width-sweep table.

Row layouts (the CLI writes them; see :mod:`dlrepro.scaling.cli`)
-----------------------------------------------------------------
``fits.csv``: one row per fitted law, columns ``FIT_COLUMNS``:
``sweep, kind, group_column, group, x, d, y, E, E_lo, E_hi, A, A_lo, A_hi, alpha,
alpha_lo, alpha_hi, B, B_lo, B_hi, beta, beta_lo, beta_hi, ci_level, n_points,
n_distinct, n_resamples, bootstrap_seed, bootstrap_unit, loo_rmse_log,
extrapolation_rel_error, varpro_alpha, varpro_beta, regime, regime_beta, warning,
E_se, A_se, alpha_se, B_se, beta_se, param_names, objective, converged, bootstrap_clusters``
(``d``, ``B``, ``beta``... are empty for single-variable laws; ``A``/``alpha`` are always
the first power-law term and ``B``/``beta`` the second, whatever the display names in
``param_names`` (e.g. ``E,B,beta`` for a data-size law); ``*_se`` are bootstrap standard
errors; ``warning`` joins the identification warnings with "; "; ``bootstrap_clusters``
the number of seeds resampled when ``bootstrap_unit`` is ``seed``, else empty).

``predictions.csv``: one row per (sweep, group, grid point), columns
``PREDICTION_COLUMNS``: ``sweep, kind, group_column, group, x_name, x, d_name, d,
y_hat, y_lo, y_hi, extrapolated``.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.optimize import minimize, nnls
from threadpoolctl import threadpool_limits

from dlrepro.log import get_logger
from dlrepro.scaling.bootstrap import MIN_DISTINCT, bootstrap, is_fittable, leave_one_out
from dlrepro.scaling.problem import LBFGS_OPTIONS, LOSSES, Problem, log_model
from dlrepro.scaling.result import PARAM_NAMES, FitResult, plain_value  # FitResult, PARAM_NAMES: re-exported
from dlrepro.scaling.tables import WIDTH_SWEEP_COLUMNS, prediction_frame, width_sweep_points  # re-exported

# the old private names, for callers that used them
_Problem = Problem
_log_model = log_model
_is_fittable = is_fittable

FIT_COLUMNS = [
    "sweep", "kind", "group_column", "group", "x", "d", "y",
    "E", "E_lo", "E_hi", "A", "A_lo", "A_hi", "alpha", "alpha_lo", "alpha_hi",
    "B", "B_lo", "B_hi", "beta", "beta_lo", "beta_hi",
    "ci_level", "n_points", "n_distinct", "n_resamples", "bootstrap_seed", "bootstrap_unit",
    "loo_rmse_log", "extrapolation_rel_error", "varpro_alpha", "varpro_beta",
    "regime", "regime_beta", "warning",
    "E_se", "A_se", "alpha_se", "B_se", "beta_se", "param_names", "objective", "converged",
    "bootstrap_clusters",
]  # fmt: skip
PREDICTION_COLUMNS = [
    "sweep", "kind", "group_column", "group", "x_name", "x", "d_name", "d",
    "y_hat", "y_lo", "y_hi", "extrapolated",
]  # fmt: skip

# Display names: "A" (E, A, alpha[, B, beta]), "B" (E, B, beta: a one-variable law in data
# size), "columns" (E, A_<x>, alpha_<x>, ...).
NAMINGS = ("A", "B", "columns")

_TRADEOFF_CORR = 0.9  # |corr(E, A at x_ref)| over resamples flagging a trade-off ...
_TRADEOFF_SPAN = 2.0  # ... when E's CI also spans more than this factor
_E_NEGLIGIBLE = 1e-3  # E / min(L) below which E is "at zero"
_MIN_CLUSTERS = 5  # fewer seed clusters than this: CI flagged as unreliable
_AT_BOUND = 1e-3  # an exponent this close to a bound is "at" it


@dataclass(frozen=True)
class FitOptions:
    """How to fit.

    huber_delta: Huber threshold on log residuals (Hoffmann et al.: 1e-3).
    exponent_min, exponent_max: bounds of every exponent.
    grid: starting grid axes ``(e, a, alpha)`` in normalised log units (``e = log(E /
        y_ref)``, ``a = log(A x_ref^-alpha / y_ref)``, y_ref and x_ref the geometric means);
        None: the default grid of :mod:`dlrepro.scaling.problem` (150 points for one
        variable, 576 for two).
    n_resamples: bootstrap resamples (0 disables CIs).
    seed: RNG seed of the bootstrap.
    ci_level: confidence level of the percentile intervals.
    n_starts: grid starting points optimised on the full data (the best ``n_starts`` of
        the grid by initial objective; ``None`` optimises from every grid point, as
        Hoffmann et al. did).
    bootstrap_starts: grid points optimised per resample besides the warm start.
    regime_tolerance: exponents within this distance of 1 count as variance-limited.
    identification_span: an exponent whose CI spans more than this factor (hi/lo) is
        reported as not identified.
    solver: "batched" (all starts/resamples solved together by projected Newton) or
        "lbfgs" (the reference: one L-BFGS-B run per start and resample).
    loss: "huber_log" (Huber loss of log residuals, Hoffmann et al.) or "least_squares"
        (sum of squared residuals in loss units, as ``scipy.optimize.curve_fit``; ignores
        ``huber_delta``).
    tied_exponents: fit a two-variable law with one exponent (``beta = alpha``).
    """

    huber_delta: float = 1e-3
    exponent_max: float = 5.0
    n_resamples: int = 1000
    seed: int = 0
    ci_level: float = 0.95
    n_starts: int | None = None
    bootstrap_starts: int = 1
    regime_tolerance: float = 0.1
    exponent_min: float = 0.0
    grid: tuple | None = None
    identification_span: float = 3.0
    solver: str = "batched"
    loss: str = "huber_log"
    tied_exponents: bool = False

    def __post_init__(self) -> None:
        def _number(v) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

        def _int(v) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        checks = {
            "huber_delta": (_number(self.huber_delta) and self.huber_delta > 0, "a number > 0"),
            "exponent_min": (_number(self.exponent_min) and self.exponent_min >= 0, "a number >= 0"),
            "exponent_max": (_number(self.exponent_max) and self.exponent_max > self.exponent_min,
                             f"a number > exponent_min ({self.exponent_min})"),
            "n_resamples": (_int(self.n_resamples) and self.n_resamples >= 0, "an integer >= 0"),
            "seed": (_int(self.seed) and self.seed >= 0, "an integer >= 0"),
            "ci_level": (_number(self.ci_level) and 0 < self.ci_level < 1, "a number in (0, 1), e.g. 0.95"),
            "n_starts": (self.n_starts is None or (_int(self.n_starts) and self.n_starts >= 1),
                         "an integer >= 1 or null (all grid points)"),
            "bootstrap_starts": (_int(self.bootstrap_starts) and self.bootstrap_starts >= 0, "an integer >= 0"),
            "regime_tolerance": (_number(self.regime_tolerance) and 0 <= self.regime_tolerance < 1,
                                 "a number in [0, 1)"),
            "identification_span": (_number(self.identification_span) and self.identification_span > 1,
                                    "a number > 1"),
            "solver": (self.solver in ("batched", "lbfgs"), "'batched' or 'lbfgs'"),
            "loss": (self.loss in LOSSES, " or ".join(repr(v) for v in LOSSES)),
            "tied_exponents": (isinstance(self.tied_exponents, bool), "true or false"),
            "grid": (self.grid is None or (len(self.grid) == 3 and all(
                len(axis) >= 1 and all(_number(v) for v in axis) for axis in self.grid)),
                "null or three non-empty lists of numbers (e, a, alpha)"),
        }  # fmt: skip
        for name, (ok, valid) in checks.items():
            if not ok:
                raise ValueError(f"FitOptions.{name}: invalid value {getattr(self, name)!r}; valid: {valid}")


# ----------------------------------------------------------------------------------
# input checks


def _row_label(rows, i: int) -> str:
    return str(rows[i]) if rows is not None else f"point {i}"


def validate_points(X: np.ndarray, y: np.ndarray, x_names: Sequence[str], y_name: str,
                    rows: Sequence | None = None, n_params: int | None = None) -> None:  # fmt: skip
    """Raise ``ValueError`` unless (X, y) can be fitted: finite, positive, enough distinct x.

    ``rows`` labels each point in messages (e.g. the data row of the input file);
    ``n_params``: parameters of the law (default ``1 + 2k``)."""
    if X.ndim != 2 or X.shape[1] != len(x_names) or X.shape[0] != y.shape[0]:
        raise ValueError(f"shapes do not match: X {X.shape}, y {y.shape}, variables {list(x_names)}")
    for name, col in [(y_name, y)] + [(n, X[:, j]) for j, n in enumerate(x_names)]:
        bad = np.flatnonzero(~np.isfinite(col))
        if len(bad):
            raise ValueError(f"column {name!r} has {len(bad)} non-finite value(s), e.g. {float(col[bad[0]])!r} at "
                             f"{_row_label(rows, bad[0])}; valid: finite numbers > 0")  # fmt: skip
        bad = np.flatnonzero(col <= 0)
        if len(bad):
            raise ValueError(f"column {name!r} must be positive for a log-space fit; found {float(col[bad[0]])!r} at "
                             f"{_row_label(rows, bad[0])}")  # fmt: skip
    for j, name in enumerate(x_names):
        n_distinct = len(np.unique(X[:, j]))
        if n_distinct < MIN_DISTINCT:
            raise ValueError(
                f"column {name!r} has {n_distinct} distinct value(s); at least {MIN_DISTINCT} are needed"
            )
    n_params = 1 + 2 * len(x_names) if n_params is None else n_params
    n_points = len(np.unique(X, axis=0))
    if n_points < n_params:
        raise ValueError(f"{n_points} distinct points for {n_params} parameters: the law is not identified")


def display_names(x_names: Sequence[str], naming: str = "A") -> tuple[str, ...]:
    """Names of (E, A, alpha[, B, beta]) as shown to the user (see ``NAMINGS``)."""
    if naming not in NAMINGS:
        raise ValueError(f"param_names: {naming!r} is not one of {list(NAMINGS)}")
    if naming == "columns":
        return ("E",) + tuple(n for x in x_names for n in (f"A_{x}", f"alpha_{x}"))
    if naming == "B":
        if len(x_names) != 1:
            raise ValueError("param_names 'B' names the term of a one-variable law; a joint law has A and B")
        return ("E", "B", "beta")
    return PARAM_NAMES[len(x_names)]


# ----------------------------------------------------------------------------------
# variable projection cross-check


def varpro_fit(problem: Problem, n_grid: int = 201) -> tuple[np.ndarray, float]:
    """Variable-projection fit: exponents profiled, (E, A_j) by NNLS of relative residuals
    (of absolute residuals, in units of y_ref, with ``loss="least_squares"``).

    Returns the normalised parameter vector (the full ``theta``) and the root-mean-square
    (relative) residual. The profile is evaluated on a grid of exponents (``n_grid`` values
    for one exponent, ``2 sqrt(n_grid)`` per axis for two) and refined with bounded
    Nelder-Mead; tied exponents are one.
    """
    y = np.exp(problem.ly)
    relative = problem.loss == "huber_log"
    n_exponents = 1 if problem.tied else problem.k

    def solve(exponents):
        exponents = np.repeat(exponents, problem.k) if problem.tied else exponents
        M = np.column_stack([np.ones_like(y)] + [np.exp(-a * problem.lX[:, j]) for j, a in enumerate(exponents)])
        if relative:
            return nnls(M / y[:, None], np.ones_like(y))
        return nnls(M, y)

    per_axis = n_grid if n_exponents == 1 else max(int(math.sqrt(n_grid)) * 2, 11)
    axis = np.linspace(*problem.exponent_bounds, per_axis)
    grid = list(itertools.product(axis, repeat=n_exponents))
    profile = [solve(g)[1] for g in grid]
    start = np.array(grid[int(np.argmin(profile))])
    res = minimize(lambda a: solve(a)[1], start, method="Nelder-Mead",
                   bounds=[tuple(problem.exponent_bounds)] * n_exponents,
                   options={"xatol": 1e-8, "fatol": 1e-14, "maxiter": 4000})  # fmt: skip
    exponents = res.x if res.fun <= min(profile) else start
    coef, rnorm = solve(exponents)
    exponents = np.repeat(exponents, problem.k) if problem.tied else exponents
    # normalised units: x_ref = y_ref = 1 in the problem's own coordinates
    theta = np.empty(1 + 2 * problem.k)
    tiny = np.finfo(float).tiny
    theta[0] = math.log(max(coef[0], tiny))
    theta[1::2] = np.log(np.maximum(coef[1:], tiny))
    theta[2::2] = exponents
    lo, hi = np.array(problem.theta_bounds).T
    return np.clip(theta, lo, hi), float(rnorm / math.sqrt(len(y)))


# ----------------------------------------------------------------------------------
# the fit


def classify_regime(lo: float, hi: float, tol: float = 0.1) -> str:
    """Bahri et al. regime of an exponent from its confidence interval ``[lo, hi]``.

    ``variance-limited``: the interval reaches ``[1 - tol, 1 + tol]`` and is narrower
    than 1 (so it says something); ``resolution-limited``: the interval misses
    ``[1 - tol, 1 + tol]``; ``undetermined``: otherwise (or no interval).
    """
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "undetermined"
    if hi < 1 - tol or lo > 1 + tol:
        return "resolution-limited"
    if hi - lo <= 1.0:
        return "variance-limited"
    return "undetermined"


def fit_law(
    X: np.ndarray,
    y: np.ndarray,
    *,
    x_names: Sequence[str] | None = None,
    y_name: str = "loss",
    seeds: np.ndarray | None = None,
    options: FitOptions = FitOptions(),
    log_context: dict | None = None,
    param_names: str = "A",
    rows: Sequence | None = None,
) -> FitResult:
    """Fit ``L = E + sum_j A_j x_j^-alpha_j`` to points ``X`` (n,) or (n, k<=2) and losses ``y``.

    ``seeds`` (n,), when given, labels the run each row came from; the bootstrap then
    resamples whole seeds (cluster bootstrap) instead of rows. ``param_names`` chooses the
    display names (``NAMINGS``); ``rows`` labels the points in error messages.

    BLAS runs single-threaded during the fit: the arrays are small, and OpenBLAS threads
    waking for each of thousands of tiny calls slow it down tens of times on a busy machine.
    """
    with threadpool_limits(1, user_api="blas"):
        return _fit_law(X, y, x_names, y_name, seeds, options, log_context, param_names, rows)


def _point_estimate(problem: Problem, options: FitOptions):
    """The full-data fit: grid starts plus the variable-projection solution, the best
    optimum polished. Returns ``(best, index of the best start, number of starts,
    varpro theta, varpro rms)``."""
    ones = np.ones(len(problem.ly))
    vp_theta, vp_rms = varpro_fit(problem)
    starts = np.vstack([problem.screen(ones, options.n_starts), problem.reduce(vp_theta)])
    if options.solver == "lbfgs":
        best, best_i = problem.minimize(starts, ones)
    else:
        batch = problem.newton_batch(starts, ones)
        best_i = int(np.argmin(batch.fun))
        best, _ = problem.minimize(batch.x[best_i][None], ones)  # polish the best optimum
    return best, best_i, len(starts), vp_theta, vp_rms


def fit_point(x: np.ndarray, y: np.ndarray, options: FitOptions = FitOptions()) -> dict[str, float]:
    """The point estimate ``{E, A, alpha}`` of a one-variable law, as :func:`fit_law`
    computes it but without its bootstrap, leave-one-out and warnings: what a per-seed
    fit (:mod:`dlrepro.scaling.per_seed`) and its coverage simulation need, fast."""
    X = np.asarray(x, dtype=float).reshape(-1, 1)
    with threadpool_limits(1, user_api="blas"):
        problem = Problem.from_data(X, np.asarray(y, dtype=float), options)
        best, *_ = _point_estimate(problem, options)
        raw = problem.to_raw(problem.expand(best.x))
    return dict(zip(PARAM_NAMES[1], map(float, raw)))


def _fit_law(X, y, x_names, y_name, seeds, options, log_context, param_names, rows) -> FitResult:
    X = np.asarray(X, dtype=float)
    X = X[:, None] if X.ndim == 1 else X
    y = np.asarray(y, dtype=float)
    k = X.shape[1] if X.ndim == 2 else 0
    x_names = tuple(x_names or (["x"] if k == 1 else ["N", "D"]))
    if k not in (1, 2):
        raise ValueError(f"a law has one or two variables; got X of shape {X.shape}")
    if options.tied_exponents and k != 2:
        raise ValueError("tied_exponents needs a two-variable law (N and D); this law has one variable")
    validate_points(X, y, x_names, y_name, rows, n_params=1 + 2 * k - int(options.tied_exponents))
    if seeds is not None and len(seeds) != len(y):
        raise ValueError(f"seeds has {len(seeds)} entries for {len(y)} points")
    names = PARAM_NAMES[k]
    shown = dict(zip(names, display_names(x_names, param_names)))
    log = get_logger("scaling", **(log_context or {}))
    problem = Problem.from_data(X, y, options)

    best, best_i, n_starts, vp_theta, vp_rms = _point_estimate(problem, options)
    theta_hat = problem.expand(best.x)
    raw_hat = problem.to_raw(theta_hat)
    params = dict(zip(names, map(float, raw_hat)))
    log.info(f"fit {', '.join(x_names)} -> {y_name}: {len(y)} points, {n_starts} starts; "
             f"{' '.join(f'{shown[n]}={v:.4g}' for n, v in params.items())}")  # fmt: skip

    phi_draws, boot = bootstrap(problem, X, best.x, seeds, options, log)
    theta_draws = problem.expand(phi_draws)
    draws = problem.to_raw(theta_draws)
    q = [(1 - options.ci_level) / 2, (1 + options.ci_level) / 2]
    if len(draws):
        ci = {n: tuple(map(float, np.quantile(draws[:, i], q))) for i, n in enumerate(names)}
    else:
        ci = {n: (math.nan, math.nan) for n in names}
    se = {n: float(draws[:, i].std(ddof=1)) if len(draws) >= 2 else math.nan for i, n in enumerate(names)}
    loo = leave_one_out(problem, X, best.x, options)
    regime = {n: classify_regime(*ci[n], tol=options.regime_tolerance) for n in names[2::2]}
    vp_params = dict(zip(names, map(float, problem.to_raw(vp_theta))))
    result = FitResult(
        x_names=x_names,
        y_name=y_name,
        params=params,
        ci=ci,
        ci_level=options.ci_level,
        n_points=len(y),
        n_distinct=len(np.unique(X, axis=0)),
        objective=float(best.fun),
        converged=best.converged,
        best_start="varpro" if best_i == n_starts - 1 else "grid",
        bootstrap=boot,
        loo=loo,
        varpro={"params": vp_params, "rms_rel_residual": vp_rms},
        regime=regime,
        warnings=[],
        x_range=[(float(X[:, j].min()), float(X[:, j].max())) for j in range(k)],
        data={"X": X.tolist(), "y": y.tolist(), "seed": None if seeds is None else list(map(plain_value, seeds))},
        theta_hat=theta_hat,
        theta_draws=theta_draws,
        problem=problem,
        se=se,
        names=shown,
    )
    result.warnings, unidentified = _identification_warnings(result, y, best, options)
    if options.tied_exponents:  # beta is alpha
        unidentified += ["beta"] if "alpha" in unidentified else []
        result.regime["beta"] = result.regime["alpha"]
    for name in unidentified:  # an exponent that is not identified has no regime
        result.regime[name] = "undetermined"
    for w in result.warnings:
        log.warning(w)
    return result


def _identification_warnings(result: FitResult, y: np.ndarray, best, options: FitOptions):
    """Reasons to distrust a fit: too few points, E/A trade-off, parameters or intervals at
    bounds, exponents whose interval spans a wide range...

    Returns ``(warnings, exponents that are not identified)``."""
    warn, unidentified = [], []
    k = len(result.x_names)
    names = PARAM_NAMES[k]
    n_params = result.problem.n_free
    show = result.display
    exponents = names[2::2][: 1 if options.tied_exponents else k]  # a tied exponent is warned about once
    if result.n_distinct < n_params + 2:
        warn.append(f"only {result.n_distinct} distinct points for {n_params} parameters: "
                    "the law is barely determined and its CIs are unreliable")  # fmt: skip
    if not result.converged:
        warn.append(f"L-BFGS-B did not converge: {best.message}")
    p = result.params
    lo_b, hi_b = options.exponent_min, options.exponent_max
    bounds = f"[{lo_b:g}, {hi_b:g}]"
    if p["E"] < _E_NEGLIGIBLE * y.min():
        warn.append(f"E={p['E']:.3g} is at zero: no irreducible loss is resolved")
    elif result.ci["E"][0] < _E_NEGLIGIBLE * y.min():
        warn.append(f"the CI [{result.ci['E'][0]:.3g}, {result.ci['E'][1]:.3g}] of E reaches zero: "
                    "the irreducible loss is not identified")  # fmt: skip
    for name, x_name in zip(exponents, result.x_names):
        lo, hi = result.ci[name]
        x_name = " and ".join(result.x_names) if options.tied_exponents else x_name
        label = f"{show(name)} ({x_name})"
        if p[name] < lo_b + _AT_BOUND or p[name] > hi_b - _AT_BOUND:
            warn.append(f"{show(name)}={p[name]:.4g} ({x_name}) is at its bound {bounds}")
            unidentified.append(name)
        elif lo < lo_b + _AT_BOUND or hi > hi_b - _AT_BOUND:
            warn.append(f"the CI [{lo:.3g}, {hi:.3g}] of {label} reaches a bound {bounds}: "
                        f"{show(name)} is not identified")  # fmt: skip
            unidentified.append(name)
        elif np.isfinite(lo) and hi > options.identification_span * lo:
            warn.append(f"the CI [{lo:.3g}, {hi:.3g}] of {label} spans a factor {hi / lo:.3g} "
                        f"(> {options.identification_span:g}): {show(name)} is not identified")  # fmt: skip
            unidentified.append(name)
    draws = result.theta_draws
    if len(draws) >= 3:
        E_lo, E_hi = result.ci["E"]
        # log E against the log of the first power-law term at the geometric-mean x
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = np.corrcoef(draws[:, 0], draws[:, 1])[0, 1]
        if abs(corr) > _TRADEOFF_CORR and E_hi > _TRADEOFF_SPAN * max(E_lo, 1e-300):
            warn.append(f"E and {show('A')} trade off (bootstrap corr {corr:.2f}; E CI [{E_lo:.3g}, {E_hi:.3g}])")
        vp = result.varpro["params"]
        for name in exponents:
            lo, hi = result.ci[name]
            if not lo <= vp[name] <= hi:
                warn.append(f"variable projection gives {show(name)}={vp[name]:.4g}, outside the CI "
                            f"[{lo:.4g}, {hi:.4g}] of the Huber fit")  # fmt: skip
    boot = result.bootstrap
    if boot["n_clusters"] is not None and boot["n_clusters"] < 2:
        warn.append("a single seed: bootstrap resamples rows, not seeds")
    elif boot["unit"] == "seed" and boot["n_clusters"] < _MIN_CLUSTERS:
        warn.append(f"only {boot['n_clusters']} seeds to resample: CIs are coarse")
    if boot.get("n_not_converged"):
        warn.append(f"{boot['n_not_converged']} of {boot['n_distinct_resamples']} bootstrap refits did not converge")
    return warn, unidentified
