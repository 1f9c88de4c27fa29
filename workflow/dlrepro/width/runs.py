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

Seeds. A run has an *initialisation seed* (its weights) and a *data seed* (the offline
subset, the batch order and the shifts of its data stream), set apart so that a variance
over initialisations holds the data fixed:

* main runs: every initialisation seed of ``seeds`` on the data stream ``data_seed``, at the
  base rate (``k = 0``): the variance over initialisations, agreement and ensembles;
* data runs: initialisation ``seeds[0]`` on every stream of ``data_seeds``, at ``k = 0``:
  the data-order part of the variance (the main run of ``seeds[0]`` when a stream is
  ``data_seed``);
* sweep runs: every seed of ``lr_sweep_seeds`` on the stream ``data_seed`` at every ``k`` of
  ``lr_log2_grid`` (parametrizations in ``lr_sweep_parametrizations`` only).

Shared work. The runs of a cell are one batched training: every run is a *member* (its own
network, initialisation and learning rate) of one module whose loss is the sum of the
members' losses, stepped by one AdamW whose parameter groups carry each member's rates.
The gradient of the sum with respect to a member's weights is that member's own gradient
and AdamW is elementwise, so every member follows exactly the trajectory it would follow
alone; members on the same data stream share each batch (read and shifted once). A member
whose loss becomes non-finite is recorded as diverged (losses NaN from that step) and
dropped from the sum; the others go on.

