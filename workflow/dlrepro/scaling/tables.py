"""Tables derived from fits and inputs: predictions with CI bands, and the points of a width sweep.

``prediction_frame(result)`` takes a :class:`dlrepro.scaling.fit.FitResult` (only its
``x_range``, ``kind``, ``x_names``, ``data``, ``predict`` and ``band``);
``width_sweep_points(table)`` turns the width stage's curves into one row per run.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from dlrepro.log import get_logger


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
