"""Figure of the model-collapse stage, rendered from ``summary.csv`` only.

Test loss (nats/token on the real test split) against generation: one panel per (data set,
model), one line per mixing policy (the mean over seeds), the seeds' range (min to max) as a
band when there is more than one seed.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from dlrepro import style  # selects the Agg backend before pyplot is used
from matplotlib.ticker import MaxNLocator  # noqa: E402
from dlrepro.errors import InputFileError

REQUIRED = ["dataset", "model", "n_params", "policy", "generation", "seed", "test_loss"]


def plot_test_loss(table: pd.DataFrame, out: str | os.PathLike) -> list[Path]:
    """Draw the figure from the summary table; returns the PNG and PDF paths."""
    missing = [c for c in REQUIRED if c not in table.columns]
    if missing:
        raise InputFileError(f"summary table lacks columns {missing}")
    if table.empty:
        raise InputFileError("summary table has no rows")
    panels = list(table[["dataset", "model"]].drop_duplicates().itertuples(index=False, name=None))
    panels.sort()
    fig, axes = style.subplots(len(panels))
    for ax, (dataset, model) in zip(axes, panels):
        sub = table[(table["dataset"] == dataset) & (table["model"] == model)]
        for policy, rows in sorted(sub.groupby("policy"), key=lambda kv: kv[0]):
            stats = rows.groupby("generation")["test_loss"].agg(["mean", "min", "max", "count"]).sort_index()
            c = style.color(policy)
            ax.plot(stats.index, stats["mean"], marker="o", color=c, label=policy)
            if (stats["count"] > 1).any():
                ax.fill_between(stats.index, stats["min"], stats["max"], color=c, alpha=0.2, linewidth=0)
        n_params = int(sub["n_params"].iloc[0])
        ax.set_title(f"{dataset} · {model} ({n_params / 1e6:.2g}M params)")
        ax.set_xlabel("generation")
        ax.set_ylabel("test loss (nats/token)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(title="policy")
    n_seeds = table.groupby(["dataset", "model", "policy", "generation"])["seed"].nunique().max()
    if n_seeds > 1:
        fig.suptitle(f"lines: mean over {n_seeds} seeds; bands: min to max", fontsize="small")
    return style.save_figure(fig, out)
