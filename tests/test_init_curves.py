"""Intervals over draws for depth curves: coverage on synthetic draws with a known slope,
shape statistics on known curves."""

import numpy as np
import pytest

from dlrepro.init.curves import (
    analyse_curve,
    curve_statistics,
    deep_window,
    group_seed,
    line_slopes,
    normalized_variance_curve,
    replicate_curves,
)


def _draws(rng, n_draws, depths, slope, width, rho=0.9):
    """Draws whose normalised fluctuation is ``slope * depth`` (up to O(1/width)), with
    noise shared across depths (correlation ``rho``), as in a network where every
    initialisation contributes to every depth."""
    shared = rng.standard_normal((n_draws, 1))
    own = rng.standard_normal((n_draws, len(depths)))
    sigma = np.sqrt(slope * depths / width)
    return 1.0 + sigma * (rho * shared + np.sqrt(1 - rho**2) * own)


def test_bootstrap_over_draws_covers_the_known_slope():
    """95% intervals of the slope cover the true one in roughly 95% of 80 repetitions
    (binomial spread: 0.85-1.0 holds with high probability), while least-squares
    errors that treat depths as independent are far too small."""
    depths = np.arange(1, 17, dtype=float)
    width, slope = 64, 0.5
    window = deep_window(depths, 0.0)
    hits, ols_hits = 0, 0
    for rep in range(80):
        rng = np.random.default_rng(rep)
        samples = _draws(rng, 400, depths, slope, width)
        _, interval, _ = analyse_curve(samples, depths, width, 0.0, 300, group_seed(rep, "test"))
        lo, hi = interval["linear_slope"]
        hits += lo <= slope <= hi
        curve = normalized_variance_curve(samples, width)
        fit = np.polyfit(depths, curve, 1, cov=True)
        est, se = fit[0][0], np.sqrt(fit[1][0, 0])
        ols_hits += abs(est - slope) <= 1.96 * se
        assert window.all()
    assert 0.85 <= hits / 80 <= 1.0
    assert ols_hits / 80 < 0.6


def test_replicates_are_moments_of_resampled_draws():
    rng = np.random.default_rng(0)
    samples = rng.random((50, 4)) + 1.0
    reps = replicate_curves(samples, 8, 3, np.random.default_rng(1), block=2)
    # every replicate is the normalised variance of some multiset of the draws
    counts = np.random.default_rng(1).multinomial(50, np.full(50, 1 / 50), size=2)
    resampled = np.repeat(samples, counts[0], axis=0)
    assert np.allclose(reps[0], normalized_variance_curve(resampled, 8))
    with pytest.raises(ValueError, match="at least 2 draws"):
        replicate_curves(samples[:1], 8, 3, rng)


def test_shape_statistics_of_known_curves():
    depths = np.array([1, 2, 4, 8, 16, 32], dtype=float)
    window = deep_window(depths, 0.5)
    assert window.tolist() == [False, False, False, True, True, True]  # at least the deepest three
    rise_decay = np.where(depths <= 4, 0.01 * depths, 0.16 / depths)  # peak 0.04 at depth 4, then 1/depth
    stats = {k: v[0] for k, v in curve_statistics(depths, rise_decay, window).items()}
    assert stats["peak_depth"] == 4 and stats["peak_value"] == pytest.approx(0.04)
    assert stats["loglog_slope"] == pytest.approx(-1.0)
    assert stats["final_depth_x_value"] == pytest.approx(0.16)
    linear = curve_statistics(depths, 0.5 * depths, window)
    assert linear["loglog_slope"][0] == pytest.approx(1.0) and linear["linear_slope"][0] == pytest.approx(0.5)
    assert linear["peak_depth"][0] == 32
    flat = curve_statistics(depths, np.full(6, 3.0), window)
    assert flat["loglog_slope"][0] == pytest.approx(0.0, abs=1e-12)
    assert line_slopes(np.arange(4.0), np.array([[0, 2, 4, 6.0]]))[0] == pytest.approx(2.0)
