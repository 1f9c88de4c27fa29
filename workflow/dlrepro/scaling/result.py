"""The result of a fit: :class:`FitResult` (estimates, intervals, standard errors, the
bootstrap draws and diagnostics, with its rows for ``fits.json`` and ``fits.csv``).

``PARAM_NAMES`` are the internal names of the parameters of a law with one or two variables,
in the order of the internal vector ``theta = (e, a_1, alpha_1, a_2, alpha_2)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from dlrepro.scaling.problem import Problem, log_model

# Names of the parameters of a law with one or two variables, in the order of the
# internal vector theta = (e, a_1, alpha_1, a_2, alpha_2).
PARAM_NAMES = {1: ("E", "A", "alpha"), 2: ("E", "A", "alpha", "B", "beta")}


@dataclass
class FitResult:
    """A fitted law with its bootstrap intervals and diagnostics (raw units throughout).

    ``params``, ``ci``, ``se`` are keyed by the internal names ``E, A, alpha[, B, beta]``;
    ``names`` maps them to the display names of ``to_dict`` and ``formula``."""

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
    problem: Problem = field(repr=False)
    se: dict[str, float] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return "single" if len(self.x_names) == 1 else "joint"

    @property
    def draws(self) -> np.ndarray:
        """Bootstrap estimates (R, p) in raw units, columns in ``PARAM_NAMES`` order."""
        return self.problem.to_raw(self.theta_draws)

    @property
    def covariance(self) -> np.ndarray:
        """Bootstrap covariance (p, p) of the raw parameters (NaN with fewer than 2 resamples)."""
        p = len(self.theta_hat)
        if len(self.theta_draws) < 2:
            return np.full((p, p), np.nan)
        return np.cov(self.draws, rowvar=False)

    def display(self, name: str) -> str:
        return self.names.get(name, name)

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
        lse, _ = log_model(thetas, np.log(X) - np.log(self.problem.x_ref))
        return self.problem.y_ref * np.exp(lse)

    def formula(self, digits: int = 3) -> str:
        """The law as text, e.g. ``L = 1.69 + 406*N^-0.34``."""
        p = self.params
        terms = [f"{p['E']:.{digits}g}"]
        for (a, alpha), name in zip((("A", "alpha"), ("B", "beta")), self.x_names):
            terms.append(f"{p[a]:.{digits}g}*{name}^-{p[alpha]:.{digits}g}")
        return "L = " + " + ".join(terms)

    def to_dict(self) -> dict:
        """JSON-ready summary (everything but the bootstrap draws and the data; NaN becomes
        null), parameters under their display names."""
        names = PARAM_NAMES[len(self.x_names)]
        shown = [self.display(n) for n in names]
        return _nan_to_none({
            "kind": self.kind,
            "x": list(self.x_names),
            "y": self.y_name,
            "formula": self.formula(),
            "param_names": dict(zip(names, shown)),
            "params": {self.display(k): v for k, v in self.params.items()},
            "ci": {self.display(k): list(v) for k, v in self.ci.items()},
            "se": {self.display(k): v for k, v in self.se.items()},
            "covariance": {"names": shown, "matrix": self.covariance.tolist()},
            "ci_level": self.ci_level,
            "n_points": self.n_points,
            "n_distinct": self.n_distinct,
            "objective": self.objective,
            "converged": self.converged,
            "best_start": self.best_start,
            "bootstrap": self.bootstrap,
            "leave_one_out": self.loo,
            "varpro": {**self.varpro, "params": {self.display(k): v for k, v in self.varpro["params"].items()}},
            "regime": {self.display(k): v for k, v in self.regime.items()},
            "warnings": self.warnings,
            "x_range": [list(r) for r in self.x_range],
        })

    def to_row(self) -> dict:
        """One row of fits.csv (without the sweep and group columns)."""
        row = {"kind": self.kind, "x": self.x_names[0], "d": self.x_names[1] if self.kind == "joint" else "",
               "y": self.y_name}  # fmt: skip
        for name in ("E", "A", "alpha", "B", "beta"):
            lo, hi = self.ci.get(name, (np.nan, np.nan))
            row.update({name: self.params.get(name, np.nan), f"{name}_lo": lo, f"{name}_hi": hi,
                        f"{name}_se": self.se.get(name, np.nan)})  # fmt: skip
        exps = self.varpro["params"]
        row.update(
            ci_level=self.ci_level,
            n_points=self.n_points,
            n_distinct=self.n_distinct,
            n_resamples=self.bootstrap["n_resamples"],
            bootstrap_seed=self.bootstrap["seed"],
            bootstrap_unit=self.bootstrap["unit"],
            bootstrap_clusters=self.bootstrap["n_clusters"] if self.bootstrap["unit"] == "seed" else np.nan,
            loo_rmse_log=self.loo["rmse_log"],
            extrapolation_rel_error=self.loo["extrapolation_rel_error"],
            varpro_alpha=exps["alpha"],
            varpro_beta=exps.get("beta", np.nan),
            regime=self.regime["alpha"],
            regime_beta=self.regime.get("beta", ""),
            warning="; ".join(self.warnings),
            param_names=",".join(self.display(n) for n in PARAM_NAMES[len(self.x_names)]),
            objective=self.objective,
            converged=self.converged,
        )
        return row


def _nan_to_none(obj):
    """Replace float NaN by None in nested dicts/lists, so that the JSON output is strict."""
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(v) for v in obj]
    if isinstance(obj, float) and math.isnan(obj):
        return None
    return obj


def plain_value(v):
    """numpy scalar -> plain Python value (for JSON)."""
    return v.item() if isinstance(v, np.generic) else v
