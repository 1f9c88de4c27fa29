"""Refits of a law on resampled or reduced data: the bootstrap and leave-one-out.

Both come in two solvers that give the same estimates (``FitOptions.solver``):

``"batched"`` (default)
    every resample (or held-out subset) is one row of weights on the data, and all of them
    are solved together by :meth:`Problem.newton_batch`, each warm-started from the
    full-data optimum and from its best ``bootstrap_starts`` grid points;
``"lbfgs"``
    the per-resample loop this replaced: one L-BFGS-B run per start and resample. It is
    kept as the reference the tests and ``benchmarks/scaling_fit.py`` compare with.

The resamples themselves are drawn identically by both (the same generator, the same
order, degenerate resamples redrawn the same way), so both fit the same resamples.
"""

from __future__ import annotations

import math

import numpy as np

from dlrepro.scaling.problem import Problem, log_model

MIN_DISTINCT = 3  # distinct values of each variable below which we refuse to fit
MAX_REDRAWS = 1000  # redraws of degenerate resamples before giving up


def is_fittable(X: np.ndarray, n_params: int | None = None) -> bool:
    """Whether a subset of validated points still has enough distinct x to fit a law of
    ``n_params`` parameters (default ``1 + 2k``): ``MIN_DISTINCT`` values of each variable
    and ``n_params`` distinct points."""
    if len(X) == 0:
        return False
    return bool(_fittable_counts(X, np.arange(len(X)), n_params)(np.ones((1, len(X))))[0])


def _units(n: int, seeds) -> tuple[str, np.ndarray, int | None]:
    """Resampling unit ("row" or "seed"), each row's unit label, and the number of seeds."""
    if seeds is None:
        return "row", np.arange(n), None
    _, labels = np.unique(np.asarray(seeds), return_inverse=True)
    n_clusters = int(labels.max()) + 1
    if n_clusters >= 2:
        return "seed", labels.ravel(), n_clusters
    return "row", np.arange(n), n_clusters


def _fittable_counts(X: np.ndarray, labels: np.ndarray, n_params: int | None):
    """:func:`is_fittable` of many subsets of the rows of ``X`` at once, each given as counts
    of the units (``labels``: each row's unit): returns a function mapping counts
    (B, n_units) to a mask (B,) of the subsets whose points can be fitted."""
    n_params = 1 + 2 * X.shape[1] if n_params is None else n_params
    codes = [np.unique(X[:, j], return_inverse=True)[1].ravel() for j in range(X.shape[1])]
    codes.append(np.unique(X, axis=0, return_inverse=True)[1].ravel())
    needed = [MIN_DISTINCT] * X.shape[1] + [n_params]
    one_hot = [np.eye(c.max() + 1)[c] for c in codes]  # (n, distinct values)

    def fittable(counts: np.ndarray) -> np.ndarray:
        present = (counts > 0)[:, labels].astype(float)  # (B, n) rows drawn
        return np.logical_and.reduce([((present @ o) > 0).sum(axis=1) >= k for o, k in zip(one_hot, needed)])

    return fittable


def draw_resamples(X: np.ndarray, labels: np.ndarray, n_resamples: int, seed: int, unit: str,
                   n_params: int | None = None):  # fmt: skip
    """Unit counts of each resample (R, n_units), redrawing resamples that cannot be fitted.

    The draws are those of one generator, resample after resample (a resample that cannot
    be fitted is replaced by the next draw); they are made in blocks, which gives the same
    stream. Returns ``(counts, n_redrawn)``.
    """
    n_units = int(labels.max()) + 1
    rng = np.random.default_rng(seed)
    fittable = _fittable_counts(X, labels, n_params)
    kept, n_kept, n_redrawn, trailing = [], 0, 0, 0  # trailing: failed draws since the last kept
    while n_kept < n_resamples:
        block = max(2 * (n_resamples - n_kept), 32)
        draws = rng.integers(0, n_units, (block, n_units))
        counts = np.bincount((draws + n_units * np.arange(block)[:, None]).ravel(),
                             minlength=block * n_units).reshape(block, n_units)  # fmt: skip
        take = np.flatnonzero(fittable(counts))[: n_resamples - n_kept]
        failed = np.diff(np.concatenate([[-1 - trailing], take])) - 1  # failed draws before each kept one
        trailing = block - 1 - take[-1] if len(take) else trailing + block
        if (failed >= MAX_REDRAWS).any() or (n_kept + len(take) < n_resamples and trailing >= MAX_REDRAWS):
            raise ValueError(f"could not draw a fittable resample in {MAX_REDRAWS} tries ({n_units} {unit}s)")
        n_redrawn += int(failed.sum())
        kept.append(counts[take])
        n_kept += len(take)
    return np.concatenate(kept).astype(np.int64), n_redrawn


