"""The width stage: parameters, cells (training, resume, divergence), analyses, CLI and figures.

Data are tiny synthetic MNIST-like images and a random token corpus written by fixtures.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from dlrepro.io import read_json, save_npy, write_csv, write_json
from dlrepro.width import analysis, coord_check, runs, tasks
from dlrepro.width.params import check_width, eval_steps, train_params
from dlrepro.width.cli import main

# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory):
    """8 x 8 images of 3 classes: class c has a bright 4 x 4 block in corner c, plus noise."""
    path = tmp_path_factory.mktemp("mnist")
    rng = np.random.default_rng(0)
    for split, n in (("train", 192), ("test", 64)):
        labels = rng.integers(0, 3, n).astype(np.int64)
        images = rng.uniform(0, 0.3, (n, 1, 8, 8)).astype(np.float32)
        for i, c in enumerate(labels):
            r, k = divmod(int(c), 2)
            images[i, 0, 4 * r:4 * r + 4, 4 * k:4 * k + 4] += 0.7
        save_npy(path / f"{split}_images.npy", images)
        save_npy(path / f"{split}_labels.npy", labels)
    return path


@pytest.fixture(scope="module")
def text_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("text")
    rng = np.random.default_rng(1)
    # a little structure: token t is often followed by t + 1
    for split, n in (("train", 3000), ("test", 600)):
        tokens = (np.cumsum(rng.integers(0, 3, n)) % 31 + 1).astype(np.uint16)
        tokens[-1] = 0  # end of text
        save_npy(path / f"{split}.npy", tokens)
    write_json(path / "manifest.json", {"eot_id": 0, "settings": {"vocab_size": 32}})
    return path


MLP_TRAIN = {"base_width": 8, "batch_size": 16, "steps": 12, "warmup_steps": 2, "lr": {"sp": 0.02, "ntk": 0.02, "mup": 0.02},
             "lr_log2_grid": [-1, 0], "seeds": [0, 1], "lr_sweep_seeds": [0], "data_seeds": [0, 1],
             "lr_grid_extend": 0, "n_test": 48, "n_train_eval": 32,
             "n_probe": 16, "eval_points": 4, "n_offline": 40, "augment_shift": 1,
             "compute": {"checkpoint_every_n_steps": 5, "log_every_n_steps": 5}}
LM_TRAIN = {"base_width": 8, "head_dim": 4, "block_size": 8, "batch_size": 4, "steps": 6, "warmup_steps": 1,
            "lr": {"sp": 0.01, "mup": 0.01}, "lr_log2_grid": [0], "seeds": [0, 1], "lr_sweep_seeds": [0],
            "data_seeds": [0, 1], "lr_grid_extend": 0,
            "n_test": 4, "n_train_eval": 4, "n_probe": 2, "eval_points": 3, "n_offline": 8,
            "compute": {"checkpoint_every_n_steps": 5}}
CNN_TRAIN = {**MLP_TRAIN, "base_width": 4, "kernel_size": 3, "pool": 1, "depth": 2}


def _params(model, **changes):
    base = {"mlp": MLP_TRAIN, "lm": LM_TRAIN, "cnn": CNN_TRAIN}[model]
    return train_params(model, {**base, **changes})


# --------------------------------------------------------------------------- params


def test_params_reject_unknown_and_bad_values():
    with pytest.raises(ValueError, match="'step'"):
        train_params("mlp", {"step": 10})
    with pytest.raises(ValueError, match="steps"):
        train_params("mlp", {"steps": 0})
    with pytest.raises(ValueError, match="lr.mup"):
        train_params("mlp", {"lr": {"mup": -1.0}})
    with pytest.raises(ValueError, match="lr key"):
        train_params("mlp", {"lr": {"mu": 1e-3}})
    with pytest.raises(ValueError, match="compute.seed"):
        train_params("mlp", {"compute": {"seed": 3}})
    with pytest.raises(ValueError, match="n_probe"):
        train_params("mlp", {"n_test": 10, "n_probe": 11})
    with pytest.raises(ValueError, match="head_dim"):
        train_params("lm", {"head_dim": 5, "base_width": 32})
    with pytest.raises(ValueError, match="'pool'"):  # an MLP key is unknown to the LM
        train_params("lm", {"pool": 2})
    with pytest.raises(ValueError, match="width 12 is not a multiple"):
        check_width("lm", train_params("lm", {}), 12)
    with pytest.raises(ValueError, match="no learning rate for parametrization 'ntk'"):
        train_params("lm", {"lr": {"sp": 1e-3}}).lr_for("ntk")


def test_stage_params_cells_and_errors():
    stage = coord_check.StageParams.from_dict({
        "mlp": {"widths": [8, 16], "train": MLP_TRAIN, "arms": {"online": None, "offline": ["mup"]}},
        "lm": {"widths": [8], "train": LM_TRAIN, "arms": {"online": ["sp", "mup"]}},
    })
    cells = stage.cells()
    assert ("mlp", "ntk", 16, "online") in cells and ("mlp", "mup", 8, "offline") in cells
    assert ("mlp", "sp", 8, "offline") not in cells
    assert len(cells) == 3 * 2 + 2 + 2
    with pytest.raises(ValueError, match="unknown key --params.mlp.'widht'"):
        coord_check.StageParams.from_dict({"mlp": {"widht": [8]}})
    with pytest.raises(ValueError, match="arms key"):
        coord_check.StageParams.from_dict({"mlp": {"widths": [8], "train": MLP_TRAIN, "arms": {"onlin": None}}})
    with pytest.raises(ValueError, match="no learning rate for parametrization 'ntk'"):
        coord_check.StageParams.from_dict({"lm": {"widths": [8], "train": LM_TRAIN}})  # all three by default
    cnn = coord_check.StageParams.from_dict({"cnn": {"widths": [4, 8], "train": CNN_TRAIN, "dataset": "cifar10",
                                              "arms": {"online": ["sp", "mup"]}},
                                      "coord_check": {"models": ["cnn"]}})
    assert cnn.cells() == [("cnn", p, w, "online") for p in ("sp", "mup") for w in (4, 8)]
    with pytest.raises(ValueError, match="cnn.dataset"):
        coord_check.StageParams.from_dict({"cnn": {"widths": [4], "train": CNN_TRAIN, "dataset": "cifar100"}})
    with pytest.raises(ValueError, match="mlp.dataset"):
        coord_check.StageParams.from_dict({"mlp": {"widths": [8], "train": MLP_TRAIN, "dataset": "cifar10"}})
    with pytest.raises(ValueError, match="kernel_size"):
        train_params("cnn", {"kernel_size": 2})
    with pytest.raises(ValueError, match="init_std"):
        train_params("lm", {"init_std": 0.02})  # the LM keeps its own init (init: model)


def test_eval_steps_and_run_plan():
    steps = eval_steps(200, 6)
    assert steps[0] == 0 and steps[-1] == 200 and steps == sorted(set(steps))
    ratios = np.diff(np.log(steps[1:]))
    assert np.all(ratios > 0) and ratios.max() / ratios.min() < 2  # roughly log-spaced
    params = train_params("mlp", {"seeds": [0, 1], "lr_sweep_seeds": [1], "lr_log2_grid": [-1, 0, 2],
                                  "data_seeds": [0, 3]})
    plan = runs.plan_members(params, "mup")
    assert [(m.seed, m.data_seed, m.log2_lr_mult) for m in plan] == [
        (0, 0, 0.0), (0, 3, 0.0), (1, 0, -1.0), (1, 0, 0.0), (1, 0, 2.0)]
    assert runs.plan_members(params, "ntk") == [runs.Member(0, 0, 0.0), runs.Member(0, 3, 0.0),
                                                runs.Member(1, 0, 0.0)]  # no sweep outside sp, mup


# --------------------------------------------------------------------------- cells


def _run_cell(tmp_path, name, model, data_dir, parametrization="mup", width=16, arm="online", **changes):
    out = tmp_path / name
    runs.run_cell(model, _params(model, **changes), parametrization, width, arm, data_dir, out, tmp_path / f"ckpt-{name}")
    return out


def test_mlp_cell_outputs_are_complete_and_deterministic(tmp_path, mnist_dir):
    a = _run_cell(tmp_path, "a", "mlp", mnist_dir)
    b = _run_cell(tmp_path, "b", "mlp", mnist_dir)
    for name in ("curves.csv", "lr_sweep.csv", "probe_logits.npy", "meta.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert not (tmp_path / "ckpt-a").exists()  # checkpoints removed once outputs are written

    curves, sweep, meta = pd.read_csv(a / "curves.csv"), pd.read_csv(a / "lr_sweep.csv"), read_json(a / "meta.json")
    steps = eval_steps(12, 4)
    assert list(curves.columns) == runs.CURVE_COLUMNS and list(sweep.columns) == runs.LR_SWEEP_COLUMNS
    assert sorted(curves["seed"].unique()) == [0, 1]
    assert curves.groupby("seed")["step"].apply(list).tolist() == [steps, steps]
    assert (curves["lr"] == 0.02).all()  # main runs: the base lr
    assert sorted(sweep["lr"]) == [0.01, 0.02] and (sweep["seed"] == 0).all()
    # in: 4 x 4 pooled pixels; 16 -> 16 -> 3, no biases
    assert (curves["n_params"] == 16 * 16 + 16 * 16 + 16 * 3).all()
    # the sweep's base-lr point is the main run of seed 0 (one run, two tables)
    final0 = curves[(curves["seed"] == 0) & (curves["step"] == 12)].iloc[0]
    assert sweep[sweep["lr"] == 0.02]["test_loss"].iloc[0] == final0["test_loss"]
    # training learns the task and seeds differ
    first, last = curves[curves["step"] == 0], curves[curves["step"] == 12]
    assert (last["train_loss"].to_numpy() < first["train_loss"].to_numpy()).all()
    assert first["test_loss"].nunique() == 2

    logits = np.load(a / "probe_logits.npy")
    assert logits.shape == (2, len(steps), 16, 3) and np.isfinite(logits).all()
    labels = np.load(a / "probe_labels.npy")
    # the probe logits are those the test accuracy was computed from (probe = first test items)
    assert meta["eval_steps"] == steps and meta["seeds"] == [0, 1] and labels.shape == (16,)


def test_parametrizations_coincide_at_base_width(tmp_path, mnist_dir):
    sp = pd.read_csv(_run_cell(tmp_path, "sp", "mlp", mnist_dir, "sp", width=8, arm="offline") / "curves.csv")
    mup = pd.read_csv(_run_cell(tmp_path, "mup", "mlp", mnist_dir, "mup", width=8, arm="offline") / "curves.csv")
    cols = ["train_loss", "test_loss", "test_accuracy"]
    np.testing.assert_allclose(sp[cols].to_numpy(), mup[cols].to_numpy(), rtol=1e-5)
    # ... but not away from it
    sp16 = pd.read_csv(_run_cell(tmp_path, "sp16", "mlp", mnist_dir, "sp", width=16, arm="offline") / "curves.csv")
    mup16 = pd.read_csv(_run_cell(tmp_path, "mup16", "mlp", mnist_dir, "mup", width=16, arm="offline") / "curves.csv")
    assert not np.allclose(sp16[cols].to_numpy(), mup16[cols].to_numpy())


class Crash(Exception):
    pass


def _patch_module(monkeypatch, *, crash_at=None, nan_at=None):
    """Make the cell's LightningModule crash (once) at a step, or poison the first member's
    weights with NaN from a step (that member diverges; the others go on)."""
    import torch

    make = runs._lightning_module
    state = {"crashed": False}

    def patched():
        base = make()

        class Patched(base):
            def training_step(self, batch, batch_idx):
                if crash_at is not None and self.global_step == crash_at and not state["crashed"]:
                    state["crashed"] = True
                    raise Crash
                if nan_at is not None and self.global_step == nan_at:
                    with torch.no_grad():
                        next(self.models[0].parameters()).fill_(float("nan"))
                return super().training_step(batch, batch_idx)

        return Patched

    monkeypatch.setattr(runs, "_lightning_module", patched)


def test_killed_run_resumes_exactly(tmp_path, mnist_dir, monkeypatch):
    params = _params("mlp")
    task = tasks.make_task("mlp", params, mnist_dir, "online")
    members = [runs.Member(1, 0, 0.0), runs.Member(0, 1, -1.0)]
    full = runs.train_members(task, "mup", 16, members, {members[0]}, tmp_path / "full", {})
    _patch_module(monkeypatch, crash_at=8)  # after the checkpoint at step 5
    with pytest.raises(Crash):
        runs.train_members(task, "mup", 16, members, {members[0]}, tmp_path / "resumed", {})
    assert (tmp_path / "resumed" / "last.ckpt").exists()
    resumed = runs.train_members(task, "mup", 16, members, {members[0]}, tmp_path / "resumed", {})
    for m in members:
        assert resumed[m]["records"] == full[m]["records"]
        np.testing.assert_array_equal(resumed[m]["probe"], full[m]["probe"])
    assert len(full[members[1]]["records"]) == 1  # a sweep-only member: the last step only


def test_batched_members_equal_separate_runs(tmp_path, mnist_dir):
    """Training members together changes nothing: each follows its own run's trajectory."""
    params = _params("mlp")
    task = tasks.make_task("mlp", params, mnist_dir, "online")
    members = [runs.Member(0, 0, 0.0), runs.Member(1, 1, -1.0), runs.Member(2, 0, 0.0)]
    together = runs.train_members(task, "sp", 16, members, set(members), tmp_path / "together", {})
    for i, m in enumerate(members):
        alone = runs.train_members(task, "sp", 16, [m], {m}, tmp_path / f"alone{i}", {})
        for a, b in zip(alone[m]["records"], together[m]["records"]):
            for key in ("train_loss", "test_loss"):
                assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6)


