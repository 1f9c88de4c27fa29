"""Full-batch gradient descent of critical tanh networks on MNIST / CIFAR-10.

For each init and depth/width ratio a :class:`~dlrepro.init.inits.TanhMLP`
(``n_0 -> width x depth -> n_classes``, ``depth = round(ratio * width)``) is
initialised at criticality and trained with full-batch gradient descent on the MSE
loss ``(1/2N) sum_a |f(x_a) - onehot(y_a)|^2``. Learning rates follow the NTK
normalisation: parameter ``mu`` moves with ``lr * lambda_mu / n_layers`` where
``lambda = lambda_W / n_in`` for weights and ``lambda_b`` for biases (RYH ch. 7-8).
The extra ``1/n_layers`` keeps the NTK, which grows linearly with depth for these
networks (see ``ntk.csv``: about ``depth / 2``), roughly independent of depth.

Each init gets its own best learning rate: for every (init, depth ratio) the first seed
is trained at every rate of the grid ``lrs``, and the rate with the lowest final loss on
a validation split (``n_val`` training-set images disjoint from the training images; not
the test set) is selected (a run whose loss becomes non-finite or exceeds
``divergence_loss`` counts as diverged and is never selected); the other seeds are then
trained at that rate. Expected (Day, Kahn & Roberts 2023): orthogonal trains faster and
generalises better at ``depth ~ width``; the two are alike at ``depth << width``.

Inputs are flattened and normalised per image to zero mean and ``|x|^2 = n_0`` (first-
layer kernel ``C_W``, as in the fluctuation study). Train / validation images are the
first ``n_train`` / next ``n_val`` of a seeded permutation (``data_seed``) of the
training split, test images the first ``n_test`` of one of the test split; the same for
every run. Feature learning is tracked by the relative change of the empirical NTK on
the first ``ntk_probe`` training images, ``||Theta_t - Theta_0||_F / ||Theta_0||_F``,
every ``ntk_every`` steps.

Table ``training.csv``, tidy, one row per (run, step, metric):
``init, width, depth, depth_ratio, seed, lr, selected, step, metric, value`` with
``metric`` one of :data:`METRICS`; ``selected`` is 1 for runs at the rate selected for
that (init, depth ratio), 0 for the other rates of the grid; a diverged run ends with a
``diverged`` row (value 1) at the step where it diverged. The comparison of the inits
over seeds is :func:`compare_inits` (``training_comparison.csv``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from dlrepro.errors import InputFileError, ParamsError
from dlrepro.init.fluctuations import check_positive_ints
from dlrepro.init.inits import get_init, single_threaded_on_cpu
from dlrepro.io import load_npy
from dlrepro.log import get_logger

TRAINING_COLUMNS = ["init", "width", "depth", "depth_ratio", "seed", "lr", "selected", "step", "metric", "value"]
METRICS = ["train_loss", "train_accuracy", "val_loss", "val_accuracy", "test_loss", "test_accuracy",
           "ntk_change", "diverged"]
COMPARISON_COLUMNS = ["depth_ratio", "depth", "metric", "init", "reference", "kind", "lr", "value", "ci_lo",
                      "ci_hi", "n_seeds"]
#: compared at the selected rates: final training loss, mean training loss over the
#: evaluation steps (lower: faster), final test loss and accuracy
COMPARED = ["train_loss", "train_loss_mean", "test_loss", "test_accuracy"]


@dataclass
class TrainParams:
    """Config of ``init train`` (``config['init']['training']``)."""

    inits: list[str] = field(default_factory=lambda: ["gaussian", "orthogonal"])
    width: int = 32
    depth_ratios: list[float] = field(default_factory=lambda: [0.25, 1.0, 2.0])
    n_train: int = 1000
    n_val: int = 500
    n_test: int = 1000
    steps: int = 400
    lrs: list[float] = field(default_factory=lambda: [2.0, 4.0, 8.0])
    divergence_loss: float = 10.0
    lambda_w: float = 1.0
    lambda_b: float = 1.0
    c_w: float = 1.0
    c_b: float = 0.0
    eval_every: int = 25
    ntk_probe: int = 16
    ntk_every: int = 100
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    n_resamples: int = 2000
    data_seed: int = 0
    dtype: str = "float32"
    device: str = "cpu"
    logger: str = "none"  # compute.logger: an experiment tracker (dlrepro.training.tracker)
    logger_dir: str = "results/trackers"

    def __post_init__(self):
        for name in self.inits:
            get_init(name)
        for key in ("width", "n_train", "n_val", "n_test", "steps", "eval_every", "ntk_every", "n_resamples"):
            check_positive_ints(key, [getattr(self, key)])
        if not self.depth_ratios or any(not r > 0 for r in self.depth_ratios):
            raise ParamsError(f"depth_ratios must be positive numbers, got {self.depth_ratios!r}")
        if not (isinstance(self.ntk_probe, int) and self.ntk_probe >= 0):
            raise ParamsError(f"ntk_probe must be a non-negative integer, got {self.ntk_probe!r}")
        if not self.seeds or any(not isinstance(s, int) for s in self.seeds):
            raise ParamsError(f"seeds must be a non-empty list of integers, got {self.seeds!r}")
        if not self.lrs or any(not (isinstance(r, (int, float)) and r > 0) for r in self.lrs):
            raise ParamsError(f"lrs must be a non-empty list of positive numbers, got {self.lrs!r}")
        if sorted(set(self.lrs)) != list(self.lrs):
            raise ParamsError(f"lrs must be strictly increasing, got {self.lrs!r}")
        for key in ("divergence_loss", "c_w"):
            if not getattr(self, key) > 0:
                raise ParamsError(f"{key} must be positive, got {getattr(self, key)!r}")
        for key in ("c_b", "lambda_w", "lambda_b"):
            if not getattr(self, key) >= 0:
                raise ParamsError(f"{key} must be non-negative, got {getattr(self, key)!r}")
        if self.dtype not in ("float32", "float64"):
            raise ParamsError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        if self.logger != "none":  # the trackers module imports Lightning: only when one is asked for
            from dlrepro.training import TRACKERS

            if self.logger not in TRACKERS:
                raise ParamsError(f"logger must be one of {list(TRACKERS)}, got {self.logger!r}")

    def depths(self) -> list[int]:
        return [max(1, round(ratio * self.width)) for ratio in self.depth_ratios]


def load_split(data_dir: str | Path, split: str, n: int, seed: int, offset: int = 0
               ) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images (flattened, per-image normalised to zero mean and ``|x|^2 = n_0``)
    and labels of ``split`` ('train' or 'test') from a data-stage folder: entries
    ``offset .. offset + n`` of a seeded permutation (so two calls with disjoint ranges
    give disjoint images)."""
    data_dir = Path(data_dir)
    if split not in ("train", "test"):
        raise ParamsError(f"split must be 'train' or 'test', got {split!r}")
    images = load_npy(data_dir / f"{split}_images.npy")
    labels = load_npy(data_dir / f"{split}_labels.npy")
    if images.ndim != 4 or len(images) != len(labels) or labels.ndim != 1:
        raise InputFileError(
            f"{data_dir}: expected {split}_images (N, C, H, W) and {split}_labels (N,), "
            f"got shapes {images.shape} and {labels.shape}"
        )
    if offset + n > len(images):
        what = f"n_{split}={n}" if offset == 0 else f"{offset} + {n} images"
        raise InputFileError(f"{what} exceeds the {len(images)} images in {data_dir}")
    index = np.sort(np.random.default_rng(seed).permutation(len(images))[offset : offset + n])
    x = np.asarray(images[index], dtype=np.float64).reshape(n, -1)
    x = x - x.mean(axis=1, keepdims=True)
    norms = np.sqrt((x**2).mean(axis=1, keepdims=True))
    if np.any(norms == 0):
        raise InputFileError(f"{data_dir}: constant image(s) in {split} cannot be normalised")
    return x / norms, np.asarray(labels[index], dtype=np.int64)


