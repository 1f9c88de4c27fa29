"""Tests of dlrepro.linreg: closed forms, simulation vs theory, CLI, determinism, figure."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from dlrepro import linreg


# ------------------------------------------------------------------ closed forms


@pytest.mark.parametrize("d,T,sigma", [(1, 3, 1.0), (5, 30, 0.5), (20, 60, 2.0), (50, 500, 0.1)])
def test_closed_forms_equal_their_defining_sums(d, T, sigma):
    n = np.arange(40)
    j = np.arange(1, 41)
    exact_sum = sigma**2 * d * np.cumsum(1.0 / (j * (j * T - d - 1)))
    np.testing.assert_allclose(linreg.expected_error("accumulate", n, d, T, sigma), exact_sum,
                               rtol=1e-10)
    scale = sigma**2 * d / (T - d - 1)
    np.testing.assert_allclose(linreg.error_bound("accumulate", n, d, T, sigma),
                               scale * np.cumsum(1.0 / j**2), rtol=1e-12)
    np.testing.assert_allclose(linreg.expected_error("replace", n, d, T, sigma), scale * (n + 1),
                               rtol=1e-12)
    np.testing.assert_allclose(linreg.error_bound("replace", n, d, T, sigma), scale * (n + 1),
                               rtol=1e-12)


@pytest.mark.parametrize("d,T", [(1, 3), (10, 12), (10, 100), (100, 1000)])
def test_accumulate_exact_below_bound_and_limits(d, T):
    n = np.arange(200)
    exact = linreg.expected_error("accumulate", n, d, T, 1.0)
    bound = linreg.error_bound("accumulate", n, d, T, 1.0)
    # equal for the real-data fit, strictly below the Gerstgrasser bound afterwards
    assert exact[0] == pytest.approx(bound[0], rel=1e-12)
    assert np.all(exact[1:] < bound[1:])
    assert np.all(np.diff(exact) > 0)
    limit = linreg.expected_error_limit("accumulate", d, T, 1.0)
    bound_limit = linreg.error_bound_limit("accumulate", d, T, 1.0)
    assert bound_limit == pytest.approx(math.pi**2 / 6 * d / (T - d - 1))
    assert np.all(exact < limit) and limit < bound_limit
    assert linreg.expected_error("accumulate", 10**7, d, T, 1.0) == pytest.approx(limit, rel=1e-5)
    # replace has no finite limit and passes any accumulate bound
    assert linreg.expected_error_limit("replace", d, T, 1.0) == math.inf
    assert linreg.expected_error("replace", 2, d, T, 1.0) > bound_limit


def test_theory_rejects_infinite_expectation_and_unknown_policy():
    with pytest.raises(ValueError, match=r"T > d \+ 1.*d=10, T=11"):
        linreg.expected_error("replace", 0, 10, 11, 1.0)
    with pytest.raises(ValueError, match="accumulate-subsample"):
        linreg.error_bound("accumulate-subsample", 0, 5, 30, 1.0)


# ------------------------------------------------------------------ simulation


def _max_abs_z(frame):
    return float(np.abs(frame["z_score"]).max())


@pytest.mark.parametrize(
    "d,T,sigma,sampler",
    [
        (5, 30, 0.5, "wishart"),
        (20, 60, 1.0, "wishart"),
        (2, 12, 3.0, "wishart"),
        (5, 30, 0.5, "direct"),
        (8, 20, 1.5, "direct"),
    ],
)
def test_simulated_mean_within_4_sem_of_exact_theory(d, T, sigma, sampler):
    errors = linreg.simulate_errors(d, T, sigma, iterations=8, n_repeats=3000, seed=1,
                                    sampler=sampler)
    frame = linreg.summarize(errors, d, T, sigma)
    assert set(frame["policy"]) == {"replace", "accumulate"}
    assert len(frame) == 2 * 9
    assert (frame["test_error_sem"] > 0).all()
    assert _max_abs_z(frame) < 4, frame[["policy", "iteration", "z_score"]]


def test_vectorised_fit_equals_literal_ols_on_concatenated_data():
    """Replay the data sampler's draws and fit each repetition with lstsq on the raw data."""
    d, T, sigma, iterations, n_repeats, seed = 3, 7, 0.7, 4, 3, 5
    errors = linreg.simulate_errors(d, T, sigma, iterations, n_repeats, seed, sampler="direct")
    assert linreg.block_sizes(n_repeats, d, T, "direct") == [n_repeats]
    rng = linreg.block_rng(seed, d, T, sigma, 0)
    w_star = rng.standard_normal((n_repeats, d)) / math.sqrt(d)
    data = [linreg.draw_data(rng, n_repeats, d, T, sigma) for _ in range(iterations + 1)]
    for r in range(n_repeats):
        w_rep = w_acc = w_star[r]
        xs, ys = [], []
        for n, (X, E) in enumerate(data):
            x = X[r]
            y_rep, y_acc = x @ w_rep + E[r], x @ w_acc + E[r]
            w_rep = np.linalg.lstsq(x, y_rep, rcond=None)[0]
            xs.append(x)
            ys.append(y_acc)
            w_acc = np.linalg.lstsq(np.concatenate(xs), np.concatenate(ys), rcond=None)[0]
            assert errors["replace"][r, n] == pytest.approx(np.sum((w_rep - w_star[r]) ** 2),
                                                            rel=1e-8)
            assert errors["accumulate"][r, n] == pytest.approx(np.sum((w_acc - w_star[r]) ** 2),
                                                               rel=1e-8)