def test_finished_rounds_are_not_retrained(tmp_path, mnist_dir, monkeypatch):
    reference = _run_cell(tmp_path, "ref", "mlp", mnist_dir, arm="offline", lr_grid_extend=1)
    params = _params("mlp", lr_grid_extend=1)
    task = tasks.make_task("mlp", params, mnist_dir, "offline")
    first = runs.plan_members(params, "mup")
    # a killed cell got this far
    runs._round_or_resume(task, "mup", 16, first, set(runs.main_members(params) + runs.data_members(params)),
                          tmp_path / "ckpt-again" / "round0", {})
    calls = []
    train = runs.train_members
    monkeypatch.setattr(runs, "train_members", lambda *a, **k: calls.append(a[3]) or train(*a, **k))
    again = _run_cell(tmp_path, "again", "mlp", mnist_dir, arm="offline", lr_grid_extend=1)
    assert first not in calls
    assert all(m.log2_lr_mult not in params.lr_log2_grid for ms in calls for m in ms)  # extensions only
    for name in ("curves.csv", "lr_sweep.csv"):
        assert (again / name).read_bytes() == (reference / name).read_bytes()


def test_diverged_run_is_recorded_not_fatal(tmp_path, mnist_dir, monkeypatch):
    _patch_module(monkeypatch, nan_at=4)
    out = _run_cell(tmp_path, "nan", "mlp", mnist_dir, "sp", seeds=[0, 1], lr_log2_grid=[0])
    sweep, curves, meta = pd.read_csv(out / "lr_sweep.csv"), pd.read_csv(out / "curves.csv"), read_json(out / "meta.json")
    assert sweep["diverged"].tolist() == [1] and math.isnan(sweep["test_loss"].iloc[0])
    assert meta["diverged_runs"] == ["seed0_data0_lr+0"]
    seed0, seed1 = curves[curves["seed"] == 0], curves[curves["seed"] == 1]
    assert np.isfinite(seed0[seed0["step"] < 4]["test_loss"]).all()
    assert seed0["test_loss"].isna().iloc[-1]
    assert np.isfinite(seed1["test_loss"]).all()  # the other member went on
    logits = np.load(out / "probe_logits.npy")
    steps = meta["eval_steps"]
    assert np.isfinite(logits[0, [i for i, s in enumerate(steps) if s < 4]]).all()
    assert np.isnan(logits[0, [i for i, s in enumerate(steps) if s > 4]]).all()
    assert np.isfinite(logits[1]).all()