def train_run(splits: dict, init: str, depth: int, params: TrainParams, seed: int, lr: float, n_classes: int
              ) -> tuple[list[tuple[int, str, float]], bool]:
    """Train one network at learning rate ``lr``; ``(rows, diverged)`` with rows
    ``(step, metric, value)`` at step 0, every ``eval_every`` steps and the last step.

    ``splits`` maps ``train`` / ``val`` / ``test`` to ``(x, y)`` arrays. A run whose
    training loss becomes non-finite or exceeds ``divergence_loss`` stops there, with a
    ``diverged`` row; every other run ends with ``diverged`` = 0.

    A plain torch loop rather than a Lightning ``Trainer``: full-batch gradient descent
    is one forward/backward on tensors already in memory per step (no data loader,
    sampler, accumulation, precision plugin or checkpointing to manage), steps take
    milliseconds on CPU for the default sizes, so the Trainer's per-step hooks would be a
    large share of the run, and evaluation (including the NTK) must happen at exact step
    counts, which the loop does directly.
    """
    import torch

    from dlrepro.init.inits import TanhMLP
    from dlrepro.init.ntk import empirical_ntk, relative_ntk_change

    dtype = getattr(torch, params.dtype)
    device = params.device
    log = get_logger("init.train", init=init, width=params.width, depth=depth, seed=seed)
    generator = torch.Generator(device).manual_seed(seed)
    x_train = splits["train"][0]
    model = TanhMLP(x_train.shape[1], params.width, depth, n_classes).to(device=device, dtype=dtype)
    model.initialize(init, params.c_w, params.c_b, generator)
    scales = model.lr_scales(params.lambda_w, params.lambda_b)
    n_layers = len(model.layers)
    optimizer = torch.optim.SGD(
        [{"params": [p], "lr": lr * scales[name] / n_layers} for name, p in model.named_parameters()]
    )

    def tensors(x, y):
        x = torch.as_tensor(x, dtype=dtype, device=device)
        y = torch.as_tensor(y, device=device)
        return x, y, torch.nn.functional.one_hot(y, n_classes).to(dtype)

    data = {name: tensors(*xy) for name, xy in splits.items()}
    xtr, ytr, ttr = data["train"]

    def mse(out, target):
        return 0.5 * (out - target).square().sum(dim=1).mean()

    def probe_ntk():
        probe = {name: p.detach() for name, p in model.named_parameters()}
        return empirical_ntk(model, probe, xtr[: params.ntk_probe], lr_scales=scales)

    run = _Tracker(params, {"init": init, "width": params.width, "depth": depth, "seed": seed, "lr": f"{lr:g}"})
    theta_0 = probe_ntk() if params.ntk_probe else None
    eval_steps = set(range(0, params.steps + 1, params.eval_every)) | {params.steps}
    ntk_steps = set(range(0, params.steps + 1, params.ntk_every)) | {params.steps}
    rows = []
    for step in range(params.steps + 1):
        out = model(xtr)
        loss = mse(out, ttr)
        if not (math.isfinite(loss.item()) and loss.item() <= params.divergence_loss):
            log.warning("lr %g: diverged at step %d (train loss %s)", lr, step, loss.item())
            rows.append((step, "diverged", 1.0))
            run.close("failed")
            return rows, True
        if step in eval_steps:
            metrics = {"train_loss": loss.item(), "train_accuracy": (out.argmax(1) == ytr).double().mean().item()}
            with torch.no_grad():
                for name in ("val", "test"):
                    x, y, t = data[name]
                    out_eval = model(x)
                    metrics[f"{name}_loss"] = mse(out_eval, t).item()
                    metrics[f"{name}_accuracy"] = (out_eval.argmax(1) == y).double().mean().item()
            if theta_0 is not None and step in ntk_steps:
                metrics["ntk_change"] = relative_ntk_change(theta_0, probe_ntk())
            rows.extend((step, name, value) for name, value in metrics.items())
            run.log(metrics, step)
            log.info(
                "lr %g step %d/%d train loss %.4f acc %.3f val loss %.4f test acc %.3f",
                lr, step, params.steps, metrics["train_loss"], metrics["train_accuracy"], metrics["val_loss"],
                metrics["test_accuracy"],
            )  # fmt: skip
        if step == params.steps:
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    rows.append((params.steps, "diverged", 0.0))
    run.close("success")
    return rows, False


