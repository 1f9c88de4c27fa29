"""Full-batch gradient descent of critical tanh networks on MNIST / CIFAR-10.

For each init, depth/width ratio and seed a :class:`~dlrepro.init.inits.TanhMLP`
(``n_0 -> width x depth -> n_classes``, ``depth = round(ratio * width)``) is
initialised at criticality and trained with full-batch gradient descent on the MSE
loss ``(1/2N) sum_a |f(x_a) - onehot(y_a)|^2``. Learning rates follow the NTK
normalisation: parameter ``mu`` moves with ``lr * lambda_mu / n_layers`` where
``lambda = lambda_W / n_in`` for weights and ``lambda_b`` for biases (RYH ch. 7-8).
The extra ``1/n_layers`` keeps the NTK, which grows linearly with depth for these
networks (see ``ntk.csv``: about ``depth / 2``), and so the stable learning rate,
independent of depth; both inits share the same rates. Expected (Day, Kahn & Roberts
2023): orthogonal trains faster and generalises better at ``depth ~ width``; the two
are alike at ``depth << width``.

Inputs are flattened and normalised per image to zero mean and ``|x|^2 = n_0`` (first-
layer kernel ``C_W``, as in the fluctuation study). Train and test sets are the first
``n_train`` / ``n_test`` images of a seeded permutation (``data_seed``), the same for
every run. Feature learning is tracked by the relative change of the empirical NTK on
the first ``ntk_probe`` training images, ``||Theta_t - Theta_0||_F / ||Theta_0||_F``.

Table ``training.csv``, tidy, one row per (run, step, metric):
``init, width, depth, depth_ratio, seed, step, metric, value`` with ``metric`` one of
``train_loss, train_accuracy, test_loss, test_accuracy, ntk_change``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from dlrepro.init.fluctuations import check_positive_ints
from dlrepro.init.inits import get_init, single_threaded_on_cpu
from dlrepro.io import load_npy
from dlrepro.log import get_logger

TRAINING_COLUMNS = ["init", "width", "depth", "depth_ratio", "seed", "step", "metric", "value"]
METRICS = ["train_loss", "train_accuracy", "test_loss", "test_accuracy", "ntk_change"]


@dataclass
class TrainParams:
    """Config of ``init train`` (``config['init']['training']``)."""

    inits: list[str] = field(default_factory=lambda: ["gaussian", "orthogonal"])
    width: int = 32
    depth_ratios: list[float] = field(default_factory=lambda: [0.25, 1.0, 2.0])
    n_train: int = 1000
    n_test: int = 1000
    steps: int = 400
    lr: float = 4.0
    lambda_w: float = 1.0
    lambda_b: float = 1.0
    c_w: float = 1.0
    c_b: float = 0.0
    eval_every: int = 25
    ntk_probe: int = 16
    seeds: list[int] = field(default_factory=lambda: [0])
    data_seed: int = 0
    dtype: str = "float32"
    device: str = "cpu"

    def __post_init__(self):
        for name in self.inits:
            get_init(name)
        for key in ("width", "n_train", "n_test", "steps", "eval_every"):
            check_positive_ints(key, [getattr(self, key)])
        if not self.depth_ratios or any(not r > 0 for r in self.depth_ratios):
            raise ValueError(f"depth_ratios must be positive numbers, got {self.depth_ratios!r}")
        if not (isinstance(self.ntk_probe, int) and self.ntk_probe >= 0):
            raise ValueError(f"ntk_probe must be a non-negative integer, got {self.ntk_probe!r}")
        if not self.seeds or any(not isinstance(s, int) for s in self.seeds):
            raise ValueError(f"seeds must be a non-empty list of integers, got {self.seeds!r}")
        for key in ("lr", "c_w"):
            if not getattr(self, key) > 0:
                raise ValueError(f"{key} must be positive, got {getattr(self, key)!r}")
        for key in ("c_b", "lambda_w", "lambda_b"):
            if not getattr(self, key) >= 0:
                raise ValueError(f"{key} must be non-negative, got {getattr(self, key)!r}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")

    def depths(self) -> list[int]:
        return [max(1, round(ratio * self.width)) for ratio in self.depth_ratios]


def load_split(data_dir: str | Path, split: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images (flattened, per-image normalised to zero mean and ``|x|^2 = n_0``)
    and labels of ``split`` ('train' or 'test') from a data-stage folder, chosen by a
    seeded permutation."""
    data_dir = Path(data_dir)
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    images = load_npy(data_dir / f"{split}_images.npy")
    labels = load_npy(data_dir / f"{split}_labels.npy")
    if images.ndim != 4 or len(images) != len(labels) or labels.ndim != 1:
        raise ValueError(
            f"{data_dir}: expected {split}_images (N, C, H, W) and {split}_labels (N,), "
            f"got shapes {images.shape} and {labels.shape}"
        )
    if n > len(images):
        raise ValueError(f"n_{split}={n} exceeds the {len(images)} images in {data_dir}")
    index = np.sort(np.random.default_rng(seed).permutation(len(images))[:n])
    x = np.asarray(images[index], dtype=np.float64).reshape(n, -1)
    x = x - x.mean(axis=1, keepdims=True)
    norms = np.sqrt((x**2).mean(axis=1, keepdims=True))
    if np.any(norms == 0):
        raise ValueError(f"{data_dir}: constant image(s) in {split} cannot be normalised")
    return x / norms, np.asarray(labels[index], dtype=np.int64)