def test_lm_cell_and_offline_subset(tmp_path, text_dir):
    out = _run_cell(tmp_path, "lm", "lm", text_dir, "mup", width=8, arm="offline")
    curves, meta = pd.read_csv(out / "curves.csv"), read_json(out / "meta.json")
    assert (curves["model"] == "lm").all() and np.isfinite(curves["test_loss"]).all()
    # probe rows are the probe windows' positions over the 32-token vocabulary
    assert np.load(out / "probe_logits.npy").shape == (2, len(meta["eval_steps"]), 2 * 8, 32)
    assert np.load(out / "probe_labels.npy").shape == (16,)
    task = tasks.make_task("lm", _params("lm"), text_dir, "offline")
    assert len(task.subset) == 8 and task.train_batches(0, 6).n_items == 8
    online = tasks.make_task("lm", _params("lm"), text_dir, "online")
    assert online.train_batches(0, 6).n_items == online.train.n_windows


def test_cnn_cell(tmp_path, mnist_dir):
    """The CNN trains on the images as [N, C, H, W]; SP and muP coincide at the base width."""
    a = _run_cell(tmp_path, "cnn", "cnn", mnist_dir, "mup", width=8)
    b = _run_cell(tmp_path, "cnn2", "cnn", mnist_dir, "mup", width=8)
    assert (a / "curves.csv").read_bytes() == (b / "curves.csv").read_bytes()
    curves, meta = pd.read_csv(a / "curves.csv"), read_json(a / "meta.json")
    assert (curves["model"] == "cnn").all()
    assert (curves["n_params"] == 1 * 8 * 9 + 8 * 8 * 9 + 8 * 3).all()  # conv 1 -> 8, conv 8 -> 8, readout
    first, last = curves[curves["step"] == 0], curves[curves["step"] == 12]
    assert (last["train_loss"].to_numpy() < first["train_loss"].to_numpy()).all()
    assert meta["lr_mults"]["convs.1.weight"] == 0.5 and meta["lr_mults"]["convs.0.weight"] == 1.0
    assert np.load(a / "probe_logits.npy").shape == (2, len(meta["eval_steps"]), 16, 3)
    sp = pd.read_csv(_run_cell(tmp_path, "cnn-sp4", "cnn", mnist_dir, "sp", width=4) / "curves.csv")
    mup = pd.read_csv(_run_cell(tmp_path, "cnn-mup4", "cnn", mnist_dir, "mup", width=4) / "curves.csv")
    np.testing.assert_allclose(sp[list(runs.METRICS)].to_numpy(),
                               mup[list(runs.METRICS)].to_numpy(), rtol=1e-5)