class _Tracker:
    """A run's metrics to ``params.logger`` (the same Lightning loggers the Trainer jobs
    use, driven directly: this loop has no Trainer), or nothing for ``none``."""

    def __init__(self, params: TrainParams, tag: dict) -> None:
        from dataclasses import asdict

        self.kind = params.logger
        if self.kind == "none":
            self.logger = None
            return
        from dlrepro.training import TrainSettings, tracker

        self.logger = tracker(TrainSettings(logger=params.logger, logger_dir=params.logger_dir), "init", tag)
        if self.logger is not None:
            hparams = {k: v for k, v in asdict(params).items() if k not in ("logger", "logger_dir")}
            self.logger.log_hyperparams({"stage": "init", **tag, **hparams})

    def log(self, metrics: dict, step: int) -> None:
        if self.logger is not None:
            self.logger.log_metrics(metrics, step=step)

    def close(self, status: str) -> None:
        if self.logger is not None:
            from dlrepro.training import close_tracker

            close_tracker(self.logger, self.kind, status)


def load_splits(params: TrainParams, data_dir: str | Path) -> tuple[dict, int]:
    """Train / validation / test arrays and the number of classes."""
    if params.ntk_probe > params.n_train:
        raise ParamsError(f"ntk_probe={params.ntk_probe} exceeds n_train={params.n_train}")
    splits = {
        "train": load_split(data_dir, "train", params.n_train, params.data_seed),
        "val": load_split(data_dir, "train", params.n_val, params.data_seed, offset=params.n_train),
        "test": load_split(data_dir, "test", params.n_test, params.data_seed),
    }
    n_classes = int(max(y.max() for _, y in splits.values())) + 1
    return splits, n_classes


