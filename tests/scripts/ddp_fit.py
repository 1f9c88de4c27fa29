"""Train a small regressor with dlrepro.training.fit on ``devices`` CPU processes (DDP,
gloo) and write its final weights and full-data loss as JSON (rank 0 only).

    python tests/scripts/ddp_fit.py DEVICES OUT.json CKPT_DIR

Run by tests/test_training.py: Lightning's DDP launcher reruns this very command once per
extra device, so it has to be a script of its own.
"""

from __future__ import annotations

import json
import sys

import lightning as L
import torch
from torch import nn

from dlrepro.training import StepBatches, TrainSettings, fit, warmup_cosine

STEPS = 40
X = torch.randn(256, 8, generator=torch.Generator().manual_seed(0))
Y = X @ torch.randn(8, 1, generator=torch.Generator().manual_seed(1)) / 8**0.5


class Regressor(L.LightningModule):
    """No dropout: the ranks' shards then add up to exactly the single-process step."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 1))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.mse_loss(self.net(x), y)

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=1e-2)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, STEPS, 5))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def main(devices: int, out: str, ckpt_dir: str) -> None:
    torch.manual_seed(0)
    module = Regressor()
    with torch.no_grad():
        initial = float(nn.functional.mse_loss(module.net(X), Y))
    batches = StepBatches(len(X), 32, STEPS, seed=3, collate=lambda i: (X[i], Y[i]))
    settings = TrainSettings(seed=0, max_steps=STEPS, accelerator="cpu", devices=devices,
                             num_threads=1, checkpoint_every_n_steps=10, log_every_n_steps=10)
    fit(module, batches, settings, ckpt_dir, stage="ddp-test")
    # only rank 0 gets here
    with torch.no_grad():
        loss = float(nn.functional.mse_loss(module.net(X), Y))
    weights = torch.cat([p.detach().flatten() for p in module.parameters()]).tolist()
    with open(out, "w") as f:
        json.dump({"initial_loss": initial, "loss": loss, "weights": weights}, f)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], sys.argv[3])
