"""The shared Lightning harness: exact resume, NaN guard, deterministic batches."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
from torch import nn

from dlrepro.training import (
    NonFiniteLossError,
    StepBatches,
    TrainSettings,
    fit,
    steps_for,
    warmup_cosine,
)

X = torch.randn(64, 8, generator=torch.Generator().manual_seed(0))
Y = X @ torch.randn(8, 1, generator=torch.Generator().manual_seed(1))


class Crash(Exception):
    """Stands in for a killed job."""


class Regressor(L.LightningModule):
    def __init__(self, poison_at: int | None = None, stop_at: int | None = None):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Dropout(0.1), nn.Linear(16, 1))
        self.poison_at, self.stop_at = poison_at, stop_at

    def training_step(self, batch, batch_idx):
        if self.stop_at is not None and self.global_step == self.stop_at:
            raise Crash  # a crash right after the checkpoint at stop_at
        x, y = batch
        loss = nn.functional.mse_loss(self.net(x), y)
        if self.poison_at is not None and self.global_step >= self.poison_at:
            loss = loss * float("nan")
        return loss

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=1e-2)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, 30, 5))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def batches(total=30):
    return StepBatches(64, 16, total, seed=3, collate=lambda i: (X[i], Y[i]))


SETTINGS = TrainSettings(seed=0, max_steps=30, accelerator="cpu", checkpoint_every_n_steps=10,
                         log_every_n_steps=10)


def params(module):
    return torch.cat([p.detach().flatten() for p in module.parameters()])


def test_step_batches_are_a_function_of_the_step():
    a, b = batches(), batches()
    assert [list(a.indices(s)) for s in range(10)] == [list(b.indices(s)) for s in range(10)]
    # every epoch is a permutation of all items
    epoch = np.concatenate([a.indices(s) for s in range(4)])
    assert sorted(epoch) == list(range(64))
    assert not np.array_equal(a.indices(0), a.indices(4))  # a fresh order next epoch
    # DDP ranks split the global batch
    halves = np.concatenate([a.indices(5, 0, 2), a.indices(5, 1, 2)])
    assert sorted(halves) == sorted(a.indices(5))


def test_resume_after_crash_equals_uninterrupted(tmp_path):
    L.seed_everything(0)
    full = Regressor()
    fit(full, batches(), SETTINGS, tmp_path / "full", stage="test")

    L.seed_everything(0)
    crashed = Regressor(stop_at=20)
    with pytest.raises(Crash):
        fit(crashed, batches(), SETTINGS, tmp_path / "resumed", stage="test")
    assert (tmp_path / "resumed" / "last.ckpt").exists()

    L.seed_everything(0)
    resumed = Regressor()  # a fresh process would build a fresh module
    fit(resumed, batches(), SETTINGS, tmp_path / "resumed", stage="test")
    assert torch.equal(params(full), params(resumed))


def test_non_finite_loss_names_step_and_keeps_checkpoint(tmp_path):
    with pytest.raises(NonFiniteLossError, match=r"at step 1[0-9].*last good checkpoint kept"):
        fit(Regressor(poison_at=12), batches(), SETTINGS, tmp_path, stage="test")
    ckpt = torch.load(tmp_path / "last.ckpt", weights_only=False)
    assert ckpt["global_step"] == 10
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values())


def test_budget_and_schedule():
    assert steps_for(TrainSettings(epochs=2), n_items=100, batch_size=10) == 20
    assert steps_for(TrainSettings(max_steps=7), n_items=100, batch_size=10) == 7
    with pytest.raises(ValueError, match="exactly one"):
        steps_for(TrainSettings(), 100, 10)
    assert warmup_cosine(0, 100, 10) == pytest.approx(0.1)
    assert warmup_cosine(9, 100, 10) == pytest.approx(1.0)
    assert warmup_cosine(100, 100, 10) == pytest.approx(0.1)


def test_unknown_setting_is_rejected():
    with pytest.raises(ValueError, match="unknown training settings.*'epoch'"):
        TrainSettings.from_dict({"epoch": 3})


@pytest.mark.slow  # two processes started and joined: ~20 s
def test_ddp_on_two_cpu_processes_matches_one_process(tmp_path):
    """compute.devices = 2 on CPU: DDP with the gloo backend, one process per device.
    Each rank trains on half of every global batch and the gradients are averaged, so the
    run equals a single-process run with the same global batch (up to float rounding)."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).parent / "scripts" / "ddp_fit.py"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).parents[1] / "workflow"), os.environ.get("PYTHONPATH", "")])}
    results = {}
    for devices in (1, 2):
        out = tmp_path / f"devices{devices}.json"
        proc = subprocess.run([sys.executable, str(script), str(devices), str(out),
                               str(tmp_path / f"ckpt{devices}")], capture_output=True, text=True,
                              env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        results[devices] = json.loads(out.read_text())
    one, two = results[1], results[2]
    for rank in (0, 1):
        assert f"as rank {rank} of 2 (DDP, gloo backend)" in proc.stderr, proc.stderr[-3000:]
    np.testing.assert_allclose(two["weights"], one["weights"], rtol=1e-4, atol=1e-5)
    assert abs(two["loss"] - one["loss"]) <= 1e-4 * one["loss"] + 1e-6
    assert one["loss"] < 0.5 * one["initial_loss"]  # it trained


class WithValidationStep(Regressor):
    """A module that can validate, trained without a validation loader (as the stages do)."""

    def validation_step(self, batch, batch_idx):
        return self.training_step(batch, batch_idx)


def test_job_log_holds_only_our_lines(tmp_path, capfd):
    """Lightning's start-up chatter, the litlogger tip, the missing-val-loader and LeafSpec
    warnings and the per-checkpoint ``weights_only`` line stay out of a job's log; the
    project's progress lines, with an ETA, stay in."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("default")  # as a job runs: pytest's filters are not the job's
        fit(WithValidationStep(), batches(), SETTINGS, tmp_path / "ckpt", stage="test", tag={"seed": 0})
    err = capfd.readouterr().err
    for noise in ("GPU available", "TPU available", "Tip", "val_dataloader", "LeafSpec",
                  "weights_only", "Trainer.fit` stopped"):
        assert noise not in err, (noise, err)
    progress = [line for line in err.splitlines() if "[test seed=0] step 10/30" in line]
    assert progress and " eta " in progress[0], err


def test_other_warnings_still_show(tmp_path):
    class Warns(Regressor):
        def training_step(self, batch, batch_idx):
            if self.global_step == 0:
                import warnings

                warnings.warn("a warning the user must see", UserWarning)
            return super().training_step(batch, batch_idx)

    with pytest.warns(UserWarning, match="the user must see"):
        fit(Warns(), batches(), SETTINGS, tmp_path / "ckpt", stage="test")


class SlowRegressor(Regressor):
    """Steps of at least 50 ms: a long job in miniature."""

    def training_step(self, batch, batch_idx):
        import time

        time.sleep(0.05)
        return super().training_step(batch, batch_idx)


def test_checkpoints_by_wall_time_as_well_as_by_steps(tmp_path, monkeypatch):
    """With a checkpoint every 1,000 steps only, a crash at step 20 leaves nothing to resume
    from; with compute.checkpoint_minutes (here 0.03 s, through the environment as the
    workflow passes it) the last checkpoint is a step or two old, and resuming from it
    ends with the uninterrupted run's weights."""
    import dataclasses

    steps_only = dataclasses.replace(SETTINGS, checkpoint_every_n_steps=1000, checkpoint_minutes=0)
    with pytest.raises(Crash):
        fit(SlowRegressor(stop_at=20), batches(), steps_only, tmp_path / "off", stage="test")
    assert not (tmp_path / "off" / "last.ckpt").exists()

    by_time = dataclasses.replace(SETTINGS, checkpoint_every_n_steps=1000, checkpoint_minutes=None)
    monkeypatch.setenv("DLREPRO_CHECKPOINT_MINUTES", "0.0005")
    L.seed_everything(0)
    with pytest.raises(Crash):
        fit(SlowRegressor(stop_at=20), batches(), by_time, tmp_path / "timed", stage="test")
    ckpt = torch.load(tmp_path / "timed" / "last.ckpt", weights_only=False)
    assert 18 <= ckpt["global_step"] <= 20
    L.seed_everything(0)
    resumed = Regressor()
    fit(resumed, batches(), by_time, tmp_path / "timed", stage="test")
    L.seed_everything(0)
    full = Regressor()
    fit(full, batches(), SETTINGS, tmp_path / "full", stage="test")
    assert torch.equal(params(full), params(resumed))