def run_training(params: TrainParams, data_dir: str | Path, inits: list[str] | None = None,
                 depth_ratios: list[float] | None = None) -> pd.DataFrame:
    """Every (init, depth ratio) of ``params`` (or the given subsets): the learning-rate
    grid on the first seed, then the other seeds at the selected rate."""
    splits, n_classes = load_splits(params, data_dir)
    inits = params.inits if inits is None else inits
    ratios = params.depth_ratios if depth_ratios is None else depth_ratios
    unknown = [r for r in ratios if r not in params.depth_ratios]
    if unknown or any(i not in params.inits for i in inits):
        raise ParamsError(f"inits {inits} / depth ratios {ratios} are not all in the config "
                         f"({params.inits} / {params.depth_ratios})")
    depth_of = dict(zip(params.depth_ratios, params.depths()))
    records = []
    for ratio in ratios:
        depth = depth_of[ratio]
        for init in inits:
            log = get_logger("init.train", init=init, width=params.width, depth=depth)
            first, rest = params.seeds[0], params.seeds[1:]
            grid = {}
            with single_threaded_on_cpu(params.device):
                for lr in params.lrs:
                    grid[lr] = train_run(splits, init, depth, params, first, lr, n_classes)
            final_val = {lr: dict(((s, m), v) for s, m, v in rows)[(params.steps, "val_loss")]
                         for lr, (rows, diverged) in grid.items() if not diverged}
            if not final_val:
                raise ParamsError(f"init {init} at depth {depth}: every learning rate of lrs={params.lrs} "
                                 f"diverged; add smaller rates")
            best = min(final_val, key=lambda lr: (final_val[lr], lr))
            log.info("selected lr %g (final validation loss %s)", best,
                     ", ".join(f"{lr:g}: {v:.4f}" for lr, v in final_val.items()))
            runs = [(first, lr, rows) for lr, (rows, _) in grid.items()]
            with single_threaded_on_cpu(params.device):
                for seed in rest:
                    rows, diverged = train_run(splits, init, depth, params, seed, best, n_classes)
                    runs.append((seed, best, rows))
            for seed, lr, rows in runs:
                records.extend((init, params.width, depth, ratio, seed, float(lr), int(lr == best), *row)
                               for row in rows)
    table = pd.DataFrame.from_records(records, columns=TRAINING_COLUMNS)
    return table.sort_values(["depth_ratio", "init", "seed", "lr", "step"], kind="stable").reset_index(drop=True)


def compare_inits(table: pd.DataFrame, n_resamples: int = 2000, seed: int = 0, level: float = 0.95,
                  reference: str | None = None) -> pd.DataFrame:
    """``training_comparison.csv``: per depth ratio and compared metric (:data:`COMPARED`),
    each init's mean over seeds at its selected rate (``kind`` = ``mean``) and each other
    init's difference from ``reference`` (default: the first init in the table;
    ``kind`` = ``difference``). Intervals are Student-t intervals over seeds (the
    independent unit; :func:`dlrepro.claims.t_interval`): of each init's per-seed values,
    and for a difference of the per-seed differences, paired by seed (both inits run the
    same seeds); fewer than :data:`dlrepro.claims.MIN_UNITS` seeds give NaN bounds.
    (``n_resamples`` and ``seed`` are kept for the config's sake; the intervals draw nothing.)
    """
    from dlrepro.claims import t_interval

    runs = table[table["selected"] == 1]
    last = runs[runs["step"] == runs.groupby(["init", "depth_ratio", "seed"])["step"].transform("max")]
    final = last.pivot_table(index=["depth_ratio", "init", "seed"], columns="metric", values="value")
    if "diverged" in final and (final["diverged"] > 0).any():
        bad = final[final["diverged"] > 0].index.tolist()
        get_logger("init.compare").warning("diverged run(s) at the selected rate: %s", bad)
    train_loss = runs[runs["metric"] == "train_loss"]
    final["train_loss_mean"] = train_loss.groupby(["depth_ratio", "init", "seed"])["value"].mean()
    inits = list(dict.fromkeys(table["init"]))
    reference = inits[0] if reference is None else reference
    depth_of = table.groupby("depth_ratio")["depth"].first()
    lr_of = runs.groupby(["depth_ratio", "init"])["lr"].first()
    rows = []
    for ratio in sorted(final.index.get_level_values("depth_ratio").unique()):
        for metric in COMPARED:
            values = {init: final.loc[(ratio, init), metric].dropna()
                      for init in inits if (ratio, init) in final.index}
            for init, v in values.items():
                rows.append((ratio, depth_of[ratio], metric, init, "", "mean", lr_of[(ratio, init)],
                             *t_interval(v.to_numpy(), level=level), v.size))
            for init in values:
                if init == reference or reference not in values:
                    continue
                paired = (values[init] - values[reference]).dropna()  # aligned on seed
                rows.append((ratio, depth_of[ratio], metric, init, reference, "difference", math.nan,
                             *t_interval(paired.to_numpy(), level=level), paired.size))
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)