Grid extension. After the sweep, the optimum of every parametrization's seed-mean final
``train_loss`` (:func:`dlrepro.width.optimum.quadratic_optimum`) must lie at least an
octave inside the grid; while it does not, the grid is extended past that edge by one
octave (at the grid's spacing) and the new points are trained, up to ``lr_grid_extend``
octaves a side.

Evaluation
----------
At ``eval_points`` log-spaced steps (always 0 and the last) for the main and data runs (the
sweep-only runs at the last step only): ``test_loss`` and ``test_accuracy`` (top-1, per
token for the LM) on the first ``n_test`` test items (LM: ``n_test`` windows evenly spaced
over the test stream), ``train_loss`` on ``n_train_eval`` fixed training items (online:
evenly spaced over the training set; offline: the subset), and the logits of the first
``n_probe`` test items (the probe set). Evaluation happens at the start of a step, before
its update, so a resumed run evaluates every step exactly once.

A cell
------
:func:`run_cell` trains every member of one (model, parametrization, width, arm) in rounds
(the first grid, then each extension) with the shared harness
(:func:`dlrepro.training.fit`). Each finished round is stored under ``ckpt_dir/<round>/``
so a killed cell resumes from its round's checkpoint and skips finished rounds. The cell
writes into ``out_dir``:

``curves.csv``       main runs, one row per (seed, eval step), columns :data:`CURVE_COLUMNS`:
                     ``model, arm, parametrization, width, n_params, seed, data_seed, lr,
                     step, train_loss, test_loss, test_accuracy``.
``lr_sweep.csv``     sweep runs, one row per (seed, learning rate), at the last step,
                     columns :data:`LR_SWEEP_COLUMNS`: ``model, arm, parametrization, width,
                     n_params, seed, data_seed, lr, log2_lr_mult, steps, train_loss,
                     test_loss, test_accuracy, diverged`` (``log2_lr_mult = k``; losses NaN
                     if diverged).
``probe_logits.npy`` float32 ``[n_seeds, n_evals, n_probe_rows, n_classes]`` of the main runs
                     (LM: rows are the probe windows' positions); NaN after a divergence.
``probe_logits_data.npy`` the same for the data runs, ``[n_data_seeds, ...]``.
``probe_labels.npy`` int64 ``[n_probe_rows]``, the probe targets.
``meta.json``        the cell, its seeds and data seeds, eval steps, learning rates, the
                     final grid, parameter counts, the plan's per-parameter learning-rate
                     multipliers and the params.

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

from dlrepro.errors import ParamsError
from dlrepro.io import read_json, save_npy, write_csv, write_json
from dlrepro.log import get_logger
from dlrepro.parametrization import PARAMETRIZATIONS
from dlrepro.width.params import TrainParams, check_width, eval_steps
from dlrepro.width.tasks import make_task, parametrized_model

if TYPE_CHECKING:
    from torch import nn

CURVE_COLUMNS = ["model", "arm", "parametrization", "width", "n_params", "seed", "data_seed", "lr", "step",
                 "train_loss", "test_loss", "test_accuracy"]
LR_SWEEP_COLUMNS = ["model", "arm", "parametrization", "width", "n_params", "seed", "data_seed", "lr",
                    "log2_lr_mult", "steps", "train_loss", "test_loss", "test_accuracy", "diverged"]
METRICS = ("train_loss", "test_loss", "test_accuracy")


# --------------------------------------------------------------------------- members


@dataclass(frozen=True, order=True)
class Member:
    """One training run of a cell: initialisation seed, data seed and ``log2(lr / base lr)``."""

    seed: int
    data_seed: int
    log2_lr_mult: float

    @property
    def name(self) -> str:
        return f"seed{self.seed}_data{self.data_seed}_lr{self.log2_lr_mult:+g}"


def main_members(params: TrainParams) -> list[Member]:
    """The main runs: every initialisation seed on the stream ``data_seed`` at the base rate."""
    return [Member(s, params.data_seed, 0.0) for s in params.seeds]


def data_members(params: TrainParams) -> list[Member]:
    """The data runs: initialisation ``seeds[0]`` on every stream of ``data_seeds``."""
    return [Member(params.seeds[0], d, 0.0) for d in params.data_seeds]


def sweep_members(params: TrainParams, parametrization: str, grid=None) -> list[Member]:
    """The sweep runs at the points ``grid`` (default ``lr_log2_grid``); none for a
    parametrization outside ``lr_sweep_parametrizations``."""
    if parametrization not in params.lr_sweep_parametrizations:
        return []
    grid = params.lr_log2_grid if grid is None else grid
    return [Member(s, params.data_seed, float(k)) for s in params.lr_sweep_seeds for k in grid]


def plan_members(params: TrainParams, parametrization: str) -> list[Member]:
    """The members of a cell's first round (main, data and sweep runs, each once), sorted."""
    return sorted(set(main_members(params) + data_members(params) + sweep_members(params, parametrization)))


def extend_grid(grid, optimum: float, reach: float = 1.0, limit: tuple[float, float] | None = None) -> list[float]:
    """The points to add to ``grid`` so that it reaches ``reach`` octaves past ``optimum`` on
    both sides: one octave at a time at the grid's spacing (half an octave for a one-point
    grid), beyond whichever edge is nearer than ``reach``; never past ``limit = (lo, hi)``.
    Empty when the grid already reaches (or ``optimum`` is NaN)."""
    grid = sorted(float(k) for k in grid)
    if not math.isfinite(optimum):
        return []
    step = min(np.diff(grid)) if len(grid) > 1 else 0.5
    n = max(1, int(round(1.0 / step)))
    lo, hi = limit if limit is not None else (-math.inf, math.inf)
    new = []
    if optimum - grid[0] < reach - 1e-9:
        new += [grid[0] - step * i for i in range(1, n + 1) if grid[0] - step * i >= lo - 1e-9]
    if grid[-1] - optimum < reach - 1e-9:
        new += [grid[-1] + step * i for i in range(1, n + 1) if grid[-1] + step * i <= hi + 1e-9]
    return sorted(float(round(k, 9)) for k in new)


# --------------------------------------------------------------------------- batched training


class StreamBatches:
    """The batches of several data streams, step by step: item ``i`` of a step is the batch
    of stream ``i`` (a :class:`~dlrepro.training.StepBatches`). ``start_step`` and
    ``rank_world`` (set by :func:`dlrepro.training.fit`) are passed on to every stream."""

    def __init__(self, streams: list) -> None:
        self.streams = streams
        self.total_steps = streams[0].total_steps
        self.start_step = lambda: 0
        self.rank_world = lambda: (0, 1)

    def __len__(self) -> int:
        return self.total_steps

    def __iter__(self):
        for stream in self.streams:
            stream.start_step, stream.rank_world = self.start_step, self.rank_world
        return zip(*self.streams)

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def _lightning_module():
    """The LightningModule class (defined lazily: importing this module needs no torch)."""
    import lightning as L
    import torch
    from torch.nn import functional as F

    from dlrepro.parametrization import make_optimizer
    from dlrepro.training import warmup_cosine

    class WidthMembers(L.LightningModule):
        """Cross-entropy training of several parametrized models at once (module docstring):
        member ``i`` is ``models[i]`` at rate ``lrs[i]`` on stream ``streams[i]`` of the batch;
        members with ``full[i]`` are evaluated at every step of ``steps``, the others at the
        last step only (by the caller).

        The evaluations and the members' divergences are part of the checkpoint, so a
        resumed run keeps them.
        """

        def __init__(self, task, models: list, plans: list, lrs: list[float], streams: list[int],
                     full: list[bool], total_steps: int, steps: list[int]):
            super().__init__()
            self.task, self.models, self.plans = task, torch.nn.ModuleList(models), plans
            self.lrs, self.streams, self.full = list(lrs), list(streams), list(full)
            self.total_steps, self.steps = total_steps, set(steps)
            n = len(models)
            self.diverged_at: list[int | None] = [None] * n
            self.records: list[list[dict]] = [[] for _ in range(n)]
            self.probes: list[list[np.ndarray]] = [[] for _ in range(n)]

        def training_step(self, batch, batch_idx):
            total = None
            for i, model in enumerate(self.models):
                if self.diverged_at[i] is not None:
                    continue
                x, y = batch[self.streams[i]]
                loss = F.cross_entropy(self.task.logits(model, x), y.reshape(-1))
                if not torch.isfinite(loss.detach()):
                    self.diverged_at[i] = int(self.global_step)
                    get_logger("width").warning("member %d diverged at step %d (loss %s)", i,
                                                self.global_step, float(loss))
                    continue
                total = loss if total is None else total + loss
            return total  # None (every member diverged): the step is skipped

        def items_in_batch(self, batch) -> int:
            return self.task.items_in_batch(batch[0])

        def configure_optimizers(self):
            p = self.task.params
            # one optimiser: the members' parameter groups, those with the same settings (the
            # same lr times multiplier, weight decay, ...) merged, so that a step makes one
            # multi-tensor update per distinct setting rather than per member
            groups: dict[tuple, dict] = {}
            opt = None
            for model, plan, lr in zip(self.models, self.plans, self.lrs):
                opt = make_optimizer(model, plan, lr, weight_decay=p.weight_decay, betas=tuple(p.betas), eps=p.eps)
                for g in opt.param_groups:
                    key = tuple(sorted((k, v) for k, v in g.items() if k != "params"))
                    groups.setdefault(key, {**g, "params": []})["params"].extend(g["params"])
            opt = type(opt)(list(groups.values()))
            total, warmup, floor = self.total_steps, p.warmup_steps, p.min_lr_ratio
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, total, warmup, floor))
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

        def on_train_batch_start(self, batch, batch_idx):
            if self.global_step in self.steps:
                self.evaluate(self.global_step, [i for i, f in enumerate(self.full) if f])

        @torch.no_grad()
        def evaluate(self, step: int, which: list[int]) -> None:
            """Losses on the train-eval and test sets and the probe logits of members ``which``
            at ``step`` (NaN for a diverged member)."""
            n_probe = len(self.task.probe_labels)
            for i in which:
                model = self.models[i]
                if self.diverged_at[i] is not None:
                    record = {"step": int(step), **{m: math.nan for m in METRICS}}
                    logits = np.full((n_probe, self.task.n_classes), np.nan, dtype=np.float32)
                else:
                    was_training = model.training
                    model.eval()
                    try:
                        train_loss, _, _ = self._scores(model, *self.task.train_eval)
                        test_loss, test_acc, logits = self._scores(model, *self.task.test)
                    finally:
                        model.train(was_training)
                    record = {"step": int(step), "train_loss": train_loss, "test_loss": test_loss,
                              "test_accuracy": test_acc}
                self.records[i].append(record)
                self.probes[i].append(logits[:n_probe].astype(np.float32))

        def _scores(self, model, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float, np.ndarray]:
            loss_sum, correct, chunks = 0.0, 0, []
            y = y.reshape(len(x), -1)
            for i in range(0, len(x), self.task.eval_batch):
                logits = self.task.logits(model, x[i:i + self.task.eval_batch].to(self.device)).float()
                target = y[i:i + self.task.eval_batch].reshape(-1).to(self.device)
                loss_sum += float(F.cross_entropy(logits, target, reduction="sum"))
                correct += int((logits.argmax(-1) == target).sum())
                chunks.append(logits.cpu().numpy())
            n = y.numel()
            return loss_sum / n, correct / n, np.concatenate(chunks)

        def on_save_checkpoint(self, checkpoint: dict) -> None:
            checkpoint["width_evaluations"] = {
                "records": [list(r) for r in self.records], "diverged_at": list(self.diverged_at),
                "probes": [[torch.from_numpy(p) for p in ps] for ps in self.probes]}

        def on_load_checkpoint(self, checkpoint: dict) -> None:
            saved = checkpoint["width_evaluations"]
            self.records = [list(r) for r in saved["records"]]
            self.diverged_at = list(saved["diverged_at"])
            self.probes = [[p.numpy() for p in ps] for ps in saved["probes"]]

    return WidthMembers


