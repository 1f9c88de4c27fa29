"""The width stage's protocols (issue #30): initialisation seed apart from the data seed,
a coordinate check that stays valid, learning-rate optima from a least-squares parabola on a
grid extended past them, interval coverage of the variance slope, and the width claims.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from dlrepro import claims as C
from dlrepro.io import save_npy, write_json
from dlrepro.report import claims as registry
from dlrepro.width import analysis, coord_check, runs, tasks
from dlrepro.width.params import train_params
from test_width import MLP_TRAIN, mnist_dir  # noqa: F401  (a fixture)


def _by_id(rows):
    return {c.claim: c for c in rows}


# --------------------------------------------------------------------------- seeds


def _first_weights(task, parametrization, seed):
    model, _ = tasks.parametrized_model(task, parametrization, 16, seed)
    return [p.detach().clone() for p in model.parameters()]


def _first_batches(task, data_seed, n=3):
    return [x for (x, _), _ in zip(task.train_batches(data_seed, 10), range(n))]


@pytest.mark.parametrize("arm", ["online", "offline"])
def test_initialisation_and_data_seeds_are_independent(mnist_dir, arm):  # noqa: F811
    task = tasks.make_task("mlp", train_params("mlp", MLP_TRAIN), mnist_dir, arm)
    # the same initialisation seed, different data seeds: identical weights, different batches
    a, b = _first_weights(task, "mup", 3), _first_weights(task, "mup", 3)
    assert all(torch_equal(x, y) for x, y in zip(a, b))
    assert not all(torch_equal(x, y) for x, y in zip(_first_batches(task, 0), _first_batches(task, 1)))
    # the same data seed, different initialisation seeds: identical batches, different weights
    assert all(torch_equal(x, y) for x, y in zip(_first_batches(task, 5), _first_batches(task, 5)))
    assert not any(torch_equal(x, y) for x, y in zip(a, _first_weights(task, "mup", 4)))


def torch_equal(x, y) -> bool:
    return x.shape == y.shape and bool((x == y).all())


def test_cell_runs_differ_only_in_what_their_seed_sets(tmp_path, mnist_dir):  # noqa: F811
    """In a cell, the main runs share the data stream and differ in initialisation; the data
    runs share the initialisation and differ in data: at step 0 (before any update) the data
    runs' probe logits coincide and the main runs' do not; after training the data runs differ."""
    params = train_params("mlp", {**MLP_TRAIN, "seeds": [0, 1, 2], "data_seeds": [0, 1, 2]})
    out = tmp_path / "cell"
    meta = runs.run_cell("mlp", params, "mup", 16, "online", mnist_dir, out, tmp_path / "ckpt")
    main, data = np.load(out / "probe_logits.npy"), np.load(out / "probe_logits_data.npy")
    assert meta["data_seed"] == 0 and meta["data_seeds"] == [0, 1, 2] and meta["init_seed_of_data_runs"] == 0
    np.testing.assert_array_equal(data[0], main[0])  # data stream 0 at init 0 is the main run of seed 0
    assert np.array_equal(data[1, 0], data[2, 0]) and not np.array_equal(main[1, 0], main[2, 0])
    assert not np.allclose(data[1, -1], data[2, -1])
    curves = pd.read_csv(out / "curves.csv")
    assert (curves["data_seed"] == 0).all() and sorted(curves["seed"].unique()) == [0, 1, 2]


# --------------------------------------------------------------------------- coordinate check


def _check(mnist_dir, parametrization, lr, widths=(16, 64, 256)):  # noqa: F811
    params = train_params("mlp", {**MLP_TRAIN, "pool": 1, "n_train_eval": 64})
    task = tasks.make_task("mlp", params, mnist_dir, "online")
    x, y = task.train_eval
    frames = [coord_check.checked_coords(task, params, list(widths), parametrization, 3, (x[:32], y[:32]),
                                         lr=lr, seed=s) for s in range(3)]
    return pd.concat(frames, ignore_index=True).assign(model="mlp")


def test_coord_check_is_valid_at_the_small_rate_and_flags_a_large_one(mnist_dir):  # noqa: F811
    rate = MLP_TRAIN["lr"]["sp"] * coord_check.CoordCheckSection().lr_mult
    assert coord_check.CoordCheckSection().lr_mult == 1 / 16
    good = _check(mnist_dir, "sp", rate)
    assert set(good.columns) == set(coord_check.COORD_COLUMNS)
    assert (good["valid"] == 1).all() and (good["lr"] == rate).all()
    first = good[good["step"] == 0].groupby(["width", "seed"])["loss"].first()
    assert (good.groupby(["width", "seed"])["loss"].max() <= first).all()
    # SP: the logits' change grows with width at every recorded step, for every seed
    logits = good[(good["layer"] == "logits") & (good["step"] > 0)]
    for step, g in logits.groupby("step"):
        cube = g.pivot_table(index="seed", columns="width", values="delta_rms")
        slopes = [np.polyfit(np.log(cube.columns.to_numpy(float)), np.log(row), 1)[0] for row in cube.to_numpy()]
        assert min(slopes) > 0.3, (step, slopes)
    # a rate far above training's: the wide SP networks' loss rises, and the check says so
    bad = _check(mnist_dir, "sp", 200 * MLP_TRAIN["lr"]["sp"])
    assert (bad["valid"] == 0).any()
    got = _by_id(_coord_claims(bad))
    assert got["width.mlp.coord_check_sp_grows"].verdict == C.NOT_RESOLVED
    assert "invalid coordinate check" in got["width.mlp.coord_check_sp_grows"].scale


def _coord_claims(table):
    from dlrepro.width.claims import _coord_claims as claims_of

    return claims_of("mlp", table)


def _coord_table(slopes_by_step, seeds=range(4), widths=(64, 128, 256, 512), valid=1, noise=0.02):
    rng = np.random.default_rng(2)
    rows = []
    for param, slopes in slopes_by_step.items():
        for w in widths:
            for s in seeds:
                for step, slope in enumerate([0.0] + list(slopes)):
                    rows.append({"model": "mlp", "parametrization": param, "width": w, "seed": s, "lr": 1e-3,
                                 "step": step, "layer": "logits", "rms": 1.0,
                                 "delta_rms": 0.0 if step == 0 else (w / 64) ** slope * (1 + rng.normal(0, noise)),
                                 "loss": 2.0 - 0.1 * step, "valid": valid})
    return pd.DataFrame(rows)


def test_coord_claims_are_judged_at_every_step():
    got = _by_id(_coord_claims(_coord_table({"sp": [1.0, 0.9, 0.8], "mup": [0.0, 0.02, -0.03]})))
    assert got["width.mlp.coord_check_sp_grows"].verdict == C.REPRODUCED
    assert got["width.mlp.coord_check_sp_grows"].value == pytest.approx(0.8, abs=0.05)  # the weakest step
    assert got["width.mlp.coord_check_mup_flat"].verdict == C.REPRODUCED
    assert "lr 0.001" in got["width.mlp.coord_check_mup_flat"].scale
    # growth that fades by the last step (a network that died) is no reproduction
    got = _by_id(_coord_claims(_coord_table({"sp": [1.0, 0.5, -0.5], "mup": [0.0, 0.0, 0.0]})))
    assert got["width.mlp.coord_check_sp_grows"].verdict == C.NOT_RESOLVED
    assert "steps disagree" in got["width.mlp.coord_check_sp_grows"].scale
    got = _by_id(_coord_claims(_coord_table({"sp": [1.0, 1.0, 1.0], "mup": [0.0, 0.0, 0.0]}, valid=0)))
    assert {c.verdict for c in got.values()} == {C.NOT_RESOLVED}


# --------------------------------------------------------------------------- learning-rate optimum


def test_quadratic_optimum_of_a_parabola():
    x = np.arange(-3, 3.01, 0.5)
    for centre in (-1.3, 0.0, 0.7):
        assert analysis.quadratic_optimum(x, (x - centre) ** 2 + 2)[0] == pytest.approx(centre)
    # only the points within an octave of the best enter the fit: far points off the parabola don't matter
    y = (x - 0.3) ** 2
    y[x > 1.5] = -5 + 0 * y[x > 1.5] + 100  # worse, and far from any parabola
    assert analysis.quadratic_optimum(x, y)[0] == pytest.approx(0.3)
    # noise: least squares over 5 points beats the 3-point vertex on average
    rng = np.random.default_rng(0)
    errs = [analysis.quadratic_optimum(x, (x - 0.2) ** 2 + rng.normal(0, 0.05, x.size))[0] - 0.2 for _ in range(200)]
    assert abs(np.mean(errs)) < 0.05 and np.std(errs) < 0.15
    # diverged (inf) and missing (NaN) points are left out; nothing finite: NaN
    y = (x - 0.5) ** 2
    y[x >= 1.5] = np.inf
    y[0] = np.nan
    assert analysis.quadratic_optimum(x, y)[0] == pytest.approx(0.5)
    assert math.isnan(analysis.quadratic_optimum(x, np.full(x.size, np.inf))[0])
    assert analysis.near_edge(x, 2.2) and analysis.near_edge(x, -2.5) and not analysis.near_edge(x, 1.9)


def test_grid_extension_near_an_edge():
    grid = [-2, -1.5, -1, -0.5, 0, 0.5, 1, 1.5, 2]
    assert runs.extend_grid(grid, 0.3) == []
    assert runs.extend_grid(grid, 1.4) == [2.5, 3.0]  # one octave past the edge, at the grid's spacing
    assert runs.extend_grid(grid, -1.9) == [-3.0, -2.5]
    assert runs.extend_grid(grid, 1.4, limit=(-4, 2.5)) == [2.5]  # no further than lr_grid_extend allows
    assert runs.extend_grid([0], 0.0) == [-1.0, -0.5, 0.5, 1.0]
    assert runs.extend_grid(grid, math.nan) == []


def test_cell_extends_its_grid_until_the_optimum_is_inside(tmp_path, mnist_dir):  # noqa: F811
    """The base rate far below the optimum: the cell adds octaves above the grid until the
    optimum is an octave inside it (or lr_grid_extend is used up), and says so in its meta."""
    params = train_params("mlp", {**MLP_TRAIN, "lr": {"mup": 0.0005}, "lr_log2_grid": [-0.5, 0, 0.5],
                                  "lr_grid_extend": 1.5, "seeds": [0], "data_seeds": [0]})
    meta = runs.run_cell("mlp", params, "mup", 16, "online", mnist_dir, tmp_path / "c", tmp_path / "k")
    assert min(meta["lr_log2_grid"]) == -0.5
    assert max(meta["lr_log2_grid"]) == pytest.approx(2.0)  # the rate keeps improving: extended to the limit
    sweep = pd.read_csv(tmp_path / "c" / "lr_sweep.csv")
    assert sorted(sweep["log2_lr_mult"]) == meta["lr_log2_grid"]


# --------------------------------------------------------------------------- variance-slope interval


def _simulated_logits(rng, dist, n, widths, rows=40, classes=10, common=0.5):
    """Logits of ``n`` runs per width with variance exactly ``1 / width`` per entry: a part
    shared by a run's rows (the network) and a part of each row, normal or skewed
    (a centred exponential)."""
    def draw(size):
        return rng.standard_normal(size) if dist == "normal" else rng.exponential(size=size) - 1.0
    out = []
    for w in widths:
        z = math.sqrt(common) * draw((n, 1, classes)) + math.sqrt(1 - common) * draw((n, rows, classes))
        out.append((z / math.sqrt(w)).reshape(n, -1))
    return out


@pytest.mark.parametrize("dist", ["normal", "skewed"])
def test_variance_slope_interval_covers_at_the_default_seed_count(dist):
    """The jackknife interval of the variance slope covers the true slope (-1) in at least 93%
    of simulated studies at the default preset's 6 initialisation seeds and 4 widths."""
    n = len(train_params("mlp", {}).seeds)
    assert n == 6
    widths = (64, 128, 256, 512)
    rng = np.random.default_rng(11 if dist == "normal" else 12)
    trials = 400
    hits = 0
    for _ in range(trials):
        _, lo, hi, _ = analysis.variance_slope(_simulated_logits(rng, dist, n, widths), widths)
        hits += lo <= -1.0 <= hi
    assert hits / trials >= 0.93, hits / trials


