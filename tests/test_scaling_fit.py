"""Tests of the scaling-law fitter (dlrepro.scaling): recovery, CI coverage, degenerate
input, identification warnings, cluster bootstrap, regimes, outputs and CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from dlrepro.scaling import cli
from dlrepro.scaling.fit import (
    FIT_COLUMNS,
    PREDICTION_COLUMNS,
    FitOptions,
    _Problem,
    classify_regime,
    fit_law,
    prediction_frame,
    varpro_fit,
    width_sweep_points,
)

TRUTH = {"E": 1.7, "A": 400.0, "alpha": 0.34}
# small settings that keep each fit well under a second
FAST = FitOptions(n_resamples=60, n_starts=8, bootstrap_starts=0)


def law(x, E=TRUTH["E"], A=TRUTH["A"], alpha=TRUTH["alpha"]):
    return E + A * np.asarray(x, dtype=float) ** -alpha


def noisy(x, sigma, seed, **params):
    rng = np.random.default_rng(seed)
    return law(x, **params) * np.exp(rng.normal(0.0, sigma, len(x)))


def test_recovers_noise_free_law_and_varpro_agrees():
    x = np.geomspace(1e5, 1e9, 12)
    fit = fit_law(x, law(x), options=FitOptions(n_resamples=0, n_starts=16))
    for name, value in TRUTH.items():
        assert fit.params[name] == pytest.approx(value, rel=1e-4), name
        assert fit.varpro["params"][name] == pytest.approx(value, rel=1e-3), name
    assert fit.converged
    assert fit.loo["rmse_log"] < 1e-4
    assert abs(fit.loo["extrapolation_rel_error"]) < 1e-4
    assert np.allclose(fit.predict(x), law(x), rtol=1e-5)


def test_varpro_on_its_own_recovers_exponent():
    x = np.geomspace(10, 1e4, 9)
    problem = _Problem.from_data(x[:, None], law(x, E=0.5, A=3.0, alpha=0.7), FitOptions())
    theta, rms = varpro_fit(problem)
    assert theta[2] == pytest.approx(0.7, abs=1e-4)
    assert rms < 1e-6


def test_ci_coverage_on_synthetic_data(record_property, capsys):
    """Empirical coverage of the 95% bootstrap CI over repetitions of noisy data."""
    x = np.repeat(np.geomspace(1e5, 1e9, 8), 2)
    reps = 16
    options = FitOptions(n_resamples=50, n_starts=6, bootstrap_starts=0)
    hits = {name: 0 for name in TRUTH}
    for r in range(reps):
        fit = fit_law(x, noisy(x, 0.02, seed=100 + r), options=options)
        for name, value in TRUTH.items():
            lo, hi = fit.ci[name]
            hits[name] += lo <= value <= hi
    coverage = {name: h / reps for name, h in hits.items()}
    record_property("ci95_coverage", coverage)
    with capsys.disabled():
        print(f"\nempirical coverage of the 95% CI over {reps} repetitions: {coverage}")
    for name, c in coverage.items():
        assert c >= 0.75, f"coverage of {name} is {c}"


@pytest.mark.parametrize(
    "x, y, match",
    [
        ([1, 2, 1, 2, 1, 2], [3.0, 2.0, 3.0, 2.0, 3.1, 2.1], "'x' has 2 distinct"),
        ([1, 2, 3, 4], [3.0, 2.0, 0.0, 1.5], "'loss' must be positive"),
        ([1, 2, 3, 4], [3.0, -2.0, 1.0, 1.5], "'loss' must be positive"),
        ([1, 2, 3, 4], [3.0, np.nan, 1.0, 1.5], "'loss' has 1 non-finite"),
        ([1, np.nan, 3, 4], [3.0, 2.0, 1.0, 1.5], "'x' has 1 non-finite"),
        ([1, 2, 3, 4], [3.0, np.inf, 1.0, 1.5], "'loss' has 1 non-finite"),
        ([0, 2, 3, 4], [3.0, 2.0, 1.0, 1.5], "'x' must be positive"),
    ],
)
def test_degenerate_input_is_an_error(x, y, match):
    with pytest.raises(ValueError, match=match):
        fit_law(np.array(x, dtype=float), np.array(y), options=FAST)


def test_degenerate_joint_input_is_an_error():
    N, D = np.meshgrid(np.geomspace(1e6, 1e8, 4), [1e9, 1e10])
    X = np.column_stack([N.ravel(), D.ravel()])
    with pytest.raises(ValueError, match="'D' has 2 distinct"):
        fit_law(X, np.full(len(X), 2.0), x_names=["N", "D"], options=FAST)
    with pytest.raises(ValueError, match="invalid value"):
        FitOptions(ci_level=1.5)


def test_warns_when_not_identified():
    # four distinct x for three parameters
    x = np.geomspace(1e5, 1e9, 4)
    fit = fit_law(x, noisy(x, 0.01, seed=1), options=FAST)
    assert any("distinct points" in w for w in fit.warnings)
    # a pure power law: E is at zero
    x = np.geomspace(10, 1e5, 10)
    fit = fit_law(x, noisy(x, 0.01, seed=2, E=0.0, A=5.0, alpha=0.5), options=FAST)
    assert any("E=" in w and "at zero" in w for w in fit.warnings)
    # the reducible part is below the noise: alpha's CI runs into a bound
    x = np.geomspace(1e3, 1e6, 8)
    fit = fit_law(x, noisy(x, 0.01, seed=3, E=2.0, A=1.0, alpha=0.9), options=FAST)
    assert any("alpha" in w and "bound" in w for w in fit.warnings)
    # a clean, well-sampled law gets no warning
    x = np.geomspace(1e5, 1e9, 10)
    fit = fit_law(x, noisy(x, 0.005, seed=4), options=FAST)
    assert fit.warnings == []


def test_cluster_bootstrap_by_seed_widens_band_under_shared_seed_noise():
    """A per-seed offset shared by all x moves the whole curve; resampling rows averages it
    away (as if each x had its own seeds) and makes the band too narrow."""
    widths = np.geomspace(1e5, 1e9, 10)
    seeds = np.arange(6)
    X = np.repeat(widths, len(seeds))
    S = np.tile(seeds, len(widths))
    rng = np.random.default_rng(7)
    offset = rng.normal(0.0, 0.03, len(seeds))[S]
    y = law(X) * np.exp(offset + rng.normal(0.0, 0.001, len(X)))
    by_seed = fit_law(X, y, seeds=S, options=FAST)
    by_row = fit_law(X, y, options=FAST)
    assert by_seed.bootstrap["unit"] == "seed" and by_seed.bootstrap["n_clusters"] == 6
    assert by_row.bootstrap["unit"] == "row"
    mid = np.array([np.sqrt(widths[0] * widths[-1])])
    seed_width, row_width = (np.subtract(*f.band(mid)[::-1])[0] for f in (by_seed, by_row))
    assert seed_width > 1.5 * row_width
    # a single seed cannot be resampled: rows are, with a warning
    single = fit_law(X[S == 0], y[S == 0], seeds=S[S == 0], options=FAST)
    assert single.bootstrap["unit"] == "row"
    assert any("single seed" in w for w in single.warnings)


def test_regime_classification():
    assert classify_regime(0.9, 1.05) == "variance-limited"
    assert classify_regime(0.2, 0.6) == "resolution-limited"
    assert classify_regime(1.3, 1.6) == "resolution-limited"
    assert classify_regime(0.5, 2.5) == "undetermined"
    assert classify_regime(float("nan"), float("nan")) == "undetermined"
    x = np.geomspace(10, 1e4, 10)
    variance = fit_law(x, noisy(x, 0.005, seed=5, E=0.2, A=20.0, alpha=1.0), options=FAST)
    resolution = fit_law(x, noisy(x, 0.005, seed=6, E=0.2, A=2.0, alpha=0.3), options=FAST)
    assert variance.regime["alpha"] == "variance-limited"
    assert resolution.regime["alpha"] == "resolution-limited"


def test_leave_one_out_flags_a_broken_law():
    x = np.geomspace(1e5, 1e9, 8)
    y = law(x)
    y[-1] *= 1.2  # the largest model does worse than the law predicts
    fit = fit_law(x, y, options=FitOptions(n_resamples=0, n_starts=8))
    assert fit.loo["extrapolation_rel_error"] < -0.1
    assert fit.loo["n_held_out"] == 8


def test_joint_law_recovery_and_prediction_band():
    N, D = np.meshgrid(np.geomspace(1e6, 1e9, 5), np.geomspace(1e8, 1e11, 5))
    X = np.column_stack([N.ravel(), D.ravel()])
    truth = {"E": 1.69, "A": 406.4, "alpha": 0.34, "B": 410.7, "beta": 0.28}
    y = truth["E"] + truth["A"] * X[:, 0] ** -truth["alpha"] + truth["B"] * X[:, 1] ** -truth["beta"]
    fit = fit_law(X, y, x_names=["N", "D"], options=FitOptions(n_resamples=10, n_starts=16, bootstrap_starts=0))
    for name, value in truth.items():
        assert fit.params[name] == pytest.approx(value, rel=1e-3), name
    assert set(fit.regime) == {"alpha", "beta"}
    pred = prediction_frame(fit, n_grid=7, extend=2.0)
    assert len(pred) == 7 * 5  # one curve per distinct D
    assert (pred["y_lo"] <= pred["y_hat"] * (1 + 1e-9)).all() and (pred["y_hat"] <= pred["y_hi"] * (1 + 1e-9)).all()
    assert pred["extrapolated"].iloc[0] and not pred["extrapolated"].iloc[3]


def test_width_sweep_points():
    rows = []
    for par in ("sp", "mup"):
        for width in (32, 64):
            for seed in (0, 1):
                for step in (10, 20):
                    loss = 1.0 / width + step if not (par == "sp" and width == 64 and seed == 1) else np.nan
                    rows.append(dict(parametrization=par, model="mlp", width=width, seed=seed,
                                     n_params=width * 10, step=step, test_loss=loss))  # fmt: skip
    table = pd.DataFrame(rows).sample(frac=1.0, random_state=0)
    points = width_sweep_points(table)
    assert len(points) == 7  # 8 runs, one diverged
    assert (points["test_loss"] > 20).all()  # the final step was kept
    assert list(points.columns) == ["parametrization", "model", "width", "seed", "n_params", "test_loss"]
    with pytest.raises(ValueError, match="lacks column"):
        width_sweep_points(table.drop(columns="n_params"))
    with pytest.raises(ValueError, match="several rows per run"):
        width_sweep_points(table.drop(columns="step"))


@pytest.fixture
def sweep_csv(tmp_path):
    x = np.geomspace(1e5, 1e9, 6)
    rows = [
        dict(parametrization=par, model="mlp", seed=s, n_params=v, test_loss=float(l))
        for par, (E, A, alpha) in {"sp": (2.0, 50.0, 0.5), "mup": (1.8, 80.0, 0.3)}.items()
        for s in range(3)
        for v, l in zip(x, noisy(x, 0.01, seed=s, E=E, A=A, alpha=alpha))
    ]
    rows.append(dict(parametrization="sp", model="other", seed=0, n_params=1e5, test_loss=-1.0))
    path = tmp_path / "sweep.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _spec(csv, **extra):
    sweep = {"name": "width", "csv": str(csv), "x": "n_params", "y": "test_loss", "group": "parametrization",
             "seed_column": "seed", "filter": {"model": "mlp"}}  # fmt: skip
    return json.dumps({"n_resamples": 20, "n_starts": 8, "bootstrap_starts": 0, "grid_points": 9,
                       "sweeps": [sweep], **extra})  # fmt: skip


def test_fit_sweeps_outputs_are_complete_and_deterministic(sweep_csv, tmp_path):
    def run(out, spec):
        out.mkdir()
        argv = ["fit-sweeps", "--spec", spec, "--out-csv", str(out / "fits.csv"), "--out-json",
                str(out / "fits.json"), "--out-predictions", str(out / "predictions.csv")]  # fmt: skip
        assert cli.main(argv) == 0
        return out

    a = run(tmp_path / "a", _spec(sweep_csv))
    b = run(tmp_path / "b", _spec(sweep_csv))
    c = run(tmp_path / "c", _spec(sweep_csv, seed=1))
    for name in ("fits.csv", "predictions.csv", "fits.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / "fits.csv").read_bytes() != (c / "fits.csv").read_bytes()  # another bootstrap seed

    fits = pd.read_csv(a / "fits.csv")
    assert list(fits.columns) == FIT_COLUMNS
    assert sorted(fits["group"]) == ["mup", "sp"]  # the filtered-out row with loss -1 was not fitted
    assert (fits["n_points"] == 18).all() and (fits["bootstrap_unit"] == "seed").all()
    assert ((fits["alpha_lo"] <= fits["alpha"]) & (fits["alpha"] <= fits["alpha_hi"])).all()
    preds = pd.read_csv(a / "predictions.csv")
    assert list(preds.columns) == PREDICTION_COLUMNS and len(preds) == 2 * 9
    record = json.loads((a / "fits.json").read_text())
    assert record["options"]["n_resamples"] == 20 and record["options"]["seed"] == 0
    assert {f["group"] for f in record["fits"]} == {"sp", "mup"}
    assert all(f["bootstrap"]["n_resamples"] == 20 for f in record["fits"])
    # three seeds have 10 distinct resamples (multisets); each is fitted once
    assert all(f["bootstrap"]["n_distinct_resamples"] <= 10 for f in record["fits"])

    paths = cli.main(["plot", "--fits", str(a / "fits.json"), "--predictions", str(a / "predictions.csv"),
                      "--out", str(tmp_path / "fig" / "scaling.png")])  # fmt: skip
    assert paths == 0
    assert (tmp_path / "fig" / "scaling.png").stat().st_size > 1000
    assert (tmp_path / "fig" / "scaling.pdf").stat().st_size > 1000


@pytest.mark.parametrize(
    "change, match",
    [
        ({"n_resample": 5}, r"unknown key\(s\) \['n_resample'\]"),
        ({"sweeps": [{"name": "w", "csv": "f.csv", "y": "l", "x": "n", "colour": 1}]}, r"\['colour'\]"),
        ({"sweeps": [{"name": "w", "csv": "f.csv", "y": "l", "kind": "joint", "n": "N"}]}, "needs 'n' and 'd'"),
        ({"sweeps": []}, "one or more sweeps"),
        ({"sweeps": [{"name": "w", "y": "l", "x": "n"}]}, r"sweep #0: missing key\(s\) \['csv'\]"),
    ],
)
def test_spec_errors_name_the_key(change, match):
    spec = {"sweeps": [{"name": "w", "csv": "f.csv", "y": "l", "x": "n"}], **change}
    with pytest.raises(ValueError, match=match):
        cli.ScalingParams.from_json(json.dumps(spec))


def test_sweep_errors_name_sweep_and_group(sweep_csv, tmp_path):
    spec = json.loads(_spec(sweep_csv))
    spec["sweeps"][0]["filter"] = {}  # keeps the row with a negative loss
    with pytest.raises(ValueError, match=r"sweep 'width', parametrization='sp': column 'test_loss' must be positive"):
        cli.run_sweeps(cli.ScalingParams.from_json(json.dumps(spec)))
    spec["sweeps"][0]["filter"] = {"model": "transformer"}
    with pytest.raises(ValueError, match="no rows left"):
        cli.run_sweeps(cli.ScalingParams.from_json(json.dumps(spec)))


def test_standalone_fit_and_fit2_commands(tmp_path):
    N, D = np.meshgrid(np.geomspace(1e6, 1e9, 4), np.geomspace(1e8, 1e11, 4))
    table = pd.DataFrame({"N": N.ravel(), "D": D.ravel()})
    table["loss"] = 1.69 + 406.4 * table["N"] ** -0.34 + 410.7 * table["D"] ** -0.28
    table.to_csv(tmp_path / "runs.csv", index=False)
    common = ["--csv", str(tmp_path / "runs.csv"), "--y", "loss", "--n-resamples", "5", "--n-starts", "8"]

    assert cli.scaling_fit_main([*common, "--x", "N", "--out", str(tmp_path / "fit.json")]) == 0
    single = json.loads((tmp_path / "fit.json").read_text())["fits"][0]
    assert single["kind"] == "single" and single["x"] == ["N"] and single["sweep"] == "runs"

    assert cli.main(["fit2", *common, "--n", "N", "--d", "D", "--out", str(tmp_path / "fit2.json")]) == 0
    joint = json.loads((tmp_path / "fit2.json").read_text())["fits"][0]
    assert joint["kind"] == "joint" and joint["params"]["beta"] == pytest.approx(0.28, rel=1e-3)
    assert joint["bootstrap"] == {**joint["bootstrap"], "n_resamples": 5, "seed": 0}