def train_members(task, parametrization: str, width: int, members: list[Member], full: set[Member],
                  ckpt_dir: str | Path, tag: dict[str, Any]) -> dict[Member, dict]:
    """Train ``members`` together (one batched run, module docstring) and return, per member,
    ``{"records", "probe", "diverged", "n_params", "lr", "plan"}``: ``records`` holds one dict
    per evaluation step (members in ``full``: every eval step; the others: the last step);
    ``probe`` is ``[n_evals, rows, classes]`` (NaN after a divergence; only for ``full``)."""
    from dlrepro.training import TrainSettings, fit

    p = task.params
    log = get_logger("width", **tag)
    data_seeds = sorted({m.data_seed for m in members})
    # one device: a job trains many small runs in a row (fit with devices > 1 may run once)
    settings = TrainSettings.from_dict({"num_threads": 1, **p.compute}, seed=data_seeds[0], max_steps=p.steps,
                                       gradient_clip_val=p.gradient_clip_val, devices=1)
    steps = eval_steps(p.steps, p.eval_points)
    models, plans, lrs = [], [], []
    for m in members:
        model, plan = parametrized_model(task, parametrization, width, m.seed)
        models.append(model)
        plans.append(plan)
        lrs.append(p.lr_for(parametrization) * 2.0 ** m.log2_lr_mult)
    module = _lightning_module()(task, models, plans, lrs, [data_seeds.index(m.data_seed) for m in members],
                                [m in full for m in members], p.steps, steps)
    log.info("%d members (%d data streams), %d steps, %d parameters each", len(members), len(data_seeds),
             p.steps, task.n_params(models[0]))
    batches = StreamBatches([task.train_batches(d, p.steps) for d in data_seeds])
    fit(module, batches, settings, ckpt_dir, stage="width", tag=tag)
    module.evaluate(p.steps, list(range(len(members))))
    out = {}
    probe_shape = (len(task.probe_labels), task.n_classes)
    for i, m in enumerate(members):
        records = module.records[i]
        if module.diverged_at[i] is not None:
            at = module.diverged_at[i]
            records = [r for r in records if r["step"] < at] + [{"step": at, **{k: math.nan for k in METRICS}}]
            log.warning("run %s diverged at step %d", m.name, at)
        probe = np.full((len(steps), *probe_shape), np.nan, dtype=np.float32)
        if m in full:
            by_step = {r["step"]: j for j, r in enumerate(module.records[i])}
            for j, s in enumerate(steps):
                if s in by_step:
                    probe[j] = module.probes[i][by_step[s]]
        out[m] = {"records": records, "probe": probe, "diverged": module.diverged_at[i] is not None,
                  "lr": lrs[i], "n_params": task.n_params(models[i]), "plan": plans[i].lr_mults()}
    return out


