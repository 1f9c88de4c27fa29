"""Lightning modules for the VAE and its judge classifier (data: :mod:`dlrepro.vae.data`).

Both train with AdamW and a linear-warmup + cosine learning-rate schedule stepped every
optimizer step (:func:`dlrepro.training.warmup_cosine`); the shared harness
(:func:`dlrepro.training.fit`) runs them.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch.nn import functional as F

from dlrepro.training import warmup_cosine
from dlrepro.vae.model import ClassifierConfig, ConvVAE, SmallCNN, VAEConfig


class _AdamWCosine(L.LightningModule):
    """AdamW with linear warmup and cosine decay, stepped every optimizer step."""

    def __init__(
        self, lr: float, weight_decay: float, warmup_steps: int, min_lr_ratio: float, total_steps: int
    ) -> None:
        super().__init__()
        self.lr, self.weight_decay = lr, weight_decay
        self.warmup_steps, self.min_lr_ratio, self.total_steps = warmup_steps, min_lr_ratio, total_steps

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt,
            lambda s: warmup_cosine(s, self.total_steps, self.warmup_steps, self.min_lr_ratio),
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class VAEModule(_AdamWCosine):
    """Trains a :class:`ConvVAE` on the mean negative ELBO (nats per image) of a batch of images."""

    def __init__(self, config: VAEConfig, **optim: Any) -> None:
        super().__init__(**optim)
        self.model = ConvVAE(config)

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        rec, kl = self.model.neg_elbo(batch)
        return (rec + kl).mean()

    def items_in_batch(self, batch: torch.Tensor) -> int:
        return len(batch)


class ClassifierModule(_AdamWCosine):
    """Trains a :class:`SmallCNN` with cross-entropy on (images, labels) batches."""

    def __init__(self, config: ClassifierConfig, **optim: Any) -> None:
        super().__init__(**optim)
        self.model = SmallCNN(config)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, labels = batch
        return F.cross_entropy(self.model(images), labels)

    def items_in_batch(self, batch) -> int:
        return len(batch[0])
