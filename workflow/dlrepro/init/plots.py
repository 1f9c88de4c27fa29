"""Figures of the init-variants stage, each rendered from one table only.

Colours come from :func:`dlrepro.style.color` (one per init); theory curves are dashed
in the init's colour; several widths in one table are told apart by line style.
"""

from __future__ import annotations

import os

import pandas as pd

from dlrepro import style

_LINESTYLES = ["-", "--", ":", "-."]


def _check_columns(frame: pd.DataFrame, columns: list[str], kind: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{kind} table lacks column(s) {missing}")


def _curves(ax, frame, x, y, err=None, theory=None):
    """One line per (init, width), with error bars and a dashed theory curve."""
    widths = sorted(frame["width"].unique())
    for (init, width), group in frame.groupby(["init", "width"], sort=True):
        group = group.sort_values(x)
        ls = _LINESTYLES[widths.index(width) % len(_LINESTYLES)]
        label = f"{init}" + (f", n={width}" if len(widths) > 1 else "")
        ax.errorbar(group[x], group[y], yerr=None if err is None else group[err], color=style.color(init),
                    ls=ls, marker="o", ms=3, capsize=2, label=label)  # fmt: skip
        if theory is not None and group[theory].notna().all():
            ax.plot(group[x], group[theory], color=style.color(init), ls=(0, (4, 2)), lw=1, alpha=0.8)


def plot_fluctuations(frame: pd.DataFrame, out: str | os.PathLike):
    """Normalised fluctuation, mean kernel and four-point vertex versus layer."""
    _check_columns(frame, ["init", "width", "layer", "kernel_mean", "normalized_variance",
                           "normalized_variance_se", "four_point_vertex", "theory_kernel",
                           "theory_normalized_variance"], "fluctuations")  # fmt: skip
    fig, axes = style.subplots(3)
    _curves(axes[0], frame, "layer", "normalized_variance", "normalized_variance_se", "theory_normalized_variance")
    axes[0].set(xlabel="layer $\\ell$", ylabel="$n\\,\\mathrm{Var}(\\hat G)/G^2$",
                title="kernel fluctuations (dashed: 1/n theory)")  # fmt: skip
    _curves(axes[1], frame, "layer", "kernel_mean", theory="theory_kernel")
    axes[1].set(xlabel="layer $\\ell$", ylabel="$G = E[\\hat G]$", xscale="log", yscale="log", title="mean kernel")
    _curves(axes[2], frame, "layer", "four_point_vertex")
    axes[2].set(xlabel="layer $\\ell$", ylabel="$V/G^2$", title="four-point vertex")
    axes[0].legend()
    fig.tight_layout()
    return style.save_figure(fig, out)


def plot_ntk(frame: pd.DataFrame, out: str | os.PathLike):
    """NTK mean and normalised variance versus depth."""
    _check_columns(frame, ["init", "width", "depth", "ntk_mean", "ntk_normalized_variance",
                           "ntk_normalized_variance_se"], "ntk")  # fmt: skip
    fig, axes = style.subplots(2)
    _curves(axes[0], frame, "depth", "ntk_mean")
    axes[0].set(xlabel="depth $L$", ylabel="$E[\\hat\\Theta]$", title="mean NTK")
    _curves(axes[1], frame, "depth", "ntk_normalized_variance", "ntk_normalized_variance_se")
    axes[1].set(xlabel="depth $L$", ylabel="$n\\,\\mathrm{Var}(\\hat\\Theta)/\\Theta^2$", title="NTK fluctuations")
    axes[0].legend()
    fig.tight_layout()
    return style.save_figure(fig, out)


def plot_training(frame: pd.DataFrame, out: str | os.PathLike):
    """Rows: train loss, test accuracy, NTK change; columns: depth/width ratios.
    Seeds are averaged (mean line, min-max band)."""
    _check_columns(frame, ["init", "depth", "depth_ratio", "seed", "step", "metric", "value"], "training")
    metrics = [m for m in ("train_loss", "test_accuracy", "ntk_change") if m in set(frame["metric"])]
    ratios = sorted(frame["depth_ratio"].unique())
    fig, axes = style.subplots(len(metrics) * len(ratios), ncols=len(ratios))
    for row, metric in enumerate(metrics):
        for col, ratio in enumerate(ratios):
            ax = axes[row * len(ratios) + col]
            part = frame[(frame["metric"] == metric) & (frame["depth_ratio"] == ratio)]
            for init, group in part.groupby("init", sort=True):
                stats = group.groupby("step")["value"].agg(["mean", "min", "max"])
                ax.plot(stats.index, stats["mean"], color=style.color(init), label=init)
                ax.fill_between(stats.index, stats["min"], stats["max"], color=style.color(init), alpha=0.2, lw=0)
            depth = int(part["depth"].iloc[0]) if len(part) else 0
            ax.set(xlabel="GD step", ylabel=metric.replace("_", " "), title=f"L/n = {ratio:g} (L = {depth})")
    axes[0].legend()
    fig.tight_layout()
    return style.save_figure(fig, out)


PLOTTERS = {"fluctuations": plot_fluctuations, "ntk": plot_ntk, "training": plot_training}
