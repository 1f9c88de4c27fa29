"""One cell of the width sweep: its training runs and the tables it writes.

The tasks (models, data, arms) are in :mod:`dlrepro.width.tasks`, their params in
:mod:`dlrepro.width.params`, the coordinate check in :mod:`dlrepro.width.coord_check`.

Optimiser: AdamW (:func:`~dlrepro.parametrization.make_optimizer`: per-parameter learning
rates from the abc-table) with linear warmup and cosine decay to ``min_lr_ratio``; no
gradient clipping by default (clipping the global norm would undo the parametrization's
per-layer scaling).

Learning rates. ``lr[parametrization]`` is the base learning rate ``eta`` of each
parametrization, tuned at the base width; the run at width ``w`` uses the same ``eta`` and
the parametrization transfers it (muP: hidden Adam lr ``eta / m``; SP: ``eta`` everywhere;
NTK: ``eta / sqrt(m)``). The learning-rate sweep runs ``eta * 2**k`` for ``k`` in
``lr_log2_grid``.

Evaluation
----------
At ``eval_points`` log-spaced steps (always 0 and the last): ``test_loss`` and
``test_accuracy`` (top-1, per token for the LM) on the first ``n_test`` test items (LM:
``n_test`` windows evenly spaced over the test stream), ``train_loss`` on ``n_train_eval``
fixed training items (online: evenly spaced over the training set; offline: the subset),
and the logits of the first ``n_probe`` test items (the probe set). Evaluation happens at
the start of a step, before its update, so a resumed run evaluates every step exactly once.

A cell
------
:func:`run_cell` trains every run of one (model, parametrization, width, arm): the main
runs (``k = 0``) of every seed in ``seeds`` and the sweep runs of every seed in
``lr_sweep_seeds`` and ``k`` in ``lr_log2_grid``, sequentially, with the shared harness
(:func:`dlrepro.training.fit`). Each finished run is stored under ``ckpt_dir/<run>/`` so a
killed cell resumes from its last run's checkpoint and skips finished runs. A run whose
loss becomes non-finite is recorded as diverged (losses NaN from that step). The cell
writes into ``out_dir``:

``curves.csv``       main runs, one row per (seed, eval step), columns :data:`CURVE_COLUMNS`:
                     ``model, arm, parametrization, width, n_params, seed, lr, step,
                     train_loss, test_loss, test_accuracy``.
``lr_sweep.csv``     sweep runs, one row per (seed, learning rate), at the last step,
                     columns :data:`LR_SWEEP_COLUMNS`: ``model, arm, parametrization, width,
                     n_params, seed, lr, log2_lr_mult, steps, train_loss, test_loss,
                     test_accuracy, diverged`` (``log2_lr_mult = k``; losses NaN if diverged).
``probe_logits.npy`` float32 ``[n_seeds, n_evals, n_probe_rows, n_classes]`` of the main runs
                     (LM: rows are the probe windows' positions); NaN after a divergence.
``probe_labels.npy`` int64 ``[n_probe_rows]``, the probe targets.
``meta.json``        the cell, its seeds, eval steps, learning rates, parameter counts, the
                     plan's per-parameter learning-rate multipliers and the params.

``n_params``: all parameters of the MLP; non-embedding parameters of the LM (Kaplan et
al. 2020: without token/position embeddings and the readout).
"""

from __future__ import annotations

import math
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from dlrepro.io import read_json, save_npy, write_csv, write_json
from dlrepro.log import get_logger
from dlrepro.parametrization import PARAMETRIZATIONS
from dlrepro.width.params import TrainParams, check_width, eval_steps
from dlrepro.width.tasks import make_task, parametrized_model

if TYPE_CHECKING:
    from torch import nn

CURVE_COLUMNS = ["model", "arm", "parametrization", "width", "n_params", "seed", "lr", "step",
                 "train_loss", "test_loss", "test_accuracy"]
LR_SWEEP_COLUMNS = ["model", "arm", "parametrization", "width", "n_params", "seed", "lr",
                    "log2_lr_mult", "steps", "train_loss", "test_loss", "test_accuracy", "diverged"]
METRICS = ("train_loss", "test_loss", "test_accuracy")


# --------------------------------------------------------------------------- one run


@dataclass(frozen=True)
class RunSpec:
    """One training run of a cell: seed and ``log2(lr / base lr)``; ``main``: a run of the
    width sweep (k = 0); ``sweep``: a point of the learning-rate sweep."""

    seed: int
    log2_lr_mult: float
    main: bool
    sweep: bool

    @property
    def name(self) -> str:
        return f"seed{self.seed}_lr{self.log2_lr_mult:+g}"


def plan_runs(params: TrainParams) -> list[RunSpec]:
    """The runs of a cell: main runs of every seed and sweep runs of ``lr_sweep_seeds``."""
    keys = {(s, 0.0) for s in params.seeds}
    keys |= {(s, float(k)) for s in params.lr_sweep_seeds for k in params.lr_log2_grid}
    grid = {float(k) for k in params.lr_log2_grid}
    return [RunSpec(s, k, main=(k == 0.0 and s in params.seeds),
                    sweep=(k in grid and s in params.lr_sweep_seeds)) for s, k in sorted(keys)]


