"""Claims: each seed-paper claim as a verdict with an interval.

A stage turns its result tables into :class:`Claim` rows (its own ``claims`` module); the
report stage concatenates them into ``results/claims.csv``. This module is a lower layer:
it knows nothing of the stages, only how a claim is decided and written.

The verdict is decided from a confidence interval of the measured statistic, never from the
point estimate alone:

* ``reproduced``: the whole interval lies on the side the claim predicts (or inside the
  range it predicts);
* ``not reproduced``: the whole interval lies on the other side (or outside the range);
* ``not resolved at this scale``: the interval straddles the boundary, or there are fewer
  independent units (seeds, initialisations, runs) than :data:`MIN_UNITS` to resample, or
  the statistic could not be computed (NaN).

Intervals come from the independent unit (a seed, an initialisation, a repetition), by a
method whose coverage is measured at the number of units it is used with
(:mod:`dlrepro.coverage`; the table in ``docs/claims.md``):

* :func:`t_interval`: a mean of per-unit values (paired designs: per-unit differences);
* :func:`fieller_interval`: a ratio of two paired means;
* :func:`bca_interval`: a statistic of many units (initialisations) from bootstrap
  replicates, bias-corrected and accelerated (the jackknife gives the acceleration).

The percentile bootstrap (:func:`bootstrap_ci`, :func:`bootstrap_cis`) covers far less than
its nominal level with few units (about 73% at 3, 87% at 5 for a mean); it is kept for
statistics of many units and for the width stage's own analysis.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
NOT_RESOLVED = "not resolved at this scale"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, NOT_RESOLVED)

#: fewer independent units than this give no verdict: the claim is not resolved (two units
#: make a "95% interval" from two numbers; no method covers at its nominal level there)
MIN_UNITS = 3

#: the columns of ``claims.csv``, in order (documented in the README, "Claims")
COLUMNS = [
    "claim", "stage", "statement", "source", "statistic", "value", "ci_lo", "ci_hi",
    "ci_level", "reference", "expected", "verdict", "unit", "n_units", "scale",
]


@dataclasses.dataclass(frozen=True)
class Claim:
    """One row of ``claims.csv``.

    ``claim`` is a short stable id (``<stage>.<name>``); ``statement`` the claim in words;
    ``source`` where the paper makes it (paper, section or figure); ``statistic`` what is
    measured here; ``value`` / ``ci_lo`` / ``ci_hi`` its point estimate and interval at
    ``ci_level``; ``reference`` the paper's value where one exists (free text, e.g.
    ``"2/3"``, or empty); ``expected`` the decision rule in words (e.g. ``"> 0"``);
    ``unit`` / ``n_units`` the independent unit resampled and how many there were;
    ``scale`` the scale it was measured at (e.g. ``"default preset: d64 GPT-2, 4 generations"``).
    """

    claim: str
    stage: str
    statement: str
    source: str
    statistic: str
    value: float
    ci_lo: float
    ci_hi: float
    verdict: str
    expected: str
    unit: str
    n_units: int
    scale: str
    reference: str = ""
    ci_level: float = 0.95

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"claim {self.claim}: verdict {self.verdict!r} is not one of {VERDICTS}")


def decide(ci_lo: float, ci_hi: float, *, above: float | None = None, below: float | None = None,
           inside: tuple[float, float] | None = None, n_units: int | None = None) -> str:
    """The verdict for an interval ``[ci_lo, ci_hi]`` under exactly one rule.

    ``above=t``: the claim predicts a statistic greater than ``t``; ``below=t``: smaller
    than ``t``; ``inside=(a, b)``: between ``a`` and ``b``. ``n_units`` below
    :data:`MIN_UNITS`, or a non-finite bound, gives ``not resolved at this scale``.
    """
    rules = [r for r in (above, below, inside) if r is not None]
    if len(rules) != 1:
        raise ValueError("decide() takes exactly one of above=, below=, inside=")
    if n_units is not None and n_units < MIN_UNITS:
        return NOT_RESOLVED
    if not (math.isfinite(ci_lo) and math.isfinite(ci_hi)):
        return NOT_RESOLVED
    lo, hi = min(ci_lo, ci_hi), max(ci_lo, ci_hi)
    if above is not None:
        return REPRODUCED if lo > above else NOT_REPRODUCED if hi < above else NOT_RESOLVED
    if below is not None:
        return REPRODUCED if hi < below else NOT_REPRODUCED if lo > below else NOT_RESOLVED
    a, b = sorted(inside)
    if a <= lo and hi <= b:
        return REPRODUCED
    if hi < a or lo > b:
        return NOT_REPRODUCED
    return NOT_RESOLVED


def expected_text(*, above: float | None = None, below: float | None = None,
                  inside: tuple[float, float] | None = None) -> str:
    """The decision rule of :func:`decide` in words, for the ``expected`` column."""
    if above is not None:
        return f"> {above:g}"
    if below is not None:
        return f"< {below:g}"
    a, b = sorted(inside)
    return f"in [{a:g}, {b:g}]"


def bootstrap_ci(units: np.ndarray | Sequence, statistic: Callable[[np.ndarray], float], *,
                 n_resamples: int = 2000, level: float = 0.95, seed: int = 0
                 ) -> tuple[float, float, float]:
    """Point estimate and percentile interval of ``statistic`` over resampled units.

    ``units`` has one row (first axis) per independent unit (a seed, an initialisation, a
    run); each resample draws that many rows with replacement, from a generator seeded by
    ``seed``. Returns ``(statistic(units), lo, hi)``; NaN bounds when there are fewer than
    :data:`MIN_UNITS` units or when every resample's statistic is non-finite.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    data = np.asarray(units)
    value = float(statistic(data))
    n = data.shape[0]
    if n < MIN_UNITS:
        return value, math.nan, math.nan
    rng = np.random.default_rng(seed)
    draws = np.array([statistic(data[rng.integers(0, n, n)]) for _ in range(n_resamples)],
                     dtype=float)
    draws = draws[np.isfinite(draws)]
    if draws.size == 0:
        return value, math.nan, math.nan
    alpha = (1 - level) / 2
    lo, hi = np.quantile(draws, [alpha, 1 - alpha])
    return value, float(lo), float(hi)


