"""The batched solver's parts: the derivatives on distinct input values, the vectorised
resample draws, and the bound starts that end the crawls of weakly identified resamples."""

from __future__ import annotations

import numpy as np
import pytest

from dlrepro.scaling import bootstrap
from dlrepro.scaling.fit import FitOptions, fit_law
from dlrepro.scaling.problem import LOSSES, Problem, _derivatives, log_model, objective


def _problem(k: int, loss: str = "huber_log", tied: bool = False, seed: int = 0) -> Problem:
    rng = np.random.default_rng(seed)
    if k == 1:
        X = np.repeat(np.geomspace(1e5, 1e9, 6), 2)[:, None]  # repeated values, as seeds give
        y = (1.8 + 400 * X[:, 0] ** -0.35) * np.exp(rng.normal(0, 0.01, len(X)))
    else:
        N, D = np.meshgrid(np.geomspace(1e7, 1e10, 4), np.geomspace(1e9, 1e12, 5))
        X = np.column_stack([N.ravel(), D.ravel()])
        y = (1.8 + 480 * X[:, 0] ** -0.35 + 2000 * X[:, 1] ** -0.37) * np.exp(rng.normal(0, 0.01, len(X)))
    return Problem.from_data(X, y, FitOptions(loss=loss, tied_exponents=tied))


@pytest.mark.parametrize("k, loss", [(1, "huber_log"), (2, "huber_log"), (1, "least_squares"), (2, "least_squares")])
def test_batched_derivatives_are_those_of_the_objective(k, loss):
    """f, gradient and Hessian of the batch (exponentials on distinct values, one log per
    point) against the per-start objective and central differences of its gradient."""
    pb = _problem(k, loss)
    rng = np.random.default_rng(1)
    p = 1 + 2 * k
    theta = np.column_stack([rng.uniform(-2, 0, 5)] + [c for _ in range(k) for c in
                            (rng.uniform(-3, 0, 5), rng.uniform(0.1, 1.5, 5))])  # fmt: skip
    W = rng.integers(0, 3, (5, len(pb.ly))).astype(float)
    f, g, H = _derivatives(theta, pb.levels, pb.ly, W, 1e-1, loss)  # delta 0.1: smooth at these residuals
    lse = pb.levels.terms(theta, weights=False)
    np.testing.assert_allclose(lse, log_model(theta, pb.lX)[0], rtol=1e-13, atol=1e-13)
    for s in range(5):
        f_ref, g_ref = objective(theta[s], pb.lX, pb.ly, W[s], 1e-1, loss)
        assert f[s] == pytest.approx(f_ref, rel=1e-12)
        np.testing.assert_allclose(g[s], g_ref, rtol=1e-10, atol=1e-12)
        h = 1e-6
        numeric = np.array([(objective(theta[s] + h * e, pb.lX, pb.ly, W[s], 1e-1, loss)[1]
                             - objective(theta[s] - h * e, pb.lX, pb.ly, W[s], 1e-1, loss)[1]) / (2 * h)
                            for e in np.eye(p)])  # fmt: skip
        np.testing.assert_allclose(H[s], numeric, rtol=1e-5, atol=1e-6 * np.abs(numeric).max())


def test_batched_derivatives_do_not_overflow_at_the_bounds():
    """Terms are shifted by each problem's largest one: a steep law at its bounds stays finite."""
    pb = _problem(2)
    lo, hi = pb.lo_hi
    theta = np.array([hi, lo, [lo[0], hi[1], hi[2], lo[3], hi[4]], [hi[0], lo[1], hi[2], hi[3], lo[4]]])
    f, g, H = pb._batch_derivatives(theta, np.ones((4, len(pb.ly))))
    assert np.isfinite(f).all() and np.isfinite(g).all() and np.isfinite(H).all()


def _is_fittable(X, n_params) -> bool:
    """The reference check: 3 distinct values of each variable and n_params distinct points."""
    return all(len(np.unique(X[:, j])) >= 3 for j in range(X.shape[1])) and len(np.unique(X, axis=0)) >= n_params


def _draw_resamples_sequential(X, labels, n_resamples, seed, n_params):
    """The reference: one resample at a time, redrawing the ones that cannot be fitted."""
    n_units = int(labels.max()) + 1
    rng = np.random.default_rng(seed)
    counts, n_redrawn = np.empty((n_resamples, n_units), dtype=np.int64), 0
    for b in range(n_resamples):
        for _ in range(bootstrap.MAX_REDRAWS):
            c = np.bincount(rng.integers(0, n_units, n_units), minlength=n_units)
            if _is_fittable(X[c[labels] > 0], n_params):
                break
            n_redrawn += 1
        else:
            raise ValueError("no fittable resample")
        counts[b] = c
    return counts, n_redrawn