# --------------------------------------------------------------------------- claims


def _width_results(tmp_path, seeds, sp_shift=-2.0, variance_exp=-1.0, edge=False):
    """lr_sweep / lr_optimum via the real analysis of a synthetic sweep; probe-logit cells whose
    seed noise has variance ~ width^variance_exp; a coordinate check flat under muP, growing
    under SP at every step."""
    rng = np.random.default_rng(1)
    widths = [64, 128, 256, 512]
    rows = []
    for param in ("sp", "mup"):
        for w in widths:
            centre = -5.0 + (sp_shift * math.log2(w / 64) / 3 if param == "sp" else 0.0)
            if edge:
                centre = -2.2
            for s in seeds:
                for k in np.arange(-9, -1.99, 0.5):
                    rows.append({"model": "mlp", "arm": "online", "parametrization": param, "width": w,
                                 "n_params": w * 10, "seed": s, "data_seed": 0, "lr": 2.0 ** k,
                                 "log2_lr_mult": k, "steps": 10,
                                 "train_loss": (k - centre - rng.normal(0, 0.05)) ** 2 / 10 + 1 / w,
                                 "test_loss": 1.0, "test_accuracy": 0.5, "diverged": 0})
    width = tmp_path / "width"
    width.mkdir(parents=True, exist_ok=True)
    sweep = pd.DataFrame(rows, columns=runs.LR_SWEEP_COLUMNS)
    sweep.to_csv(width / "lr_sweep.csv", index=False)
    analysis.lr_optimum(sweep).to_csv(width / "lr_optimum.csv", index=False)
    _coord_table({"sp": [1.0, 1.0, 1.0], "mup": [0.0, 0.0, 0.0]}, seeds=seeds).to_csv(
        width / "coord_check.csv", index=False)
    n, c = 300, 5
    mean = rng.normal(0, 2, (n, c))
    labels = mean.argmax(-1).astype(np.int64)
    cells = []
    for w in widths:
        scale = 3 * (w / 64) ** (variance_exp / 2)
        logits = mean[None, None] + rng.normal(0, 1, (len(seeds), 2, n, c)) * scale
        path = width / "cells" / "mlp" / "online" / "mup" / f"w{w}"
        path.mkdir(parents=True, exist_ok=True)
        write_json(path / "meta.json", {"model": "mlp", "arm": "online", "parametrization": "mup", "width": w,
                                        "seeds": list(seeds), "eval_steps": [0, 10]})
        save_npy(path / "probe_logits.npy", logits.astype(np.float32))
        save_npy(path / "probe_logits_data.npy", (mean[None, None] + rng.normal(0, 1, (4, 2, n, c))).astype(np.float32))
        save_npy(path / "probe_labels.npy", labels)
        cells.append(path)
    table = analysis.agreement(cells)
    analysis.variance_slopes(table, cells).to_csv(width / "variance_slopes.csv", index=False)