def bootstrap(problem: Problem, X: np.ndarray, theta_hat: np.ndarray, seeds, options, log) -> tuple[np.ndarray, dict]:
    """Refit ``options.n_resamples`` resamples of runs (clustered by seed when given).

    ``theta_hat`` and the estimates returned are free vectors (:meth:`Problem.expand` gives
    the full ones). Returns the normalised estimates (R, n_free) and a summary for the output.
    Identical resamples (few seeds give few distinct multisets) are fitted once.
    """
    unit, labels, n_clusters = _units(len(X), seeds)
    info = {"n_resamples": options.n_resamples, "seed": options.seed, "unit": unit, "n_clusters": n_clusters,
            "n_redrawn": 0, "n_not_converged": 0, "n_distinct_resamples": 0, "solver": options.solver}  # fmt: skip
    if options.n_resamples == 0:
        return np.empty((0, len(theta_hat))), info
    counts, info["n_redrawn"] = draw_resamples(X, labels, options.n_resamples, options.seed, unit, problem.n_free)
    distinct, inverse = np.unique(counts, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    W = distinct[:, labels].astype(float)  # (U, n) row weights of each distinct resample
    if options.solver == "lbfgs":
        fitted, not_converged = _refit_loop(problem, theta_hat, W, None, options.bootstrap_starts, log, "bootstrap")
    else:
        fitted, not_converged = _refit_batched(problem, theta_hat, W, options.bootstrap_starts)
    info["n_not_converged"] = int(not_converged.sum())
    info["n_distinct_resamples"] = len(distinct)
    log.info(f"bootstrap: {options.n_resamples} resamples ({len(distinct)} distinct, {unit} resampling, "
             f"{options.solver} solver)")  # fmt: skip
    return fitted[inverse], info


def _refit_batched(problem: Problem, theta_hat: np.ndarray, W: np.ndarray, n_grid: int):
    """Best optimum of each row of weights ``W`` (U, n) from ``theta_hat`` and its best
    ``n_grid`` grid points, all solved in one batch. Returns (estimates (U, p), not converged (U,))."""
    U, p = len(W), len(theta_hat)
    starts = [np.broadcast_to(theta_hat, (U, 1, p))]
    if n_grid:
        starts.append(problem.screen_batch(W, n_grid))
    starts = np.concatenate(starts, axis=1)  # (U, m, p)
    m = starts.shape[1]
    res = problem.newton_batch(starts.reshape(U * m, p), np.repeat(W, m, axis=0))
    fun = res.fun.reshape(U, m)
    best = np.argmin(fun, axis=1)  # the first of equal optima, as the loop keeps it
    rows = np.arange(U) * m + best
    return res.x[rows], ~res.converged[rows]


def _refit_loop(problem, theta_hat, W, masks, n_grid, log, what):
    """The reference: one L-BFGS-B run per start and row of weights."""
    U = len(W)
    fitted = np.empty((U, len(theta_hat)))
    not_converged = np.zeros(U, dtype=bool)
    report_every = max(U // 5, 1)
    for u in range(U):
        w = W[u]
        starts = np.vstack([theta_hat, problem.screen(w, n_grid)]) if n_grid else theta_hat[None]
        res, _ = problem.minimize(starts, w)
        fitted[u], not_converged[u] = res.x, not res.converged
        if (u + 1) % report_every == 0:
            log.info(f"{what} {u + 1}/{U}")
    return fitted, not_converged


def leave_one_out(problem: Problem, X: np.ndarray, theta_hat: np.ndarray, options) -> dict:
    """Refit without each distinct point; error of the prediction at the held-out point.

    ``rmse_log``: RMS over held-out points of ``log L_hat - mean log L``;
    ``extrapolation_rel_error``: ``L_hat / L - 1`` at the largest point (largest x, or
    largest N*D), predicted by the law fitted to the others. ``theta_hat`` is a free vector.
    """
    points, inverse = np.unique(X, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    errors = np.full(len(points), np.nan)
    # each distinct point is a unit: hold out one at a time
    held = np.flatnonzero(_fittable_counts(X, inverse, problem.n_free)(1 - np.eye(len(points), dtype=np.int64)))
    if len(held):
        W = (inverse[None, :] != held[:, None]).astype(float)
        if options.solver == "lbfgs":
            from dlrepro.log import get_logger

            fitted, _ = _refit_loop(problem, theta_hat, W, None, options.bootstrap_starts,
                                    get_logger("scaling"), "leave-one-out")  # fmt: skip
        else:
            fitted, _ = _refit_batched(problem, theta_hat, W, options.bootstrap_starts)
        for i, theta in zip(held, fitted):
            lse, _ = log_model(problem.expand(theta), np.log(points[i] / problem.x_ref)[None])
            errors[i] = lse[0] - problem.ly[inverse == i].mean()
    largest = int(np.argmax(np.log(points).sum(axis=1)))
    ok = np.isfinite(errors)
    return {
        "rmse_log": float(np.sqrt(np.mean(errors[ok] ** 2))) if ok.any() else math.nan,
        "extrapolation_rel_error": float(np.expm1(errors[largest])),
        "n_held_out": int(ok.sum()),
        "log_errors": [[*map(float, p), float(e)] for p, e in zip(points, errors)],
    }
