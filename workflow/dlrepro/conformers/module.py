"""LightningModule: the EGNN noise predictor trained with the diffusion loss.

AdamW with a linear-warmup cosine schedule (``dlrepro.training.warmup_cosine``) over the
run's ``total_steps``. Randomness inside a step (time steps, noise) comes from torch's
global generator, which the harness reseeds from ``(seed, step)`` before every step, so a
resumed run is identical to an uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import lightning as L
import torch

from dlrepro.conformers import require_positive_int
from dlrepro.conformers.dataset import Batch
from dlrepro.conformers.diffusion import Diffusion, DiffusionConfig
from dlrepro.conformers.egnn import EGNN, EGNNConfig
from dlrepro.errors import ParamsError
from dlrepro.training import warmup_cosine


@dataclass
class TrainParams:
    """``conformers.model`` / ``conformers.diffusion`` / ``conformers.train`` plus ``compute``."""

    model: EGNNConfig = field(default_factory=EGNNConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    epochs: float = 30.0  # every generation, whatever its pool size (accumulate's compute grows)
    max_steps: int | None = None  # if set: this many optimiser steps every generation, not epochs
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.0
    warmup_steps: int = 20
    compute: dict = field(default_factory=dict)  # dlrepro.training.TrainSettings fields

    def __post_init__(self) -> None:
        if not (isinstance(self.epochs, (int, float)) and self.epochs > 0):
            raise ParamsError(f"TrainParams.epochs must be > 0, got {self.epochs!r}")
        require_positive_int(self, "batch_size")
        if self.max_steps is not None:
            require_positive_int(self, "max_steps")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ParamsError(f"TrainParams.lr must be > 0, got {self.lr!r}")
        if self.weight_decay < 0 or self.warmup_steps < 0:
            raise ParamsError("TrainParams.weight_decay and warmup_steps must be >= 0")
        for key in ("seed", "epochs", "max_steps"):
            if key in self.compute:
                raise ParamsError(f"compute.{key} is set by the conformers stage, not in compute")


class ConformerDiffusion(L.LightningModule):
    def __init__(self, model: EGNNConfig, diffusion: DiffusionConfig, lr: float = 1e-3,
                 weight_decay: float = 0.0, warmup_steps: int = 0, total_steps: int = 1) -> None:
        super().__init__()
        self.net = EGNN(model)
        self.diffusion = Diffusion(diffusion)
        self.lr, self.weight_decay = lr, weight_decay
        self.warmup_steps, self.total_steps = warmup_steps, total_steps

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        return self.diffusion.loss(self.net, batch).mean()

    def items_in_batch(self, batch: Batch) -> int:
        return int(batch.mask.shape[0])  # conformers

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: warmup_cosine(s, self.total_steps, self.warmup_steps))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