def test_lm_keeps_gpt2_residual_scaling(text_dir):
    task = tasks.make_task("lm", _params("lm", n_layer=2, base_width=8), text_dir, "online")
    model, plan = tasks.parametrized_model(task, "mup", 32, seed=0)
    assert plan.init == "model"
    c_fc = model.transformer.h[0].mlp.c_fc.weight.std().item()
    c_proj = model.transformer.h[0].attn.c_proj.weight.std().item()
    assert c_proj / c_fc == pytest.approx(1 / math.sqrt(2 * 2), rel=0.1)  # std / sqrt(2 n_layer) survives
    again, _ = tasks.parametrized_model(task, "mup", 32, seed=0)
    assert all(bool((p == q).all()) for p, q in zip(model.parameters(), again.parameters()))  # seeded


def test_online_mnist_stream_shifts_images(mnist_dir):
    task = tasks.make_task("mlp", _params("mlp", augment_shift=2, pool=1), mnist_dir, "online")
    batches = task.train_batches(seed=3, total_steps=30)
    assert batches.n_items == 30 * 16  # every step sees items no other step sees
    idx = np.array([5, 5 + 192])  # the same image, two different items of the stream
    x, y = batches.collate(idx)
    assert y[0] == y[1] and not np.array_equal(x[0].numpy(), x[1].numpy())
    x2, _ = task.train_batches(seed=3, total_steps=30).collate(idx)
    np.testing.assert_array_equal(x.numpy(), x2.numpy())  # a function of (seed, item)


