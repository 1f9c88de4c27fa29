r"""Depth curves with intervals from resampling initialisations (the independent unit).

Every initialisation (draw) contributes one value at every depth, so the depths of a curve
are not independent observations: a least-squares standard error that treats them as such
is several times too small. Here the draws are resampled with replacement (the bootstrap),
the normalised fluctuation ``F(d) = n Var(X_d) / E[X_d]^2`` is recomputed from the
resampled draws' moments at every depth, and every statistic of the curve (its slope, its
peak, its level at the deepest point) is recomputed from that resampled curve; intervals
are percentile intervals of those replicates, except for the smooth statistics
(:data:`JACKKNIFE_STATISTICS`: slopes and levels), whose intervals are normal intervals
with the jackknife standard error over draws (:func:`dlrepro.claims.jackknife_interval`):
the bootstrap's resamples of a variance of skewed draws are too narrow (about 91% coverage
at nominal 95% with 400 draws), the jackknife's are not (:mod:`dlrepro.coverage`).

The resampling is vectorised: a block of replicates is a matrix of multinomial counts
(replicates x draws), so the moments of all replicates are two matrix products.

Tables (columns documented in the README, "Init variants"):

* ``slopes.csv``: one row per (init, quantity, width): ``init, quantity, width, n_inits,
  layer_min, layer_max, fitted_slope, slope_ci_lo, slope_ci_hi, slope_se, ols_se,
  theory_slope, asymptotic_theory_slope``; ``slope_se`` is the bootstrap standard error over
  draws, ``ols_se`` the least-squares error that treats depths as independent (shown
  for comparison only).
* ``shapes.csv``: one row per (init, quantity, width, statistic): ``init, quantity, width,
  n_inits, depth_min, depth_max, statistic, value, ci_lo, ci_hi`` with ``statistic`` one of
  :data:`SHAPE_STATISTICS`.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import pandas as pd
from scipy import stats
from dlrepro.errors import InputFileError, ParamsError

SLOPE_COLUMNS = [
    "init", "quantity", "width", "n_inits", "layer_min", "layer_max", "fitted_slope",
    "slope_ci_lo", "slope_ci_hi", "slope_se", "ols_se", "theory_slope", "asymptotic_theory_slope",
]
SHAPE_COLUMNS = [
    "init", "quantity", "width", "n_inits", "depth_min", "depth_max", "statistic", "value", "ci_lo", "ci_hi",
]
#: ``peak_depth`` / ``peak_value``: where the curve is largest and its value there (whole curve);
#: ``final_value``: the level at the deepest depth (a saturation level, if it saturates);
#: ``final_depth_x_value``: depth times that value (constant if the curve decays as 1/depth);
#: ``loglog_slope``: d log F / d log depth over the deep window (1: linear growth,
#: 0: saturation, -1: decay as 1/depth); ``linear_slope``: dF/d depth over the deep window.
#: statistics smooth in the draws' moments: jackknife intervals (the peaks: percentile)
JACKKNIFE_STATISTICS = ("final_value", "final_depth_x_value", "loglog_slope", "linear_slope")
SHAPE_STATISTICS = ["peak_depth", "peak_value", "final_value", "final_depth_x_value", "loglog_slope", "linear_slope"]


def group_seed(seed: int, *key) -> np.random.Generator:
    """A generator for one curve, seeded by the config seed and a stable hash of ``key``."""
    return np.random.default_rng([seed, zlib.crc32("/".join(map(str, key)).encode())])


def normalized_variance_curve(samples: np.ndarray, width: int) -> np.ndarray:
    """``width * Var / mean^2`` per column of ``samples`` (draws x depths), ``ddof=1``."""
    return width * samples.var(axis=0, ddof=1) / samples.mean(axis=0) ** 2


def replicate_curves(samples: np.ndarray, width: int, n_resamples: int, rng: np.random.Generator,
                     block: int = 100) -> np.ndarray:
    """Normalised-fluctuation curves of ``n_resamples`` bootstrap resamples of the draws
    (rows of ``samples``), shape ``(n_resamples, depths)``."""
    n = samples.shape[0]
    if n < 2:
        raise ValueError(f"need at least 2 draws to resample, got {n}")
    x1, x2 = samples, samples**2
    out = np.empty((n_resamples, samples.shape[1]))
    for start in range(0, n_resamples, block):
        size = min(block, n_resamples - start)
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=size).astype(float)
        s1, s2 = counts @ x1, counts @ x2
        var = (s2 - s1**2 / n) / (n - 1)
        out[start : start + size] = width * var / (s1 / n) ** 2
    return out


def jackknife_curves(samples: np.ndarray, width: int) -> np.ndarray:
    """Leave-one-draw-out normalised-fluctuation curves, shape ``(draws, depths)``."""
    n = samples.shape[0]
    if n < 3:
        raise ValueError(f"need at least 3 draws for the jackknife, got {n}")
    s1 = samples.sum(axis=0) - samples
    s2 = (samples**2).sum(axis=0) - samples**2
    m = n - 1
    return width * ((s2 - s1**2 / m) / (m - 1)) / (s1 / m) ** 2


def deep_window(depths: np.ndarray, fit_from: float) -> np.ndarray:
    """Boolean mask of the depths ``>= fit_from * max`` (at least the deepest three)."""
    if not 0 <= fit_from < 1:
        raise ParamsError(f"fit_from must be in [0, 1), got {fit_from!r}")
    depths = np.asarray(depths)
    mask = depths >= fit_from * depths.max()
    if mask.sum() < 3:
        mask = depths >= np.sort(depths)[-min(3, len(depths))]
    return mask


def line_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least-squares slope of each row of ``y`` against ``x`` (vectorised)."""
    xc = x - x.mean()
    return (y - y.mean(axis=-1, keepdims=True)) @ xc / (xc @ xc)


