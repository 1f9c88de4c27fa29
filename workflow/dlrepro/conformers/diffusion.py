"""Denoising diffusion (DDPM, Ho et al. 2020) on centre-of-mass-free 3-D coordinates.

Coordinates (Angstrom) are divided by ``coord_scale`` and centred; noise is Gaussian
projected onto the centre-free subspace (as in EDM, Hoogeboom et al. 2022), so every
``x_t`` stays centred. Time steps are ``t = 1..T``, stored 0-based (``t_idx = t - 1``); the
network sees ``t / T``.

* schedule ``"linear"`` (Ho et al.; betas 1e-4..0.02 rescaled to T steps, the default) or
  ``"cosine"`` (Nichol & Dhariwal 2021, s = 0.008). Both are clipped at
  :data:`MAX_BETA` = 0.5: Nichol & Dhariwal clip at 0.999 for thousands of steps, but with
  tens of steps such a step divides ``x_t`` by ``sqrt(1 - beta) = 0.03`` and amplifies the
  network's error 30-fold (sampling then diverges);
* loss: ``|eps_hat - eps|^2`` averaged over a molecule's real coordinates (one value per
  molecule), ``t`` uniform on 1..T;
* sampler: ancestral DDPM with the posterior variance ``beta~_t``, from ``x_T ~ N(0, I)``
  (centre-free), seeded through a ``torch.Generator``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from dlrepro.conformers.dataset import Batch
from dlrepro.conformers.egnn import remove_mean
from dlrepro.errors import ParamsError

SCHEDULES = ("linear", "cosine")
MAX_BETA = 0.5


@dataclass
class DiffusionConfig:
    steps: int = 50  # T
    schedule: str = "linear"
    coord_scale: float = 1.0  # Angstrom per model unit

    def __post_init__(self) -> None:
        if not isinstance(self.steps, int) or isinstance(self.steps, bool) or self.steps < 2:
            raise ParamsError(f"DiffusionConfig.steps must be an int >= 2, got {self.steps!r}")
        if self.schedule not in SCHEDULES:
            raise ParamsError(f"DiffusionConfig.schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if not (isinstance(self.coord_scale, (int, float)) and self.coord_scale > 0):
            raise ParamsError(f"DiffusionConfig.coord_scale must be > 0, got {self.coord_scale!r}")


def betas_for(config: DiffusionConfig) -> np.ndarray:
    """The noise schedule beta_1..beta_T (float64)."""
    T = config.steps
    if config.schedule == "linear":
        return np.linspace(1e-4 * 1000 / T, 0.02 * 1000 / T, T).clip(max=MAX_BETA)
    s = 0.008
    f = np.cos((np.arange(T + 1) / T + s) / (1 + s) * math.pi / 2) ** 2
    alpha_bar = f / f[0]
    return np.clip(1 - alpha_bar[1:] / alpha_bar[:-1], 0, MAX_BETA)


class Diffusion:
    """Schedule tensors plus the loss and the sampler; ``model(x, t, atoms, pairs, mask)``."""

    def __init__(self, config: DiffusionConfig) -> None:
        self.config = config
        betas = betas_for(config)
        alpha_bar = np.cumprod(1 - betas)
        alpha_bar_prev = np.concatenate([[1.0], alpha_bar[:-1]])
        as_t = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
        self.betas = as_t(betas)
        self.alphas = as_t(1 - betas)
        self.alpha_bar = as_t(alpha_bar)
        self.posterior_var = as_t(betas * (1 - alpha_bar_prev) / (1 - alpha_bar))

    @property
    def steps(self) -> int:
        return self.config.steps

    def noise(self, mask: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Centre-free standard Gaussian noise [B, N, 3], zero on padded atoms."""
        z = torch.randn(*mask.shape, 3, generator=generator, device=mask.device if generator is None
                        else generator.device, dtype=torch.float32)
        return remove_mean(z.to(mask.device), mask)

    def _at(self, table: torch.Tensor, t_idx: torch.Tensor) -> torch.Tensor:
        return table.to(t_idx.device)[t_idx].view(-1, 1, 1)

    def q_sample(self, x0: torch.Tensor, t_idx: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps`` (x_0 in model units, centred)."""
        ab = self._at(self.alpha_bar, t_idx)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * eps

    def to_model(self, coords: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return remove_mean(coords / self.config.coord_scale, mask)

    def loss(self, model, batch: Batch, t_idx: torch.Tensor | None = None, eps: torch.Tensor | None = None,
             generator: torch.Generator | None = None) -> torch.Tensor:
        """Per-molecule denoising loss [B]; ``t_idx``/``eps`` are drawn if not given."""
        mask = batch.mask
        if t_idx is None:
            t_idx = torch.randint(0, self.steps, (mask.shape[0],), generator=generator).to(mask.device)
        if eps is None:
            eps = self.noise(mask, generator)
        x0 = self.to_model(batch.coords, mask)
        x_t = self.q_sample(x0, t_idx, eps)
        eps_hat = model(x_t, (t_idx + 1).float() / self.steps, batch.atoms, batch.pairs, mask)
        sq = ((eps_hat - eps) ** 2).sum(dim=(1, 2))
        return sq / (3 * mask.sum(1))

    @torch.no_grad()
    def sample(self, model, batch: Batch, generator: torch.Generator | None = None) -> torch.Tensor:
        """Coordinates [B, N, 3] in Angstrom for the graphs of ``batch``, by reverse diffusion."""
        mask = batch.mask
        b = mask.shape[0]
        x = self.noise(mask, generator)
        for t_idx in range(self.steps - 1, -1, -1):
            t = torch.full((b,), t_idx, dtype=torch.long, device=mask.device)
            eps_hat = model(x, (t + 1).float() / self.steps, batch.atoms, batch.pairs, mask)
            beta, alpha, ab = (self._at(tab, t) for tab in (self.betas, self.alphas, self.alpha_bar))
            x = (x - beta / (1 - ab).sqrt() * eps_hat) / alpha.sqrt()
            if t_idx > 0:
                x = x + self._at(self.posterior_var, t).sqrt() * self.noise(mask, generator)
            x = remove_mean(x, mask)
        return x * self.config.coord_scale


@torch.no_grad()
def generate(model, diffusion: Diffusion, graphs: list, seed: int, batch_size: int = 64,
             device: str | torch.device = "cpu", log=None) -> list[np.ndarray]:
    """One sampled conformer [n_atoms, 3] (Angstrom) per graph in ``graphs``.

    Graphs are batched in order of size (less padding) and the results returned in the
    input order. The noise comes from one CPU generator seeded with ``seed``, so the output
    is a function of ``(model, graphs, seed, batch_size)``.
    """
    from dlrepro.conformers.dataset import collate

    model.eval()
    generator = torch.Generator().manual_seed(int(seed))
    order = sorted(range(len(graphs)), key=lambda i: (len(graphs[i].atoms), i))
    out: list[np.ndarray | None] = [None] * len(graphs)
    n_batches = -(-len(order) // batch_size)
    for k in range(n_batches):
        chunk = order[k * batch_size : (k + 1) * batch_size]
        batch = Batch(*(t.to(device) for t in collate([graphs[i] for i in chunk])))
        x = diffusion.sample(model, batch, generator).cpu().numpy()
        for j, i in enumerate(chunk):
            out[i] = x[j, : len(graphs[i].atoms)].astype(np.float32)
        if log is not None and (k + 1) % max(1, n_batches // 10) == 0:
            log.info("sampled batch %d/%d", k + 1, n_batches)
    return out