# --------------------------------------------------------------------------- coordinate check


def test_coord_check_covers_models_and_is_identical_at_base_width(mnist_dir, text_dir):
    stage = coord_check.StageParams.from_dict({
        "mlp": {"widths": [8, 32], "train": MLP_TRAIN},
        "lm": {"widths": [8, 16], "train": LM_TRAIN, "arms": {"online": ["sp", "mup"]}},
        "cnn": {"widths": [4, 8], "train": CNN_TRAIN, "arms": {"online": ["sp", "mup"]}},
        "coord_check": {"steps": 2, "batch_size": 4, "models": ["mlp", "lm", "cnn"]},
    })
    table = coord_check.run_coord_check(stage, {"mlp": mnist_dir, "lm": text_dir, "cnn": mnist_dir})
    assert list(table.columns) == coord_check.COORD_COLUMNS
    assert set(table["model"]) == {"mlp", "lm", "cnn"}
    assert set(table[table["model"] == "lm"]["parametrization"]) == {"sp", "mup"}
    assert "transformer.h.0.attn.c_attn" in set(table["layer"]) and "logits" in set(table["layer"])
    assert {"convs.0", "convs.1", "logits"} == set(table[table["model"] == "cnn"]["layer"])
    for model, base_width in (("mlp", 8), ("lm", 8), ("cnn", 4)):
        base = table[(table["model"] == model) & (table["width"] == base_width)]
        by_param = {p: g.sort_values(["step", "layer"])["rms"].to_numpy() for p, g in base.groupby("parametrization")}
        np.testing.assert_allclose(by_param["sp"], by_param["mup"], rtol=1e-5)


