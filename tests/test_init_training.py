"""Full-batch GD training stage on small synthetic data in the data stage's format."""

import json

import numpy as np
import pandas as pd
import pytest

from dlrepro.init.cli import main, params_from_json
from dlrepro.init.training import (
    COMPARISON_COLUMNS,
    METRICS,
    TRAINING_COLUMNS,
    TrainParams,
    compare_inits,
    load_split,
    run_training,
)
from dlrepro.io import save_npy


def _write_dataset(folder, n_train=120, n_test=60, n_classes=3, seed=0):
    """Images (N, 1, 6, 6) in [0, 1]: one class-specific template plus noise."""
    rng = np.random.default_rng(seed)
    templates = rng.random((n_classes, 1, 6, 6))
    for split, n in (("train", n_train), ("test", n_test)):
        labels = np.arange(n) % n_classes
        images = 0.6 * templates[labels] + 0.4 * rng.random((n, 1, 6, 6))
        save_npy(folder / f"{split}_images.npy", images.astype(np.float32))
        save_npy(folder / f"{split}_labels.npy", labels.astype(np.int64))
    return folder


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return _write_dataset(tmp_path_factory.mktemp("synthetic"))


def test_load_split_normalises_and_subsamples_reproducibly(data_dir):
    x, y = load_split(data_dir, "train", 50, seed=3)
    assert x.shape == (50, 36) and y.shape == (50,)
    np.testing.assert_allclose(x.mean(axis=1), 0, atol=1e-12)
    np.testing.assert_allclose((x**2).sum(axis=1), 36)
    x2, y2 = load_split(data_dir, "train", 50, seed=3)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    x3, _ = load_split(data_dir, "train", 50, seed=4)
    assert not np.array_equal(x, x3)
    with pytest.raises(ValueError, match="n_train=500 exceeds"):
        load_split(data_dir, "train", 500, seed=0)
    with pytest.raises(ValueError, match="split"):
        load_split(data_dir, "val", 5, seed=0)
    # a range further along the same permutation is disjoint (the validation split)
    xv, _ = load_split(data_dir, "train", 50, seed=3, offset=50)
    assert not (x[:, None, :] == xv[None, :, :]).all(axis=2).any()
    with pytest.raises(ValueError, match="50 \\+ 100 images exceeds"):
        load_split(data_dir, "train", 100, seed=3, offset=50)


def test_load_split_rejects_flat_images(tmp_path):
    save_npy(tmp_path / "train_images.npy", np.zeros((4, 36), np.float32))
    save_npy(tmp_path / "train_labels.npy", np.zeros(4, np.int64))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        load_split(tmp_path, "train", 2, seed=0)


@pytest.fixture(scope="module")
def trained(data_dir):
    params = TrainParams(width=12, depth_ratios=[0.25, 1.0], n_train=90, n_val=30, n_test=60, steps=150,
                         lrs=[4.0], eval_every=50, ntk_probe=6, ntk_every=50, seeds=[0])  # fmt: skip
    return run_training(params, data_dir)


def test_training_learns_and_records_every_metric(trained):
    assert list(trained.columns) == TRAINING_COLUMNS
    assert set(trained["metric"]) == set(METRICS)
    assert sorted(trained["depth"].unique()) == [3, 12]  # round(ratio * width)
    assert sorted(trained["step"].unique()) == [0, 50, 100, 150]
    for (init, depth), run in trained.groupby(["init", "depth"]):
        value = run.set_index(["step", "metric"])["value"]
        assert value[(150, "train_loss")] < 0.8 * value[(0, "train_loss")], (init, depth)
        assert value[(150, "train_accuracy")] > 0.6, (init, depth)  # chance is 1/3
        assert value[(0, "ntk_change")] == 0.0
        assert value[(150, "ntk_change")] > 0.0


