"""Fit saturating power laws ``L(x) = E + A * x**-alpha`` (and ``E + A/N**alpha + B/D**beta``).

The fitting practice follows Hoffmann et al. (2022, "Training Compute-Optimal Large
Language Models", approach 3) as corrected by Besiroglu et al. (2024, "Chinchilla
Scaling: A replication attempt"):

* the law is fitted in log space with the log-sum-exp parametrisation
  ``log L_hat = LSE(e, a_1 - alpha_1 log x_1, ..., a_k - alpha_k log x_k)``,
  ``E = exp(e)``, ``A_j = exp(a_j)``, which keeps ``E`` and ``A`` positive;
* the loss is a Huber loss (``delta = 1e-3``) of the log residuals ``log L_hat - log L``;
* it is minimised with L-BFGS-B (``scipy.optimize.minimize``) from a grid of starting
  points, keeping the best optimum;
* the optimiser must not stop early (the replication's lesson: Hoffmann et al.'s
  reported fit and its implausibly narrow intervals are consistent with a solver that
  stopped before converging).  The objective is therefore scaled to order one (divided
  by ``delta``) and the tolerances are tight (``ftol=1e-15``, ``gtol=1e-10``,
  ``maxiter=10000``);
* confidence intervals come from a bootstrap over runs (rows), clustered by seed when a
  seed column is given; every resample is refitted, warm-started from the full-data
  optimum and from the best few points of a small starting grid.

The fit is cross-checked by variable projection: for fixed exponents, ``E`` and ``A`` are
the non-negative least-squares solution (``scipy.optimize.nnls``) of the relative
residuals ``(E + A x**-alpha - L) / L``; the exponents are then profiled on a grid and
refined with Nelder-Mead.  Its solution is also one of the starting points of the Huber
fit, so a grid that misses the global basin is caught.

Each fit is classified after Bahri et al. (2021, "Explaining Neural Scaling Laws"): in
the *variance-limited* regime (model or data size large compared with the other) the
reducible loss falls as ``1/x`` (exponent 1); in the *resolution-limited* regime the
exponent is set by the intrinsic dimension ``d`` of the data manifold (``~4/d``) and
is generally different from 1.  :func:`classify_regime` calls an exponent
variance-limited when its confidence interval reaches ``1 +- tol`` and is informative
(narrower than 1), resolution-limited when the interval excludes ``1 +- tol``, and
undetermined otherwise.

Input is validated before any fitting: non-finite or non-positive values, fewer than
three distinct values of a variable, or fewer distinct points than parameters raise a
``ValueError`` naming the column and the value.

Public API
----------
``FitOptions``                 fitting settings (Huber delta, bounds, bootstrap size, seed...).
``fit_law(X, y, ...)``         fit one law (one or two variables) -> ``FitResult``.
``FitResult``                  estimates, CIs, diagnostics; ``predict``, ``band``,
                               ``to_dict`` (for fits.json), ``to_row`` (for fits.csv).
``prediction_frame(result, ...)``  rows of predictions.csv for one fit.
``classify_regime(lo, hi, tol)``   Bahri et al. regime of an exponent.
``width_sweep_points(table)``  the points to fit from a width-sweep table.

Row layouts (the CLI writes them; see :mod:`dlrepro.scaling.cli`)
-----------------------------------------------------------------
``fits.csv``: one row per fitted law, columns ``FIT_COLUMNS``:
``sweep, kind, group_column, group, x, d, y, E, E_lo, E_hi, A, A_lo, A_hi, alpha,
alpha_lo, alpha_hi, B, B_lo, B_hi, beta, beta_lo, beta_hi, ci_level, n_points,
n_distinct, n_resamples, bootstrap_seed, bootstrap_unit, loo_rmse_log,
extrapolation_rel_error, varpro_alpha, varpro_beta, regime, regime_beta, warning``
(``d``, ``B``, ``beta``... are empty for single-variable laws; ``warning`` joins the
identification warnings with "; ").

``predictions.csv``: one row per (sweep, group, grid point), columns
``PREDICTION_COLUMNS``: ``sweep, kind, group_column, group, x_name, x, d_name, d,
y_hat, y_lo, y_hi, extrapolated``.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd
from scipy.optimize import minimize, nnls
from scipy.special import huber
from threadpoolctl import threadpool_limits

from dlrepro.log import get_logger

FIT_COLUMNS = [
    "sweep", "kind", "group_column", "group", "x", "d", "y",
    "E", "E_lo", "E_hi", "A", "A_lo", "A_hi", "alpha", "alpha_lo", "alpha_hi",
    "B", "B_lo", "B_hi", "beta", "beta_lo", "beta_hi",
    "ci_level", "n_points", "n_distinct", "n_resamples", "bootstrap_seed", "bootstrap_unit",
    "loo_rmse_log", "extrapolation_rel_error", "varpro_alpha", "varpro_beta",
    "regime", "regime_beta", "warning",
]  # fmt: skip
PREDICTION_COLUMNS = [
    "sweep", "kind", "group_column", "group", "x_name", "x", "d_name", "d",
    "y_hat", "y_lo", "y_hi", "extrapolated",
]  # fmt: skip

# Names of the parameters of a law with one or two variables, in the order of the
# internal vector theta = (e, a_1, alpha_1, a_2, alpha_2).
PARAM_NAMES = {1: ("E", "A", "alpha"), 2: ("E", "A", "alpha", "B", "beta")}

# L-BFGS-B settings that do not stop early (Besiroglu et al. 2024).
LBFGS_OPTIONS = {"ftol": 1e-15, "gtol": 1e-10, "maxiter": 10_000, "maxfun": 100_000}

# Bounds of the normalised log parameters (see _Problem): E/y_ref in [1e-11, 150],
# A_j (x_ref)^-alpha_j / y_ref in [1e-11, 2e4].
_E_BOUNDS = (-25.0, 5.0)
_A_BOUNDS = (-25.0, 10.0)

# Starting grid in normalised units (y divided by its geometric mean, x by its geometric
# mean, so that E/y_ref < 1 and A (x/x_ref)^-alpha / y_ref ~ 1 at x = x_ref).
_GRID_E = (-3.0, -1.5, -0.7, -0.3, -0.1)
_GRID_A = (-4.0, -2.0, -1.0, -0.3, 0.3)
_GRID_ALPHA = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0)
# the two-variable grid is coarser per axis (it has five axes)
_GRID2_E = (-2.0, -0.7, -0.3, -0.1)
_GRID2_A = (-3.0, -1.0, 0.0)
_GRID2_ALPHA = (0.1, 0.3, 0.7, 1.5)

_MIN_DISTINCT = 3  # distinct values of each variable below which we refuse to fit
_TRADEOFF_CORR = 0.9  # |corr(E, A at x_ref)| over resamples flagging a trade-off ...
_TRADEOFF_SPAN = 2.0  # ... when E's CI also spans more than this factor
_E_NEGLIGIBLE = 1e-3  # E / min(L) below which E is "at zero"
_MIN_CLUSTERS = 5  # fewer seed clusters than this: CI flagged as unreliable
_MAX_REDRAWS = 1000  # redraws of degenerate resamples before giving up


@dataclass(frozen=True)
class FitOptions:
    """How to fit.

    huber_delta: Huber threshold on log residuals (Hoffmann et al.: 1e-3).
    exponent_max: upper bound of every exponent (lower bound is 0).
    n_resamples: bootstrap resamples (0 disables CIs).
    seed: RNG seed of the bootstrap.
    ci_level: confidence level of the percentile intervals.
    n_starts: grid starting points optimised on the full data (the best ``n_starts`` of
        the grid by initial objective; ``None`` optimises from every grid point, as
        Hoffmann et al. did).
    bootstrap_starts: grid points optimised per resample besides the warm start.
    regime_tolerance: exponents within this distance of 1 count as variance-limited.
    """

    huber_delta: float = 1e-3
    exponent_max: float = 5.0
    n_resamples: int = 1000
    seed: int = 0
    ci_level: float = 0.95
    n_starts: int | None = None
    bootstrap_starts: int = 1
    regime_tolerance: float = 0.1

    def __post_init__(self) -> None:
        checks = {
            "huber_delta": self.huber_delta > 0,
            "exponent_max": self.exponent_max > 0,
            "n_resamples": isinstance(self.n_resamples, int) and self.n_resamples >= 0,
            "seed": isinstance(self.seed, int) and self.seed >= 0,
            "ci_level": 0 < self.ci_level < 1,
            "n_starts": self.n_starts is None or (isinstance(self.n_starts, int) and self.n_starts >= 1),
            "bootstrap_starts": isinstance(self.bootstrap_starts, int) and self.bootstrap_starts >= 0,
            "regime_tolerance": 0 <= self.regime_tolerance < 1,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"FitOptions.{name}: invalid value {getattr(self, name)!r}")


# ----------------------------------------------------------------------------------
# input checks


def validate_points(X: np.ndarray, y: np.ndarray, x_names: Sequence[str], y_name: str) -> None:
    """Raise ``ValueError`` unless (X, y) can be fitted: finite, positive, enough distinct x."""
    if X.ndim != 2 or X.shape[1] != len(x_names) or X.shape[0] != y.shape[0]:
        raise ValueError(f"shapes do not match: X {X.shape}, y {y.shape}, variables {list(x_names)}")
    for name, col in [(y_name, y)] + [(n, X[:, j]) for j, n in enumerate(x_names)]:
        bad = ~np.isfinite(col)
        if bad.any():
            raise ValueError(f"column {name!r} has {bad.sum()} non-finite value(s), e.g. {col[bad][0]!r}")
        if (col <= 0).any():
            raise ValueError(f"column {name!r} must be positive for a log-space fit; found {col[col <= 0][0]!r}")
    for j, name in enumerate(x_names):
        n_distinct = len(np.unique(X[:, j]))
        if n_distinct < _MIN_DISTINCT:
            raise ValueError(
                f"column {name!r} has {n_distinct} distinct value(s); at least {_MIN_DISTINCT} are needed"
            )
    n_params = 1 + 2 * len(x_names)
    n_points = len(np.unique(X, axis=0))
    if n_points < n_params:
        raise ValueError(f"{n_points} distinct points for {n_params} parameters: the law is not identified")


def _is_fittable(X: np.ndarray) -> bool:
    """Whether a subset of validated points still has enough distinct x to fit."""
    if any(len(np.unique(X[:, j])) < _MIN_DISTINCT for j in range(X.shape[1])):
        return False
    return len(np.unique(X, axis=0)) >= 1 + 2 * X.shape[1]


# ----------------------------------------------------------------------------------
# the model and its objective, in normalised log units


def _log_model(theta: np.ndarray, lX: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``log L_hat / y_ref`` at normalised log inputs ``lX`` (n, k).

    ``theta`` is one parameter vector (p,) or a batch (S, p); returns ``(lse, T)`` with
    ``T[..., i, j] = a_j - alpha_j lX[i, j]`` and ``lse = LSE(e, T[..., :, 0], ...)``.
    """
    e = theta[..., 0, None]
    T = theta[..., None, 1::2] - theta[..., None, 2::2] * lX
    lse = np.logaddexp(e, T[..., 0])
    for j in range(1, lX.shape[1]):
        lse = np.logaddexp(lse, T[..., j])
    return lse, T