# --------------------------------------------------------------------------- analyses


def _fake_cell(path, width, logits, labels, steps, param="mup", arm="online", model="mlp"):
    path.mkdir(parents=True)
    meta = {"model": model, "arm": arm, "parametrization": param, "width": width,
            "seeds": list(range(logits.shape[0])), "eval_steps": steps}
    write_json(path / "meta.json", meta)
    save_npy(path / "probe_logits.npy", logits.astype(np.float32))
    save_npy(path / "probe_labels.npy", labels)
    return path


@pytest.fixture
def fake_cells(tmp_path):
    """Logits = a shared 'infinite-width' function + seed noise of variance 1/width."""
    rng = np.random.default_rng(0)
    n, c, seeds, steps = 400, 5, 4, [0, 10]
    mean = rng.normal(0, 2, (len(steps), n, c))
    labels = mean[-1].argmax(-1).astype(np.int64)
    paths = []
    for width in (16, 64, 256, 1024):
        noise = rng.normal(0, 1, (seeds, len(steps), n, c)) * 4 / math.sqrt(width)
        paths.append(_fake_cell(tmp_path / f"w{width}", width, mean[None] + noise, labels, steps))
    return paths


def test_agreement_and_variance_slope(fake_cells):
    table = analysis.agreement(fake_cells)
    assert list(table.columns) == analysis.AGREEMENT_COLUMNS
    last = table[table["step"] == 10].set_index("width")
    assert (last["reference_width"] == 1024).all()
    assert last.loc[1024, "top1_agreement"] == 1.0 and last.loc[1024, "logit_distance"] == 0.0
    assert last["relative_distance"].is_monotonic_decreasing
    assert last.loc[16, "top1_agreement"] < last.loc[256, "top1_agreement"]
    slopes = analysis.variance_slopes(table)
    assert len(slopes) == 2 and slopes["slope"].to_numpy() == pytest.approx([-1, -1], abs=0.05)
    assert (slopes["n_widths"] == 4).all()