def _lightning_module():
    """The LightningModule class (defined lazily: importing this module needs no torch)."""
    import lightning as L
    import torch
    from torch.nn import functional as F

    from dlrepro.parametrization import make_optimizer
    from dlrepro.training import warmup_cosine

    class WidthModule(L.LightningModule):
        """Cross-entropy training of one parametrized model, evaluating at given steps.

        The evaluations are part of the checkpoint, so a resumed run keeps them.
        """

        def __init__(self, task, model: nn.Module, plan, lr: float, total_steps: int, steps: list[int]):
            super().__init__()
            self.task, self.model, self.plan, self.lr = task, model, plan, lr
            self.total_steps, self.steps = total_steps, set(steps)
            self.records: list[dict] = []
            self.probes: list[np.ndarray] = []

        def training_step(self, batch, batch_idx):
            x, y = batch
            return F.cross_entropy(self.task.logits(self.model, x), y.reshape(-1))

        def items_in_batch(self, batch) -> int:
            return self.task.items_in_batch(batch)

        def configure_optimizers(self):
            p = self.task.params
            opt = make_optimizer(self.model, self.plan, self.lr, weight_decay=p.weight_decay,
                                 betas=tuple(p.betas), eps=p.eps)
            total, warmup, floor = self.total_steps, p.warmup_steps, p.min_lr_ratio
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, total, warmup, floor))
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

        def on_train_batch_start(self, batch, batch_idx):
            if self.global_step in self.steps:
                self.evaluate(self.global_step)

        @torch.no_grad()
        def evaluate(self, step: int) -> dict:
            """Losses on the train-eval and test sets and the probe logits at ``step``."""
            was_training = self.model.training
            self.model.eval()
            try:
                train_loss, _, _ = self._scores(*self.task.train_eval)
                test_loss, test_acc, logits = self._scores(*self.task.test)
            finally:
                self.model.train(was_training)
            record = {"step": int(step), "train_loss": train_loss, "test_loss": test_loss,
                      "test_accuracy": test_acc}
            self.records.append(record)
            self.probes.append(logits[: len(self.task.probe_labels)].astype(np.float32))
            return record

        def _scores(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float, np.ndarray]:
            loss_sum, correct, chunks = 0.0, 0, []
            y = y.reshape(len(x), -1)
            for i in range(0, len(x), self.task.eval_batch):
                logits = self.task.logits(self.model, x[i:i + self.task.eval_batch].to(self.device)).float()
                target = y[i:i + self.task.eval_batch].reshape(-1).to(self.device)
                loss_sum += float(F.cross_entropy(logits, target, reduction="sum"))
                correct += int((logits.argmax(-1) == target).sum())
                chunks.append(logits.cpu().numpy())
            n = y.numel()
            return loss_sum / n, correct / n, np.concatenate(chunks)

        def on_save_checkpoint(self, checkpoint: dict) -> None:
            checkpoint["width_evaluations"] = {"records": list(self.records),
                                               "probes": [torch.from_numpy(p) for p in self.probes]}

        def on_load_checkpoint(self, checkpoint: dict) -> None:
            saved = checkpoint["width_evaluations"]
            self.records = list(saved["records"])
            self.probes = [p.numpy() for p in saved["probes"]]

    return WidthModule


def train_run(task, parametrization: str, width: int, run: RunSpec, ckpt_dir: str | Path,
              tag: dict[str, Any]) -> dict:
    """Train one run and return ``{"records", "probe", "diverged", "n_params", "lr", "plan"}``.

    ``records`` holds one dict per evaluation step; ``probe`` is ``[n_evals, rows, classes]``
    (NaN after a divergence).
    """
    from dlrepro.training import NonFiniteLossError, TrainSettings, fit

    p = task.params
    log = get_logger("width", **tag, seed=run.seed)
    lr = p.lr_for(parametrization) * 2.0 ** run.log2_lr_mult
    # one device: a job trains many small runs in a row (fit with devices > 1 may run once)
    settings = TrainSettings.from_dict({"num_threads": 1, **p.compute}, seed=run.seed, max_steps=p.steps,
                                       gradient_clip_val=p.gradient_clip_val, devices=1)
    steps = eval_steps(p.steps, p.eval_points)
    model, plan = parametrized_model(task, parametrization, width, run.seed)
    module = _lightning_module()(task, model, plan, lr, p.steps, steps)
    log.info("run %s: lr %.3g, %d steps, %d parameters", run.name, lr, p.steps, task.n_params(model))
    diverged = False
    try:
        fit(module, task.train_batches(run.seed, p.steps), settings, ckpt_dir,
            stage="width", tag={**tag, "seed": run.seed, "lr": f"{lr:.3g}"})
        module.evaluate(p.steps)
    except NonFiniteLossError as exc:
        diverged = True
        at = int(module.trainer.global_step)
        log.warning("run %s diverged: %s", run.name, exc)
        module.records.append({"step": at, **{m: math.nan for m in METRICS}})
    probe_shape = (len(task.probe_labels), task.n_classes)
    probe = np.full((len(steps), *probe_shape), np.nan, dtype=np.float32)
    by_step = {r["step"]: i for i, r in enumerate(module.records)}
    for j, s in enumerate(steps):
        if s in by_step and by_step[s] < len(module.probes):
            probe[j] = module.probes[by_step[s]]
    return {"records": module.records, "probe": probe, "diverged": diverged, "lr": lr,
            "n_params": task.n_params(model), "plan": plan.lr_mults()}