def _objective(theta, lX, ly, w, delta):
    """Weighted Huber loss of log residuals (divided by delta) and its gradient."""
    lse, T = _log_model(theta, lX)
    r = lse - ly
    f = (w * huber(delta, r)).sum() / delta
    g = w * np.clip(r, -delta, delta) / delta  # d f / d r
    gP = g[:, None] * np.exp(T - lse[:, None])  # softmax weight of each power-law term
    grad = np.empty_like(theta)
    grad[0] = (g * np.exp(theta[0] - lse)).sum()
    grad[1::2] = gP.sum(axis=0)
    grad[2::2] = -(gP * lX).sum(axis=0)
    return f, grad


def _objective_batch(thetas, lX, ly, w, delta) -> np.ndarray:
    """Objective values (without gradient) of a batch of parameter vectors (S, p)."""
    lse, _ = _log_model(thetas, lX)
    return (w * huber(delta, lse - ly)).sum(axis=-1) / delta


@dataclass
class _Problem:
    """Data of one fit in normalised log units: ``lX = log(X / x_ref)``, ``ly = log(y / y_ref)``."""

    lX: np.ndarray
    ly: np.ndarray
    x_ref: np.ndarray
    y_ref: float
    delta: float
    exponent_max: float

    @classmethod
    def from_data(cls, X: np.ndarray, y: np.ndarray, options: FitOptions) -> "_Problem":
        logX, logy = np.log(X), np.log(y)
        x_ref = np.exp(logX.mean(axis=0))
        y_ref = float(np.exp(logy.mean()))
        return cls(logX - np.log(x_ref), logy - math.log(y_ref), x_ref, y_ref,
                   options.huber_delta, options.exponent_max)  # fmt: skip

    @property
    def k(self) -> int:
        return self.lX.shape[1]

    @property
    def bounds(self) -> list[tuple[float, float]]:
        return [_E_BOUNDS] + [_A_BOUNDS, (0.0, self.exponent_max)] * self.k

    def grid(self) -> np.ndarray:
        """The starting grid (S, p), exponents clipped to their bound."""
        axes_e, axes_a, axes_alpha = (
            (_GRID_E, _GRID_A, _GRID_ALPHA) if self.k == 1 else (_GRID2_E, _GRID2_A, _GRID2_ALPHA)
        )
        alphas = sorted({min(a, self.exponent_max) for a in axes_alpha})
        axes = [axes_e] + [axes_a, alphas] * self.k
        return np.array(list(itertools.product(*axes)), dtype=float)

    def to_raw(self, theta: np.ndarray) -> np.ndarray:
        """Normalised log parameters -> raw (E, A, alpha[, B, beta]); works on batches."""
        theta = np.asarray(theta, dtype=float)
        raw = np.empty_like(theta)
        raw[..., 0] = self.y_ref * np.exp(theta[..., 0])
        raw[..., 2::2] = theta[..., 2::2]
        raw[..., 1::2] = self.y_ref * np.exp(theta[..., 1::2] + theta[..., 2::2] * np.log(self.x_ref))
        return raw

    def minimize(self, starts: np.ndarray, w: np.ndarray, mask: np.ndarray | None = None):
        """Best L-BFGS-B optimum over ``starts`` of the objective with row weights ``w``.

        Rows with zero weight (or outside ``mask``) are dropped before optimising.
        Returns ``(OptimizeResult, index of the winning start)``.
        """
        keep = w > 0 if mask is None else (w > 0) & mask
        lX, ly, wk = self.lX[keep], self.ly[keep], w[keep]
        best, best_i = None, -1
        for i, start in enumerate(starts):
            res = minimize(_objective, start, args=(lX, ly, wk, self.delta), jac=True,
                           method="L-BFGS-B", bounds=self.bounds, options=LBFGS_OPTIONS)  # fmt: skip
            if best is None or res.fun < best.fun:
                best, best_i = res, i
        best.converged = self._stationary(best)
        return best, best_i

    def _stationary(self, res) -> bool:
        """Converged: L-BFGS-B says so, or it stopped (line search at machine precision)
        where the projected gradient vanishes relative to the objective."""
        lo, hi = np.array(self.bounds).T
        projected = np.clip(res.x - res.jac, lo, hi) - res.x
        return bool(res.success or np.abs(projected).max() <= 1e-5 * max(1.0, abs(res.fun)))

    def screen(self, w: np.ndarray, n: int | None) -> np.ndarray:
        """The ``n`` grid points with the lowest initial objective (all if ``n`` is None)."""
        grid = self.grid()
        if n is None or n >= len(grid):
            return grid
        values = _objective_batch(grid, self.lX, self.ly, w, self.delta)
        return grid[np.argsort(values, kind="stable")[:n]]


