"""compute.logger: every Lightning training job can report to a tracker through Lightning's
own loggers; the values logged are read back from each tracker's files (no network)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import use_bench_packages
from dlrepro.training import TrainSettings, fit, run_name, tracker
from tests.test_training import Regressor, batches
from tests.test_width import mnist_dir  # noqa: F401 (a fixture)

use_bench_packages()  # where `make test` installs the trackers (.venv/bench)

TAG = {"model": "reg", "policy": "replace", "gen": 2, "seed": 0}


def train(tmp_path, kind):
    settings = TrainSettings(seed=0, max_steps=30, accelerator="cpu", checkpoint_every_n_steps=10,
                             log_every_n_steps=10, logger=kind, logger_dir=str(tmp_path / "trackers"))
    history = fit(Regressor(), batches(), settings, tmp_path / "ckpt", stage="test", tag=TAG)
    return {r["step"]: r["train_loss"] for r in history.rows if "train_loss" in r}


def test_run_name_says_what_runs():
    assert run_name("collapse", TAG) == "collapse/model=reg/policy=replace/gen=2/seed=0"


def test_none_is_no_logger_and_unknown_is_named():
    assert tracker(TrainSettings(logger="none"), "s", {}) is None
    with pytest.raises(ValueError, match="compute.logger: 'neptune'"):
        tracker(TrainSettings(logger="neptune"), "s", {})


def test_csv(tmp_path):
    import pandas as pd

    losses = train(tmp_path, "csv")
    run = tmp_path / "trackers" / "csv" / run_name("test", TAG)
    metrics = pd.read_csv(run / "metrics.csv").dropna(subset=["train_loss"])
    assert dict(zip(metrics["step"], metrics["train_loss"])) == pytest.approx(losses)
    assert "policy: replace" in (run / "hparams.yaml").read_text()


def test_tensorboard(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    losses = train(tmp_path, "tensorboard")
    acc = EventAccumulator(str(tmp_path / "trackers" / "tensorboard" / run_name("test", TAG)))
    acc.Reload()
    logged = {e.step: e.value for e in acc.Scalars("train_loss")}
    assert logged == pytest.approx(losses, rel=1e-6)


def test_mlflow_file_store(tmp_path):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    losses = train(tmp_path, "mlflow")
    client = MlflowClient(tracking_uri=f"file:{tmp_path / 'trackers' / 'mlflow'}")
    exp = client.get_experiment_by_name("dlrepro")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.run_name == run_name("test", TAG)
    assert run.data.tags["policy"] == "replace" and run.data.params["max_steps"] == "30"
    history = client.get_metric_history(run.info.run_id, "train_loss")
    assert {m.step: m.value for m in history} == pytest.approx(losses, rel=1e-6)


def wandb_records(path, block=32768):
    """The records of an offline W&B run file (``run-*.wandb``): LevelDB's log format (blocks
    of 32 KiB; records with a 7-byte header, split over blocks as FIRST/MIDDLE/LAST) after
    W&B's 7-byte file header, each a protobuf ``Record``."""
    import struct

    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", data[:7]
    pos, buf = 7, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        _, n, kind = struct.unpack("<IHB", data[pos:pos + 7]) if left >= 7 else (0, 0, 0)
        if kind == 0:  # the zero padding at the end of a block
            pos += left
            continue
        chunk, pos = data[pos + 7:pos + 7 + n], pos + 7 + n
        buf = chunk if kind in (1, 2) else buf + chunk  # FULL / FIRST start a record
        if kind in (1, 4):  # FULL / LAST end it
            record = pb.Record()
            record.ParseFromString(buf)
            yield record


def test_wandb_offline(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    import json

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "trackers" / "wandb"))
    losses = train(tmp_path, "wandb")
    (run_file,) = (tmp_path / "trackers" / "wandb" / "wandb").glob("offline-run-*/run-*.wandb")
    logged, config, runs = {}, {}, []
    for record in wandb_records(run_file):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            items = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item}
            if "train_loss" in items:
                logged[items["trainer/global_step"]] = items["train_loss"]
        elif kind == "config":
            config.update({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.config.update})
        elif kind == "run":
            runs.append(record.run)
    assert logged == pytest.approx(losses, rel=1e-6)
    assert config["policy"] == "replace" and config["max_steps"] == 30
    assert runs[0].display_name == run_name("test", TAG) and "policy=replace" in runs[0].tags


def test_init_gd_reports_its_evaluations(tmp_path):
    """Init's full-batch GD has no Trainer: it drives the same Lightning logger directly."""
    import pandas as pd

    from dlrepro.init.training import TrainParams, run_training
    from tests.test_init_training import _write_dataset

    data = _write_dataset(tmp_path / "data")
    params = TrainParams(width=8, depth_ratios=[0.5], n_train=60, n_val=20, n_test=30, steps=20, lrs=[2.0],
                         eval_every=10, ntk_probe=0, seeds=[0], logger="csv", logger_dir=str(tmp_path / "tr"))
    table = run_training(params, data)
    run = tmp_path / "tr" / "csv" / run_name("init", {"init": "gaussian", "width": 8, "depth": 4, "seed": 0, "lr": "2"})
    logged = pd.read_csv(run / "metrics.csv").dropna(subset=["train_loss"])
    ours = table[(table["init"] == "gaussian") & (table["metric"] == "train_loss")]
    assert dict(zip(logged["step"], logged["train_loss"])) == pytest.approx(dict(zip(ours["step"], ours["value"])))
    assert logged["step"].tolist() == [0, 10, 20] and "test_accuracy" in logged
    assert "init: gaussian" in (run / "hparams.yaml").read_text()
    with pytest.raises(ValueError, match="logger must be one of"):
        TrainParams(logger="neptune")


def test_width_runs_report_to_the_tracker(tmp_path, mnist_dir):
    """A width cell's runs (seed x learning rate) train together as one batched module
    (#30), so the cell is one tracker run, named by the cell, with its loss and rate."""
    import csv

    from tests.test_width import _run_cell

    _run_cell(tmp_path, "cell", "mlp", mnist_dir, "mup", width=8,
              compute={"num_threads": 1, "logger": "csv", "logger_dir": str(tmp_path / "tr")})
    found = sorted(p for p in (tmp_path / "tr").rglob("metrics.csv"))
    assert [str(p.parent.relative_to(tmp_path / "tr" / "csv")) for p in found] == \
        ["width/model=mlp/param=mup/width=8/arm=online"]
    rows = list(csv.DictReader(found[0].open()))
    assert rows and {"train_loss", "lr", "step"} <= set(rows[0]) and float(rows[-1]["train_loss"]) > 0