def _run_or_resume(task, parametrization, width, run: RunSpec, ckpt_root: Path, tag) -> dict:
    """A finished run's stored result, or train it (resuming from its checkpoint) and store it."""
    run_dir = ckpt_root / run.name
    done = run_dir / "result.json"
    if done.exists():
        get_logger("width", **tag, seed=run.seed).info("run %s already finished; reusing it", run.name)
        result = read_json(done)
        result["probe"] = np.load(run_dir / "probe.npy")
        return result
    result = train_run(task, parametrization, width, run, run_dir, tag)
    save_npy(run_dir / "probe.npy", result["probe"])
    write_json(done, {k: v for k, v in result.items() if k != "probe"})
    (run_dir / "last.ckpt").unlink(missing_ok=True)  # the result is kept; the weights are not needed
    return result


def run_cell(model: str, params: TrainParams, parametrization: str, width: int, arm: str,
             data_dir: str | Path, out_dir: str | Path, ckpt_dir: str | Path) -> dict:
    """Train every run of one (model, parametrization, width, arm) and write the cell's
    part-tables into ``out_dir`` (module docstring); returns the cell's meta."""
    if parametrization not in PARAMETRIZATIONS:
        raise ValueError(f"parametrization must be one of {list(PARAMETRIZATIONS)}, got {parametrization!r}")
    check_width(model, params, width)
    params.lr_for(parametrization)
    tag = {"model": model, "param": parametrization, "width": width, "arm": arm}
    log = get_logger("width", **tag)
    task = make_task(model, params, data_dir, arm)
    runs = plan_runs(params)
    ckpt_root, out_dir = Path(ckpt_dir), Path(out_dir)
    log.info("cell: %d runs (%d seeds x lr 2^0, sweep over %d learning rates x %d seeds)",
             len(runs), len(params.seeds), len(params.lr_log2_grid), len(params.lr_sweep_seeds))
    results = {}
    for i, run in enumerate(runs):
        log.info("run %d/%d", i + 1, len(runs))
        results[run] = _run_or_resume(task, parametrization, width, run, ckpt_root, tag)

    steps = eval_steps(params.steps, params.eval_points)
    n_params = next(iter(results.values()))["n_params"]
    key = {"model": model, "arm": arm, "parametrization": parametrization, "width": width, "n_params": n_params}
    curves, sweep = [], []
    for run, res in results.items():
        if run.main:
            curves += [{**key, "seed": run.seed, "lr": res["lr"], **r} for r in res["records"]]
        if run.sweep:
            last = res["records"][-1]
            sweep.append({**key, "seed": run.seed, "lr": res["lr"], "log2_lr_mult": run.log2_lr_mult,
                          "steps": params.steps, **{m: last[m] for m in METRICS},
                          "diverged": int(res["diverged"])})
    curves_df = pd.DataFrame(curves, columns=CURVE_COLUMNS).sort_values(["seed", "step"], kind="stable")
    sweep_df = pd.DataFrame(sweep, columns=LR_SWEEP_COLUMNS).sort_values(["seed", "lr"], kind="stable")
    main_runs = [run for run in results if run.main]
    probe = np.stack([results[run]["probe"] for run in main_runs]).astype(np.float32)

    write_csv(out_dir / "curves.csv", curves_df)
    write_csv(out_dir / "lr_sweep.csv", sweep_df)
    save_npy(out_dir / "probe_logits.npy", probe)
    save_npy(out_dir / "probe_labels.npy", task.probe_labels)
    meta = {
        **key, "seeds": [run.seed for run in main_runs], "eval_steps": steps,
        "base_lr": params.lr_for(parametrization), "lr": results[main_runs[0]]["lr"],
        "diverged_runs": [run.name for run, res in results.items() if res["diverged"]],
        "lr_mults": results[main_runs[0]]["plan"], "probe_shape": list(probe.shape),
        "data": task.describe(), "params": asdict(params),
    }
    write_json(out_dir / "meta.json", meta)
    shutil.rmtree(ckpt_root, ignore_errors=True)
    final = curves_df[curves_df["step"] == params.steps]
    log.info("cell done: final test loss %s", " ".join(f"{v:.4f}" for v in final["test_loss"]))
    return meta
