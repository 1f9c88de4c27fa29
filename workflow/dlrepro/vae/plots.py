"""Figures of the VAE collapse stage, in the study's style (:mod:`dlrepro.style`).

* :func:`plot_summary` reads only ``summary.csv``: test negative ELBO, KID of samples to
  real test images and class coverage of samples vs generation, one line per policy
  (mean over seeds, band = min..max over seeds).
* :func:`plot_grid` renders stored sample arrays: one row per policy, one column per
  generation, each cell a square mosaic of the first samples.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd

from dlrepro import style
from dlrepro.errors import InputFileError

PANELS = [
    ("test_neg_elbo", "test −ELBO (nats / image)"),
    ("sample_kid", "KID of samples to real test"),
    ("sample_coverage_entropy", "class coverage of samples (nats)"),
]


def plot_summary(frame: pd.DataFrame, out: str | os.PathLike) -> None:
    missing = [c for c in ["policy", "generation", "seed"] + [p for p, _ in PANELS] if c not in frame]
    if missing:
        raise InputFileError(f"summary table lacks columns {missing}")
    if frame.empty:
        raise InputFileError("summary table has no rows")
    fig, axes = style.subplots(len(PANELS))
    for ax, (column, label) in zip(axes, PANELS):
        for policy, rows in frame.groupby("policy", sort=True):
            stats = rows.groupby("generation")[column].agg(["mean", "min", "max"]).sort_index()
            c = style.color(policy)
            ax.plot(stats.index, stats["mean"], marker="o", color=c, label=policy)
            if rows["seed"].nunique() > 1:
                ax.fill_between(stats.index, stats["min"], stats["max"], color=c, alpha=0.2, lw=0)
        ax.set_xlabel("generation")
        ax.set_ylabel(label)
        ax.xaxis.get_major_locator().set_params(integer=True)
    axes[0].legend(title="policy")
    fig.suptitle("Convolutional VAE on MNIST: model collapse by mixing policy")
    fig.tight_layout()
    style.save_figure(fig, out)


def _mosaic(images: np.ndarray) -> np.ndarray:
    """Tile ``(n, 1, H, W)`` images into a square-ish 2-D array (blank where n runs out)."""
    n, _, h, w = images.shape
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    canvas = np.zeros((rows * h, cols * w), dtype=np.float32)
    for i, img in enumerate(images):
        r, c = divmod(i, cols)
        canvas[r * h : (r + 1) * h, c * w : (c + 1) * w] = img[0]
    return canvas


def plot_grid(cells: list[tuple[str, int, np.ndarray]], out: str | os.PathLike) -> None:
    """``cells``: (policy, generation, images ``(n, 1, 28, 28)``) for every shown cell."""
    if not cells:
        raise InputFileError("no sample sets to show")
    policies = sorted({p for p, _, _ in cells})
    generations = sorted({g for _, g, _ in cells})
    fig, axes = style.subplots(len(policies) * len(generations), ncols=len(generations))
    by_key = {(p, g): images for p, g, images in cells}
    for i, policy in enumerate(policies):
        for j, generation in enumerate(generations):
            ax = axes[i * len(generations) + j]
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            if (policy, generation) in by_key:
                ax.imshow(_mosaic(by_key[(policy, generation)]), cmap="gray_r", vmin=0, vmax=1)
            if i == 0:
                ax.set_title(f"generation {generation}")
            if j == 0:
                ax.set_ylabel(policy, color=style.color(policy), fontsize="large")
    style.save_figure(fig, out)
