"""Claims of the linear-regression stage, from ``results/linreg/summary.csv``.

(``dlrepro.linreg`` is one module, so its claims live beside it rather than in a
``linreg/claims.py``.) Gerstgrasser et al. 2024, Sec. 3, with the exact finite-``n``
expectations of :mod:`dlrepro.linreg` as reference values. The independent unit is the
repetition (``linreg.n_repeats`` independent chains per configuration); each row of the
table holds the mean over repetitions and its standard error, so intervals are normal
intervals of those means (a ratio of two means by the delta method on the log scale,
ignoring their positive covariance along a chain, which only widens the interval).

* ``linreg.replace_rises``: replace's test error at the last iteration over iteration 0,
  the smallest over (d, T, sigma); ``> 1`` (closed form: ``n + 1``).
* ``linreg.replace_closed_form`` / ``linreg.accumulate_closed_form``: simulated mean over
  the exact expectation at the last iteration, the configuration furthest from 1; inside
  ``[1 - CLOSED_FORM_TOL, 1 + CLOSED_FORM_TOL]``.
* ``linreg.accumulate_bounded``: boundedness as the increments' decay, by the doubling
  ratio (:func:`doubling_ratio`): accumulate's rise over the last doubling of the
  iterations (``m`` to ``2m``, ``m = N // 2``) over its rise over the doubling before
  (``m/2`` to ``m``). Increments ``~ n^-p`` give a ratio near ``2^(1-p)``: replace's constant
  increments give ``(N - N/2)/(N/2 - N/4)``, about 2 (unbounded, linear); harmonic ones
  (``p = 1``, unbounded, logarithmic) about 1; accumulate's (``p = 2``, summable) about
  1/2. A ratio below 1 at every configuration (a geometric series over doublings) is
  boundedness: rule ``< 1``, for the configuration with the largest upper bound. Interval:
  Fieller over repetitions, the two rises paired by repetition (:func:`dlrepro.claims.
  fieller_interval`); the exact ratio from the closed forms is the reference.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import norm

from dlrepro.claims import COLLAPSE_PAPER, Claim, fmt_scale, from_interval

TABLES = ("linreg/summary.csv",)
CLOSED_FORM_TOL = 0.1
CONFIG = ["d", "T", "sigma"]


def doubling_iterations(last: int) -> tuple[int, int, int]:
    """``(m/2, m, 2m)`` with ``m = N // 2`` (floored): two exact doublings ending at or
    before the last iteration ``N`` (``N >= 4``)."""
    m = last // 2
    return m // 2, m, 2 * m


def doubling_ratio(errors: np.ndarray, exact=None, level: float = 0.95) -> tuple[float, float, float, float]:
    """The doubling ratio of one policy's per-repetition errors ``(repetitions, N + 1)``:
    ``mean(e_N - e_{N/2}) / mean(e_{N/2} - e_{N/4})`` with its Fieller interval (the two
    rises paired by repetition), and ``exact(iterations)`` (the closed form) at the same
    iterations. All NaN when there are fewer than 4 iterations."""
    from dlrepro.claims import fieller_interval

    errors = np.asarray(errors, dtype=float)
    last = errors.shape[1] - 1
    if last < 4:
        return math.nan, math.nan, math.nan, math.nan
    q, m, n = doubling_iterations(last)
    ratio, lo, hi = fieller_interval(errors[:, n] - errors[:, m], errors[:, m] - errors[:, q], level=level)
    theory = math.nan
    if exact is not None:
        e = np.asarray(exact(np.array([q, m, n])), dtype=float)
        theory = float((e[2] - e[1]) / (e[1] - e[0]))
    return ratio, lo, hi, theory


def _z(level: float) -> float:
    return float(norm.ppf(0.5 + level / 2))


def claims(results_dir: Path, config: dict, level: float = 0.95) -> list[Claim]:
    table = pd.read_csv(Path(results_dir) / "linreg" / "summary.csv")
    z = _z(level)
    last = int(table["iteration"].max())
    n_rep = int(table["n_repeats"].min())
    scale = fmt_scale(f"{table.groupby(CONFIG).ngroups} (d, T, sigma) configurations",
                      f"{last} iterations", f"{n_rep} repetitions each")
    source = f"{COLLAPSE_PAPER}, Sec. 3 (linear regression)"
    common = dict(stage="linreg", source=source, unit="repetitions", n_units=n_rep, scale=scale,
                  ci_level=level)
    out = []

    # replace rises: ratio last / first, worst configuration
    rep = table[table["policy"] == "replace"]
    first = rep[rep["iteration"] == 0].set_index(CONFIG)
    end = rep[rep["iteration"] == last].set_index(CONFIG)
    ratio = end["test_error_mean"] / first["test_error_mean"]
    se_log = np.sqrt((end["test_error_sem"] / end["test_error_mean"]) ** 2
                     + (first["test_error_sem"] / first["test_error_mean"]) ** 2)
    key = ratio.idxmin()
    r, s = float(ratio[key]), float(se_log[key])
    out.append(from_interval(
        claim="linreg.replace_rises", statement="Under replace the test error grows without bound, "
        "linearly in the number of iterations", statistic=f"test error at iteration {last} / iteration 0 "
        f"(replace; smallest over configurations, here d={key[0]}, T={key[1]}, sigma={key[2]:g})",
        value=r, ci_lo=r * math.exp(-z * s), ci_hi=r * math.exp(z * s),
        reference=f"{last + 1} (closed form (n+1) sigma^2 d/(T-d-1))", above=1.0, **common))

    # closed forms: simulation / exact expectation at the last iteration
    for policy in ("replace", "accumulate"):
        rows = table[(table["policy"] == policy) & (table["iteration"] == last)]
        q = rows["test_error_mean"] / rows["test_error_theory"]
        qs = rows["test_error_sem"] / rows["test_error_theory"]
        i = (q - 1).abs().idxmax()
        row = rows.loc[i]
        formula = ("(n+1) sigma^2 d/(T-d-1)" if policy == "replace"
                   else "sigma^2 d sum_{j=1}^{n+1} 1/(j(jT-d-1))")
        out.append(from_interval(
            claim=f"linreg.{policy}_closed_form",
            statement=f"The simulated {policy} test error matches its exact expectation {formula}",
            statistic=f"simulated / exact test error at iteration {last} ({policy}; furthest from 1, "
                      f"d={row['d']}, T={row['T']}, sigma={row['sigma']:g})",
            value=float(q[i]), ci_lo=float(q[i] - z * qs[i]), ci_hi=float(q[i] + z * qs[i]),
            reference="1", inside=(1 - CLOSED_FORM_TOL, 1 + CLOSED_FORM_TOL), **common))

    # accumulate bounded: the doubling ratio, the configuration with the largest upper bound
    acc = table[(table["policy"] == "accumulate") & (table["iteration"] == last)]
    q, m, n = doubling_iterations(last)
    if "doubling_ci_hi" in acc and len(acc):
        worst = acc["doubling_ci_hi"].fillna(math.inf).idxmax()
        row = acc.loc[worst]
        value, lo, hi, exact = (float(row[f"doubling_{k}"]) for k in ("ratio", "ci_lo", "ci_hi", "theory"))
        where = f"d={row['d']}, T={row['T']}, sigma={row['sigma']:g}"
    else:
        value = lo = hi = exact = math.nan
        where = "table lacks the doubling columns"
    out.append(from_interval(
        claim="linreg.accumulate_bounded", statement="Under accumulate the test error stays bounded: its "
        "increments vanish (about 1/n^2), so each doubling of the iterations adds less than the doubling "
        "before (a convergent series), while replace's increments stay constant",
        statistic=f"accumulate's rise from iteration {m} to {n} / its rise from {q} to {m} (doubling ratio; "
                  f"largest upper bound over configurations, here {where}; Fieller interval)",
        value=value, ci_lo=lo, ci_hi=hi,
        reference=f"{exact:.3f} (exact); replace {(n - m) / max(m - q, 1):g}, harmonic growth about 1",
        below=1.0, unresolved_because="" if last >= 4 else "fewer than 4 iterations: no doubling ratio",
        **common))
    return out