def test_ensembles_reduce_variance_but_not_bias(fake_cells):
    table = analysis.ensembles(fake_cells)
    last = table[table["step"] == 10]
    assert sorted(last["k"].unique()) == [1, 2, 3, 4]
    assert last[last["k"] == 2]["n_subsets"].unique().tolist() == [6]
    narrow = last[last["width"] == 16].set_index("k")["loss"]
    assert narrow.is_monotonic_decreasing  # averaging removes seed noise
    # k = 1 is the mean single-network loss
    logits = np.load(fake_cells[0] / "probe_logits.npy")[:, 1]
    labels = np.load(fake_cells[0] / "probe_labels.npy")
    single = [analysis.ensemble_scores(logits[[s]], labels, 1)[0] for s in range(4)]
    assert narrow[1] == pytest.approx(np.mean(single))


def test_grouped_cells_refuse_incomparable_cells(tmp_path):
    labels = np.zeros(3, dtype=np.int64)
    a = _fake_cell(tmp_path / "a", 8, np.zeros((2, 2, 3, 4)), labels, [0, 5])
    b = _fake_cell(tmp_path / "b", 16, np.zeros((2, 2, 3, 4)), labels, [0, 6])
    with pytest.raises(ValueError, match="different eval_steps"):
        analysis.grouped_cells([a, b])
    with pytest.raises(ValueError, match="not a width cell"):
        analysis.read_cell(tmp_path)


def _sweep_table(centre):
    """Loss = (log2 lr - centre(width))^2 + 1/width on a grid of log2 lr = -8 .. -2."""
    rows = []
    for param, fn in centre.items():
        for width in (64, 128, 256):
            for k in range(-8, -1):
                rows.append({"model": "mlp", "arm": "online", "parametrization": param, "width": width,
                             "n_params": width * 10, "seed": 0, "data_seed": 0, "lr": 2.0 ** k, "log2_lr_mult": k, "steps": 10,
                             "train_loss": (k - fn(width)) ** 2 + 1 / width, "test_loss": 1.0,
                             "test_accuracy": 0.5, "diverged": 0})
    return pd.DataFrame(rows, columns=runs.LR_SWEEP_COLUMNS)


def test_lr_optimum_tracks_the_shift():
    table = _sweep_table({"mup": lambda w: -5.3, "sp": lambda w: -3.6 - math.log2(w / 64)})
    table.loc[(table["parametrization"] == "sp") & (table["width"] == 256) & (table["lr"] == 2.0 ** -2), "diverged"] = 1
    opt = analysis.lr_optimum(table).set_index(["parametrization", "width"])
    assert opt.loc[("mup", 64), "log2_lr_opt"] == pytest.approx(-5.3)
    assert opt.xs("mup")["log2_shift"].to_numpy() == pytest.approx([0, 0, 0])
    assert opt.xs("sp")["log2_shift"].to_numpy() == pytest.approx([0, -1, -2])
    assert opt.loc[("mup", 128), "wider_better"] == 1.0  # loss = ... + 1/width
    assert opt.loc[("sp", 128), "wider_better"] < 1.0
    # an optimum on the grid's edge is flagged and not extrapolated
    edge = analysis.lr_optimum(_sweep_table({"mup": lambda w: -1.0}))
    assert (edge["at_edge"] == 1).all() and (edge["log2_lr_opt"] == -2).all()
    with pytest.raises(ValueError, match="metric"):
        analysis.lr_optimum(table, "accuracy")


# --------------------------------------------------------------------------- command line and figures


