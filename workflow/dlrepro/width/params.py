"""Training params of the width stage: the ``train`` block of each model's config.

:class:`TrainParams` holds the settings every model shares (base width, batch size, steps,
warmup and cosine decay, the base learning rate ``lr[parametrization]`` and the sweep's
``lr_log2_grid``, seeds, AdamW, init, the sizes of the data arms and evaluation sets,
``compute``); :class:`MLPParams`, :class:`LMParams` and :class:`CNNParams` add each
model's own keys and defaults. :func:`train_params` reads and validates one model's block,
:func:`check_width` a width; :func:`eval_steps` gives the log-spaced evaluation steps.
:data:`MODELS`, :data:`ARMS` and :data:`CNN_DATASETS` are the names the stage accepts
(:mod:`dlrepro.config`'s registries read ``MODELS`` and ``ARMS`` from this module).

What the tasks and runs do with these params: :mod:`dlrepro.width.tasks` and
:mod:`dlrepro.width.runs`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

import numpy as np

from dlrepro.errors import ParamsError
from dlrepro.parametrization import PARAMETRIZATIONS

MODELS = ("mlp", "lm", "cnn")
CNN_DATASETS = ("mnist", "cifar10")  # image folders of the data stage the CNN can train on
ARMS = ("online", "offline")
FORBIDDEN_COMPUTE = ("seed", "max_steps", "epochs", "gradient_clip_val")  # set by the stage


# --------------------------------------------------------------------------- params


def is_int(value) -> bool:
    """An int that is not a bool (JSON's true/false are not counts)."""
    return isinstance(value, int) and not isinstance(value, bool)


def require(ok: bool, where: str, value) -> None:
    """Raise the params error ``invalid <where>: <value>`` unless ``ok``."""
    if not ok:
        raise ParamsError(f"invalid {where}: {value!r}")


@dataclass
class TrainParams:
    """Training settings shared by the three tasks (MLP, LM, CNN) (the ``train`` block of a model's config)."""

    # defaults: the MLP at the scale measured for the default preset (base-width optimum of
    # Adam's lr about 0.018 after 150 steps; SP's optimum at width 512 about 0.009)
    base_width: int = 64
    batch_size: int = 64
    steps: int = 150
    warmup_steps: int = 15
    min_lr_ratio: float = 0.1
    lr: dict = field(default_factory=lambda: {"sp": 0.016, "ntk": 0.016, "mup": 0.016})
    # the learning-rate sweep: a half-octave grid (log2 multiples of lr[parametrization]),
    # extended by up to lr_grid_extend octaves at an edge while a width's optimum lies within
    # an octave of that edge (dlrepro.width.runs)
    lr_log2_grid: list = field(default_factory=lambda: [-1.5, -1, -0.5, 0, 0.5, 1, 1.5])
    lr_grid_extend: float = 2.0
    lr_sweep_parametrizations: list = field(default_factory=lambda: ["sp", "mup"])  # the claims' two
    # initialisation seeds: ``seeds`` of the main runs (the variance over initialisations,
    # agreement and ensembles: at least 6), ``lr_sweep_seeds`` of the sweep (at least 4)
    seeds: list = field(default_factory=lambda: [0, 1, 2, 3, 4, 5])
    lr_sweep_seeds: list = field(default_factory=lambda: [0, 1, 2, 3])
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
    # data seeds: ``data_seed`` sets the offline subset and the data stream (batch order,
    # shifts) of every main and sweep run, so those runs differ only in their initialisation;
    # ``data_seeds`` are the streams of the data-only runs (initialisation seeds[0]), whose
    # spread is the data-order part of the variance
    data_seed: int = 0
    data_seeds: list = field(default_factory=lambda: [0, 1, 2, 3, 4, 5])
    compute: dict = field(default_factory=dict)  # TrainSettings fields (dlrepro.training)

    @classmethod
    def from_dict(cls, raw: dict, where: str = "--params") -> "TrainParams":
        if not isinstance(raw, dict):
            raise ParamsError(f"{where} must be a JSON object, got {type(raw).__name__}")
        known = [f.name for f in fields(cls)]
        for key in raw:
            if key not in known:
                raise ParamsError(f"unknown key {where}.{key!r} for {cls.__name__}; known keys: {known}")
        params = cls(**raw)
        params.validate(where)
        return params

    def validate(self, where: str = "params") -> None:
        for name in ("base_width", "batch_size", "steps", "n_offline", "n_test", "n_train_eval"):
            value = getattr(self, name)
            require(is_int(value) and value >= 1, f"{where}.{name} (a positive int)", value)
        for name in ("warmup_steps", "n_probe", "data_seed"):
            value = getattr(self, name)
            require(is_int(value) and value >= 0, f"{where}.{name} (an int >= 0)", value)
        require(is_int(self.eval_points) and self.eval_points >= 2,
                 f"{where}.eval_points (an int >= 2)", self.eval_points)
        require(self.n_probe <= self.n_test, f"{where}.n_probe (at most n_test={self.n_test})", self.n_probe)
        require(0 <= self.min_lr_ratio <= 1, f"{where}.min_lr_ratio (in [0, 1])", self.min_lr_ratio)
        require(isinstance(self.lr, dict) and len(self.lr) > 0, f"{where}.lr (an object parametrization -> lr)", self.lr)
        for name, value in self.lr.items():
            require(name in PARAMETRIZATIONS, f"{where}.lr key (one of {list(PARAMETRIZATIONS)})", name)
            require(isinstance(value, (int, float)) and not isinstance(value, bool)
                     and math.isfinite(value) and value > 0, f"{where}.lr.{name} (a positive number)", value)
        require(isinstance(self.lr_log2_grid, list) and len(self.lr_log2_grid) > 0
                 and all(isinstance(k, (int, float)) and not isinstance(k, bool) for k in self.lr_log2_grid)
                 and len(set(self.lr_log2_grid)) == len(self.lr_log2_grid),
                 f"{where}.lr_log2_grid (a non-empty list of distinct numbers)", self.lr_log2_grid)
        require(isinstance(self.lr_grid_extend, (int, float)) and not isinstance(self.lr_grid_extend, bool)
                and 0 <= self.lr_grid_extend <= 8, f"{where}.lr_grid_extend (octaves, in [0, 8])",
                self.lr_grid_extend)
        require(isinstance(self.lr_sweep_parametrizations, list)
                and all(p in PARAMETRIZATIONS for p in self.lr_sweep_parametrizations),
                f"{where}.lr_sweep_parametrizations (a list of {list(PARAMETRIZATIONS)})",
                self.lr_sweep_parametrizations)
        for name in ("seeds", "lr_sweep_seeds", "data_seeds"):
            value = getattr(self, name)
            require(isinstance(value, list) and all(is_int(s) and s >= 0 for s in value)
                     and len(set(value)) == len(value), f"{where}.{name} (a list of distinct ints >= 0)", value)
        require(len(self.seeds) >= 1, f"{where}.seeds (at least one seed)", self.seeds)
        require(isinstance(self.betas, (list, tuple)) and len(self.betas) == 2
                 and all(0 <= b < 1 for b in self.betas), f"{where}.betas (two numbers in [0, 1))", self.betas)
        require(self.weight_decay >= 0, f"{where}.weight_decay (>= 0)", self.weight_decay)
        require(self.eps > 0, f"{where}.eps (> 0)", self.eps)
        require(self.output_mult > 0, f"{where}.output_mult (> 0)", self.output_mult)
        require(self.init_std is None or self.init_std > 0, f"{where}.init_std (> 0 or null)", self.init_std)
        require(self.init in ("table", "model"), f"{where}.init (table or model)", self.init)
        require(self.init == "table" or self.init_std is None,
                 f"{where}.init_std (null with init: model, whose own init sets the scale)", self.init_std)
        require(self.gradient_clip_val is None or self.gradient_clip_val > 0,
                 f"{where}.gradient_clip_val (> 0 or null)", self.gradient_clip_val)
        require(isinstance(self.compute, dict), f"{where}.compute (an object)", self.compute)
        bad = sorted(set(self.compute) & set(FORBIDDEN_COMPUTE))
        if bad:
            raise ParamsError(f"{where}.compute.{bad[0]} is set by the width stage (seed, steps and "
                             "gradient clipping are part of the experiment); remove it")

    def lr_for(self, parametrization: str) -> float:
        if parametrization not in self.lr:
            raise ParamsError(f"params.lr has no learning rate for parametrization {parametrization!r} "
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

        require(is_int(self.depth) and self.depth >= 2, f"{where}.depth (an int >= 2: muP needs a hidden layer)", self.depth)
        require(self.activation in ACTIVATIONS, f"{where}.activation (one of {sorted(ACTIVATIONS)})", self.activation)
        require(is_int(self.pool) and self.pool >= 1, f"{where}.pool (a positive int)", self.pool)
        require(is_int(self.augment_shift) and self.augment_shift >= 0, f"{where}.augment_shift (an int >= 0)", self.augment_shift)


@dataclass
class LMParams(TrainParams):
    base_width: int = 32
    batch_size: int = 8
    steps: int = 80
    warmup_steps: int = 8
    lr: dict = field(default_factory=lambda: {"sp": 0.02, "ntk": 0.02, "mup": 0.02})
    lr_log2_grid: list = field(default_factory=lambda: [-2, -1.5, -1, -0.5, 0, 0.5, 1])
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
            require(is_int(value) and value >= 1, f"{where}.{name} (a positive int)", value)
        require(self.arch in ARCHS, f"{where}.arch (one of {list(ARCHS)})", self.arch)
        require(self.base_width % self.head_dim == 0,
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
    n_test: int = 500
    n_train_eval: int = 250
    n_probe: int = 250
    eval_points: int = 6
    depth: int = 3  # 14 x 14 -> 7 x 7 -> 3 x 3
    kernel_size: int = 3

    def validate(self, where: str = "params") -> None:
        super().validate(where)
        require(is_int(self.kernel_size) and self.kernel_size >= 1 and self.kernel_size % 2 == 1,
                 f"{where}.kernel_size (an odd positive int)", self.kernel_size)


PARAMS_CLASSES: dict[str, type[TrainParams]] = {"mlp": MLPParams, "lm": LMParams, "cnn": CNNParams}


def train_params(model: str, raw: dict, where: str = "--params") -> TrainParams:
    """The training params of ``model`` (``mlp``, ``lm`` or ``cnn``) from a JSON object."""
    if model not in PARAMS_CLASSES:
        raise ParamsError(f"model must be one of {list(MODELS)}, got {model!r}")
    return PARAMS_CLASSES[model].from_dict(raw, where)


def check_width(model: str, params: TrainParams, width) -> None:
    require(is_int(width) and width >= 1, "width (a positive int)", width)
    if model == "lm" and width % params.head_dim:
        raise ParamsError(f"width {width} is not a multiple of head_dim={params.head_dim}")


def eval_steps(total: int, points: int) -> list[int]:
    """``points`` log-spaced steps from 0 to ``total`` (0 and ``total`` always included;
    fewer if rounding merges some)."""
    inner = np.geomspace(1, total, points - 1).round().astype(int) if total >= 1 else []
    return sorted({0, int(total), *map(int, inner)})
