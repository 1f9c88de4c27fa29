"""The Lightning module of the language-model stage (kept apart from :mod:`dlrepro.collapse.lm`
so that sampling and evaluation never pay for importing Lightning)."""

from __future__ import annotations

import lightning as L
import torch

from dlrepro.collapse.params import OptimConfig
from dlrepro.models.transformer import Transformer, TransformerConfig
from dlrepro.training import warmup_cosine


class LanguageModel(L.LightningModule):
    """Next-token training of a :class:`~dlrepro.models.transformer.Transformer`."""

    def __init__(self, config: TransformerConfig, optim: OptimConfig, total_steps: int) -> None:
        super().__init__()
        self.model = Transformer(config)
        self.optim, self.total_steps = optim, int(total_steps)

    def training_step(self, batch, batch_idx):
        x, y = batch
        _, loss = self.model(x, y)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        _, loss = self.model(x, y)
        self.log("val_loss", loss, prog_bar=False, batch_size=x.size(0))
        return loss

    def items_in_batch(self, batch) -> int:
        return int(batch[0].numel())  # tokens

    def configure_optimizers(self):
        decay, no_decay = [], []
        for p in self.model.parameters():  # tied weights appear once
            if p.requires_grad:
                (decay if p.dim() >= 2 else no_decay).append(p)
        o = self.optim
        opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": o.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=o.lr,
            betas=o.betas,
        )
        total = self.total_steps
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: warmup_cosine(s, total, o.warmup_steps, o.min_lr_ratio)
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