@pytest.mark.parametrize("case", ["rows", "few rows", "seeds", "joint"])
def test_vectorised_resample_draws_are_the_sequential_ones(case):
    rng = np.random.default_rng(3)
    seeds = None
    if case == "rows":
        X = np.geomspace(1e5, 1e9, 9)[:, None]
    elif case == "few rows":  # most draws of 4 points have < 3 distinct: many redraws
        X = np.geomspace(1e5, 1e9, 4)[:, None]
    elif case == "seeds":
        X = np.repeat(np.geomspace(1e4, 1e8, 5), 3)[:, None]
        seeds = np.tile(np.arange(3), 5)
    else:
        X = np.column_stack([np.repeat(np.geomspace(1e7, 1e9, 3), 3), np.tile(np.geomspace(1e9, 1e11, 3), 3)])
    unit, labels, _ = bootstrap._units(len(X), seeds)
    n_params = 1 + 2 * X.shape[1]
    seed = int(rng.integers(0, 1000))
    got, got_redrawn = bootstrap.draw_resamples(X, labels, 300, seed, unit, n_params)
    want, want_redrawn = _draw_resamples_sequential(X, labels, 300, seed, n_params)
    np.testing.assert_array_equal(got, want)
    assert got_redrawn == want_redrawn
    assert (case != "few rows") or got_redrawn > 100
    for c in want[:50]:  # the one-subset check is the same
        assert bootstrap.is_fittable(X[c[labels] > 0], n_params) == _is_fittable(X[c[labels] > 0], n_params)
    assert not bootstrap.is_fittable(X[:0], n_params)


def test_a_resample_that_cannot_be_drawn_is_an_error():
    X = np.array([[1e5], [1e6], [1e7]])  # 3 distinct points can never fit 4 parameters
    unit, labels, _ = bootstrap._units(3, None)
    with pytest.raises(ValueError, match=r"could not draw a fittable resample in 1000 tries \(3 rows\)"):
        bootstrap.draw_resamples(X, labels, 5, 0, unit, 4)


def test_a_flat_resample_is_solved_at_zero_E_instead_of_crawling():
    """A resample whose losses hardly fall (4 distinct points of a group of the benchmark):
    its optimum is the pure power law (E = 0). From the full-data optimum, L-BFGS-B crawls
    towards it along a valley for over a thousand iterations; the batched solver jumps to
    E's bound and ends there, at the same objective, without handing it to L-BFGS-B."""
    from benchmarks.scaling_fit import Setup, group_data

    x, y = group_data(Setup())[0]
    fit = fit_law(x, y, options=FitOptions(n_resamples=0))
    pb = fit.problem
    w = np.array([0, 0, 0, 0, 2, 3, 0, 0, 0, 5, 1], dtype=float)
    batch = pb.newton_batch(fit.theta_hat[None], w)
    lbfgs, _ = pb.minimize(fit.theta_hat[None], w)
    assert lbfgs.nit > 1000 and lbfgs.x[0] < -10  # the crawl, towards E = 0
    assert batch.n_lbfgs == 0 and batch.iterations < 500
    assert batch.fun[0] <= lbfgs.fun + 1e-9 * max(1.0, abs(lbfgs.fun))
    assert batch.x[0, 0] == pytest.approx(pb.lo_hi[0][0], abs=1e-6)  # E at its bound: E = 0 in effect
    np.testing.assert_allclose(pb.to_raw(batch.x[0])[1:], pb.to_raw(lbfgs.x)[1:], rtol=1e-5)  # same A, alpha


@pytest.mark.parametrize("loss", LOSSES)
def test_tied_problems_use_the_same_levels(loss):
    pb = _problem(2, loss, tied=True)
    phi = np.array([[-1.0, -1.0, 0.4, -0.5], [-0.5, -2.0, 0.3, -1.0]])
    f, g, H = pb._batch_derivatives(phi, np.ones((2, len(pb.ly))))
    for s in range(2):
        f_ref, g_ref = pb._objective(phi[s], pb.lX, pb.ly, np.ones(len(pb.ly)))
        assert f[s] == pytest.approx(f_ref, rel=1e-12)
        np.testing.assert_allclose(g[s], g_ref, rtol=1e-10, atol=1e-12)