# ----------------------------------------------------------------------------------
# variable projection cross-check


def varpro_fit(problem: _Problem, n_grid: int = 201) -> tuple[np.ndarray, float]:
    """Variable-projection fit: exponents profiled, (E, A_j) by NNLS of relative residuals.

    Returns the normalised parameter vector and the root-mean-square relative residual.
    The profile is evaluated on a grid of exponents (``n_grid`` values for one variable,
    ``2 sqrt(n_grid)`` per axis for two) and refined with bounded Nelder-Mead.
    """
    y = np.exp(problem.ly)

    def solve(exponents):
        M = np.column_stack([np.ones_like(y)] + [np.exp(-a * problem.lX[:, j]) for j, a in enumerate(exponents)])
        coef, rnorm = nnls(M / y[:, None], np.ones_like(y))
        return coef, rnorm

    per_axis = n_grid if problem.k == 1 else max(int(math.sqrt(n_grid)) * 2, 11)
    axis = np.linspace(0.0, problem.exponent_max, per_axis)
    grid = list(itertools.product(axis, repeat=problem.k))
    profile = [solve(g)[1] for g in grid]
    start = np.array(grid[int(np.argmin(profile))])
    res = minimize(lambda a: solve(a)[1], start, method="Nelder-Mead",
                   bounds=[(0.0, problem.exponent_max)] * problem.k,
                   options={"xatol": 1e-8, "fatol": 1e-14, "maxiter": 4000})  # fmt: skip
    exponents = res.x if res.fun <= min(profile) else start
    coef, rnorm = solve(exponents)
    # normalised units: x_ref = y_ref = 1 in the problem's own coordinates
    theta = np.empty(1 + 2 * problem.k)
    tiny = np.finfo(float).tiny
    theta[0] = math.log(max(coef[0], tiny))
    theta[1::2] = np.log(np.maximum(coef[1:], tiny))
    theta[2::2] = exponents
    lo, hi = np.array(problem.bounds).T
    return np.clip(theta, lo, hi), float(rnorm / math.sqrt(len(y)))


