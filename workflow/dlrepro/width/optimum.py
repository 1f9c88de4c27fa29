"""The optimal learning rate of one loss curve over a log2 grid, and whether the grid reaches
far enough past it (Tensor Programs V's protocol, issue #30). Used by the runs (to extend a
cell's grid) and by the analysis (per-seed and mean optima), below both."""

from __future__ import annotations

import math

import numpy as np

REACH = 1.0  # octaves: the optimum's parabola uses the points this close to the best one, and
# the grid must reach this far past every optimum


def quadratic_optimum(log2_lr, losses, reach: float = REACH) -> tuple[float, int]:
    """The optimal log2 learning rate of one loss curve and the index of its best grid point.

    ``losses`` (NaN: not run; inf: diverged) at the points ``log2_lr``; the optimum is the
    vertex of the least-squares parabola through the finite points within ``reach`` octaves
    of the best one, kept inside their span; the best point itself when fewer than three
    points are there or the parabola opens downwards. ``(nan, -1)`` when no loss is finite."""
    x, y = np.asarray(log2_lr, float), np.asarray(losses, float)
    finite = np.isfinite(y)
    if not finite.any():
        return math.nan, -1
    i = int(np.argmin(np.where(finite, y, np.inf)))
    near = finite & (np.abs(x - x[i]) <= reach + 1e-9)
    if near.sum() < 3:
        return float(x[i]), i
    a, b, _ = np.polyfit(x[near], y[near], 2)
    if not a > 0:
        return float(x[i]), i
    return float(np.clip(-b / (2 * a), x[near].min(), x[near].max())), i


def near_edge(log2_lr, optimum: float, reach: float = REACH) -> bool:
    """Whether the grid ``log2_lr`` fails to reach ``reach`` octaves past ``optimum`` on either side."""
    x = np.asarray(log2_lr, float)
    return not (math.isfinite(optimum) and x.min() <= optimum - reach + 1e-9 and x.max() >= optimum + reach - 1e-9)
