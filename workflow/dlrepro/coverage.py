"""Coverage of the claims' interval methods, measured by simulation.

A nominal 95% interval is only as good as the fraction of intervals that cover the true
value when the experiment is repeated. For each interval method the claims use
(:mod:`dlrepro.claims`), and for the statistic's own shape, this module draws many
synthetic experiments with a known true value, at the number of units the claims use,
from a normal and a skewed distribution, and counts how often the interval covers it.

A method passes at :data:`REQUIRED` (93%) or more at nominal 95%. An interval that makes
no claim (NaN bounds: a Fieller set that is unbounded because the denominator is not
significantly non-zero) cannot give a wrong verdict, so it counts as covering; the
fraction of bounded intervals is reported beside it.

Distributions of the noise (each standardised to mean 0, variance 1):

* ``normal``;
* ``skewed``: gamma with shape 4 (skewness 1), e.g. a loss difference with a long tail
  towards larger values;
* ``very skewed``: exponential (skewness 2): a stress case, reported but not required
  (no interval from 3 units covers at 95% whatever the skew: Bahadur & Savage 1956).

Every simulation is vectorised over repetitions and seeded, so the table is
deterministic. ``python -m dlrepro report coverage`` prints it (and writes it into
``docs/claims.md`` between its marker comments with ``--write``).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable

import numpy as np

from dlrepro.claims import bca_interval, fieller_bounds, jackknife_interval

LEVEL = 0.95
REQUIRED = 0.93
DISTRIBUTIONS = ("normal", "skewed", "very skewed")
#: the distributions a method must cover at REQUIRED (the stress case is only reported)
REQUIRED_FOR = ("normal", "skewed")


def noise(rng: np.random.Generator, dist: str, size) -> np.ndarray:
    """Standardised noise (mean 0, variance 1) of one of :data:`DISTRIBUTIONS`."""
    if dist == "normal":
        return rng.standard_normal(size)
    if dist == "skewed":
        return (rng.gamma(4.0, size=size) - 4.0) / 2.0
    if dist == "very skewed":
        return rng.exponential(size=size) - 1.0
    raise ValueError(f"unknown distribution {dist!r}; known: {DISTRIBUTIONS}")


def _t_quantile(n, level=LEVEL):
    from scipy import stats

    return stats.t.ppf(0.5 + level / 2, np.asarray(n) - 1)


def _covered(lo, hi, truth):
    """Covers, counting a NaN (unbounded, no claim) interval as covering."""
    bounded = np.isfinite(lo) & np.isfinite(hi)
    hit = np.where(bounded, (lo <= truth) & (truth <= hi), True)
    return float(hit.mean()), float(bounded.mean())


def mean_t(n: int, dist: str, reps: int, seed: int = 0) -> tuple[float, float]:
    """Student-t interval (:func:`dlrepro.claims.t_interval`) of a mean of ``n`` per-unit
    differences (paired design: each unit's difference of two arms)."""
    rng = np.random.default_rng(seed)
    effect = 0.5
    x = effect + noise(rng, dist, (reps, n))
    half = _t_quantile(n) * x.std(axis=1, ddof=1) / math.sqrt(n)
    m = x.mean(axis=1)
    return _covered(m - half, m + half, effect)


def ratio_fieller(n: int, dist: str, reps: int, seed: int = 0, *, rise: float = 1.0,
                  fraction: float = 0.2, sd: float = 0.1) -> tuple[float, float]:
    """Fieller interval (:func:`dlrepro.claims.fieller_interval`) of accumulate's rise over
    replace's, the replace-vs-accumulate design: per unit a generation-0 value ``g0``
    shared by both arms, replace's end ``g0 + rise + e_r`` and accumulate's
    ``g0 + fraction * rise + e_a``; the ratio of the mean rises estimates ``fraction``.
    ``sd`` is each measurement's noise (generation 0 included, so the two rises are
    positively correlated), here a tenth of replace's rise."""
    rng = np.random.default_rng(seed)
    e = sd * noise(rng, dist, (3, reps, n))
    g0 = e[0]
    rep = g0 + rise + e[1]
    acc = g0 + fraction * rise + e[2]
    num, den = acc - g0, rep - g0
    return _fieller_coverage(num, den, fraction)


def ratio_fieller_increments(n: int, dist: str, reps: int, seed: int = 0) -> tuple[float, float]:
    """Fieller interval of a ratio of two mean increments along one chain, as the linear
    regression's doubling ratio: per repetition the increments ``u`` (late) and ``v``
    (early) are correlated (they share the chain) and skewed, ``E u / E v = 0.6`` and each
    increment's noise as large as its mean (one repetition alone says little)."""
    rng = np.random.default_rng(seed)
    common = noise(rng, dist, (reps, n))
    v = 1.0 + 0.6 * common + 0.8 * noise(rng, dist, (reps, n))
    u = 0.6 + 0.36 * common + 0.48 * noise(rng, dist, (reps, n))
    return _fieller_coverage(u, v, 0.6)


def _fieller_coverage(num, den, truth):
    n = num.shape[1]
    ma, mb = num.mean(axis=1), den.mean(axis=1)
    ca, cb = num - ma[:, None], den - mb[:, None]
    vaa = (ca * ca).sum(axis=1) / (n - 1) / n
    vbb = (cb * cb).sum(axis=1) / (n - 1) / n
    vab = (ca * cb).sum(axis=1) / (n - 1) / n
    lo, hi = fieller_bounds(ma, mb, vaa, vbb, vab, n, level=LEVEL)
    return _covered(lo, hi, truth)


def percentile_mean(n: int, dist: str, reps: int, seed: int = 0, n_resamples: int = 500) -> tuple[float, float]:
    """The retired percentile bootstrap (:func:`dlrepro.claims.bootstrap_ci`) of a mean of
    ``n`` units, for comparison."""
    rng = np.random.default_rng(seed)
    x = 0.5 + noise(rng, dist, (reps, n))
    idx = rng.integers(0, n, (n_resamples, n))
    means = x[:, idx].mean(axis=2)  # (reps, B)
    lo, hi = np.quantile(means, [(1 - LEVEL) / 2, 0.5 + LEVEL / 2], axis=1)
    return _covered(lo, hi, 0.5)


def mean_z(n: int, dist: str, reps: int, seed: int = 0) -> tuple[float, float]:
    """Normal interval ``mean +- 1.96 sem`` of a mean of ``n`` repetitions (the linear
    regression's closed-form checks, from ``summary.csv``'s mean and standard error)."""
    from scipy.stats import norm

    rng = np.random.default_rng(seed)
    x = 1.0 + noise(rng, dist, (reps, n))
    half = norm.ppf(0.5 + LEVEL / 2) * x.std(axis=1, ddof=1) / math.sqrt(n)
    m = x.mean(axis=1)
    return _covered(m - half, m + half, 1.0)


def ratio_log_delta(n: int, dist: str, reps: int, seed: int = 0) -> tuple[float, float]:
    """Delta-method interval on the log scale of a ratio of two means of the same
    repetitions, their covariance ignored (the linear regression's ``replace_rises``:
    error at the last iteration over iteration 0; positively correlated along a chain, so
    ignoring the covariance widens the interval)."""
    from scipy.stats import norm

    rng = np.random.default_rng(seed)
    common = noise(rng, dist, (reps, n))
    a = 1.0 + 0.5 * common + 0.5 * noise(rng, dist, (reps, n))
    b = 20.0 + 10.0 * common + 10.0 * noise(rng, dist, (reps, n))
    ma, mb = a.mean(axis=1), b.mean(axis=1)
    se = np.sqrt((b.std(axis=1, ddof=1) / mb) ** 2 / n + (a.std(axis=1, ddof=1) / ma) ** 2 / n)
    r = mb / ma
    z = norm.ppf(0.5 + LEVEL / 2)
    return _covered(r * np.exp(-z * se), r * np.exp(z * se), 20.0)


def _curve_draws(rng, dist, reps, n, depths):
    """Per-draw values at each depth (``reps, n, depths``), positive, correlated across
    depths (AR(1), 0.9), with a normalised variance ``Var/mean^2`` that grows linearly with
    depth; returns the draws and the true log-log slope of ``Var/mean^2`` vs depth."""
    k = len(depths)
    s2 = 0.3 * np.asarray(depths, float) / max(depths)  # Var/mean^2 ~ depth
    z = noise(rng, "normal", (reps, n, k))
    for j in range(1, k):
        z[..., j] = 0.9 * z[..., j - 1] + math.sqrt(1 - 0.81) * z[..., j]
    if dist == "normal":
        x = 1.0 + np.sqrt(s2) * z
        truth_curve = s2
    else:  # lognormal: skewed, as a kernel or NTK over initialisations
        sig2 = np.log1p(s2) if dist == "skewed" else np.log1p(4 * s2)
        x = np.exp(np.sqrt(sig2) * z - sig2 / 2)
        truth_curve = np.expm1(sig2)
    logd = np.log(np.asarray(depths, float))
    truth = float(_slopes(logd, np.log(truth_curve)[None, :])[0])
    return x, truth


def _slopes(x, y):
    xc = x - x.mean()
    return (y - y.mean(axis=-1, keepdims=True)) @ xc / (xc @ xc)


def _curve_stat(s1, s2, n, logd):
    """Log-log slope of ``Var/mean^2`` from the first two sums of the draws."""
    var = (s2 - s1 ** 2 / n) / (n - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return _slopes(logd, np.log(var / (s1 / n) ** 2))


def curve_slope(n: int, dist: str, reps: int, seed: int = 0, *, method: str = "jackknife",
                n_resamples: int = 500, depths=(32, 40, 48, 56, 64)) -> tuple[float, float]:
    """Bootstrap interval over initialisations (draws) of the init stage's deep log-log
    slope of a normalised variance ``n Var / mean^2`` vs depth (``shapes.csv``):
    ``method`` ``"jackknife"`` (:func:`dlrepro.claims.jackknife_interval`, as the init
    stage uses), ``"bca"`` (:func:`dlrepro.claims.bca_interval`) or ``"percentile"`` (for
    comparison: both bootstraps under-cover here, the resamples of a variance of skewed
    draws being too narrow). One matrix of resampling counts serves every repetition (the
    resampling is independent of the data)."""
    rng = np.random.default_rng(seed)
    x, truth = _curve_draws(rng, dist, reps, n, depths)
    logd = np.log(np.asarray(depths, float))
    s1, s2 = x.sum(axis=1), (x * x).sum(axis=1)  # (reps, k)
    point = _curve_stat(s1, s2, n, logd)  # (reps,)
    loo = lambda: _curve_stat(s1[None] - x.transpose(1, 0, 2), s2[None] - (x * x).transpose(1, 0, 2),  # noqa: E731
                              n - 1, logd)
    if method == "jackknife":
        lo, hi = jackknife_interval(point, loo(), level=LEVEL)
        return _covered(lo, hi, truth)
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=n_resamples).astype(float)
    b1 = np.einsum("bn,rnk->brk", counts, x)
    b2 = np.einsum("bn,rnk->brk", counts, x * x)
    reps_stat = _curve_stat(b1, b2, n, logd)  # (B, reps)
    if method == "percentile":
        lo, hi = np.nanquantile(reps_stat, [(1 - LEVEL) / 2, 0.5 + LEVEL / 2], axis=0)
    elif method == "bca":
        lo, hi = bca_interval(point, reps_stat, loo(), level=LEVEL)
    else:
        raise ValueError(f"unknown bootstrap method {method!r}")
    return _covered(lo, hi, truth)


@dataclasses.dataclass(frozen=True)
class Sweep:
    """The shape of a scaling sweep that a per-seed power-law claim is fitted to: its x
    values (one seed's sweep), a law near the default run's fit, and the seeds' noise as a
    standard deviation on the log scale."""

    name: str
    x: np.ndarray
    law: tuple[float, float, float]  # (E, A, alpha)
    log_sd: float


#: the data sweep (``config.yaml``: 6 fractions of about 487,600 training tokens), a law
#: near its pooled fit in the default run (E 2.1, A 71, alpha 0.29) and the seeds' spread
#: (1-2% at one fraction)
DATA_SWEEP = Sweep("6-point data sweep", np.array([1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0]) * 487_581,
                   (2.1, 71.0, 0.29), 0.015)
#: the MLP width sweep (``config.yaml``: widths 64, 96, 128, 256, 512; their parameter
#: counts), a law near the default run's pooled NTK fit (E 0.22, A 22, alpha 0.52: of the
#: three parametrizations, the one whose coverage was lowest in a first look) and the seeds'
#: spread of the final test loss (3-4% at one width)
WIDTH_SWEEP = Sweep("5-width MLP sweep", np.array([17_280, 28_992, 42_752, 118_272, 367_616], dtype=float),
                    (0.222, 22.16, 0.524), 0.035)


def power_law_seed_t(n: int, dist: str, reps: int, seed: int = 0, *, sweep: Sweep = DATA_SWEEP) -> tuple[float, float]:
    """Student-t interval over ``n`` seeds of the per-seed exponents of ``E + A x^-alpha``
    (:mod:`dlrepro.scaling.per_seed`): each seed a sweep over ``sweep.x`` with
    multiplicative noise of ``sweep.log_sd`` on the log scale, each fitted alone by
    :func:`dlrepro.scaling.fit.fit_point`."""
    from dlrepro.scaling.fit import FitOptions, fit_point

    rng = np.random.default_rng(seed)
    E, A, alpha = sweep.law
    clean = E + A * sweep.x ** -alpha
    options = FitOptions(n_resamples=0)
    est = np.array([[fit_point(sweep.x, clean * np.exp(sweep.log_sd * noise(rng, dist, len(sweep.x))), options)["alpha"]
                     for _ in range(n)] for _ in range(reps)])
    half = _t_quantile(n) * est.std(axis=1, ddof=1) / math.sqrt(n)
    m = est.mean(axis=1)
    return _covered(m - half, m + half, alpha)


@dataclasses.dataclass(frozen=True)
class Check:
    """One row of the coverage table: a method, the statistic's shape, where the claims
    use it, the units it is checked at, and the simulation."""

    method: str
    shape: str
    used_by: str
    n: int
    simulate: Callable[..., tuple[float, float]]
    reps: int


#: every interval method the claims use, at the smallest number of units it is used with
CHECKS = (
    Check("Student-t", "mean of per-seed differences", "collapse / VAE / conformers replace_rises; "
          "init training claims", 3, mean_t, 20000),
    Check("Student-t", "mean of per-seed differences", "(the same, 5 seeds)", 5, mean_t, 20000),
    Check("Fieller", "ratio of paired mean rises", "collapse / VAE / conformers accumulate_bounded", 3,
          ratio_fieller, 20000),
    Check("Fieller", "ratio of mean increments", "linreg.accumulate_bounded (smoke: 200 repetitions)", 200,
          ratio_fieller_increments, 4000),
    Check("normal (mean +- 1.96 sem)", "mean of repetitions", "linreg closed-form claims (smoke: 200)", 200,
          mean_z, 4000),
    Check("delta method, log scale", "ratio of two means", "linreg.replace_rises (smoke: 200)", 200,
          ratio_log_delta, 4000),
    Check("Student-t", "mean of per-seed fitted exponents (6-point data sweep)", "scaling.data (at least 6 seeds)",
          6, power_law_seed_t, 200),
    Check("Student-t (3 seeds: for comparison)", "mean of per-seed fitted exponents (6-point data sweep)", "-", 3,
          power_law_seed_t, 200),
    Check("Student-t", "mean of per-seed fitted exponents (5-width MLP sweep)", "scaling.width.* (at least 6 seeds)",
          6, functools.partial(power_law_seed_t, sweep=WIDTH_SWEEP), 200),
    Check("jackknife (normal, jackknife SE)", "log-log slope of n Var/mean^2 vs depth",
          "init curve and width-sweep claims (NTK: 400 initialisations)", 400, curve_slope, 1000),
    Check("BCa bootstrap (not used: for comparison)", "log-log slope of n Var/mean^2 vs depth", "-", 400,
          functools.partial(curve_slope, method="bca"), 1000),
    Check("percentile bootstrap (retired: for comparison)", "log-log slope of n Var/mean^2 vs depth", "-",
          400, functools.partial(curve_slope, method="percentile"), 1000),
    Check("percentile bootstrap (retired: for comparison)", "mean of per-seed differences", "-", 3,
          lambda n, dist, reps, seed=0: percentile_mean(n, dist, reps, seed), 4000),
)


def _reps(c: Check, reps_scale: float, min_reps: int) -> int:
    return max(min_reps, int(c.reps * reps_scale))


def simulate_cell(i: int, j: int, reps: int, seed: int = 0) -> tuple[float, float]:
    """Coverage and bounded fraction of :data:`CHECKS` row ``i`` under distribution ``j``
    (of :data:`DISTRIBUTIONS`), as :func:`table` computes that cell with the same ``seed``."""
    c = CHECKS[i]
    return c.simulate(c.n, DISTRIBUTIONS[j], reps, seed=seed + 1000 * i + j)


def table(reps_scale: float = 1.0, seed: int = 0, workers: int = 1, min_reps: int = 100) -> list[dict]:
    """Every :data:`CHECKS` row's coverage under each distribution (``reps_scale`` scales
    the repetitions, at least ``min_reps``: e.g. 0.25 for a quick look), simulated by
    ``workers`` processes (each cell has its own seed, so the table is the same whatever
    the number)."""
    cells = [(i, j) for i in range(len(CHECKS)) for j in range(len(DISTRIBUTIONS))]
    if workers > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = {cell: pool.submit(simulate_cell, *cell, _reps(CHECKS[cell[0]], reps_scale, min_reps), seed)
                       for cell in cells}
            results = {cell: f.result() for cell, f in futures.items()}
    else:
        results = {cell: simulate_cell(*cell, _reps(CHECKS[cell[0]], reps_scale, min_reps), seed) for cell in cells}
    rows = []
    for i, c in enumerate(CHECKS):
        row = {"method": c.method, "shape": c.shape, "used by": c.used_by, "units": c.n,
               "repetitions": _reps(c, reps_scale, min_reps)}
        for j, dist in enumerate(DISTRIBUTIONS):
            row[dist] = results[i, j][0]
        row["bounded"] = min(results[i, j][1] for j in range(len(DISTRIBUTIONS)))
        row["passes"] = all(row[d] >= REQUIRED for d in REQUIRED_FOR)
        rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    """The coverage table as Markdown (coverage in %, nominal 95%)."""
    head = ["method", "statistic's shape", "used by", "units", "repetitions", *DISTRIBUTIONS,
            "bounded", f">= {REQUIRED:.0%}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["method"], r["shape"], r["used by"], str(r["units"]), str(r["repetitions"]),
                 *(f"{100 * r[d]:.1f}%" for d in DISTRIBUTIONS), f"{100 * r['bounded']:.0f}%",
                 "yes" if r["passes"] else "no"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