def _round_or_resume(task, parametrization, width, members: list[Member], full: set[Member],
                     ckpt_dir: Path, tag) -> dict[Member, dict]:
    """A finished round's stored results, or train it (resuming from its checkpoint) and store them."""
    done = ckpt_dir / "result.json"
    if done.exists():
        get_logger("width", **tag).info("round %s already finished; reusing it", ckpt_dir.name)
        saved = read_json(done)
        probes = np.load(ckpt_dir / "probe.npy")
        return {Member(**r["member"]): {**r["result"], "probe": probes[i]} for i, r in enumerate(saved)}
    results = train_members(task, parametrization, width, members, full, ckpt_dir, tag)
    save_npy(ckpt_dir / "probe.npy", np.stack([results[m]["probe"] for m in members]))
    write_json(done, [{"member": asdict(m), "result": {k: v for k, v in results[m].items() if k != "probe"}}
                      for m in members])
    (ckpt_dir / "last.ckpt").unlink(missing_ok=True)  # the results are kept; the weights are not needed
    return results


def _sweep_optimum(params: TrainParams, results: dict[Member, dict]) -> float:
    """The optimum (log2 multiple of the base rate) of the seed-mean final ``train_loss`` of
    the sweep runs in ``results`` (:func:`dlrepro.width.optimum.quadratic_optimum`)."""
    from dlrepro.width.optimum import quadratic_optimum

    sweep = [m for m in results if m.data_seed == params.data_seed and m.seed in params.lr_sweep_seeds]
    grid = sorted({m.log2_lr_mult for m in sweep})
    losses = np.full((len(params.lr_sweep_seeds), len(grid)), np.nan)
    for m in sweep:
        if m.log2_lr_mult in grid:
            loss = results[m]["records"][-1]["train_loss"]
            losses[params.lr_sweep_seeds.index(m.seed), grid.index(m.log2_lr_mult)] = \
                loss if results[m]["records"][-1]["step"] == params.steps and math.isfinite(loss) else math.inf
    return quadratic_optimum(np.asarray(grid), losses.mean(axis=0))[0]


