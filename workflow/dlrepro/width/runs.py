"""Training runs of the width stage: three tasks, two data arms, one cell of the sweep.

Tasks
-----
``mlp``  an :class:`~dlrepro.models.mlp.MLP` (``depth`` ReLU layers, no biases) on MNIST
         images, average-pooled by ``pool`` (2: 14 x 14 = 196 inputs) and standardised with
         the training images' mean and std; 10-way cross-entropy.
``cnn``  a :class:`~dlrepro.models.cnn.CNN` (``depth`` 3 x 3 convolutions, 2 x 2 average pools
         between them, global average pool, linear readout; width = channels) on an image
         folder of the data stage (``dataset``: MNIST, default, or CIFAR-10), the images
         pooled and standardised as for the MLP but kept as ``[N, C, H, W]``.
``lm``   the GPT-2-style :class:`~dlrepro.models.transformer.Transformer` (``n_layer``
         blocks, no biases, untied embeddings, fixed ``head_dim`` so that the number of
         heads grows with the width) on windows of ``block_size`` tokens; next-token
         cross-entropy.

Width is the MLP's hidden width, the CNN's channel count or the transformer's
``d_model``. Every model is put into its parametrization by
:func:`dlrepro.parametrization.apply_parametrization` against the same model at
``base_width`` (and ``2 * base_width`` to mark the infinite dimensions), so at the base
width SP, NTK and muP are the same network with the same optimiser. ``init`` (``table``:
the MLP and CNN by default; ``model``: the LM, keeping GPT-2's init) says whether the
weights are redrawn from the abc-table or the model's own init is rescaled. Attention
uses ``attn_mult = sqrt(head_dim)`` under muP and 1 under SP/NTK, so its scale is
``1/sqrt(head_dim)`` in all three (head_dim is fixed, so muP's ``1/head_dim`` rule is this
constant). Optimiser: AdamW (:func:`~dlrepro.parametrization.make_optimizer`: per-parameter
learning rates from the abc-table) with linear warmup and cosine decay to
``min_lr_ratio``; no gradient clipping by default (clipping the global norm would undo the
parametrization's per-layer scaling).

Learning rates. ``lr[parametrization]`` is the base learning rate ``eta`` of each
parametrization, tuned at the base width; the run at width ``w`` uses the same ``eta`` and
the parametrization transfers it (muP: hidden Adam lr ``eta / m``; SP: ``eta`` everywhere;
NTK: ``eta / sqrt(m)``). The learning-rate sweep runs ``eta * 2**k`` for ``k`` in
``lr_log2_grid``.

Data arms
---------
``online``   fresh data every step. MLP: item ``i`` of the stream is training image
             ``i mod N`` shifted by a random ``(dy, dx)`` in ``[-augment_shift, augment_shift]``
             (drawn for every item from the run's seed), and the stream has
             ``steps * batch_size`` items, each visited once. LM: one pass over the training windows (a
             warning is logged if the budget needs more than one pass).
``offline``  a fixed subset of ``n_offline`` training items (images, or windows), chosen by
             ``data_seed`` (the same for every seed and width), revisited for the same
             number of steps (many epochs).

The seed of a run sets its initialisation and its batch order (and augmentations). All
learning rates of one seed share its initialisation and batches.

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
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from dlrepro.io import read_json, save_npy, sha256_file, write_csv, write_json
from dlrepro.log import get_logger
from dlrepro.parametrization import PARAMETRIZATIONS

if TYPE_CHECKING:
    import torch
    from torch import nn

MODELS = ("mlp", "lm", "cnn")
CNN_DATASETS = ("mnist", "cifar10")  # image folders of the data stage the CNN can train on
ARMS = ("online", "offline")
FORBIDDEN_COMPUTE = ("seed", "max_steps", "epochs", "gradient_clip_val")  # set by the stage
CURVE_COLUMNS = ["model", "arm", "parametrization", "width", "n_params", "seed", "lr", "step",
                 "train_loss", "test_loss", "test_accuracy"]
LR_SWEEP_COLUMNS = ["model", "arm", "parametrization", "width", "n_params", "seed", "lr",
                    "log2_lr_mult", "steps", "train_loss", "test_loss", "test_accuracy", "diverged"]
METRICS = ("train_loss", "test_loss", "test_accuracy")


# --------------------------------------------------------------------------- params


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _require(ok: bool, where: str, value) -> None:
    if not ok:
        raise ValueError(f"invalid {where}: {value!r}")


@dataclass
class TrainParams:
    """Training settings shared by both tasks (the ``train`` block of a model's config)."""

    # defaults: the MLP at the scale measured for the default preset (base-width optimum of
    # Adam's lr about 0.018 after 150 steps; SP's optimum at width 512 about 0.009)
    base_width: int = 64
    batch_size: int = 64
    steps: int = 150
    warmup_steps: int = 15
    min_lr_ratio: float = 0.1
    lr: dict = field(default_factory=lambda: {"sp": 0.016, "ntk": 0.016, "mup": 0.016})
    lr_log2_grid: list = field(default_factory=lambda: [-3, -2, -1, 0, 1, 2])
    seeds: list = field(default_factory=lambda: [0, 1, 2])
    lr_sweep_seeds: list = field(default_factory=lambda: [0])
    weight_decay: float = 0.0
    betas: list = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    # "table": weights redrawn from the abc-table; "model": the model's own init rescaled
    # relative to the base model (dlrepro.parametrization.apply_parametrization)
    init: str = "table"
    init_std: float | None = None  # init "table": std of every weight at the base width; None: 1/sqrt(fan_in)
    output_mult: float = 1.0  # readout multiplier at the base width
    gradient_clip_val: float | None = None
    n_offline: int = 256  # offline arm: training items (images / windows) in the fixed subset
    n_test: int = 1000  # test items for test_loss
    n_train_eval: int = 500  # training items for train_loss
    n_probe: int = 500  # probe items (the first test items) whose logits are saved
    eval_points: int = 8  # log-spaced evaluation steps (0 and the last included)
    data_seed: int = 0  # the offline subset
    compute: dict = field(default_factory=dict)  # TrainSettings fields (dlrepro.training)

    @classmethod
    def from_dict(cls, raw: dict, where: str = "--params") -> "TrainParams":
        if not isinstance(raw, dict):
            raise ValueError(f"{where} must be a JSON object, got {type(raw).__name__}")
        known = [f.name for f in fields(cls)]
        for key in raw:
            if key not in known:
                raise ValueError(f"unknown key {where}.{key!r} for {cls.__name__}; known keys: {known}")
        params = cls(**raw)
        params.validate(where)
        return params

    def validate(self, where: str = "params") -> None:
        for name in ("base_width", "batch_size", "steps", "n_offline", "n_test", "n_train_eval"):
            value = getattr(self, name)
            _require(_is_int(value) and value >= 1, f"{where}.{name} (a positive int)", value)
        for name in ("warmup_steps", "n_probe", "data_seed"):
            value = getattr(self, name)
            _require(_is_int(value) and value >= 0, f"{where}.{name} (an int >= 0)", value)
        _require(_is_int(self.eval_points) and self.eval_points >= 2,
                 f"{where}.eval_points (an int >= 2)", self.eval_points)
        _require(self.n_probe <= self.n_test, f"{where}.n_probe (at most n_test={self.n_test})", self.n_probe)
        _require(0 <= self.min_lr_ratio <= 1, f"{where}.min_lr_ratio (in [0, 1])", self.min_lr_ratio)
        _require(isinstance(self.lr, dict) and len(self.lr) > 0, f"{where}.lr (an object parametrization -> lr)", self.lr)
        for name, value in self.lr.items():
            _require(name in PARAMETRIZATIONS, f"{where}.lr key (one of {list(PARAMETRIZATIONS)})", name)
            _require(isinstance(value, (int, float)) and not isinstance(value, bool)
                     and math.isfinite(value) and value > 0, f"{where}.lr.{name} (a positive number)", value)
        _require(isinstance(self.lr_log2_grid, list) and len(self.lr_log2_grid) > 0
                 and all(isinstance(k, (int, float)) and not isinstance(k, bool) for k in self.lr_log2_grid)
                 and len(set(self.lr_log2_grid)) == len(self.lr_log2_grid),
                 f"{where}.lr_log2_grid (a non-empty list of distinct numbers)", self.lr_log2_grid)
        for name in ("seeds", "lr_sweep_seeds"):
            value = getattr(self, name)
            _require(isinstance(value, list) and all(_is_int(s) and s >= 0 for s in value)
                     and len(set(value)) == len(value), f"{where}.{name} (a list of distinct ints >= 0)", value)
        _require(len(self.seeds) >= 1, f"{where}.seeds (at least one seed)", self.seeds)
        _require(isinstance(self.betas, (list, tuple)) and len(self.betas) == 2
                 and all(0 <= b < 1 for b in self.betas), f"{where}.betas (two numbers in [0, 1))", self.betas)
        _require(self.weight_decay >= 0, f"{where}.weight_decay (>= 0)", self.weight_decay)
        _require(self.eps > 0, f"{where}.eps (> 0)", self.eps)
        _require(self.output_mult > 0, f"{where}.output_mult (> 0)", self.output_mult)
        _require(self.init_std is None or self.init_std > 0, f"{where}.init_std (> 0 or null)", self.init_std)
        _require(self.init in ("table", "model"), f"{where}.init (table or model)", self.init)
        _require(self.init == "table" or self.init_std is None,
                 f"{where}.init_std (null with init: model, whose own init sets the scale)", self.init_std)
        _require(self.gradient_clip_val is None or self.gradient_clip_val > 0,
                 f"{where}.gradient_clip_val (> 0 or null)", self.gradient_clip_val)
        _require(isinstance(self.compute, dict), f"{where}.compute (an object)", self.compute)
        bad = sorted(set(self.compute) & set(FORBIDDEN_COMPUTE))
        if bad:
            raise ValueError(f"{where}.compute.{bad[0]} is set by the width stage (seed, steps and "
                             "gradient clipping are part of the experiment); remove it")

    def lr_for(self, parametrization: str) -> float:
        if parametrization not in self.lr:
            raise ValueError(f"params.lr has no learning rate for parametrization {parametrization!r} "
                             f"(has {sorted(self.lr)})")
        return float(self.lr[parametrization])


@dataclass
class MLPParams(TrainParams):
    depth: int = 2  # nonlinear layers: one input layer and depth - 1 hidden (width x width) layers
    activation: str = "relu"
    pool: int = 2  # average-pool the 28 x 28 images by this factor (1: full resolution)
    augment_shift: int = 2  # online arm: random shifts of up to this many pixels

    def validate(self, where: str = "params") -> None:
        super().validate(where)
        from dlrepro.models import ACTIVATION_NAMES as ACTIVATIONS  # without importing torch

        _require(_is_int(self.depth) and self.depth >= 2, f"{where}.depth (an int >= 2: muP needs a hidden layer)", self.depth)
        _require(self.activation in ACTIVATIONS, f"{where}.activation (one of {sorted(ACTIVATIONS)})", self.activation)
        _require(_is_int(self.pool) and self.pool >= 1, f"{where}.pool (a positive int)", self.pool)
        _require(_is_int(self.augment_shift) and self.augment_shift >= 0, f"{where}.augment_shift (an int >= 0)", self.augment_shift)


@dataclass
class LMParams(TrainParams):
    base_width: int = 32
    batch_size: int = 8
    steps: int = 80
    warmup_steps: int = 8
    lr: dict = field(default_factory=lambda: {"sp": 0.02, "ntk": 0.02, "mup": 0.02})
    lr_log2_grid: list = field(default_factory=lambda: [-2, -1, 0, 1])
    seeds: list = field(default_factory=lambda: [0, 1])
    eval_points: int = 6
    init: str = "model"  # GPT-2's own init (std 0.02, residual projections / sqrt(2 n_layer))
    betas: list = field(default_factory=lambda: [0.9, 0.95])
    n_offline: int = 64
    n_test: int = 32
    n_train_eval: int = 32
    n_probe: int = 1
    n_layer: int = 2
    head_dim: int = 16
    block_size: int = 64
    arch: str = "gpt2"

    def validate(self, where: str = "params") -> None:
        super().validate(where)
        from dlrepro.models import ARCHS

        for name in ("n_layer", "head_dim", "block_size"):
            value = getattr(self, name)
            _require(_is_int(value) and value >= 1, f"{where}.{name} (a positive int)", value)
        _require(self.arch in ARCHS, f"{where}.arch (one of {list(ARCHS)})", self.arch)
        _require(self.base_width % self.head_dim == 0,
                 f"{where}.base_width (a multiple of head_dim={self.head_dim})", self.base_width)


@dataclass
class CNNParams(MLPParams):
    """The CNN (:class:`~dlrepro.models.cnn.CNN`): ``depth`` convolutions of
    ``kernel_size``, width = channels. Defaults: MNIST pooled to 14 x 14, a cheap arm."""

    # defaults: the cheap arm of the default preset (measured: base-width optimum of Adam's
    # lr 0.025-0.05 after 100 steps on MNIST at 14 x 14)
    base_width: int = 8
    batch_size: int = 32
    steps: int = 100
    warmup_steps: int = 10
    lr: dict = field(default_factory=lambda: {"sp": 0.04, "ntk": 0.04, "mup": 0.04})
    lr_log2_grid: list = field(default_factory=lambda: [-2, -1, 0, 1, 2])
    seeds: list = field(default_factory=lambda: [0, 1])
    n_test: int = 500
    n_train_eval: int = 250
    n_probe: int = 250
    eval_points: int = 6
    depth: int = 3  # 14 x 14 -> 7 x 7 -> 3 x 3
    kernel_size: int = 3

    def validate(self, where: str = "params") -> None:
        super().validate(where)
        _require(_is_int(self.kernel_size) and self.kernel_size >= 1 and self.kernel_size % 2 == 1,
                 f"{where}.kernel_size (an odd positive int)", self.kernel_size)


PARAMS_CLASSES: dict[str, type[TrainParams]] = {"mlp": MLPParams, "lm": LMParams, "cnn": CNNParams}


def train_params(model: str, raw: dict, where: str = "--params") -> TrainParams:
    """The training params of ``model`` (``mlp``, ``lm`` or ``cnn``) from a JSON object."""
    if model not in PARAMS_CLASSES:
        raise ValueError(f"model must be one of {list(MODELS)}, got {model!r}")
    return PARAMS_CLASSES[model].from_dict(raw, where)


def check_width(model: str, params: TrainParams, width) -> None:
    _require(_is_int(width) and width >= 1, "width (a positive int)", width)
    if model == "lm" and width % params.head_dim:
        raise ValueError(f"width {width} is not a multiple of head_dim={params.head_dim}")


def eval_steps(total: int, points: int) -> list[int]:
    """``points`` log-spaced steps from 0 to ``total`` (0 and ``total`` always included;
    fewer if rounding merges some)."""
    inner = np.geomspace(1, total, points - 1).round().astype(int) if total >= 1 else []
    return sorted({0, int(total), *map(int, inner)})


# --------------------------------------------------------------------------- tasks


def _pixel_stats(images: np.ndarray, chunk: int = 4096) -> tuple[float, float]:
    """Mean and std of all pixels of a (memory-mapped) image array, read in chunks."""
    total, total_sq, count = 0.0, 0.0, 0
    for i in range(0, len(images), chunk):
        block = np.asarray(images[i:i + chunk], dtype=np.float64)
        total, total_sq, count = total + block.sum(), total_sq + np.square(block).sum(), count + block.size
    mean = total / count
    return float(mean), float(math.sqrt(max(0.0, total_sq / count - mean * mean)))


class MnistTask:
    """The MLP on MNIST (see the module docstring). Images are read from the memory-mapped
    arrays of the data stage, a batch at a time."""

    name = "mlp"
    eval_batch = 1024
    flatten = True  # the MLP reads flat vectors; the CNN (a subclass) images

    def __init__(self, params: MLPParams, data_dir: str | Path, arm: str) -> None:
        from dlrepro.io import load_npy

        if arm not in ARMS:
            raise ValueError(f"arm must be one of {list(ARMS)}, got {arm!r}")
        self.params, self.arm, self.data_dir = params, arm, Path(data_dir)
        arrays = {}
        for split in ("train", "test"):
            for kind in ("images", "labels"):
                path = self.data_dir / f"{split}_{kind}.npy"
                if not path.exists():
                    raise ValueError(f"MNIST folder {self.data_dir} lacks {path.name}")
                arrays[f"{split}_{kind}"] = load_npy(path)
        for split in ("train", "test"):
            images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
            if images.ndim != 4 or labels.shape != (len(images),):
                raise ValueError(f"{self.data_dir}: {split}_images must be (N, C, H, W) with one label "
                                 f"each, got {images.shape} and {labels.shape}")
        self.train_images, self.train_labels = arrays["train_images"], arrays["train_labels"]
        self.test_images, self.test_labels = arrays["test_images"], arrays["test_labels"]
        _, c, h, w = self.train_images.shape
        p = params.pool
        if h % p or w % p:
            raise ValueError(f"pool={p} does not divide the image size {h}x{w}")
        for name, n, have in (("n_test", params.n_test, len(self.test_images)),
                              ("n_offline", params.n_offline, len(self.train_images)),
                              ("n_train_eval", params.n_train_eval, len(self.train_images))):
            if n > have:
                raise ValueError(f"{name}={n} exceeds the {have} images in {self.data_dir}")
        self.in_dim = c * (h // p) * (w // p)
        self.n_classes = int(max(self.train_labels.max(), self.test_labels.max())) + 1
        self.mean, self.std = _pixel_stats(self.train_images)
        if not self.std > 0:
            raise ValueError(f"{self.data_dir}: the training images are constant")

        n_train = len(self.train_images)
        self.subset = np.sort(np.random.default_rng(params.data_seed).permutation(n_train)[: params.n_offline])
        if arm == "offline":
            eval_idx = self.subset[: params.n_train_eval]
        else:
            eval_idx = np.linspace(0, n_train - 1, params.n_train_eval).round().astype(np.int64)
        self.train_eval = self._tensors(self.train_images, self.train_labels, eval_idx)
        self.test = self._tensors(self.test_images, self.test_labels, np.arange(params.n_test))
        self.probe_labels = self.test[1][: params.n_probe].numpy().astype(np.int64)

    def _preprocess(self, images: np.ndarray):
        import torch

        x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
        if self.params.pool > 1:
            x = torch.nn.functional.avg_pool2d(x, self.params.pool)
        x = (x - self.mean) / self.std
        return x.flatten(1) if self.flatten else x

    def _tensors(self, images, labels, idx: np.ndarray):
        import torch

        return self._preprocess(images[idx]), torch.from_numpy(np.asarray(labels[idx], dtype=np.int64))

    def _shifted(self, idx: np.ndarray, shifts: np.ndarray):
        """Online items ``idx``: image ``i mod N`` cropped at offset ``shifts[i]`` (in ``[0, 2s]``)
        from the image zero-padded by ``s`` pixels, i.e. shifted by ``shifts[i] - s``."""
        import torch

        s, n = self.params.augment_shift, len(self.train_images)
        images = np.asarray(self.train_images[idx % n], dtype=np.float32)
        if s:
            padded = np.pad(images, ((0, 0), (0, 0), (s, s), (s, s)))  # 0 = background
            h, w = images.shape[2:]
            for j, (dy, dx) in enumerate(shifts[idx]):
                images[j] = padded[j, :, dy:dy + h, dx:dx + w]
        return self._preprocess(images), torch.from_numpy(np.asarray(self.train_labels[idx % n], dtype=np.int64))

    def train_batches(self, seed: int, total_steps: int):
        from dlrepro.training import StepBatches

        b = self.params.batch_size
        if self.arm == "online":
            n_items = total_steps * b
            shifts = np.random.default_rng([seed, n_items]).integers(
                0, 2 * self.params.augment_shift + 1, size=(n_items, 2), dtype=np.int16)
            return StepBatches(n_items, b, total_steps, seed, lambda idx: self._shifted(idx, shifts))
        return StepBatches(len(self.subset), b, total_steps, seed,
                           lambda idx: self._tensors(self.train_images, self.train_labels, self.subset[idx]))

    def build(self, width: int) -> nn.Module:
        from dlrepro.models.mlp import MLP

        return MLP(self.in_dim, width, self.n_classes, self.params.depth, self.params.activation)

    def attn_mult(self, parametrization: str) -> float:
        return 1.0

    def logits(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return model(x)

    @staticmethod
    def n_params(model: nn.Module) -> int:
        return sum(p.numel() for p in model.parameters())

    @staticmethod
    def items_in_batch(batch) -> int:
        return int(batch[0].shape[0])

    def describe(self) -> dict:
        return {"data_dir": str(self.data_dir), "in_dim": self.in_dim, "n_classes": self.n_classes,
                "n_train": len(self.train_images), "train_images_sha256": sha256_file(self.data_dir / "train_images.npy")}


class ImageCnnTask(MnistTask):
    """The CNN on an image folder of the data stage (MNIST or CIFAR-10): the MLP task's
    data, standardisation, shifts and arms, images kept as ``[N, C, H, W]``."""

    name = "cnn"
    eval_batch = 500
    flatten = False

    def build(self, width: int) -> nn.Module:
        from dlrepro.models.cnn import CNN

        p = self.params
        return CNN(self.train_images.shape[1], width, self.n_classes, p.depth, p.kernel_size, p.activation)


class TextTask:
    """The transformer LM on a token corpus (see the module docstring)."""

    name = "lm"
    eval_batch = 16

    def __init__(self, params: LMParams, data_dir: str | Path, arm: str) -> None:
        from dlrepro.collapse.corpus import TokenFile
        from dlrepro.collapse.lm import TokenStream

        if arm not in ARMS:
            raise ValueError(f"arm must be one of {list(ARMS)}, got {arm!r}")
        self.params, self.arm, self.data_dir = params, arm, Path(data_dir)
        for name in ("manifest.json", "train.npy", "test.npy"):
            if not (self.data_dir / name).exists():
                raise ValueError(f"text folder {self.data_dir} lacks {name}")
        self.vocab_size = int(read_json(self.data_dir / "manifest.json")["settings"]["vocab_size"])
        T = params.block_size
        self.train = TokenStream.of_file(TokenFile(self.data_dir / "train.npy"), T)
        test = TokenStream.of_file(TokenFile(self.data_dir / "test.npy"), T)
        for name, n, have in (("n_test", params.n_test, test.n_windows),
                              ("n_offline", params.n_offline, self.train.n_windows),
                              ("n_train_eval", params.n_train_eval, self.train.n_windows)):
            if n > have:
                raise ValueError(f"{name}={n} exceeds the {have} windows of {T} tokens in {self.data_dir}")
        n_windows = self.train.n_windows
        self.subset = np.sort(np.random.default_rng(params.data_seed).permutation(n_windows)[: params.n_offline])
        if arm == "offline":
            eval_idx = self.subset[: params.n_train_eval]
        else:
            eval_idx = np.linspace(0, n_windows - 1, params.n_train_eval).round().astype(np.int64)
        self.train_eval = self.train.collate(eval_idx)
        self.test = test.collate(np.linspace(0, test.n_windows - 1, params.n_test).round().astype(np.int64))
        self.probe_labels = self.test[1][: params.n_probe].reshape(-1).numpy().astype(np.int64)
        self.n_classes = self.vocab_size

    def train_batches(self, seed: int, total_steps: int):
        from dlrepro.training import StepBatches

        b = self.params.batch_size
        if self.arm == "online":
            passes = total_steps * b / self.train.n_windows
            if passes > 1:
                get_logger("width", model="lm", arm="online").warning(
                    "the online arm needs %.2f passes over the %d training windows; "
                    "windows are repeated", passes, self.train.n_windows)
            return StepBatches(self.train.n_windows, b, total_steps, seed, self.train.collate)
        return StepBatches(len(self.subset), b, total_steps, seed,
                           lambda idx: self.train.collate(self.subset[idx]))

    def build(self, width: int) -> nn.Module:
        from dlrepro.models.transformer import Transformer, TransformerConfig

        p = self.params
        return Transformer(TransformerConfig(
            vocab_size=self.vocab_size, block_size=p.block_size, n_layer=p.n_layer,
            n_head=width // p.head_dim, d_model=width, arch=p.arch, bias=False,
            tie_embeddings=False, dropout=0.0,
        ))

    def attn_mult(self, parametrization: str) -> float:
        return math.sqrt(self.params.head_dim) if parametrization == "mup" else 1.0

    def logits(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        logits, _ = model(x)
        return logits.reshape(-1, logits.size(-1))

    @staticmethod
    def n_params(model: nn.Module) -> int:
        return int(model.num_params(non_embedding=True))

    @staticmethod
    def items_in_batch(batch) -> int:
        return int(batch[0].numel())  # tokens

    def describe(self) -> dict:
        return {"data_dir": str(self.data_dir), "vocab_size": self.vocab_size,
                "n_train_windows": self.train.n_windows,
                "train_sha256": sha256_file(self.data_dir / "train.npy")}


TASKS = {"mlp": MnistTask, "lm": TextTask, "cnn": ImageCnnTask}


def make_task(model: str, params: TrainParams, data_dir: str | Path, arm: str):
    if model not in TASKS:
        raise ValueError(f"model must be one of {list(MODELS)}, got {model!r}")
    return TASKS[model](params, data_dir, arm)


def parametrized_model(task, parametrization: str, width: int, seed: int):
    """``task.build(width)`` put into ``parametrization`` (initialised from ``seed``) and its plan."""
    import torch

    from dlrepro.parametrization import apply_parametrization

    p = task.params
    if p.init == "model":  # the base model's initial weights are read: build it for real, seeded
        torch.manual_seed(seed + 1_000_003)
        base = task.build(p.base_width)
        with torch.device("meta"):
            delta = task.build(2 * p.base_width)
        torch.manual_seed(seed)
    else:
        with torch.device("meta"):  # only the shapes of the base and delta models are read
            base, delta = task.build(p.base_width), task.build(2 * p.base_width)
    model = task.build(width)
    plan = apply_parametrization(model, parametrization, base, seed=seed, optimizer="adamw",
                                 delta_model=delta, init=p.init, init_std=p.init_std,
                                 output_mult=p.output_mult, attn_mult=task.attn_mult(parametrization))
    return model, plan


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


# --------------------------------------------------------------------------- coordinate check


@dataclass
class ModelSection:
    """One model's block of the stage config: its widths, ``train`` block and arms.

    ``arms`` maps each arm to run to its parametrizations (``null``: the stage's list), e.g.
    ``{"online": null, "offline": ["mup"]}``.
    """

    widths: list
    train: dict = field(default_factory=dict)
    arms: dict = field(default_factory=lambda: {"online": None, "offline": None})
    dataset: str | None = None  # cnn only: the image folder (one of CNN_DATASETS; null: mnist)


@dataclass
class CoordCheckSection:
    """The ``coord_check`` block: a few full-batch AdamW steps on a fixed training batch."""

    models: list = field(default_factory=lambda: ["mlp", "lm"])
    steps: int = 5
    seeds: list = field(default_factory=lambda: [0])
    batch_size: int = 32
    lr_mult: float = 1.0  # multiplies each parametrization's base lr (params.lr)


@dataclass
class StageParams:
    """The whole ``width`` block of the config (what ``coord-check`` reads)."""

    parametrizations: list = field(default_factory=lambda: list(PARAMETRIZATIONS))
    mlp: ModelSection | None = None
    lm: ModelSection | None = None
    cnn: ModelSection | None = None
    coord_check: CoordCheckSection = field(default_factory=CoordCheckSection)

    @classmethod
    def from_dict(cls, raw: dict, where: str = "--params") -> "StageParams":
        def check_keys(d, klass, w):
            if not isinstance(d, dict):
                raise ValueError(f"{w} must be a JSON object, got {d!r}")
            known = [f.name for f in fields(klass)]
            for key in d:
                if key not in known:
                    raise ValueError(f"unknown key {w}.{key!r}; known keys: {known}")

        check_keys(raw, cls, where)
        kwargs = dict(raw)
        for model in MODELS:
            if raw.get(model) is not None:
                check_keys(raw[model], ModelSection, f"{where}.{model}")
                if "widths" not in raw[model]:
                    raise ValueError(f"{where}.{model}.widths is required")
                kwargs[model] = ModelSection(**raw[model])
        if "coord_check" in raw:
            check_keys(raw["coord_check"], CoordCheckSection, f"{where}.coord_check")
            kwargs["coord_check"] = CoordCheckSection(**raw["coord_check"])
        stage = cls(**kwargs)
        stage.validate(where)
        return stage

    def validate(self, where: str) -> None:
        for p in self.parametrizations:
            _require(p in PARAMETRIZATIONS, f"{where}.parametrizations entry (one of {list(PARAMETRIZATIONS)})", p)
        for model in MODELS:
            section = self.section(model)
            if section is None:
                continue
            w = f"{where}.{model}"
            if model == "cnn":
                _require(section.dataset is None or section.dataset in CNN_DATASETS,
                         f"{w}.dataset (one of {list(CNN_DATASETS)} or null)", section.dataset)
            else:
                _require(section.dataset is None, f"{w}.dataset (only the cnn block has one)", section.dataset)
            params = train_params(model, section.train, f"{w}.train")
            _require(isinstance(section.widths, list) and len(section.widths) > 0, f"{w}.widths", section.widths)
            for width in section.widths:
                check_width(model, params, width)
            _require(isinstance(section.arms, dict) and section.arms, f"{w}.arms (an object arm -> parametrizations)", section.arms)
            for arm, names in section.arms.items():
                _require(arm in ARMS, f"{w}.arms key (one of {list(ARMS)})", arm)
                _require(names is None or isinstance(names, list), f"{w}.arms.{arm} (a list or null)", names)
                for p in self.parametrizations_of(model, arm):
                    _require(p in PARAMETRIZATIONS, f"{w}.arms.{arm} entry (one of {list(PARAMETRIZATIONS)})", p)
                    params.lr_for(p)
        cc = self.coord_check
        for model in cc.models:
            _require(model in MODELS and self.section(model) is not None,
                     f"{where}.coord_check.models entry (a model with a config block)", model)
        for name in ("steps", "batch_size"):
            _require(_is_int(getattr(cc, name)) and getattr(cc, name) >= 1,
                     f"{where}.coord_check.{name} (a positive int)", getattr(cc, name))
        _require(isinstance(cc.seeds, list) and cc.seeds and all(_is_int(s) and s >= 0 for s in cc.seeds),
                 f"{where}.coord_check.seeds", cc.seeds)
        _require(isinstance(cc.lr_mult, (int, float)) and cc.lr_mult > 0, f"{where}.coord_check.lr_mult", cc.lr_mult)

    def section(self, model: str) -> ModelSection | None:
        return getattr(self, model)

    def parametrizations_of(self, model: str, arm: str | None = None) -> list[str]:
        """The parametrizations of ``model`` in ``arm`` (all its arms' when ``arm`` is None)."""
        section = self.section(model)
        if section is None:
            return []
        arms = [arm] if arm is not None else list(section.arms)
        names = [p for a in arms for p in (section.arms.get(a) or self.parametrizations)]
        return sorted(set(names), key=list(PARAMETRIZATIONS).index)

    def cells(self) -> list[tuple[str, str, int, str]]:
        """Every (model, parametrization, width, arm) the stage trains."""
        return [(model, p, width, arm) for model in MODELS if self.section(model)
                for arm in self.section(model).arms for p in self.parametrizations_of(model, arm)
                for width in self.section(model).widths]


COORD_COLUMNS = ["model", "parametrization", "width", "seed", "step", "layer", "rms", "delta_rms"]


def run_coord_check(stage: StageParams, data_dirs: dict[str, str | Path]) -> pd.DataFrame:
    """The coordinate-check table (:func:`dlrepro.parametrization.coord_check`) of every model
    in ``stage.coord_check.models``: the model at every width of its config, trained for
    ``steps`` full-batch AdamW steps on the first ``batch_size`` training items of the online
    arm at ``lr_mult`` times each parametrization's base lr. Columns :data:`COORD_COLUMNS`."""
    import torch

    from dlrepro.parametrization import coord_check

    cc = stage.coord_check
    frames = []
    for model in cc.models:
        if model not in data_dirs or data_dirs[model] is None:
            raise ValueError(f"coord-check of model {model!r} needs its data folder")
        section = stage.section(model)
        params = train_params(model, section.train, f"params.{model}.train")
        task = make_task(model, params, data_dirs[model], "online")
        x, y = task.train_eval
        if cc.batch_size > len(x):
            raise ValueError(f"coord_check.batch_size={cc.batch_size} exceeds n_train_eval={len(x)} of {model}")
        torch.set_num_threads(int(params.compute.get("num_threads") or 1))
        for seed in cc.seeds:
            for p in stage.parametrizations_of(model):
                frame = coord_check(
                    task.build, sorted(section.widths), p, cc.steps, (x[: cc.batch_size], y[: cc.batch_size]),
                    base_width=params.base_width, optimizer="adamw", lr=params.lr_for(p) * cc.lr_mult,
                    seed=seed, init=params.init, init_std=params.init_std, output_mult=params.output_mult,
                    attn_mult=task.attn_mult(p),
                )
                frames.append(frame.assign(model=model))
    return pd.concat(frames, ignore_index=True)[COORD_COLUMNS]
