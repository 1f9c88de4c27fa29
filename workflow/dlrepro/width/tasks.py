"""Tasks of the width stage: three models, each on its data, in two data arms.

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
constant).

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

A run has two seeds: its initialisation seed (:func:`parametrized_model`) and its data seed
(:meth:`MnistTask.train_batches`: the batch order and the online shifts); the offline
subset is chosen by ``params.data_seed``. Runs on the same data seed see the same batches
whatever their initialisation, and runs of the same initialisation seed start from the
same weights whatever their data.

A task also holds a run's fixed evaluation sets (``test``, ``train_eval``, ``probe_labels``);
the runs that train and evaluate on them: :mod:`dlrepro.width.runs`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dlrepro.errors import InputFileError, ParamsError
from dlrepro.io import read_json, sha256_file
from dlrepro.log import get_logger
from dlrepro.width.params import ARMS, MODELS, LMParams, MLPParams, TrainParams

if TYPE_CHECKING:
    import torch
    from torch import nn

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
            raise ParamsError(f"arm must be one of {list(ARMS)}, got {arm!r}")
        self.params, self.arm, self.data_dir = params, arm, Path(data_dir)
        arrays = {}
        for split in ("train", "test"):
            for kind in ("images", "labels"):
                path = self.data_dir / f"{split}_{kind}.npy"
                if not path.exists():
                    raise InputFileError(f"MNIST folder {self.data_dir} lacks {path.name}")
                arrays[f"{split}_{kind}"] = load_npy(path)
        for split in ("train", "test"):
            images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
            if images.ndim != 4 or labels.shape != (len(images),):
                raise InputFileError(f"{self.data_dir}: {split}_images must be (N, C, H, W) with one label "
                                 f"each, got {images.shape} and {labels.shape}")
        self.train_images, self.train_labels = arrays["train_images"], arrays["train_labels"]
        self.test_images, self.test_labels = arrays["test_images"], arrays["test_labels"]
        _, c, h, w = self.train_images.shape
        p = params.pool
        if h % p or w % p:
            raise ParamsError(f"pool={p} does not divide the image size {h}x{w}")
        for name, n, have in (("n_test", params.n_test, len(self.test_images)),
                              ("n_offline", params.n_offline, len(self.train_images)),
                              ("n_train_eval", params.n_train_eval, len(self.train_images))):
            if n > have:
                raise ParamsError(f"{name}={n} exceeds the {have} images in {self.data_dir}")
        self.in_dim = c * (h // p) * (w // p)
        self.n_classes = int(max(self.train_labels.max(), self.test_labels.max())) + 1
        self.mean, self.std = _pixel_stats(self.train_images)
        if not self.std > 0:
            raise InputFileError(f"{self.data_dir}: the training images are constant")

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
        """The training batches of data seed ``seed`` (batch order and shifts)."""
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
            raise ParamsError(f"arm must be one of {list(ARMS)}, got {arm!r}")
        self.params, self.arm, self.data_dir = params, arm, Path(data_dir)
        for name in ("manifest.json", "train.npy", "test.npy"):
            if not (self.data_dir / name).exists():
                raise InputFileError(f"text folder {self.data_dir} lacks {name}")
        self.vocab_size = int(read_json(self.data_dir / "manifest.json")["settings"]["vocab_size"])
        T = params.block_size
        self.train = TokenStream.of_file(TokenFile(self.data_dir / "train.npy"), T)
        test = TokenStream.of_file(TokenFile(self.data_dir / "test.npy"), T)
        for name, n, have in (("n_test", params.n_test, test.n_windows),
                              ("n_offline", params.n_offline, self.train.n_windows),
                              ("n_train_eval", params.n_train_eval, self.train.n_windows)):
            if n > have:
                raise ParamsError(f"{name}={n} exceeds the {have} windows of {T} tokens in {self.data_dir}")
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
        raise ParamsError(f"model must be one of {list(MODELS)}, got {model!r}")
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