# ----------------------------------------------------------------------------------
# result


@dataclass
class FitResult:
    """A fitted law with its bootstrap intervals and diagnostics (raw units throughout)."""

    x_names: tuple[str, ...]
    y_name: str
    params: dict[str, float]
    ci: dict[str, tuple[float, float]]
    ci_level: float
    n_points: int
    n_distinct: int
    objective: float
    converged: bool
    best_start: str
    bootstrap: dict
    loo: dict
    varpro: dict
    regime: dict[str, str]
    warnings: list[str]
    x_range: list[tuple[float, float]]
    data: dict
    theta_hat: np.ndarray = field(repr=False)  # the estimate in normalised log units (p,)
    theta_draws: np.ndarray = field(repr=False)  # bootstrap estimates, normalised (R, p)
    problem: _Problem = field(repr=False)

    @property
    def kind(self) -> str:
        return "single" if len(self.x_names) == 1 else "joint"

    @property
    def draws(self) -> np.ndarray:
        """Bootstrap estimates (R, p) in raw units, columns in ``PARAM_NAMES`` order."""
        return self.problem.to_raw(self.theta_draws)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The fitted law at points ``X`` (n, k) (or (n,) for one variable)."""
        return self._curves(self.theta_hat[None], X)[0]

    def band(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pointwise percentile band of the bootstrap laws at ``X`` (NaN without resamples)."""
        X = np.asarray(X, dtype=float).reshape(len(X), -1)
        if len(self.theta_draws) == 0:
            nan = np.full(len(X), np.nan)
            return nan, nan.copy()
        curves = self._curves(self.theta_draws, X)
        q = [(1 - self.ci_level) / 2, (1 + self.ci_level) / 2]
        lo, hi = np.quantile(curves, q, axis=0)
        return lo, hi

    def _curves(self, thetas: np.ndarray, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=float).reshape(len(X), -1)
        lse, _ = _log_model(thetas, np.log(X) - np.log(self.problem.x_ref))
        return self.problem.y_ref * np.exp(lse)

    def formula(self, digits: int = 3) -> str:
        """The law as text, e.g. ``L = 1.69 + 406*N^-0.34``."""
        p = self.params
        terms = [f"{p['E']:.{digits}g}"]
        for (a, alpha), name in zip((("A", "alpha"), ("B", "beta")), self.x_names):
            terms.append(f"{p[a]:.{digits}g}*{name}^-{p[alpha]:.{digits}g}")
        return "L = " + " + ".join(terms)

    def to_dict(self) -> dict:
        """JSON-ready summary (everything but the bootstrap draws; NaN becomes null)."""
        return _nan_to_none({
            "kind": self.kind,
            "x": list(self.x_names),
            "y": self.y_name,
            "formula": self.formula(),
            "params": self.params,
            "ci": {k: list(v) for k, v in self.ci.items()},
            "ci_level": self.ci_level,
            "n_points": self.n_points,
            "n_distinct": self.n_distinct,
            "objective": self.objective,
            "converged": self.converged,
            "best_start": self.best_start,
            "bootstrap": self.bootstrap,
            "leave_one_out": self.loo,
            "varpro": self.varpro,
            "regime": self.regime,
            "warnings": self.warnings,
            "x_range": [list(r) for r in self.x_range],
            "data": self.data,
        })

    def to_row(self) -> dict:
        """One row of fits.csv (without the sweep and group columns)."""
        row = {"kind": self.kind, "x": self.x_names[0], "d": self.x_names[1] if self.kind == "joint" else "",
               "y": self.y_name}  # fmt: skip
        for name in ("E", "A", "alpha", "B", "beta"):
            lo, hi = self.ci.get(name, (np.nan, np.nan))
            row.update({name: self.params.get(name, np.nan), f"{name}_lo": lo, f"{name}_hi": hi})
        exps = self.varpro["params"]
        row.update(
            ci_level=self.ci_level,
            n_points=self.n_points,
            n_distinct=self.n_distinct,
            n_resamples=self.bootstrap["n_resamples"],
            bootstrap_seed=self.bootstrap["seed"],
            bootstrap_unit=self.bootstrap["unit"],
            loo_rmse_log=self.loo["rmse_log"],
            extrapolation_rel_error=self.loo["extrapolation_rel_error"],
            varpro_alpha=exps["alpha"],
            varpro_beta=exps.get("beta", np.nan),
            regime=self.regime["alpha"],
            regime_beta=self.regime.get("beta", ""),
            warning="; ".join(self.warnings),
        )
        return row


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
) -> FitResult:
    """Fit ``L = E + sum_j A_j x_j^-alpha_j`` to points ``X`` (n,) or (n, k<=2) and losses ``y``.

    ``seeds`` (n,), when given, labels the run each row came from; the bootstrap then
    resamples whole seeds (cluster bootstrap) instead of rows.

    BLAS runs single-threaded during the fit: L-BFGS-B on three parameters makes
    thousands of tiny BLAS calls, and OpenBLAS threads waking for each of them slow it
    down tens of times on a busy machine.
    """
    with threadpool_limits(1, user_api="blas"):
        return _fit_law(X, y, x_names, y_name, seeds, options, log_context)


