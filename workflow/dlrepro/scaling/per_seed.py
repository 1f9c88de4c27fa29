"""Per-seed fits of a one-variable law: the independent unit of a sweep's exponent.

A sweep with a seed column (``SweepSpec.seed_column``) is several independent sweeps, one
per seed. The pooled fit (:func:`dlrepro.scaling.fit.fit_law`) resamples whole seeds for
its bootstrap, but a percentile bootstrap over 3 to 6 clusters covers far less than its
nominal level (``docs/claims.md``). The claims therefore fit the law to each seed's runs
alone (:func:`dlrepro.scaling.fit.fit_point`, the pooled fit's own estimator) and take a
Student-t interval of the per-seed exponents over the seeds, whose coverage is simulated
in :mod:`dlrepro.coverage` at the sweep's shape. A seed's fit counts only where its sweep
has at least :data:`MIN_DISTINCT` distinct values of ``x`` (three parameters and two
degrees of freedom, the pooled fitter's own threshold for a determined law).

``seed_fits.csv`` columns: ``sweep, group_column, group, x, seed, n_points, n_distinct,
E, A, alpha, determined`` (1 when ``n_distinct >= MIN_DISTINCT``).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from dlrepro.scaling.fit import FitOptions, fit_point

#: distinct x values a per-seed fit of E + A x^-alpha needs (3 parameters + 2)
MIN_DISTINCT = 5
COLUMNS = ["sweep", "group_column", "group", "x", "seed", "n_points", "n_distinct", "E", "A", "alpha",
           "determined"]


def seed_rows(x: np.ndarray, y: np.ndarray, seeds: np.ndarray, options: FitOptions) -> list[dict]:
    """One row per seed: its own fit of ``y = E + A x^-alpha`` (no bootstrap)."""
    x, y, seeds = np.asarray(x, float), np.asarray(y, float), np.asarray(seeds)
    rows = []
    for seed in sorted(set(seeds.tolist())):
        mask = seeds == seed
        distinct = len(np.unique(x[mask]))
        row = {"seed": seed, "n_points": int(mask.sum()), "n_distinct": distinct,
               "E": np.nan, "A": np.nan, "alpha": np.nan, "determined": int(distinct >= MIN_DISTINCT)}
        if distinct >= 3:
            row.update(fit_point(x[mask], y[mask], options))
        rows.append(row)
    return rows


def seed_fits_table(params) -> pd.DataFrame:
    """Per-seed fits of every one-variable sweep with a seed column of ``params``
    (:class:`dlrepro.scaling.sweeps.ScalingParams`)."""
    from dlrepro.scaling.sweeps import groups_of, load_sweep_table

    options = dataclasses.replace(params.options(), n_resamples=0)
    out = []
    for sweep in params.sweeps:
        if not sweep.seed_column or len(sweep.x_columns) != 1:
            continue
        table = load_sweep_table(sweep)
        for group, part in groups_of(sweep, table):
            label = {"sweep": sweep.name, "group_column": sweep.group or "", "group": group,
                     "x": sweep.x_columns[0]}
            for row in seed_rows(part[sweep.x_columns[0]].to_numpy(float), part[sweep.y].to_numpy(float),
                                 part[sweep.seed_column].to_numpy(), options):
                out.append({**label, **row})
    return pd.DataFrame(out, columns=COLUMNS)
