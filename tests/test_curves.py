"""Training curves as data: train_metrics.json histories -> one tidy table per stage."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from dlrepro import curves


def metrics(policy, generation, losses, val=None, seed=0, name="m"):
    hist = [{"step": 10 * (i + 1), "train_loss": v, "lr": 1e-3 * (i + 1)}
            for i, v in enumerate(losses)]
    if val is not None:
        hist.append({"step": 10 * len(losses), "val_loss": val})
    hist.append({"step": 10 * len(losses), "done": 1.0})
    return {"name": name, "policy": policy, "generation": generation, "seed": seed, "history": hist}


def test_job_rows_merge_validation_and_drop_the_done_marker():
    rows = curves.job_rows(metrics(None, 0, [3.0, 2.0], val=2.5), {"policy": "policy", "generation": "generation"})
    assert list(rows.columns) == ["policy", "generation", *curves.STEP_COLUMNS]
    assert rows["policy"].tolist() == ["real", "real"]  # generation 0 is the shared 'real' run
    assert rows["step"].tolist() == [10, 20]
    assert rows["val_loss"].isna().tolist() == [True, False] and rows["val_loss"].iloc[1] == 2.5
    assert rows["lr"].tolist() == [1e-3, 2e-3]


def test_table_concatenates_jobs_sorted_by_key(tmp_path):
    paths = []
    for i, (policy, gen) in enumerate([("replace", 2), (None, 0), ("replace", 1)]):
        p = tmp_path / f"{i}.json"
        p.write_text(json.dumps(metrics(policy, gen, [1.0, 0.5], name="gpt")))
        paths.append(p)
    table = curves.table(paths, curves._keys("model=name,policy,generation,seed"))
    assert list(table.columns[:4]) == ["model", "policy", "generation", "seed"]
    assert table[["policy", "generation"]].drop_duplicates().values.tolist() == [
        ["real", 0], ["replace", 1], ["replace", 2]]
    assert (table["model"] == "gpt").all() and len(table) == 6
    with pytest.raises(ValueError, match="no train_metrics"):
        curves.table([], {"policy": "policy"})


def test_plot_draws_every_policy_with_generation0(tmp_path):
    from PIL import Image

    frames = [curves.job_rows(metrics(p, g, [2.0 - 0.1 * g, 1.5]), {"policy": "policy", "generation": "generation",
                                                                     "seed": "seed"})
              for p, g in [(None, 0), ("replace", 1), ("accumulate", 1), ("accumulate", 2)]]
    png, pdf = curves.plot(pd.concat(frames), tmp_path / "c")
    assert png.exists() and pdf.read_bytes()[:5] == b"%PDF-"
    assert Image.open(png).size[0] > 600  # two panels and the legend
    with pytest.raises(ValueError, match="lacks columns"):
        curves.plot(pd.DataFrame({"step": [1]}), tmp_path / "bad")


def test_a_model_trained_on_real_data_only_gets_one_panel_and_its_own_label(tmp_path):
    """The VAE stage's classifier: one panel (not one per policy), labelled with its loss."""
    import matplotlib.pyplot as plt

    keys = {"model": "job", "policy": "policy", "generation": "generation", "seed": "seed"}
    jobs = [("vae", None, 0), ("vae", "replace", 1), ("vae", "accumulate", 1), ("classifier", None, 0)]
    frames = [curves.job_rows({**metrics(p, g, [2.0, 1.5]), "job": j}, keys) for j, p, g in jobs]
    seen = {}
    from dlrepro import style

    original = style.save_figure

    def capture(fig, out):
        seen["titles"] = [a.get_title() for a in fig.axes if a.get_visible() and a.get_title()]
        seen["ylabels"] = [a.get_ylabel() for a in fig.axes if a.get_visible() and a.get_title()]
        return original(fig, out)

    style.save_figure = capture
    try:
        curves.plot(pd.concat(frames), tmp_path / "c", ylabel="ELBO", ylabels={"classifier": "cross-entropy"})
    finally:
        style.save_figure = original
        plt.close("all")
    assert seen["titles"] == ["vae · accumulate", "vae · replace", "classifier · real"]
    assert seen["ylabels"] == ["ELBO", "", "cross-entropy"]


@pytest.mark.slow
def test_smoke_run_writes_curves_of_every_job(smoke_run):
    res = smoke_run / "results"
    for stage, n_jobs in (("collapse", len(list((res / "collapse").rglob("train_metrics.json")))),
                          # every VAE and the judge the VAE stage trains (classifier_metrics.json)
                          ("vae", len(list((res / "vae").rglob("train_metrics.json"))) + 1)):
        table = pd.read_csv(res / stage / "curves.csv")
        keys = ["model", "policy", "generation", "seed"]
        assert len(table.drop_duplicates(keys)) == n_jobs, stage
        assert table["train_loss"].notna().all() and (table["lr"] > 0).all()
        assert (res / "figures" / f"{stage}_curves.png").exists()


def test_keys_the_metrics_lack_come_from_the_job_folder(tmp_path):
    """The conformer stage's train_metrics.json holds no policy, generation or seed: the
    folder layout (seed<s>/gen0, seed<s>/<policy>/gen<g>) gives them."""
    paths = []
    for sub in ("seed3/gen0", "seed3/replace/gen2"):
        d = tmp_path / sub
        d.mkdir(parents=True)
        m = metrics(None, None, [1.0])
        del m["seed"], m["policy"], m["generation"]
        (d / "train_metrics.json").write_text(json.dumps(m))
        paths.append(d / "train_metrics.json")
    table = curves.table(paths, curves._keys("policy,generation,seed"))
    assert table[["policy", "generation", "seed"]].values.tolist() == [["real", 0, 3], ["replace", 2, 3]]