def test_replace_grows_without_bound_accumulate_stays_under_bound():
    d, T, sigma, iterations = 10, 40, 1.0, 30
    frame = linreg.summarize(
        linreg.simulate_errors(d, T, sigma, iterations, n_repeats=2000, seed=3), d, T, sigma)
    rep = frame[frame["policy"] == "replace"].sort_values("iteration")
    acc = frame[frame["policy"] == "accumulate"].sort_values("iteration")
    scale = sigma**2 * d / (T - d - 1)
    # replace: linear growth with slope sigma^2 d / (T - d - 1), far past accumulate's bound
    slope = np.polyfit(rep["iteration"], rep["test_error_mean"], 1)[0]
    assert slope == pytest.approx(scale, rel=0.1)
    assert rep["test_error_mean"].iloc[-1] > 10 * acc["test_error_bound_limit"].iloc[0]
    # accumulate: every mean below pi^2/6 * scale, and it has flattened out
    assert (acc["test_error_mean"] < math.pi**2 / 6 * scale).all()
    last, mid = acc["test_error_mean"].iloc[-1], acc["test_error_mean"].iloc[15]
    assert last - mid < 0.05 * scale
    assert _max_abs_z(frame) < 4


def test_block_sizes_cover_repeats_and_split_large_runs():
    assert sum(linreg.block_sizes(12345, 100, 1000, "direct")) == 12345
    assert len(linreg.block_sizes(12345, 100, 1000, "direct")) > 1
    assert linreg.block_sizes(50, 5, 30, "wishart") == [50]


# ------------------------------------------------------------------ params


@pytest.mark.parametrize(
    "raw,message",
    [
        ({"d": [5], "T": [30], "widths": [1]}, "unknown key 'widths'"),
        ({"d": [10], "T": [11]}, r"T > d \+ 1"),
        ({"d": 5}, "d must be a list"),
        ({"sigma": [0.0]}, "sigma must be finite and > 0"),
        ({"sigma": [float("nan")]}, "sigma must be finite"),
        ({"policies": ["replace", "accumulate-subsample"]}, "unknown policy 'accumulate-subsample'"),
        ({"n_repeats": 1}, "n_repeats must be an integer >= 2"),
        ({"iterations": True}, "iterations must be an integer"),
        ({"d": [5, 5]}, "d has duplicates"),
        ({"sampler": "torch"}, "unknown sampler 'torch'"),
    ],
)
def test_bad_params_fail_early_naming_the_key(raw, message):
    with pytest.raises(ValueError, match=message):
        linreg.LinregParams.from_json(json.dumps(raw))


def test_params_defaults_and_json():
    p = linreg.LinregParams.from_json('{"d": [3], "T": [9], "sigma": [1]}')
    assert p.d == (3,) and p.T == (9,) and p.sigma == (1,)
    assert p.policies == ("replace", "accumulate") and p.sampler == "wishart"
    with pytest.raises(ValueError, match="not valid JSON"):
        linreg.LinregParams.from_json("{d: 3}")


# ------------------------------------------------------------------ CLI, determinism, figure

SMALL = {"d": [3, 6], "T": [15], "sigma": [0.5, 2.0], "iterations": 5, "n_repeats": 400, "seed": 7}


def _simulate(tmp_path, name, **overrides):
    out = tmp_path / name
    assert linreg.main(["simulate", "--params", json.dumps({**SMALL, **overrides}),
                        "--out", str(out)]) == 0
    return out


def test_simulate_cli_is_deterministic_and_grid_points_independent(tmp_path):
    a = _simulate(tmp_path, "a.csv")
    b = _simulate(tmp_path, "b.csv")
    assert a.read_bytes() == b.read_bytes()
    frame = pd.read_csv(a)
    assert list(frame.columns) == linreg.COLUMNS
    assert len(frame) == 2 * 1 * 2 * 2 * 6  # d x T x sigma x policy x iterations
    np.testing.assert_array_equal(
        frame.loc[frame["policy"] == "accumulate", "n_train"].to_numpy()[:6], 15 * np.arange(1, 7))
    # a sub-grid with one policy reproduces the same rows exactly
    sub = pd.read_csv(_simulate(tmp_path, "c.csv", d=[6], sigma=[2.0], policies=["accumulate"]))
    full = frame[(frame["d"] == 6) & (frame["sigma"] == 2.0) & (frame["policy"] == "accumulate")]
    pd.testing.assert_frame_equal(sub, full.reset_index(drop=True), check_dtype=False)
    # another seed gives other numbers
    other = pd.read_csv(_simulate(tmp_path, "d.csv", seed=8))
    assert not np.allclose(other["test_error_mean"], frame["test_error_mean"])
    np.testing.assert_array_equal(other["test_error_theory"], frame["test_error_theory"])


def test_check_and_plot_cli(tmp_path, capsys):
    csv = _simulate(tmp_path, "summary.csv")
    frame = pd.read_csv(csv)
    capsys.readouterr()
    assert linreg.main(["check", "--csv", str(csv), "--out", str(tmp_path / "check.json")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report == json.loads((tmp_path / "check.json").read_text())
    assert report["max_abs_z"] == pytest.approx(np.abs(frame["z_score"]).max())
    assert report["max_abs_z"] < 4
    assert report["accumulate_theory_below_bound"] is True
    assert report["replace_min_last_over_first"] > 3
    assert linreg.main(["check", "--csv", str(csv), "--max-z", "0"]) == 1

    paths = linreg.plot(frame, tmp_path / "fig" / "linreg")
    assert [p.suffix for p in paths] == [".png", ".pdf"]
    assert all(p.stat().st_size > 1000 for p in paths)
    assert linreg.main(["plot", "--csv", str(csv), "--out", str(tmp_path / "cli.png")]) == 0
    assert (tmp_path / "cli.pdf").exists()
    with pytest.raises(ValueError, match="z_score"):
        linreg.plot(frame.drop(columns="z_score"), tmp_path / "bad")