def test_training_cli_is_deterministic_and_plots(data_dir, tmp_path):
    params = json.dumps({"width": 6, "depth_ratios": [0.5], "n_train": 30, "n_val": 20, "n_test": 30, "steps": 10,
                         "eval_every": 5, "ntk_probe": 3, "ntk_every": 5, "seeds": [0, 1]})  # fmt: skip
    out_a, out_b = tmp_path / "a.csv", tmp_path / "b.csv"
    for out in (out_a, out_b):
        assert main(["train", "--params", params, "--data-dir", str(data_dir), "--out", str(out)]) == 0
    assert out_a.read_bytes() == out_b.read_bytes()
    table = pd.read_csv(out_a)
    assert set(table["seed"]) == {0, 1} and set(table["init"]) == {"gaussian", "orthogonal"}
    # different seeds give different networks
    first = table[(table.metric == "train_loss") & (table.step == 0) & (table.selected == 1)]
    first = first.set_index(["init", "seed"])["value"]
    assert first.loc[("gaussian", 0)] != first.loc[("gaussian", 1)]
    # the lr grid ran on seed 0 only, the second seed at the selected rate
    assert table[table.seed == 1]["selected"].eq(1).all()
    assert set(table[table.seed == 0]["lr"]) == {2.0, 4.0, 8.0}
    merged, comparison = tmp_path / "merged.csv", tmp_path / "comparison.csv"
    for _ in range(2):
        assert main(["compare", "--training", str(out_a), "--params", params, "--out-training", str(merged),
                     "--out", str(comparison)]) == 0
        first = comparison.read_bytes()
    assert comparison.read_bytes() == first
    assert list(pd.read_csv(comparison).columns) == COMPARISON_COLUMNS
    assert main(["plot", "--kind", "training", "--csv", str(merged), "--comparison", str(comparison),
                 "--out", str(tmp_path / "curves")]) == 0
    assert (tmp_path / "curves.png").exists() and (tmp_path / "curves.pdf").exists()


def test_learning_rate_selection_skips_diverged_rates_and_compares_over_seeds(data_dir):
    """A rate far beyond the stability edge diverges and is never selected; the seeds
    after the first run at the selected rate; the comparison resamples seeds."""
    params = TrainParams(width=8, depth_ratios=[0.5], n_train=60, n_val=30, n_test=30, steps=30, eval_every=10,
                         ntk_probe=0, lrs=[1.0, 4.0, 4000.0], seeds=[0, 1, 2], n_resamples=200)
    table = run_training(params, data_dir)
    diverged = table[(table.metric == "diverged") & (table.value == 1)]
    assert set(diverged["lr"]) == {4000.0}
    selected = table[table.selected == 1]
    for init, part in selected.groupby("init"):
        assert part["lr"].nunique() == 1 and part["lr"].iloc[0] in (1.0, 4.0)
        assert sorted(part["seed"].unique()) == [0, 1, 2]
        final_val = table[(table.init == init) & (table.seed == 0) & (table.metric == "val_loss") & (table.step == 30)]
        assert part["lr"].iloc[0] == final_val.sort_values("value")["lr"].iloc[0]  # lowest validation loss
    comparison = compare_inits(table, n_resamples=200)
    diff = comparison[(comparison.kind == "difference") & (comparison.metric == "test_accuracy")].iloc[0]
    assert diff.init == "orthogonal" and diff.reference == "gaussian" and diff.n_seeds == 3
    assert diff.ci_lo <= diff.value <= diff.ci_hi
    means = comparison[(comparison.kind == "mean") & (comparison.metric == "test_accuracy")].set_index("init")
    assert diff.value == pytest.approx(means.loc["orthogonal", "value"] - means.loc["gaussian", "value"])
    with pytest.raises(ValueError, match="every learning rate"):
        run_training(TrainParams(width=8, depth_ratios=[0.5], n_train=60, n_val=30, n_test=30, steps=5,
                                 ntk_probe=0, lrs=[4000.0], seeds=[0]), data_dir)


def test_train_params_validation():
    with pytest.raises(ValueError, match="unknown key.*'learning_rate'"):
        params_from_json(TrainParams, '{"learning_rate": 1}')
    with pytest.raises(ValueError, match="depth_ratios"):
        TrainParams(depth_ratios=[0.0])
    with pytest.raises(ValueError, match="lrs"):
        TrainParams(lrs=[-1.0])
    with pytest.raises(ValueError, match="strictly increasing"):
        TrainParams(lrs=[4.0, 2.0])
    with pytest.raises(ValueError, match="unknown init"):
        TrainParams(inits=["he"])
    assert TrainParams(width=64, depth_ratios=[0.25, 1, 2]).depths() == [16, 64, 128]