def curve_statistics(depths: np.ndarray, curves: np.ndarray, window: np.ndarray) -> dict[str, np.ndarray]:
    """Every :data:`SHAPE_STATISTICS` entry for each row of ``curves`` (or one curve)."""
    curves = np.atleast_2d(curves)
    depths = np.asarray(depths, dtype=float)
    peak = np.argmax(curves, axis=1)
    deep = curves[:, window]
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.where(deep > 0, np.log(np.where(deep > 0, deep, 1.0)), np.nan)
    return {
        "peak_depth": depths[peak],
        "peak_value": curves[np.arange(len(curves)), peak],
        "final_value": curves[:, -1],
        "final_depth_x_value": depths[-1] * curves[:, -1],
        "loglog_slope": line_slopes(np.log(depths[window]), logs),
        "linear_slope": line_slopes(depths[window], deep),
    }


def percentile_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the finite replicates (NaN if there are none)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return math.nan, math.nan
    alpha = (1 - level) / 2
    lo, hi = np.quantile(values, [alpha, 1 - alpha])
    return float(lo), float(hi)


def draws_matrix(draws: pd.DataFrame, depth_column: str, value_column: str) -> tuple[np.ndarray, np.ndarray]:
    """A long per-draw table (one init and width) as ``(depths, draws x depths array)``."""
    wide = draws.pivot(index="draw", columns=depth_column, values=value_column).sort_index(axis=1)
    if wide.isna().to_numpy().any():
        raise InputFileError(f"per-draw table has missing ({'draw'}, {depth_column}) cells")
    return wide.columns.to_numpy(), wide.to_numpy(dtype=float)


def analyse_curve(samples: np.ndarray, depths: np.ndarray, width: int, fit_from: float, n_resamples: int,
                  rng: np.random.Generator, level: float = 0.95) -> tuple[dict, dict, dict]:
    """Point statistics, their intervals and the bootstrap SE of the linear slope.

    Returns ``(point, interval, replicates)``: dicts keyed by statistic name, holding the
    full-sample value, ``(lo, hi)`` and the replicate values respectively.
    """
    window = deep_window(depths, fit_from)
    point = {k: float(v[0]) for k, v in curve_statistics(depths, normalized_variance_curve(samples, width),
                                                         window).items()}
    from dlrepro.claims import jackknife_interval

    reps = curve_statistics(depths, replicate_curves(samples, width, n_resamples, rng), window)
    jack = curve_statistics(depths, jackknife_curves(samples, width), window)
    interval = {k: (tuple(float(b) for b in jackknife_interval(point[k], jack[k], level=level))
                    if k in JACKKNIFE_STATISTICS else percentile_interval(v, level)) for k, v in reps.items()}
    return point, interval, reps