def train_run(
    x_train, y_train, x_test, y_test, init: str, depth: int, params: TrainParams, seed: int, n_classes: int
) -> list[tuple[int, str, float]]:
    """Train one network; ``(step, metric, value)`` at step 0, every ``eval_every`` steps
    and the last step.

    A plain torch loop rather than a Lightning ``Trainer``: full-batch gradient descent
    is one forward/backward on tensors already in memory per step (no data loader,
    sampler, accumulation, precision plugin or checkpointing to manage), steps take
    about a millisecond on CPU for the default sizes, so the Trainer's per-step hooks
    would be a large share of the run, and evaluation (including the NTK) must happen
    at exact step counts, which the loop does directly.
    """
    import torch

    from dlrepro.init.inits import TanhMLP
    from dlrepro.init.ntk import empirical_ntk, relative_ntk_change

    dtype = getattr(torch, params.dtype)
    device = params.device
    log = get_logger("init.train", init=init, width=params.width, depth=depth, seed=seed)
    generator = torch.Generator(device).manual_seed(seed)
    model = TanhMLP(x_train.shape[1], params.width, depth, n_classes).to(device=device, dtype=dtype)
    model.initialize(init, params.c_w, params.c_b, generator)
    scales = model.lr_scales(params.lambda_w, params.lambda_b)
    n_layers = len(model.layers)
    optimizer = torch.optim.SGD(
        [{"params": [p], "lr": params.lr * scales[name] / n_layers} for name, p in model.named_parameters()]
    )

    def tensors(x, y):
        x = torch.as_tensor(x, dtype=dtype, device=device)
        y = torch.as_tensor(y, device=device)
        return x, y, torch.nn.functional.one_hot(y, n_classes).to(dtype)

    xtr, ytr, ttr = tensors(x_train, y_train)
    xte, yte, tte = tensors(x_test, y_test)

    def mse(out, target):
        return 0.5 * (out - target).square().sum(dim=1).mean()

    def probe_ntk():
        probe = {name: p.detach() for name, p in model.named_parameters()}
        return empirical_ntk(model, probe, xtr[: params.ntk_probe], lr_scales=scales)

    theta_0 = probe_ntk() if params.ntk_probe else None
    eval_steps = set(range(0, params.steps + 1, params.eval_every)) | {params.steps}
    rows = []
    for step in range(params.steps + 1):
        out = model(xtr)
        loss = mse(out, ttr)
        if step in eval_steps:
            with torch.no_grad():
                out_test = model(xte)
                metrics = {
                    "train_loss": loss.item(),
                    "train_accuracy": (out.argmax(1) == ytr).double().mean().item(),
                    "test_loss": mse(out_test, tte).item(),
                    "test_accuracy": (out_test.argmax(1) == yte).double().mean().item(),
                }
            if theta_0 is not None:
                metrics["ntk_change"] = relative_ntk_change(theta_0, probe_ntk())
            if not all(math.isfinite(v) for v in metrics.values()):
                raise FloatingPointError(f"{init} depth {depth} seed {seed}: diverged at step {step}: {metrics}")
            rows.extend((step, name, value) for name, value in metrics.items())
            log.info(
                "step %d/%d train loss %.4f acc %.3f test acc %.3f",
                step, params.steps, metrics["train_loss"], metrics["train_accuracy"], metrics["test_accuracy"],
            )  # fmt: skip
        if step == params.steps:
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return rows


def run_training(params: TrainParams, data_dir: str | Path) -> pd.DataFrame:
    """Every (init, depth ratio, seed) of ``params`` on the data in ``data_dir``."""
    x_train, y_train = load_split(data_dir, "train", params.n_train, params.data_seed)
    x_test, y_test = load_split(data_dir, "test", params.n_test, params.data_seed)
    n_classes = int(max(y_train.max(), y_test.max())) + 1
    if params.ntk_probe > params.n_train:
        raise ValueError(f"ntk_probe={params.ntk_probe} exceeds n_train={params.n_train}")
    records = []
    for ratio, depth in zip(params.depth_ratios, params.depths()):
        for init in params.inits:
            for seed in params.seeds:
                with single_threaded_on_cpu(params.device):
                    rows = train_run(x_train, y_train, x_test, y_test, init, depth, params, seed, n_classes)
                records.extend((init, params.width, depth, ratio, seed, *row) for row in rows)
    return pd.DataFrame.from_records(records, columns=TRAINING_COLUMNS)