@pytest.mark.slow
def test_cli_end_to_end_with_figures(tmp_path, mnist_dir):
    train = json.dumps({**MLP_TRAIN, "steps": 6, "lr_log2_grid": [-1, 0, 1], "eval_points": 3})
    cells = []
    for p in ("sp", "mup"):
        for width in (8, 16):
            cell = tmp_path / "cells" / f"{p}_{width}"
            assert main(["run", "--params", train, "--model", "mlp", "--parametrization", p, "--width", str(width),
                         "--arm", "online", "--data-dir", str(mnist_dir), "--out-dir", str(cell),
                         "--ckpt-dir", str(tmp_path / "ckpt" / cell.name)]) == 0
            cells.append(str(cell))
    out = tmp_path / "width"
    assert main(["merge", "--cells", *cells, "--out-dir", str(out)]) == 0
    assert main(["agreement", "--cells", *cells, "--out", str(out / "agreement.csv"),
                 "--slopes-out", str(out / "slopes.csv")]) == 0
    assert main(["ensembles", "--cells", *cells, "--out", str(out / "ensembles.csv")]) == 0
    curves, sweep = pd.read_csv(out / "curves.csv"), pd.read_csv(out / "lr_sweep.csv")
    assert len(curves) == 4 * 2 * 3 and len(sweep) == 4 * 3
    slopes = pd.read_csv(out / "slopes.csv")
    assert set(slopes["source"]) == {"init", "data"}
    assert len(pd.read_csv(out / "lr_optimum.csv")) == 4
    assert set(pd.read_csv(out / "agreement.csv")["reference_width"]) == {16}

    coord = pd.DataFrame([{"model": "mlp", "parametrization": p, "width": w, "seed": 0, "lr": 0.001, "step": s,
                           "layer": layer, "rms": w ** (p == "sp") * 0.1, "delta_rms": 0.01,
                           "loss": 1.0 - 0.1 * s, "valid": 1}
                          for p in ("sp", "mup") for w in (8, 16) for s in (0, 1) for layer in ("layers.0", "logits")])
    write_csv(out / "coord_check.csv", coord)
    for kind in ("curves", "lr_sweep", "agreement", "ensembles", "coord_check"):
        assert main(["plot", "--kind", kind, "--csv", str(out / f"{kind}.csv"), "--out", str(out / f"{kind}.png")]) == 0
        assert (out / f"{kind}.png").stat().st_size > 0 and (out / f"{kind}.pdf").exists()
    with pytest.raises(ValueError, match="model 'lm'"):
        main(["plot", "--kind", "coord_check", "--model", "lm", "--csv", str(out / "coord_check.csv"),
              "--out", str(out / "x.png")])
    with pytest.raises(ValueError, match="unknown key --params.'stpes'"):
        main(["run", "--params", '{"stpes": 3}', "--model", "mlp", "--parametrization", "sp", "--width", "8",
              "--arm", "online", "--data-dir", str(mnist_dir), "--out-dir", str(tmp_path / "x"),
              "--ckpt-dir", str(tmp_path / "y")])


def test_plot_checks_the_table_it_is_given(tmp_path, capsys):
    """``width plot --csv``: a missing, empty or foreign table is the user's input, reported
    in one line (dlrepro.width.cli.read_table), before any plotting."""
    from dlrepro.commands import run
    from dlrepro.width.coord_check import COORD_COLUMNS

    def plot(kind, csv, *extra):
        status = run(["width", "plot", "--kind", kind, "--csv", str(csv), "--out", str(tmp_path / "fig"), *extra])
        return status, capsys.readouterr().err.strip().splitlines()[-1]

    foreign, empty, coords = tmp_path / "foreign.csv", tmp_path / "empty.csv", tmp_path / "coords.csv"
    foreign.write_text("a,b\n1,2\n")
    empty.write_text("")
    pd.DataFrame([{c: 0 for c in COORD_COLUMNS} | {"model": "mlp"}]).to_csv(coords, index=False)
    for args, expected in ((("curves", tmp_path / "none.csv"), "no such file"),
                           (("curves", empty), "not a CSV table"),
                           (("agreement", foreign), "the agreement table lacks columns"),
                           (("coord_check", coords, "--model", "lm"), "no rows of model 'lm'; the table has ['mlp']")):
        status, last = plot(*args)
        assert status == 1 and last.startswith("python -m dlrepro width: error: --csv") and expected in last, last
    assert not list(tmp_path.glob("fig*"))