def test_width_claims_clear_effects(tmp_path):
    _width_results(tmp_path, seeds=range(6))
    got = _by_id(registry.collect(["width"], tmp_path, {}))
    assert got["width.mlp.mup_lr_transfer"].verdict == C.REPRODUCED
    assert got["width.mlp.mup_lr_transfer"].value == pytest.approx(2.0, abs=0.2)
    assert got["width.mlp.sp_lr_drift"].verdict == C.REPRODUCED
    assert got["width.mlp.sp_lr_drift"].value == pytest.approx(-2.0, abs=0.2)
    assert got["width.mlp.coord_check_mup_flat"].verdict == C.REPRODUCED
    assert got["width.mlp.coord_check_sp_grows"].verdict == C.REPRODUCED
    assert got["width.mlp.variance_slope"].verdict == C.REPRODUCED
    assert got["width.mlp.variance_slope"].value == pytest.approx(-1.0, abs=0.1)
    assert "data-order part" in got["width.mlp.variance_slope"].statistic  # data seeds: slope about 0
    assert got["width.mlp.agreement_across_widths"].verdict == C.REPRODUCED
    # pure seed noise around one function: an infinite narrow ensemble equals the wide net
    assert got["width.mlp.narrow_ensembles_worse"].verdict != C.REPRODUCED


