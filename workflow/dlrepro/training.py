"""The one Lightning training harness every stage uses.

What it gives a stage, so that no stage re-implements it:

* **Exact resume.** Training data is served by :class:`StepBatches`, whose batch at global
  step ``s`` is a pure function of ``(seed, s)``; a job killed at any point and rerun
  resumes from ``<ckpt_dir>/last.ckpt`` (model, optimizer, scheduler and loop state) and
  ends with the same weights as an uninterrupted run. Checkpoints live outside the rule's
  declared outputs and are written atomically (:class:`AtomicCheckpointIO`).
* **A loud failure on a non-finite loss**, naming the step and the last good checkpoint,
  which is kept.
* **Devices and precision from config**: ``accelerator``/``devices``/``strategy`` (DDP over
  several devices inside one job, gloo on CPU), ``precision="auto"`` (bf16-mixed on GPU,
  32-true on CPU) and ``compile`` (``torch.compile``; off on CPU by default). With
  ``devices > 1`` Lightning starts one process per extra device by rerunning the job's
  command; each rank trains on its share of every global batch, so the run is that of one
  device with the same global batch. Worker ranks end when training ends: only rank 0
  returns from :func:`fit` and writes the job's outputs. A command may therefore call
  :func:`fit` with ``devices > 1`` only once.
* **Progress in the log**: step, loss, learning rate and throughput every few steps, tagged
  with the stage, generation, width or seed that is running.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import time
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

import lightning as L
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch.callbacks import Callback

from dlrepro.cpu import configure as configure_cpu
from dlrepro.errors import ParamsError, UserError
from dlrepro.io import save_torch
from dlrepro.log import get_logger


class NonFiniteLossError(UserError, RuntimeError):
    """Training produced a NaN or infinite loss: the settings diverge (a learning rate too
    high, ...), which the user changes; reported in one line naming the step."""


@dataclass
class TrainSettings:
    """How to run one training job (the ``compute`` block of the config plus the stage's budget).

    Exactly one of ``max_steps`` or ``epochs`` sets the budget; with ``epochs`` the
    number of steps is ``epochs * steps_per_epoch`` of the data.
    """

    seed: int = 0
    max_steps: int | None = None
    epochs: float | None = None
    accelerator: str = "auto"  # "cpu" | "gpu" | "auto"
    devices: int = 1
    precision: str = "auto"  # "auto" -> "bf16-mixed" on GPU, "32-true" on CPU
    compile: bool = False
    gradient_clip_val: float | None = 1.0
    checkpoint_every_n_steps: int = 50
    # also checkpoint once this many minutes of wall time have passed since the last one, so
    # a long job preempted late loses minutes, not hours; None: $DLREPRO_CHECKPOINT_MINUTES
    # (set from config compute.checkpoint_minutes), else 30. 0 turns it off.
    checkpoint_minutes: float | None = None
    log_every_n_steps: int = 25
    val_every_n_steps: int | None = None
    deterministic: bool = True
    num_threads: int | None = None  # torch intra-op threads on CPU; None = torch's default
    logger: str = "none"  # experiment tracker: one of TRACKERS (dlrepro.training.tracker)
    logger_dir: str = "results/trackers"  # where trackers write (a folder per tracker)

    @classmethod
    def from_dict(cls, d: dict[str, Any], **overrides: Any) -> "TrainSettings":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ParamsError(f"unknown training settings {unknown}; known: {sorted(known)}")
        return cls(**{**d, **overrides})

    def resolved_accelerator(self) -> str:
        if self.accelerator == "auto":
            return "gpu" if torch.cuda.is_available() else "cpu"
        if self.accelerator == "gpu" and not torch.cuda.is_available():
            raise RuntimeError(
                "compute.accelerator is 'gpu' but no CUDA device is visible; "
                "set compute.accelerator to 'cpu' or 'auto'"
            )
        return self.accelerator

    def resolved_precision(self) -> str:
        if self.precision != "auto":
            return self.precision
        return "bf16-mixed" if self.resolved_accelerator() == "gpu" else "32-true"


class StepBatches:
    """Deterministic, resumable batches: batch ``s`` depends only on ``(seed, s)``.

    ``n_items`` items are visited in a fresh seeded permutation every epoch, ``batch_size``
    at a time (the last partial batch of an epoch is dropped, so every step sees the same
    number of items). ``collate(indices)`` turns item indices into a batch. The iterator
    starts at ``start_step()`` (the trainer's global step after a resume), so a resumed run
    sees exactly the batches an uninterrupted run would have seen.

    Under DDP each rank takes every ``world_size``-th item of the global batch, so the global
    batch (and hence the run) is the same for any number of devices.
    """

    def __init__(
        self,
        n_items: int,
        batch_size: int,
        total_steps: int,
        seed: int,
        collate: Callable[[np.ndarray], Any],
        start_step: Callable[[], int] = lambda: 0,
        rank_world: Callable[[], tuple[int, int]] = lambda: (0, 1),
    ) -> None:
        if n_items < batch_size:
            raise ParamsError(
                f"the training set has {n_items} items, fewer than one batch of {batch_size}"
            )
        self.n_items, self.batch_size, self.total_steps = n_items, batch_size, total_steps
        self.seed, self.collate, self.start_step = seed, collate, start_step
        self.rank_world = rank_world
        self.steps_per_epoch = n_items // batch_size
        self._perm_epoch, self._perm = -1, None

    def __len__(self) -> int:
        return self.total_steps

    def indices(self, step: int, rank: int = 0, world_size: int = 1) -> np.ndarray:
        """Item indices of this rank's share of the global batch at ``step``."""
        epoch, b = divmod(step, self.steps_per_epoch)
        if epoch != self._perm_epoch:
            rng = np.random.default_rng([self.seed, epoch])
            # the same order as rng.permutation(n_items), in 4 bytes an item where they fit:
            # the one part of the data path that grows with the data (1/64 of a uint16 token
            # file's size at context 128)
            self._perm = None  # the previous epoch's order is not needed while making this one
            self._perm = np.arange(self.n_items, dtype=np.uint32 if self.n_items < 2**32 else np.int64)
            rng.shuffle(self._perm)  # in place: rng.permutation would hold a second copy
            self._perm_epoch = epoch
        idx = self._perm[b * self.batch_size : (b + 1) * self.batch_size]
        return idx[rank::world_size].astype(np.int64)

    def __iter__(self) -> Iterator[Any]:
        rank, world_size = self.rank_world()
        if self.batch_size % world_size:
            raise ParamsError(
                f"batch size {self.batch_size} is not divisible by {world_size} devices"
            )
        for step in range(int(self.start_step()), self.total_steps):
            yield self.collate(self.indices(step, rank, world_size))

    # Lightning treats loaders with state_dict/load_state_dict as resumable mid-epoch. The
    # position is recomputed from the restored global step, so there is no state to keep.
    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def steps_for(settings: TrainSettings, n_items: int, batch_size: int) -> int:
    """The step budget: ``max_steps``, or ``epochs`` passes over ``n_items``."""
    if (settings.max_steps is None) == (settings.epochs is None):
        raise ParamsError("set exactly one of max_steps and epochs")
    if settings.max_steps is not None:
        return int(settings.max_steps)
    return max(1, int(math.ceil(settings.epochs * (n_items // batch_size))))


def warmup_cosine(step: int, total: int, warmup: int, min_ratio: float = 0.1) -> float:
    """Learning-rate multiplier: linear warmup over ``warmup`` steps, then cosine to ``min_ratio``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints are written to a temporary file and renamed, never left half-written."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        save_torch(path, checkpoint)


CHECKPOINT_MINUTES_ENV = "DLREPRO_CHECKPOINT_MINUTES"


def checkpoint_minutes(settings: TrainSettings) -> float:
    """The wall-time checkpoint interval: the setting, else the environment, else 30."""
    if settings.checkpoint_minutes is not None:
        return float(settings.checkpoint_minutes)
    return float(os.environ.get(CHECKPOINT_MINUTES_ENV) or 30.0)


class PeriodicCheckpoint(Callback):
    """Save ``last.ckpt`` every ``every`` optimizer steps, after any step that ends more than
    ``minutes`` of wall time after the last save (0: never by time), and at the end."""

    def __init__(self, path: Path, every: int, minutes: float = 0.0) -> None:
        self.path, self.every = Path(path), max(1, int(every))
        self.seconds = 60.0 * float(minutes)
        self._last = time.monotonic()

    def on_train_start(self, trainer, pl_module) -> None:
        self._last = time.monotonic()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        due = self.seconds > 0 and time.monotonic() - self._last >= self.seconds
        if self.seconds > 0 and trainer.world_size > 1:
            due = trainer.strategy.broadcast(due, src=0)  # every rank saves, or none (no hang)
        if trainer.global_step % self.every == 0 or due:
            trainer.save_checkpoint(self.path)
            self._last = time.monotonic()

    def on_train_end(self, trainer, pl_module) -> None:
        trainer.save_checkpoint(self.path)


class FiniteLossGuard(Callback):
    """Stop with :class:`NonFiniteLossError` on a NaN/inf loss, before it is checkpointed."""

    def __init__(self, ckpt_path: Path) -> None:
        self.ckpt_path = Path(ckpt_path)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None and not torch.isfinite(loss.detach()).all():
            last = self.ckpt_path if self.ckpt_path.exists() else None
            raise NonFiniteLossError(
                f"non-finite training loss ({loss.item()}) at step {trainer.global_step}; "
                + (f"last good checkpoint kept at {last}" if last else "no checkpoint was saved yet")
            )


class StepSeed(Callback):
    """Reseed torch before every step from ``(seed, step)``: dropout and any other
    randomness inside a step are then identical in a resumed and an uninterrupted run."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        step_seed(self.seed * 1_000_003 + trainer.global_step)


def step_seed(seed: int) -> None:
    """``torch.manual_seed(seed)`` for the generators a training step can use: the CPU's and,
    once CUDA is initialised, every GPU's. Same streams as ``torch.manual_seed``, without its
    per-call cost on a machine where CUDA is not initialised (it records a Python traceback
    for a deferred CUDA, XPU and MTIA seeding each time: 0.8 ms a call measured, against
    11 us for this)."""
    torch.default_generator.manual_seed(seed)
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.manual_seed_all(seed)


@dataclass
class History:
    """What the progress callback saw: one row per logged step / validation."""

    rows: list[dict[str, float]] = field(default_factory=list)


class Progress(Callback):
    """Log step, loss, learning rate and throughput; keep the rows for the stage's tables."""

    def __init__(self, total_steps: int, every: int, tag: dict[str, Any], stage: str) -> None:
        self.total, self.every = total_steps, max(1, int(every))
        self._log = get_logger(stage, **tag)
        self.history = History()
        self._t0 = None
        self._items = 0

    def on_train_start(self, trainer, pl_module) -> None:
        self._t0, self._items, self._start_step = time.perf_counter(), 0, trainer.global_step
        where = ""
        if trainer.world_size > 1:  # Lightning's own lines about it are below the log level
            backend = getattr(trainer.strategy, "process_group_backend", None)
            where = f" as rank {trainer.global_rank} of {trainer.world_size} (DDP, {backend} backend)"
        if trainer.global_step:
            self._log.info("resumed at step %d/%d%s", trainer.global_step, self.total, where)
        else:
            self._log.info("training for %d steps%s", self.total, where)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not trainer.is_global_zero:
            return
        step = trainer.global_step
        self._items += int(getattr(pl_module, "items_in_batch", lambda b: 0)(batch))
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if step % self.every == 0 or step == self.total:
            elapsed = max(1e-9, time.perf_counter() - self._t0)
            lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else float("nan")
            row = {"step": step, "train_loss": float(loss.detach()), "lr": float(lr)}
            self.history.rows.append(row)  # no timings: results are the same bytes every run
            for lg in trainer.loggers:  # a tracker gets the throughput too
                rates = {"items_per_s": self._items / elapsed} if self._items else {}
                lg.log_metrics({"train_loss": row["train_loss"], "lr": row["lr"], **rates}, step=step)
            rate = f" {self._items / elapsed:,.0f} items/s" if self._items else ""
            done = step - self._start_step
            eta = f" eta {_clock(elapsed / done * (self.total - step))}" if done > 0 else ""
            self._log.info(
                "step %d/%d loss %.4f lr %.2e%s%s", step, self.total, row["train_loss"], lr, rate, eta
            )

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val")}
        if metrics:
            self.history.rows.append({"step": trainer.global_step, **metrics})
            for lg in trainer.loggers:
                lg.log_metrics(metrics, step=trainer.global_step)
            self._log.info(
                "step %d validation %s",
                trainer.global_step,
                " ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items())),
            )


TRACKERS = ("none", "csv", "tensorboard", "mlflow", "wandb")


def run_name(stage: str, tag: dict[str, Any]) -> str:
    """``collapse/model=gpt2-d64/policy=replace/gen=2/seed=0``: a tracker's name for a job."""
    return "/".join([stage, *(f"{k}={v}" for k, v in tag.items())])


def tracker(settings: TrainSettings, stage: str, tag: dict[str, Any]):
    """The Lightning logger ``settings.logger`` names, writing under ``settings.logger_dir``
    (``<dir>/<tracker>/...``), or None for ``none``. The job's stage and tag (model,
    policy, generation, width, seed...) name the run and are its tags; the packages of the
    trackers are extras (``pip install 'dlrepro[trackers]'``), imported only here."""
    kind = settings.logger
    if kind not in TRACKERS:
        raise ParamsError(f"compute.logger: {kind!r} is not one of {list(TRACKERS)}")
    if kind == "none":
        return None
    name = run_name(stage, tag)
    root = Path(settings.logger_dir) / kind
    tags = {"stage": stage, **{k: str(v) for k, v in tag.items()}}
    try:
        if kind == "csv":
            from lightning.pytorch.loggers import CSVLogger

            return CSVLogger(save_dir=root, name=name, version="")
        if kind == "tensorboard":
            from lightning.pytorch.loggers import TensorBoardLogger

            return TensorBoardLogger(save_dir=root, name=name, version="", default_hp_metric=False)
        if kind == "mlflow":
            from lightning.pytorch.loggers import MLFlowLogger

            # a local folder, no server: MLflow's file store, which MLflow 3 keeps in
            # maintenance mode behind this switch (a database URI needs no switch)
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            return MLFlowLogger(experiment_name="dlrepro", run_name=name, tags=tags,
                                tracking_uri=f"file:{root.resolve()}")
        from lightning.pytorch.loggers import WandbLogger  # wandb: offline unless WANDB_MODE says otherwise

        return WandbLogger(project="dlrepro", name=name, save_dir=str(root), tags=sorted(f"{k}={v}" for k, v in tags.items()),
                           offline=os.environ.get("WANDB_MODE", "offline") == "offline", group=stage)
    except ModuleNotFoundError as exc:  # Lightning names the missing package
        raise RuntimeError(f"compute.logger: {kind} needs its package ({exc}); "
                           "install the trackers extra: pip install 'dlrepro[trackers]'") from None


def close_tracker(logger, kind: str, status: str) -> None:
    """Finish a run of :func:`tracker` (nothing for ``None``); W&B also ends its process-wide run."""
    if logger is None:
        return
    logger.finalize(status)
    if kind == "wandb":
        import wandb

        wandb.finish()


def _clock(seconds: float) -> str:
    """``1h02m``, ``3m05s`` or ``12s``: an ETA for the progress line."""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


#: Lightning's messages that say nothing about this job, and why each is expected here
_EXPECTED_WARNINGS = (
    # the harness passes no validation loader when the stage evaluates by itself
    r".*`validation_step` but have no `val_dataloader`",
    # Lightning's own use of a torch API that torch deprecated (lightning/pytorch/utilities/_pytree.py)
    r".*isinstance\(treespec, LeafSpec\)` is deprecated",
)


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Keep job logs to the project's own lines while Lightning runs.

    Lightning's INFO lines (``GPU available: False``, ``TPU available``, the litlogger tip,
    ``weights_only was not set`` after every checkpoint, ``Trainer.fit stopped``) go below
    the log level; its warnings and errors stay. The two warnings in
    :data:`_EXPECTED_WARNINGS` are expected by construction and are ignored; every other
    warning is shown as before.
    """
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            for pattern in _EXPECTED_WARNINGS:
                warnings.filterwarnings("ignore", message=pattern)
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


@functools.lru_cache(maxsize=None)
def configure_allocator(mmap_threshold: int = 32 << 20, trim_threshold: int = 1 << 30) -> bool:
    """Keep freed memory in the process between training steps (Linux/glibc; elsewhere a no-op).

    By default glibc serves large blocks (a step's activations and gradients) with fresh
    ``mmap`` calls and returns the top of the heap to the system when it is freed, so every
    step page-faults its working memory in again. For the default preset's language model
    (d_model 64) on CPU this cost more than all of Lightning's per-step work: the Lightning
    path ran at 0.91x a plain loop without these settings, 1.02x with them
    (``benchmarks/training_overhead.py``). Raising the mmap threshold (to 32 MiB, glibc's
    maximum) and the trim threshold (1 GiB) keeps that memory mapped; the peak memory of a
    job does not change, only memory freed after the peak is returned later (at exit).
    Same as ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` in the environment, but
    applied by the harness itself, so it holds however a job is started. Returns whether
    the settings took effect.
    """
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library the interpreter runs on
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold))) and bool(mallopt(_M_TRIM_THRESHOLD,
                                                                                   int(trim_threshold)))


def _strategy(settings: TrainSettings, accelerator: str):
    if settings.devices <= 1:
        return "auto"
    from lightning.fabric.plugins.environments import LightningEnvironment
    from lightning.pytorch.strategies import DDPStrategy

    backend = "nccl" if accelerator == "gpu" else "gloo"
    # Lightning itself starts the processes of the job's devices. Inside a SLURM job (one
    # task per job) it would otherwise take SLURM's task count, 1, as the world size.
    return DDPStrategy(cluster_environment=LightningEnvironment(), process_group_backend=backend)


def fit(
    module: L.LightningModule,
    train_batches: StepBatches,
    settings: TrainSettings,
    ckpt_dir: str | os.PathLike,
    *,
    stage: str,
    tag: dict[str, Any] | None = None,
    val_batches: Any = None,
    callbacks: list[Callback] | None = None,
) -> History:
    """Train ``module`` on ``train_batches`` for ``train_batches.total_steps`` steps.

    Resumes from ``<ckpt_dir>/last.ckpt`` if it exists. Returns the logged history. The
    caller writes the final artefacts (weights, metrics) to its declared outputs and may
    then remove ``ckpt_dir``. ``callbacks`` are added to the harness's own (e.g. a
    benchmark's clock).
    """
    with quiet_lightning():
        return _fit(module, train_batches, settings, ckpt_dir, stage=stage, tag=tag,
                    val_batches=val_batches, callbacks=callbacks)


def _fit(module, train_batches, settings, ckpt_dir, *, stage, tag, val_batches, callbacks) -> History:
    tag = dict(tag or {})
    configure_allocator()
    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    last = ckpt_dir / "last.ckpt"
    configure_cpu(settings.num_threads)
    L.seed_everything(settings.seed, workers=True, verbose=False)
    accelerator = settings.resolved_accelerator()
    total = train_batches.total_steps
    progress = Progress(total, settings.log_every_n_steps, tag, stage)
    logger = tracker(settings, stage, tag)
    if logger is not None:
        logger.log_hyperparams({"stage": stage, **tag, **settings_dict(settings),
                                **dict(getattr(module, "hparams", {}) or {})})
    trainer = L.Trainer(
        accelerator=accelerator,
        devices=settings.devices,
        strategy=_strategy(settings, accelerator),
        precision=settings.resolved_precision(),
        max_steps=total,
        max_epochs=-1 if total > 0 else None,
        gradient_clip_val=settings.gradient_clip_val,
        deterministic=settings.deterministic and accelerator == "cpu",
        logger=logger if logger is not None else False,
        log_every_n_steps=settings.log_every_n_steps,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        val_check_interval=settings.val_every_n_steps if val_batches is not None else None,
        check_val_every_n_epoch=None if val_batches is not None else 1,
        limit_val_batches=None if val_batches is not None else 0,
        callbacks=[
            StepSeed(settings.seed),
            FiniteLossGuard(last),
            progress,
            PeriodicCheckpoint(last, settings.checkpoint_every_n_steps, checkpoint_minutes(settings)),
            *(callbacks or []),
        ],
        plugins=[AtomicCheckpointIO()],
    )
    # the loader starts at the trainer's (restored) global step
    train_batches.start_step = lambda: trainer.global_step
    train_batches.rank_world = lambda: (trainer.global_rank, trainer.world_size)
    model = torch.compile(module) if settings.compile else module
    trainer.fit(
        model,
        train_dataloaders=train_batches,
        val_dataloaders=val_batches,
        ckpt_path=str(last) if last.exists() else None,
    )
    if trainer.world_size > 1:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
        if trainer.global_rank != 0:
            # a worker rank of a multi-device job: rank 0 writes the outputs
            raise SystemExit(0)
    close_tracker(logger, settings.logger, "success")
    progress.history.rows.append({"step": trainer.global_step, "done": 1.0})
    return progress.history


def settings_dict(settings: TrainSettings) -> dict[str, Any]:
    return asdict(settings)
