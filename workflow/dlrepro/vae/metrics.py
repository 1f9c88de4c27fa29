"""How good is a VAE generation: test negative ELBO and sample-quality measures.

* ``test_neg_elbo``: mean negative ELBO of the real held-out test images, nats per image
  (reconstruction NLL + KL, see :mod:`dlrepro.vae.model`), one reparametrised draw per
  image from a generator seeded with a fixed noise seed, so that every generation is
  scored with the same noise.
* Sample quality, judged by a small CNN trained on real MNIST (``vae train-classifier``);
  no downloaded network is needed:

  - ``class_entropy``: mean entropy (nats) of the classifier's predictive distribution on
    each sample; high when samples are ambiguous blobs rather than clear digits.
  - ``coverage_entropy``: entropy (nats, at most ``ln 10``) of the histogram of predicted
    classes over all samples; low when the samples cover few digit classes.
  - ``classes_covered``: number of classes receiving at least ``min_mass`` of the samples.
  - ``kid``: Kernel Inception Distance (Binkowski et al. 2018, "Demystifying MMD GANs"),
    the unbiased squared MMD with the cubic polynomial kernel
    ``k(x, y) = (x.y / d + 1)^3``, between the classifier's penultimate features of the
    samples and of the real test images (both divided by the RMS entry of the real
    features), averaged over random subsets (torchmetrics' ``poly_mmd``; the subsets are
    drawn from an explicit seed). 0 for samples distributed like real test images.
  - ``pixel_std``: mean over pixels of the per-pixel standard deviation across samples,
    a model-free diversity measure.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import entropy
from torchmetrics.image.kid import poly_mmd

from dlrepro.vae.model import ConvVAE, SmallCNN


def _batches(images: np.ndarray, batch_size: int, device: torch.device):
    """Consecutive batches of a (memory-mapped) image array, as tensors on ``device``."""
    for start in range(0, len(images), batch_size):
        yield torch.from_numpy(np.array(images[start : start + batch_size], dtype=np.float32)).to(device)


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def neg_elbo(
    model: ConvVAE, images: np.ndarray, noise_seed: int, batch_size: int = 500
) -> dict[str, float]:
    """Mean ``neg_elbo``, ``rec_nll`` and ``kl`` (nats per image) of ``images``."""
    if len(images) == 0:
        raise ValueError("neg_elbo needs at least one image")
    model.eval()
    device = _device(model)
    generator = torch.Generator(device=device).manual_seed(int(noise_seed))
    rec_sum = kl_sum = 0.0
    for x in _batches(images, batch_size, device):
        rec, kl = model.neg_elbo(x, generator=generator)
        rec_sum += float(rec.double().sum())
        kl_sum += float(kl.double().sum())
    n = len(images)
    return {"neg_elbo": (rec_sum + kl_sum) / n, "rec_nll": rec_sum / n, "kl": kl_sum / n}


@torch.no_grad()
def classify(
    classifier: SmallCNN, images: np.ndarray, batch_size: int = 500
) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities ``(N, n_classes)`` and penultimate features ``(N, feature_dim)``."""
    classifier.eval()
    probs, feats = [], []
    for x in _batches(images, batch_size, _device(classifier)):
        f = classifier.features(x)
        probs.append(torch.softmax(classifier.head(f).double(), dim=1).cpu().numpy())
        feats.append(f.double().cpu().numpy())
    return np.concatenate(probs), np.concatenate(feats)


def class_entropy(probs: np.ndarray) -> float:
    """Mean entropy (nats) of the per-sample predictive distributions."""
    return float(entropy(probs, axis=1).mean())


def coverage(probs: np.ndarray, min_mass: float = 0.05) -> dict[str, float]:
    """Entropy (nats) of the predicted-class histogram and the number of classes with >= ``min_mass``."""
    if not 0.0 < min_mass < 1.0:
        raise ValueError(f"min_mass must lie in (0, 1), got {min_mass}")
    hist = np.bincount(probs.argmax(axis=1), minlength=probs.shape[1]) / len(probs)
    return {
        "coverage_entropy": float(entropy(hist)),
        "classes_covered": int((hist >= min_mass).sum()),
    }


def kid(
    features: np.ndarray,
    reference: np.ndarray,
    n_subsets: int = 20,
    subset_size: int = 1000,
    seed: int = 0,
) -> float:
    """Kernel Inception Distance of ``features`` to ``reference`` (mean over ``n_subsets``).

    Both sets are first divided by the root-mean-square entry of ``reference``, so the
    kernel sees inner products of order one whatever the scale of the classifier's
    features. Each subset draws ``min(subset_size, len(features), len(reference))`` rows
    of each set without replacement, from ``np.random.default_rng(seed)``.
    """
    if n_subsets < 1:
        raise ValueError(f"n_subsets must be >= 1, got {n_subsets}")
    m = min(int(subset_size), len(features), len(reference))
    if m < 2:
        raise ValueError(f"KID needs at least 2 items per set, got subset size {m}")
    scale = float(np.sqrt(np.mean(np.square(reference, dtype=np.float64)))) or 1.0
    a = torch.from_numpy(np.asarray(features, np.float64) / scale)
    b = torch.from_numpy(np.asarray(reference, np.float64) / scale)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_subsets):
        ia = rng.choice(len(a), size=m, replace=False)
        ib = rng.choice(len(b), size=m, replace=False)
        values.append(float(poly_mmd(a[ia], b[ib], degree=3, gamma=None, coef=1.0)))
    return float(np.mean(values))


def pixel_std(images: np.ndarray, chunk: int = 4096) -> float:
    """Mean over pixels of the standard deviation across images (read in chunks)."""
    n = len(images)
    if n == 0:
        raise ValueError("pixel_std needs at least one image")
    total = np.zeros(int(np.prod(images.shape[1:])), dtype=np.float64)
    total_sq = np.zeros_like(total)
    for start in range(0, n, chunk):
        x = np.asarray(images[start : start + chunk], dtype=np.float64).reshape(-1, total.size)
        total += x.sum(axis=0)
        total_sq += (x * x).sum(axis=0)
    mean = total / n
    return float(np.sqrt(np.maximum(total_sq / n - mean * mean, 0.0)).mean())