def test_width_claims_no_effect_edge_and_few_seeds(tmp_path):
    _width_results(tmp_path / "flat", seeds=range(6), sp_shift=0.0, variance_exp=0.0)
    got = _by_id(registry.collect(["width"], tmp_path / "flat", {}))
    assert got["width.mlp.sp_lr_drift"].verdict != C.REPRODUCED
    assert got["width.mlp.mup_lr_transfer"].verdict != C.REPRODUCED
    assert got["width.mlp.variance_slope"].verdict == C.NOT_REPRODUCED  # slope 0, not -1
    _width_results(tmp_path / "edge", seeds=range(4), edge=True)
    got = _by_id(registry.collect(["width"], tmp_path / "edge", {}))
    assert got["width.mlp.mup_lr_transfer"].verdict == C.NOT_RESOLVED
    assert "edge" in got["width.mlp.mup_lr_transfer"].scale
    # 4 seeds: enough for the transfer claims, too few for a variance over seeds
    _width_results(tmp_path / "four", seeds=range(4))
    got = _by_id(registry.collect(["width"], tmp_path / "four", {}))
    assert got["width.mlp.mup_lr_transfer"].verdict == C.REPRODUCED
    assert got["width.mlp.variance_slope"].verdict == C.NOT_RESOLVED
    _width_results(tmp_path / "three", seeds=range(3))
    got = _by_id(registry.collect(["width"], tmp_path / "three", {}))
    assert got["width.mlp.mup_lr_transfer"].verdict == C.NOT_RESOLVED
