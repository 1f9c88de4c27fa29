"""A convolutional VAE for 28x28 grey-level images, and the small CNN that judges its samples.

One readable file in the spirit of nanoGPT's ``model.py``.

``ConvVAE`` (Kingma & Welling 2014)::

    encoder  x (1,28,28) -> Conv 4x4/2 -> (c,14,14) -> Conv 4x4/2 -> (2c,7,7)
             -> Linear -> hidden -> Linear -> (mu, logvar) of q(z|x), each latent_dim wide
    decoder  z -> Linear -> hidden -> Linear -> (2c,7,7) -> ConvT 4x4/2 -> (c,14,14)
             -> ConvT 4x4/2 -> pixel logits (1,28,28)

ReLU between all layers. Prior p(z) = N(0, I); likelihood p(x|z) = independent
**Bernoulli** per pixel with mean ``sigmoid(logits)``, evaluated on the grey levels in
[0, 1] as a cross-entropy (``binary_cross_entropy_with_logits``), as in Kingma & Welling's
and PyTorch's MNIST VAEs. (For non-binary pixels this is the cross-entropy to the
Bernoulli model, not a normalised density; it is comparable across generations because
every generation is scored on the same real test images.) The negative ELBO of one image,
in nats, is::

    -ELBO(x) = sum_pixels BCE(logits(z), x) + KL(q(z|x) || N(0, I)),   z = mu + sigma * eps

``SmallCNN``: two 3x3 conv + max-pool blocks and a ``feature_dim`` wide hidden layer
(``features(x)``, the penultimate features used for the kernel distance) before the
10-way linear head.

Model files (``save_model`` / ``load_model``) hold the kind, the config, the weights and a
``meta`` dict (generation, policy, seed, training-data composition) that later commands
copy into their outputs.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn as nn
from torch.nn import functional as F
from dlrepro.errors import InputFileError, ParamsError

SAMPLE_MODES = ("mean", "bernoulli")


@dataclass
class VAEConfig:
    latent_dim: int = 16
    channels: int = 32  # c: conv channels of the first block; the second has 2c
    hidden: int = 256

    def __post_init__(self) -> None:
        for name in ("latent_dim", "channels", "hidden"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ParamsError(f"VAEConfig.{name} must be a positive integer, got {value!r}")


class ConvVAE(nn.Module):
    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        c, h, k = config.channels, config.hidden, config.latent_dim
        self.encoder = nn.Sequential(
            nn.Conv2d(1, c, 4, stride=2, padding=1),  # 28 -> 14
            nn.ReLU(),
            nn.Conv2d(c, 2 * c, 4, stride=2, padding=1),  # 14 -> 7
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(2 * c * 7 * 7, h),
            nn.ReLU(),
            nn.Linear(h, 2 * k),  # mu and logvar
        )
        self.decoder = nn.Sequential(
            nn.Linear(k, h),
            nn.ReLU(),
            nn.Linear(h, 2 * c * 7 * 7),
            nn.ReLU(),
            nn.Unflatten(1, (2 * c, 7, 7)),
            nn.ConvTranspose2d(2 * c, c, 4, stride=2, padding=1),  # 7 -> 14
            nn.ReLU(),
            nn.ConvTranspose2d(c, 1, 4, stride=2, padding=1),  # 14 -> 28, logits
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of q(z|x), each ``(B, latent_dim)``."""
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Pixel logits ``(B, 1, 28, 28)`` of p(x|z)."""
        return self.decoder(z)

    def neg_elbo(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-image reconstruction NLL and KL term, in nats, each of shape ``(B,)``.

        One reparametrised draw z = mu + sigma * eps; ``generator`` fixes eps (None: the
        global torch RNG, which the training harness reseeds every step).
        """
        mu, logvar = self.encode(x)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        z = mu + torch.exp(0.5 * logvar) * eps
        logits = self.decode(z)
        rec = F.binary_cross_entropy_with_logits(logits.float(), x.float(), reduction="none")
        rec = rec.flatten(1).sum(dim=1)
        kl = 0.5 * (mu.float().pow(2) + logvar.float().exp() - 1.0 - logvar.float()).sum(dim=1)
        return rec, kl

    @torch.no_grad()
    def sample(
        self, n: int, generator: torch.Generator | None = None, mode: str = "mean"
    ) -> torch.Tensor:
        """``n`` images ``(n, 1, 28, 28)`` in [0, 1] from z ~ N(0, I).

        ``mode="mean"``: the decoder's Bernoulli means (grey levels, like real MNIST);
        ``mode="bernoulli"``: binary pixels drawn from those means (full ancestral sampling).
        """
        if mode not in SAMPLE_MODES:
            raise ParamsError(f"sample mode must be one of {SAMPLE_MODES}, got {mode!r}")
        device = next(self.parameters()).device
        z = torch.randn(n, self.config.latent_dim, generator=generator, device=device)
        probs = torch.sigmoid(self.decode(z).float())
        if mode == "bernoulli":
            probs = torch.bernoulli(probs, generator=generator)
        return probs


@dataclass
class ClassifierConfig:
    channels: int = 16  # first conv block; the second has 2x
    feature_dim: int = 128  # width of the penultimate layer (features for the kernel distance)
    n_classes: int = 10

    def __post_init__(self) -> None:
        for name in ("channels", "feature_dim", "n_classes"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ParamsError(f"ClassifierConfig.{name} must be a positive integer, got {value!r}")


class SmallCNN(nn.Module):
    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        self.config = config
        c = config.channels
        self.body = nn.Sequential(
            nn.Conv2d(1, c, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 28 -> 14
            nn.Conv2d(c, 2 * c, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 14 -> 7
            nn.Flatten(),
            nn.Linear(2 * c * 7 * 7, config.feature_dim),
            nn.ReLU(),
        )
        self.head = nn.Linear(config.feature_dim, config.n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features ``(B, feature_dim)``."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits ``(B, n_classes)``."""
        return self.head(self.body(x))


# kind -> (module class, config class)
KINDS: dict[str, tuple[type[nn.Module], type]] = {
    "conv_vae": (ConvVAE, VAEConfig),
    "classifier": (SmallCNN, ClassifierConfig),
}


def save_model(path: str | os.PathLike, model: nn.Module, meta: dict[str, Any]) -> None:
    """Write ``model`` (kind, config, weights) and ``meta`` to ``path`` atomically."""
    from dlrepro.io import save_torch

    kind = next(k for k, (cls, _) in KINDS.items() if isinstance(model, cls))
    payload = {
        "kind": kind,
        "config": asdict(model.config),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": dict(meta),
    }
    save_torch(path, payload)


def load_model(path: str | os.PathLike, kind: str) -> tuple[nn.Module, dict[str, Any]]:
    """The model in ``path`` (in eval mode, on CPU) and its ``meta``; it must be of ``kind``."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if payload.get("kind") != kind:
        raise InputFileError(f"{path} holds a {payload.get('kind')!r} model, expected {kind!r}")
    cls, config_cls = KINDS[kind]
    model = cls(config_cls(**payload["config"]))
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model, payload["meta"]
