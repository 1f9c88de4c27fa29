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
* ``linreg.accumulate_bounded``: accumulate's largest mean test error (over iterations and
  configurations) over the ``pi^2/6 sigma^2 d/(T-d-1)`` bound; ``< 1``.
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

    # accumulate bounded: largest mean over the pi^2/6 bound
    acc = table[table["policy"] == "accumulate"]
    q = acc["test_error_mean"] / acc["test_error_bound_limit"]
    qs = acc["test_error_sem"] / acc["test_error_bound_limit"]
    i = q.idxmax()
    row = acc.loc[i]
    out.append(from_interval(
        claim="linreg.accumulate_bounded", statement="Under accumulate the test error stays below "
        "a finite bound, pi^2/6 sigma^2 d/(T-d-1), at every iteration",
        statistic=f"largest accumulate test error / its pi^2/6 bound (iteration {int(row['iteration'])}, "
                  f"d={row['d']}, T={row['T']}, sigma={row['sigma']:g})",
        value=float(q[i]), ci_lo=float(q[i] - z * qs[i]), ci_hi=float(q[i] + z * qs[i]),
        reference=f"{float(row['test_error_limit'] / row['test_error_bound_limit']):.3f} "
                  "(exact n -> inf limit / bound)", below=1.0, **common))
    return out