def _fit_law(X, y, x_names, y_name, seeds, options, log_context) -> FitResult:
    X = np.asarray(X, dtype=float)
    X = X[:, None] if X.ndim == 1 else X
    y = np.asarray(y, dtype=float)
    k = X.shape[1] if X.ndim == 2 else 0
    x_names = tuple(x_names or (["x"] if k == 1 else ["N", "D"]))
    if k not in (1, 2):
        raise ValueError(f"a law has one or two variables; got X of shape {X.shape}")
    validate_points(X, y, x_names, y_name)
    if seeds is not None and len(seeds) != len(y):
        raise ValueError(f"seeds has {len(seeds)} entries for {len(y)} points")
    log = get_logger("scaling", **(log_context or {}))
    names = PARAM_NAMES[k]
    problem = _Problem.from_data(X, y, options)
    ones = np.ones(len(y))

    # full-data fit: grid starts plus the variable-projection solution
    vp_theta, vp_rms = varpro_fit(problem)
    starts = np.vstack([problem.screen(ones, options.n_starts), vp_theta])
    best, best_i = problem.minimize(starts, ones)
    theta_hat = best.x
    raw_hat = problem.to_raw(theta_hat)
    params = dict(zip(names, map(float, raw_hat)))
    log.info(f"fit {', '.join(x_names)} -> {y_name}: {len(y)} points, {len(starts)} starts; "
             f"{' '.join(f'{n}={v:.4g}' for n, v in params.items())}")  # fmt: skip

    theta_draws, boot = _bootstrap(problem, X, theta_hat, seeds, options, log)
    draws = problem.to_raw(theta_draws)
    q = [(1 - options.ci_level) / 2, (1 + options.ci_level) / 2]
    if len(draws):
        ci = {n: tuple(map(float, np.quantile(draws[:, i], q))) for i, n in enumerate(names)}
    else:
        ci = {n: (math.nan, math.nan) for n in names}
    loo = _leave_one_out(problem, X, theta_hat, options)
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
        best_start="varpro" if best_i == len(starts) - 1 else "grid",
        bootstrap=boot,
        loo=loo,
        varpro={"params": vp_params, "rms_rel_residual": vp_rms},
        regime=regime,
        warnings=[],
        x_range=[(float(X[:, j].min()), float(X[:, j].max())) for j in range(k)],
        data={"X": X.tolist(), "y": y.tolist(), "seed": None if seeds is None else list(map(_plain, seeds))},
        theta_hat=theta_hat,
        theta_draws=theta_draws,
        problem=problem,
    )
    result.warnings = _identification_warnings(result, y, best, options)
    for w in result.warnings:
        log.warning(w)
    return result