def fit_slopes(groups, theory: pd.DataFrame | None, fit_from: float, n_resamples: int, seed: int,
               asymptotic=None, level: float = 0.95) -> pd.DataFrame:
    """``slopes.csv`` from per-draw curves.

    ``groups`` yields ``(init, quantity, width, depths, samples)``; ``theory`` (optional)
    has columns ``init, width, layer, theory_normalized_variance`` for the preactivation
    quantity; ``asymptotic(init)`` gives the large-depth theory slope (NaN if unknown).
    """
    rows = []
    for init, quantity, width, depths, samples in groups:
        window = deep_window(depths, fit_from)
        rng = group_seed(seed, "slope", init, quantity, width)
        point, interval, reps = analyse_curve(samples, depths, width, fit_from, n_resamples, rng, level)
        curve = normalized_variance_curve(samples, width)
        ols_se = float(stats.linregress(depths[window], curve[window]).stderr)
        theory_slope = math.nan
        if theory is not None and quantity == "normalized_variance":
            part = theory[(theory["init"] == init) & (theory["width"] == width)].set_index("layer")
            values = part["theory_normalized_variance"].reindex(depths[window]).to_numpy()
            if np.isfinite(values).all():
                theory_slope = float(line_slopes(depths[window].astype(float), values))
        slope_reps = reps["linear_slope"]
        rows.append((init, quantity, width, samples.shape[0], int(depths[window].min()), int(depths[window].max()),
                     point["linear_slope"], *interval["linear_slope"],
                     float(np.nanstd(slope_reps, ddof=1)), ols_se, theory_slope,
                     asymptotic(init) if asymptotic and quantity == "normalized_variance" else math.nan))
    return pd.DataFrame(rows, columns=SLOPE_COLUMNS)


def curve_shapes(groups, fit_from: float, n_resamples: int, seed: int, level: float = 0.95) -> pd.DataFrame:
    """``shapes.csv`` from per-draw curves (``groups`` as for :func:`fit_slopes`)."""
    rows = []
    for init, quantity, width, depths, samples in groups:
        window = deep_window(depths, fit_from)
        rng = group_seed(seed, "shape", init, quantity, width)
        point, interval, _ = analyse_curve(samples, depths, width, fit_from, n_resamples, rng, level)
        spans = {"peak_depth": (depths.min(), depths.max()), "peak_value": (depths.min(), depths.max()),
                 "final_value": (depths.max(), depths.max()), "final_depth_x_value": (depths.max(), depths.max()),
                 "loglog_slope": (depths[window].min(), depths[window].max()),
                 "linear_slope": (depths[window].min(), depths[window].max())}
        for name in SHAPE_STATISTICS:
            lo_d, hi_d = spans[name]
            rows.append((init, quantity, width, samples.shape[0], int(lo_d), int(hi_d), name, point[name],
                         *interval[name]))
    return pd.DataFrame(rows, columns=SHAPE_COLUMNS)


def draw_groups(fluctuation_draws: pd.DataFrame | None, ntk_draws: pd.DataFrame | None):
    """``(init, quantity, width, depths, samples)`` for every curve of the per-draw tables."""
    sources = []
    if fluctuation_draws is not None:
        sources.append((fluctuation_draws, "normalized_variance", "layer", "kernel"))
    if ntk_draws is not None:
        sources.append((ntk_draws, "ntk_normalized_variance", "depth", "ntk"))
    for table, quantity, depth_column, value_column in sources:
        for (init, width), part in table.groupby(["init", "width"], sort=True):
            depths, samples = draws_matrix(part, depth_column, value_column)
            yield init, quantity, int(width), depths, samples