def run_cell(model: str, params: TrainParams, parametrization: str, width: int, arm: str,
             data_dir: str | Path, out_dir: str | Path, ckpt_dir: str | Path) -> dict:
    """Train every member of one (model, parametrization, width, arm) and write the cell's
    part-tables into ``out_dir`` (module docstring); returns the cell's meta."""
    if parametrization not in PARAMETRIZATIONS:
        raise ParamsError(f"parametrization must be one of {list(PARAMETRIZATIONS)}, got {parametrization!r}")
    check_width(model, params, width)
    params.lr_for(parametrization)
    tag = {"model": model, "param": parametrization, "width": width, "arm": arm}
    log = get_logger("width", **tag)
    task = make_task(model, params, data_dir, arm)
    ckpt_root, out_dir = Path(ckpt_dir), Path(out_dir)
    main, data = main_members(params), data_members(params)
    full = set(main) | set(data)
    members = plan_members(params, parametrization)
    log.info("cell: %d runs (%d initialisation seeds, %d data streams, sweep over %d learning rates x %d seeds)",
             len(members), len(params.seeds), len(params.data_seeds),
             len(params.lr_log2_grid), len(params.lr_sweep_seeds))
    results = _round_or_resume(task, parametrization, width, members, full, ckpt_root / "round0", tag)
    grid = sorted(float(k) for k in params.lr_log2_grid)
    limit = (grid[0] - params.lr_grid_extend, grid[-1] + params.lr_grid_extend)
    for r in range(1, 100):
        if parametrization not in params.lr_sweep_parametrizations:
            break
        new = extend_grid(grid, _sweep_optimum(params, results), limit=limit)
        if not new:
            break
        log.info("optimum within an octave of the grid's edge: adding log2 lr %s", new)
        grid = sorted(grid + new)
        more = sweep_members(params, parametrization, new)
        results |= _round_or_resume(task, parametrization, width, more, set(), ckpt_root / f"round{r}", tag)

    steps = eval_steps(params.steps, params.eval_points)
    n_params = next(iter(results.values()))["n_params"]
    key = {"model": model, "arm": arm, "parametrization": parametrization, "width": width, "n_params": n_params}
    curves = [{**key, "seed": m.seed, "data_seed": m.data_seed, "lr": results[m]["lr"], **r}
              for m in main for r in results[m]["records"]]
    sweep = []
    for m in sweep_members(params, parametrization, grid):
        res = results[m]
        last = res["records"][-1]
        sweep.append({**key, "seed": m.seed, "data_seed": m.data_seed, "lr": res["lr"],
                      "log2_lr_mult": m.log2_lr_mult, "steps": params.steps,
                      **{k: last[k] for k in METRICS}, "diverged": int(res["diverged"])})
    curves_df = pd.DataFrame(curves, columns=CURVE_COLUMNS).sort_values(["seed", "step"], kind="stable")
    sweep_df = pd.DataFrame(sweep, columns=LR_SWEEP_COLUMNS).sort_values(["seed", "lr"], kind="stable")
    probe = np.stack([results[m]["probe"] for m in main]).astype(np.float32)
    probe_data = np.stack([results[m]["probe"] for m in data]).astype(np.float32)

    write_csv(out_dir / "curves.csv", curves_df)
    write_csv(out_dir / "lr_sweep.csv", sweep_df)
    save_npy(out_dir / "probe_logits.npy", probe)
    save_npy(out_dir / "probe_logits_data.npy", probe_data)
    save_npy(out_dir / "probe_labels.npy", task.probe_labels)
    meta = {
        **key, "seeds": list(params.seeds), "data_seed": params.data_seed, "data_seeds": list(params.data_seeds),
        "init_seed_of_data_runs": params.seeds[0], "eval_steps": steps,
        "base_lr": params.lr_for(parametrization), "lr": results[main[0]]["lr"], "lr_log2_grid": grid,
        "diverged_runs": sorted(m.name for m, res in results.items() if res["diverged"]),
        "lr_mults": results[main[0]]["plan"], "probe_shape": list(probe.shape),
        "data": task.describe(), "params": asdict(params),
    }
    write_json(out_dir / "meta.json", meta)
    shutil.rmtree(ckpt_root, ignore_errors=True)
    final = curves_df[curves_df["step"] == params.steps]
    log.info("cell done: final test loss %s", " ".join(f"{v:.4f}" for v in final["test_loss"]))
    return meta