def _nan_to_none(obj):
    """Replace float NaN by None in nested dicts/lists, so that the JSON output is strict."""
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(v) for v in obj]
    if isinstance(obj, float) and math.isnan(obj):
        return None
    return obj


def _plain(v):
    """numpy scalar -> plain Python value (for JSON)."""
    return v.item() if isinstance(v, np.generic) else v


def _bootstrap(problem, X, theta_hat, seeds, options, log) -> tuple[np.ndarray, dict]:
    """Refit ``options.n_resamples`` resamples of runs (clustered by seed when given).

    Returns the normalised estimates (R, p) and a summary for the output.
    """
    n = len(X)
    unit, labels = "row", np.arange(n)
    n_clusters = None
    if seeds is not None:
        _, labels = np.unique(np.asarray(seeds), return_inverse=True)
        n_clusters = int(labels.max()) + 1
        if n_clusters >= 2:
            unit = "seed"
        else:
            labels = np.arange(n)
    info = {"n_resamples": options.n_resamples, "seed": options.seed, "unit": unit,
            "n_clusters": n_clusters, "n_redrawn": 0, "n_not_converged": 0, "n_distinct_resamples": 0}  # fmt: skip
    if options.n_resamples == 0:
        return np.empty((0, len(theta_hat))), info
    n_units = int(labels.max()) + 1
    rng = np.random.default_rng(options.seed)
    draws = np.empty((options.n_resamples, len(theta_hat)))
    fitted: dict[bytes, np.ndarray] = {}  # unit counts of a resample -> its estimate
    report_every = max(options.n_resamples // 5, 1)
    for b in range(options.n_resamples):
        for _ in range(_MAX_REDRAWS):
            counts = np.bincount(rng.integers(0, n_units, n_units), minlength=n_units)
            w = counts[labels].astype(float)
            if _is_fittable(X[w > 0]):
                break
            info["n_redrawn"] += 1
        else:
            raise ValueError(f"could not draw a fittable resample in {_MAX_REDRAWS} tries ({n_units} {unit}s)")
        key = counts.tobytes()
        if key not in fitted:  # few seeds give few distinct resamples: fit each once
            starts = np.vstack([theta_hat, problem.screen(w, options.bootstrap_starts)])
            res, _ = problem.minimize(starts, w)
            info["n_not_converged"] += int(not res.converged)
            fitted[key] = res.x
        draws[b] = fitted[key]
        if (b + 1) % report_every == 0:
            log.info(f"bootstrap {b + 1}/{options.n_resamples} ({unit} resampling)")
    info["n_distinct_resamples"] = len(fitted)
    return draws, info


def _leave_one_out(problem, X, theta_hat, options) -> dict:
    """Refit without each distinct point; error of the prediction at the held-out point.

    ``rmse_log``: RMS over held-out points of ``log L_hat - mean log L``;
    ``extrapolation_rel_error``: ``L_hat / L - 1`` at the largest point (largest x, or
    largest N*D), predicted by the law fitted to the others.
    """
    points, inverse = np.unique(X, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    ones = np.ones(len(X))
    errors = np.full(len(points), np.nan)
    for i, point in enumerate(points):
        rest = inverse != i
        if not _is_fittable(X[rest]):
            continue
        starts = np.vstack([theta_hat, problem.screen(ones * rest, options.bootstrap_starts)])
        res, _ = problem.minimize(starts, ones, mask=rest)
        lse, _ = _log_model(res.x, np.log(point / problem.x_ref)[None])
        errors[i] = lse[0] - problem.ly[~rest].mean()
    largest = int(np.argmax(np.log(points).sum(axis=1)))
    ok = np.isfinite(errors)
    return {
        "rmse_log": float(np.sqrt(np.mean(errors[ok] ** 2))) if ok.any() else math.nan,
        "extrapolation_rel_error": float(np.expm1(errors[largest])),
        "n_held_out": int(ok.sum()),
        "log_errors": [[*map(float, p), float(e)] for p, e in zip(points, errors)],
    }


def _identification_warnings(result: FitResult, y: np.ndarray, best, options: FitOptions) -> list[str]:
    """Reasons to distrust a fit: too few points, E/A trade-off, parameters at bounds..."""
    warn = []
    k = len(result.x_names)
    names = PARAM_NAMES[k]
    n_params = len(names)
    if result.n_distinct < n_params + 2:
        warn.append(f"only {result.n_distinct} distinct points for {n_params} parameters: "
                    "the law is barely determined and its CIs are unreliable")  # fmt: skip
    if not result.converged:
        warn.append(f"L-BFGS-B did not converge: {best.message}")
    p = result.params
    if p["E"] < _E_NEGLIGIBLE * y.min():
        warn.append(f"E={p['E']:.3g} is at zero: no irreducible loss is resolved")
    for name, x_name in zip(names[2::2], result.x_names):
        lo, hi = result.ci[name]
        if p[name] < 1e-3 or p[name] > options.exponent_max - 1e-3:
            warn.append(f"{name}={p[name]:.4g} ({x_name}) is at its bound [0, {options.exponent_max}]")
        elif lo < 1e-3 or hi > options.exponent_max - 1e-3:
            warn.append(f"the CI [{lo:.3g}, {hi:.3g}] of {name} ({x_name}) reaches a bound "
                        f"[0, {options.exponent_max}]: {name} is not identified")  # fmt: skip
    draws = result.theta_draws
    if len(draws) >= 3:
        E_lo, E_hi = result.ci["E"]
        # log E against the log of the first power-law term at the geometric-mean x
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = np.corrcoef(draws[:, 0], draws[:, 1])[0, 1]
        if abs(corr) > _TRADEOFF_CORR and E_hi > _TRADEOFF_SPAN * max(E_lo, 1e-300):
            warn.append(f"E and A trade off (bootstrap corr {corr:.2f}; E CI [{E_lo:.3g}, {E_hi:.3g}])")
        vp = result.varpro["params"]
        for name in names[2::2]:
            lo, hi = result.ci[name]
            if not lo <= vp[name] <= hi:
                warn.append(f"variable projection gives {name}={vp[name]:.4g}, outside the CI "
                            f"[{lo:.4g}, {hi:.4g}] of the Huber fit")  # fmt: skip
    boot = result.bootstrap
    if boot["n_clusters"] is not None and boot["n_clusters"] < 2:
        warn.append("a single seed: bootstrap resamples rows, not seeds")
    elif boot["unit"] == "seed" and boot["n_clusters"] < _MIN_CLUSTERS:
        warn.append(f"only {boot['n_clusters']} seeds to resample: CIs are coarse")
    return warn


# ----------------------------------------------------------------------------------
# predictions and inputs


def prediction_frame(result: FitResult, n_grid: int = 64, extend: float = 2.0, n_curves: int = 6) -> pd.DataFrame:
    """Prediction and CI band on a log grid from ``min x / extend`` to ``max x * extend``.

    Joint laws get one curve in N per value of D (the distinct D of the data, or
    ``n_curves`` log-spaced values if there are more). Columns: the law-specific part
    of ``PREDICTION_COLUMNS`` (``kind, x_name, x, d_name, d, y_hat, y_lo, y_hi,
    extrapolated``).
    """
    if n_grid < 2 or extend < 1:
        raise ValueError(f"need n_grid >= 2 and extend >= 1; got n_grid={n_grid}, extend={extend}")
    (x_lo, x_hi) = result.x_range[0]
    grid = np.geomspace(x_lo / extend, x_hi * extend, n_grid)
    if result.kind == "single":
        d_values, d_name = [math.nan], ""
    else:
        d_name = result.x_names[1]
        d_data = np.unique(np.asarray(result.data["X"])[:, 1])
        d_values = d_data if len(d_data) <= n_curves else np.geomspace(*result.x_range[1], n_curves)
    frames = []
    for d in d_values:
        X = grid[:, None] if result.kind == "single" else np.column_stack([grid, np.full(n_grid, d)])
        lo, hi = result.band(X)
        frames.append(pd.DataFrame({
            "kind": result.kind, "x_name": result.x_names[0], "x": grid, "d_name": d_name, "d": d,
            "y_hat": result.predict(X), "y_lo": lo, "y_hi": hi,
            "extrapolated": (grid < x_lo) | (grid > x_hi),
        }))  # fmt: skip
    return pd.concat(frames, ignore_index=True)


WIDTH_SWEEP_COLUMNS = ("parametrization", "model", "width", "seed", "n_params")


def width_sweep_points(table: pd.DataFrame, y: str = "test_loss", step_column: str = "step") -> pd.DataFrame:
    """The points to fit from a width-sweep table: one row per run, its final ``y``.

    ``table`` has columns ``parametrization, model, width, seed, n_params, <y>`` and
    optionally ``step`` (several rows per run; the last step is kept). Runs whose final
    loss is not finite (diverged) are dropped with a logged warning, since a diverged
    run has no loss to fit. Returns columns ``parametrization, model, width, seed,
    n_params, <y>`` sorted by them.
    """
    missing = [c for c in (*WIDTH_SWEEP_COLUMNS, y) if c not in table.columns]
    if missing:
        raise ValueError(f"width-sweep table lacks column(s) {missing}; has {list(table.columns)}")
    run = list(WIDTH_SWEEP_COLUMNS)
    if step_column in table.columns:
        table = table.sort_values(run + [step_column], kind="stable").groupby(run, sort=True).tail(1)
    elif table.duplicated(run).any():
        raise ValueError(f"width-sweep table has several rows per run {run} and no {step_column!r} column")
    points = table[run + [y]].sort_values(run, kind="stable").reset_index(drop=True)
    diverged = ~np.isfinite(points[y].to_numpy(dtype=float))
    if diverged.any():
        log = get_logger("scaling")
        for _, r in points[diverged].iterrows():
            log.warning(f"dropping diverged run {r[run].to_dict()}: final {y}={r[y]}")
        points = points[~diverged].reset_index(drop=True)
    return points