def t_interval(values: np.ndarray | Sequence, *, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t interval of independent per-unit values (one per seed, per
    initialisation, per run): ``mean +- t_{n-1} * sd / sqrt(n)``. For a paired design pass
    the per-unit differences. NaN bounds with fewer than :data:`MIN_UNITS` finite values."""
    from scipy import stats

    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    x = np.asarray(values, dtype=float).ravel()
    x = x[np.isfinite(x)]
    n = x.size
    mean = float(x.mean()) if n else math.nan
    if n < MIN_UNITS:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * x.std(ddof=1) / math.sqrt(n))
    return mean, mean - half, mean + half


def fieller_bounds(ma, mb, vaa, vbb, vab, n, *, level: float = 0.95):
    """Fieller bounds of ``mean(a) / mean(b)`` from the means ``ma, mb``, the variances
    ``vaa, vbb`` and covariance ``vab`` of the *means* (sample covariance / ``n``), with
    Student-t quantiles on ``n - 1`` degrees of freedom. Array-valued (vectorised over any
    shape, as the coverage simulations need); a bound is NaN where the denominator's mean is
    not significantly away from 0 (the confidence set is then unbounded)."""
    from scipy import stats

    ma, mb, vaa, vbb, vab = (np.asarray(v, dtype=float) for v in (ma, mb, vaa, vbb, vab))
    t2 = stats.t.ppf(0.5 + level / 2, np.asarray(n) - 1) ** 2
    qa = mb * mb - t2 * vbb
    qb = ma * mb - t2 * vab
    qc = ma * ma - t2 * vaa
    disc = qb * qb - qa * qc
    ok = (qa > 0) & (disc >= 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        root = np.sqrt(np.where(ok, disc, 0.0))
        lo = np.where(ok, (qb - root) / np.where(ok, qa, 1.0), np.nan)
        hi = np.where(ok, (qb + root) / np.where(ok, qa, 1.0), np.nan)
    return lo, hi


def fieller_interval(num: np.ndarray | Sequence, den: np.ndarray | Sequence, *,
                     level: float = 0.95) -> tuple[float, float, float]:
    """Ratio of means ``mean(num) / mean(den)`` over paired units and its Fieller interval
    (Student-t with ``n - 1`` degrees of freedom, the units' covariance of numerator and
    denominator included). The interval is the set of ratios ``q`` for which
    ``mean(num) - q * mean(den)`` is not significantly different from 0; it is bounded only
    when the denominator's mean is significantly away from 0, otherwise the bounds are NaN
    (the ratio is not determined at this scale). Units with a non-finite value are dropped."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    a = np.asarray(num, dtype=float).ravel()
    b = np.asarray(den, dtype=float).ravel()
    if a.shape != b.shape:
        raise ValueError(f"numerator and denominator differ in length: {a.size} vs {b.size}")
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    n = a.size
    ma, mb = (float(a.mean()), float(b.mean())) if n else (math.nan, math.nan)
    ratio = ma / mb if n and mb != 0 else math.nan
    if n < MIN_UNITS:
        return ratio, math.nan, math.nan
    cov = np.cov(np.stack([a, b]), ddof=1) / n
    lo, hi = fieller_bounds(ma, mb, cov[0, 0], cov[1, 1], cov[0, 1], n, level=level)
    return ratio, float(lo), float(hi)


def jackknife_interval(point, jackknife, *, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Normal interval ``point +- z * se`` with the jackknife standard error
    ``se^2 = (n - 1)/n * sum_i (theta_(i) - mean theta_(.))^2`` of the leave-one-unit-out
    values ``jackknife`` (shape ``(n, *S)``; ``point`` shape ``S``). For smooth statistics
    of many units (initialisations); the jackknife variance errs on the large side
    (Efron & Stein 1981), which keeps a variance-based statistic of skewed draws covered
    where the bootstrap's resamples are too narrow (:mod:`dlrepro.coverage`)."""
    from scipy.stats import norm

    jack = np.asarray(jackknife, dtype=float)
    n = jack.shape[0]
    point = np.asarray(point, dtype=float)
    if n < MIN_UNITS:
        nan = np.full(point.shape, np.nan)
        return nan, nan.copy()
    se = np.sqrt((n - 1) / n * ((jack - jack.mean(axis=0)) ** 2).sum(axis=0))
    half = norm.ppf(0.5 + level / 2) * se
    return point - half, point + half


def bca_interval(point, replicates, jackknife, *, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Bias-corrected and accelerated (BCa) bootstrap bounds (Efron 1987).

    ``point``: the statistic on all units (any shape ``S``); ``replicates``: its bootstrap
    replicates, shape ``(B, *S)``; ``jackknife``: its leave-one-unit-out values, shape
    ``(n, *S)`` (for several independent samples, their leave-one-out values stacked: the
    acceleration is computed from the pooled influence values). The bias correction ``z0``
    is the normal quantile of the fraction of replicates below ``point`` (ties count half);
    the acceleration ``a`` is the skewness of the jackknife influence values over 6. The
    bounds are the replicates' quantiles at ``Phi(z0 + (z0 + z)/(1 - a (z0 + z)))`` for
    ``z = Phi^-1(alpha / 2)`` and ``Phi^-1(1 - alpha / 2)``. Non-finite replicates are
    dropped per component; a component with fewer than half its replicates finite gets
    NaN bounds."""
    from scipy.stats import norm

    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    reps = np.asarray(replicates, dtype=float)
    point = np.broadcast_to(np.asarray(point, dtype=float), reps.shape[1:])
    jack = np.asarray(jackknife, dtype=float)
    finite = np.isfinite(reps)
    n_fin = finite.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        below = ((reps < point) & finite).sum(axis=0) + 0.5 * ((reps == point) & finite).sum(axis=0)
        z0 = norm.ppf(np.clip(below / np.maximum(n_fin, 1), 1e-6, 1 - 1e-6))
        u = np.nanmean(jack, axis=0) - jack
        accel = np.nansum(u ** 3, axis=0) / (6.0 * np.nansum(u ** 2, axis=0) ** 1.5)
    accel = np.where(np.isfinite(accel), accel, 0.0)
    z = norm.ppf([(1 - level) / 2, 0.5 + level / 2])
    bounds = []
    for zq in z:
        with np.errstate(invalid="ignore", divide="ignore"):
            prob = norm.cdf(z0 + (z0 + zq) / (1 - accel * (z0 + zq)))
        bounds.append(_quantile_per_component(np.where(finite, reps, np.nan), prob))
    ok = n_fin >= 0.5 * reps.shape[0]
    return np.where(ok, bounds[0], np.nan), np.where(ok, bounds[1], np.nan)


def _quantile_per_component(values: np.ndarray, prob: np.ndarray) -> np.ndarray:
    """Linear-interpolation quantile of ``values`` (first axis; NaN ignored) at a
    probability that differs per component (``prob`` shaped like ``values[0]``)."""
    srt = np.sort(values, axis=0)  # NaN last
    m = np.isfinite(values).sum(axis=0)
    pos = np.clip(np.nan_to_num(prob) * (m - 1), 0, np.maximum(m - 1, 0))
    lo_i = np.floor(pos).astype(int)
    hi_i = np.minimum(lo_i + 1, np.maximum(m - 1, 0))
    frac = pos - lo_i
    take = lambda i: np.take_along_axis(srt, i[None, ...], axis=0)[0]  # noqa: E731
    out = take(lo_i) * (1 - frac) + take(hi_i) * frac
    return np.where((m > 0) & np.isfinite(prob), out, np.nan)


def bootstrap_cis(units: np.ndarray | Sequence, statistic: Callable[[np.ndarray], np.ndarray], *,
                  n_resamples: int = 2000, level: float = 0.95, seed: int = 0, min_finite: float = 0.5
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`bootstrap_ci` of a vector-valued ``statistic`` (one resampling, every component):
    ``(values, lo, hi)`` arrays; the same resamples as :func:`bootstrap_ci` with that seed.
    A component's bounds are NaN where fewer than ``min_finite`` of the draws are finite (a
    statistic undefined on most resamples has no interval) or with too few units."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    data = np.asarray(units)
    value = np.atleast_1d(np.asarray(statistic(data), dtype=float))
    n = data.shape[0]
    nan = np.full_like(value, math.nan)
    if n < MIN_UNITS:
        return value, nan, nan.copy()
    rng = np.random.default_rng(seed)
    draws = np.array([np.atleast_1d(np.asarray(statistic(data[rng.integers(0, n, n)]), dtype=float))
                      for _ in range(n_resamples)])
    alpha = (1 - level) / 2
    lo, hi = nan.copy(), nan.copy()
    for j in range(value.size):
        d = draws[:, j][np.isfinite(draws[:, j])]
        if d.size and d.size >= min_finite * n_resamples:
            lo[j], hi[j] = np.quantile(d, [alpha, 1 - alpha])
    return value, lo, hi


def frame(claims: Iterable[Claim]) -> pd.DataFrame:
    """Claims as a tidy table with :data:`COLUMNS`, in the order given."""
    rows = [dataclasses.asdict(c) for c in claims]
    return pd.DataFrame(rows, columns=COLUMNS)


def write(path, claims: Iterable[Claim]) -> None:
    """Write claims as CSV atomically (``dlrepro.io``)."""
    from dlrepro.io import write_csv

    write_csv(path, frame(claims))


def read(path) -> list[Claim]:
    """Claims back from a CSV written by :func:`write` (an empty file gives none)."""
    table = pd.read_csv(path, keep_default_na=False, na_values=[""])
    out = []
    for rec in table.to_dict("records"):
        rec = {k: rec[k] for k in COLUMNS}
        rec["reference"] = "" if isinstance(rec["reference"], float) and math.isnan(rec["reference"]) \
            else str(rec["reference"])
        rec["n_units"] = int(rec["n_units"])
        out.append(Claim(**rec))
    return out


# --------------------------------------------------------------------------- shared claim shapes


def fmt_scale(*parts) -> str:
    """A ``scale`` string from its non-empty parts, joined with ``"; "``."""
    return "; ".join(str(p) for p in parts if p not in (None, ""))


def from_interval(*, claim: str, stage: str, statement: str, source: str, statistic: str,
                  value: float, ci_lo: float, ci_hi: float, unit: str, n_units: int, scale: str,
                  reference: str = "", ci_level: float = 0.95, above: float | None = None,
                  below: float | None = None, inside: tuple[float, float] | None = None,
                  unresolved_because: str = "") -> Claim:
    """A :class:`Claim` whose verdict is :func:`decide` of its interval under one rule;
    ``unresolved_because`` (e.g. "optimum at the grid's edge") forces ``not resolved at
    this scale`` and is appended to ``scale``. So does a zero-width interval (a bootstrap
    whose resamples all give the same value, e.g. a fit that only the full sample
    determines): it carries no information about the uncertainty."""
    verdict = decide(ci_lo, ci_hi, above=above, below=below, inside=inside, n_units=n_units)
    if not unresolved_because and math.isfinite(ci_lo) and math.isfinite(ci_hi) \
            and abs(ci_hi - ci_lo) <= 1e-12 * max(1.0, abs(value)):
        unresolved_because = "zero-width interval: the resamples do not vary (too few distinct units)"
    if unresolved_because:
        verdict = NOT_RESOLVED
        scale = fmt_scale(scale, unresolved_because)
    return Claim(claim=claim, stage=stage, statement=statement, source=source, statistic=statistic,
                 value=float(value), ci_lo=float(ci_lo), ci_hi=float(ci_hi), verdict=verdict,
                 expected=expected_text(above=above, below=below, inside=inside), unit=unit,
                 n_units=int(n_units), scale=scale, reference=reference, ci_level=ci_level)


#: the paper all replace-vs-accumulate claims come from
COLLAPSE_PAPER = "Gerstgrasser et al. 2024 (arXiv 2404.01413)"
#: ``accumulate_bounded`` is reproduced when accumulate's rise is below this fraction of replace's
ACCUMULATE_MAX_FRACTION = 0.5


def replace_vs_accumulate(table: pd.DataFrame, metric: str, *, stage: str, what: str, scale: str,
                          source: str, claim_prefix: str = "", unit_column: str = "seed",
                          level: float = 0.95) -> list[Claim]:
    """The two model-collapse claims of one metric (lower is better) of a modality.

    ``table`` has ``policy, generation, <unit_column>, <metric>`` rows; generation 0 (shared
    by every policy, under any policy name) is averaged per unit; ``G`` is the last
    generation both ``replace`` and ``accumulate`` reached. Per unit (seed) the rises from
    that unit's own generation 0: ``r = m(replace, G) - m(0)`` and
    ``a = m(accumulate, G) - m(0)`` (a paired design: both arms of a seed start from the
    same generation-0 model, so its noise cancels in ``r`` and ``a`` alike).

    * ``<prefix>replace_rises``: ``mean(r)``, ``> 0``, with the Student-t interval of the
      per-seed rises (:func:`t_interval`);
    * ``<prefix>accumulate_bounded``: ``mean(a) / mean(r)`` (accumulate's rise as a
      fraction of replace's), ``< ACCUMULATE_MAX_FRACTION``, with the Fieller interval of
      that ratio of paired means (:func:`fieller_interval`; unbounded, hence ``not
      resolved``, while replace's rise is not significantly non-zero).

    Fewer than :data:`MIN_UNITS` units with all three values give no interval and the
    verdict ``not resolved at this scale``; units lacking a value are dropped.
    """
    need = ["policy", "generation", unit_column, metric]
    missing = [c for c in need if c not in table.columns]
    if missing:
        raise ValueError(f"{stage}: table lacks columns {missing} for the replace/accumulate claims")
    t = table[need].dropna()
    g0 = t[t["generation"] == 0].groupby(unit_column)[metric].mean()
    ends = {policy: t[(t["policy"] == policy) & (t["generation"] > 0)] for policy in ("replace", "accumulate")}
    last = min((int(r["generation"].max()) for r in ends.values() if len(r)), default=0)
    per_unit = pd.DataFrame({"g0": g0})
    for policy, rows in ends.items():
        per_unit[policy] = rows[rows["generation"] == last].groupby(unit_column)[metric].mean()
    per_unit = per_unit.dropna()
    rise_r = (per_unit["replace"] - per_unit["g0"]).to_numpy(float)
    rise_a = (per_unit["accumulate"] - per_unit["g0"]).to_numpy(float)
    n = len(per_unit) if last > 0 else 0
    unit_name = f"{unit_column}s" if not unit_column.endswith("s") else unit_column
    where = fmt_scale(scale, f"generation 0 vs {last}", f"{n} {unit_name[:-1] if n == 1 else unit_name}")
    if n == 0:
        return [from_interval(
            claim=f"{stage}.{claim_prefix}{name}", stage=stage, statement=f"{what}: no data",
            source=source, statistic=metric, value=math.nan, ci_lo=math.nan, ci_hi=math.nan,
            unit=unit_name, n_units=0, scale=where, ci_level=level, **kw)
            for name, kw in (("replace_rises", {"above": 0.0}),
                             ("accumulate_bounded", {"below": ACCUMULATE_MAX_FRACTION}))]
    value, lo, hi = t_interval(rise_r, level=level)
    out = [from_interval(
        claim=f"{stage}.{claim_prefix}replace_rises", stage=stage,
        statement=f"{what}: under replace (each generation trains only on the previous one's "
                  "samples) the test metric worsens over generations",
        source=source, statistic=f"{metric} of replace at generation {last} minus generation 0 "
                                 f"(mean of per-{unit_column} differences; Student-t interval)",
        value=value, ci_lo=lo, ci_hi=hi, unit=unit_name, n_units=n, scale=where,
        reference="rises every generation", ci_level=level, above=0.0)]
    value, lo, hi = fieller_interval(rise_a, rise_r, level=level)
    why = ""
    if n >= MIN_UNITS and not (math.isfinite(lo) and math.isfinite(hi)):
        why = "replace's rise is not significantly non-zero: the ratio is unbounded (Fieller)"
    out.append(from_interval(
        claim=f"{stage}.{claim_prefix}accumulate_bounded", stage=stage,
        statement=f"{what}: under accumulate (real and all synthetic data kept) the test "
                  "metric stays bounded: it rises far less than under replace",
        source=source, statistic=f"rise of {metric} under accumulate / rise under replace "
                                 f"(generation 0 to {last}; ratio of per-{unit_column} means, Fieller interval)",
        value=value, ci_lo=lo, ci_hi=hi, unit=unit_name, n_units=n, scale=where,
        reference="bounded (about flat)", ci_level=level, below=ACCUMULATE_MAX_FRACTION,
        unresolved_because=why))
    return out
