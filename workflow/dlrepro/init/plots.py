"""Figures of the init-variants stage, each rendered from one table only.

Colours come from :func:`dlrepro.style.color` (one per init); theory curves are dashed
in the init's colour; several widths in one table are told apart by line style.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
from matplotlib import ticker

from dlrepro import style
from dlrepro.errors import InputFileError

_LINESTYLES = ["-", "--", ":", "-."]


def _check_columns(frame: pd.DataFrame, columns: list[str], kind: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputFileError(f"{kind} table lacks column(s) {missing}")


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


def _shape(shapes, init, quantity, statistic):
    """``(value, lo, hi)`` of one shapes.csv statistic, or None."""
    if shapes is None:
        return None
    row = shapes[(shapes["init"] == init) & (shapes["quantity"] == quantity) & (shapes["statistic"] == statistic)]
    if row.empty:
        return None
    row = row.iloc[0]
    return float(row["value"]), float(row["ci_lo"]), float(row["ci_hi"])


def _decay_panel(ax, frame, x, y, quantity, shapes, init="orthogonal", theory=None, scaled=False):
    """One init's curve on log-log axes (or ``x * y`` with ``scaled``), its peak with the
    bootstrap interval of the peak depth and value, and the deep log-log slope."""
    group = frame[frame["init"] == init].sort_values(x)
    if group.empty:
        ax.text(0.5, 0.5, f"no {init} rows", ha="center", va="center", transform=ax.transAxes)
        return ""
    for width, part in group.groupby("width", sort=True):
        depth = part[x].to_numpy(float)
        value = part[y].to_numpy(float) * (depth if scaled else 1.0)
        keep = value > 1e-9 * np.nanmax(value)  # a square orthogonal first layer gives 0 (or round-off)
        ax.plot(depth[keep], value[keep], color=style.color(init), marker="o", ms=3, label=f"{init}, n={width}")
        if theory is not None and part[theory].notna().all():
            t = part[theory].to_numpy(float) * (depth if scaled else 1.0)
            ax.plot(depth[t > 1e-9 * np.nanmax(t)], t[t > 1e-9 * np.nanmax(t)], color=style.color(init), ls=(0, (4, 2)), lw=1, alpha=0.8,
                    label="1/n theory")
    peak_d, peak_v = _shape(shapes, init, quantity, "peak_depth"), _shape(shapes, init, quantity, "peak_value")
    if peak_d and peak_v and not scaled:
        ax.errorbar([peak_d[0]], [peak_v[0]], xerr=[[peak_d[0] - peak_d[1]], [peak_d[2] - peak_d[0]]],
                    yerr=[[peak_v[0] - peak_v[1]], [peak_v[2] - peak_v[0]]], color="black", marker="s", ms=5,
                    capsize=3, ls="none", label=f"peak: depth {peak_d[0]:g} [{peak_d[1]:g}, {peak_d[2]:g}]")
    note = ""
    slope = _shape(shapes, init, quantity, "loglog_slope")
    if slope and not scaled:
        note = f"deep log-log slope {slope[0]:.2f} [{slope[1]:.2f}, {slope[2]:.2f}]"
    final = _shape(shapes, init, quantity, "final_depth_x_value")
    if final and scaled:
        note = f"deepest: {final[0]:.3f} [{final[1]:.3f}, {final[2]:.3f}]"
    ax.set(xscale="log") if scaled else ax.set(xscale="log", yscale="log")
    _plain_log_ticks(ax)
    low, high = ax.get_ylim()  # room above the data for the legend
    ax.set_ylim(low, high * 8 if ax.get_yscale() == "log" else high + 0.6 * (high - low))
    ax.legend(fontsize="small", loc="upper right")
    return note


def _titled(ax, title, note):
    ax.set_title(f"{title}\n{note}" if note else title, fontsize="medium")


def _plain_log_ticks(ax):
    """Depth ticks as plain numbers (1, 2, 4, ...) on a log x axis, no minor labels."""
    ax.xaxis.set_major_locator(ticker.LogLocator(base=2))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())


def _width_panel(ax, sweep):
    """Measured depth slope versus 1/width with intervals, the extrapolation and theory."""
    for init, part in sweep.groupby("init", sort=True):
        measured = part[part["kind"] == "measured"].sort_values("width")
        inv = 1.0 / measured["width"].to_numpy(float)
        slope = measured["fitted_slope"].to_numpy(float)
        err = [slope - measured["ci_lo"].to_numpy(float), measured["ci_hi"].to_numpy(float) - slope]
        ax.errorbar(inv, slope, yerr=err, color=style.color(init), marker="o", ms=4, capsize=3, ls="none",
                    label=f"{init} (measured)")
        for w, i, v in zip(measured["width"], inv, slope):
            ax.annotate(f"n={w}", (i, v), textcoords="offset points", xytext=(5, -10), fontsize="x-small")
        extra = part[part["kind"] == "extrapolated"]
        if not extra.empty:
            e = extra.iloc[0]
            ax.errorbar([0.0], [e["fitted_slope"]], yerr=[[e["fitted_slope"] - e["ci_lo"]], [e["ci_hi"] - e["fitted_slope"]]],
                        color=style.color(init), marker="D", ms=5, capsize=3, ls="none", mfc="white",
                        label=f"extrapolated {e['fitted_slope']:.3f} [{e['ci_lo']:.3f}, {e['ci_hi']:.3f}]")
            ax.axhline(e["theory_slope"], color="grey", ls=(0, (4, 2)), lw=1,
                       label=f"1/n theory, layers {e['layer_min']}-{e['layer_max']}: {e['theory_slope']:.3f}")
            ax.axhline(e["asymptotic_theory_slope"], color="black", ls=":", lw=1, label="asymptotic 2/3")
    ax.set(xlabel="1 / width", ylabel="depth slope of $n\\,\\mathrm{Var}(\\hat G)/G^2$",
           title="Gaussian slope vs width")
    low, high = ax.get_ylim()
    ax.set_ylim(low, high + 0.8 * (high - low))  # room for the legend above the data
    ax.set_xlim(-0.1 * ax.get_xlim()[1], 1.15 * ax.get_xlim()[1])
    ax.legend(fontsize="x-small", loc="upper left")


def plot_fluctuations(frame: pd.DataFrame, out: str | os.PathLike, shapes: pd.DataFrame | None = None,
                      width_sweep: pd.DataFrame | None = None):
    """Normalised fluctuation versus layer (both inits; the orthogonal one on log axes with
    its peak), the mean kernel, and (with ``width_sweep``) the Gaussian slope versus width."""
    _check_columns(frame, ["init", "width", "layer", "kernel_mean", "normalized_variance",
                           "normalized_variance_se", "theory_kernel", "theory_normalized_variance"],
                   "fluctuations")  # fmt: skip
    fig, axes = style.subplots(3 + (width_sweep is not None))
    _curves(axes[0], frame, "layer", "normalized_variance", "normalized_variance_se", "theory_normalized_variance")
    axes[0].set(xlabel="layer $\\ell$", ylabel="$n\\,\\mathrm{Var}(\\hat G)/G^2$",
                title="kernel fluctuations (dashed: 1/n theory)")  # fmt: skip
    axes[0].legend(fontsize="small")
    note = _decay_panel(axes[1], frame, "layer", "normalized_variance", "normalized_variance", shapes,
                        theory="theory_normalized_variance")
    axes[1].set(xlabel="layer $\\ell$", ylabel="$n\\,\\mathrm{Var}(\\hat G)/G^2$")
    _titled(axes[1], "orthogonal: rise and decay", note)
    _curves(axes[2], frame, "layer", "kernel_mean", theory="theory_kernel")
    axes[2].set(xlabel="layer $\\ell$", ylabel="$G = E[\\hat G]$", xscale="log", yscale="log", title="mean kernel")
    _plain_log_ticks(axes[2])
    if width_sweep is not None:
        _check_columns(width_sweep, ["init", "kind", "width", "fitted_slope", "ci_lo", "ci_hi", "theory_slope",
                                     "asymptotic_theory_slope", "layer_min", "layer_max"], "width_sweep")
        _width_panel(axes[3], width_sweep)
    fig.tight_layout()
    return style.save_figure(fig, out)


def plot_ntk(frame: pd.DataFrame, out: str | os.PathLike, shapes: pd.DataFrame | None = None):
    """NTK mean and normalised variance versus depth; the orthogonal curve on log axes
    with its peak, and depth times it (flat if it decays as 1/depth)."""
    _check_columns(frame, ["init", "width", "depth", "ntk_mean", "ntk_normalized_variance",
                           "ntk_normalized_variance_se"], "ntk")  # fmt: skip
    fig, axes = style.subplots(4)
    _curves(axes[0], frame, "depth", "ntk_mean")
    axes[0].set(xlabel="depth $L$", ylabel="$E[\\hat\\Theta]$", title="mean NTK")
    axes[0].legend(fontsize="small")
    _curves(axes[1], frame, "depth", "ntk_normalized_variance", "ntk_normalized_variance_se")
    axes[1].set(xlabel="depth $L$", ylabel="$n\\,\\mathrm{Var}(\\hat\\Theta)/\\Theta^2$", title="NTK fluctuations")
    note = _decay_panel(axes[2], frame, "depth", "ntk_normalized_variance", "ntk_normalized_variance", shapes)
    axes[2].set(xlabel="depth $L$", ylabel="$n\\,\\mathrm{Var}(\\hat\\Theta)/\\Theta^2$")
    _titled(axes[2], "orthogonal: peak, then decay", note)
    note = _decay_panel(axes[3], frame, "depth", "ntk_normalized_variance", "ntk_normalized_variance", shapes,
                        scaled=True)
    axes[3].set(xlabel="depth $L$", ylabel="$L\\cdot n\\,\\mathrm{Var}(\\hat\\Theta)/\\Theta^2$")
    _titled(axes[3], "orthogonal: depth $\\times$ fluctuation", note)
    fig.tight_layout()
    return style.save_figure(fig, out)


def plot_training(frame: pd.DataFrame, out: str | os.PathLike, comparison: pd.DataFrame | None = None):
    """Rows: train loss, test accuracy, NTK change at each init's selected learning rate
    (mean over seeds, min-max band); columns: depth/width ratios. With ``comparison``, a
    last row: orthogonal-minus-Gaussian test accuracy and mean training loss with
    intervals over seeds, and the learning-rate grid's final validation loss."""
    _check_columns(frame, ["init", "depth", "depth_ratio", "seed", "lr", "selected", "step", "metric", "value"],
                   "training")
    metrics = [m for m in ("train_loss", "test_accuracy", "ntk_change") if m in set(frame["metric"])]
    ratios = sorted(frame["depth_ratio"].unique())
    ncols = max(len(ratios), 3 if comparison is not None else 1)
    n_rows = len(metrics) + (comparison is not None)
    fig, axes = style.subplots(n_rows * ncols, ncols=ncols)
    selected = frame[frame["selected"] == 1]
    for row, metric in enumerate(metrics):
        for col in range(ncols):
            ax = axes[row * ncols + col]
            if col >= len(ratios):
                ax.set_visible(False)
                continue
            ratio = ratios[col]
            part = selected[(selected["metric"] == metric) & (selected["depth_ratio"] == ratio)]
            for init, group in part.groupby("init", sort=True):
                stats = group.groupby("step")["value"].agg(["mean", "min", "max"])
                lr = group["lr"].iloc[0]
                ax.plot(stats.index, stats["mean"], color=style.color(init), marker="." if metric == "ntk_change" else None,
                        label=f"{init} (lr {lr:g}, {group['seed'].nunique()} seeds)")
                ax.fill_between(stats.index, stats["min"], stats["max"], color=style.color(init), alpha=0.2, lw=0)
            depth = int(part["depth"].iloc[0]) if len(part) else 0
            ax.set(xlabel="GD step", ylabel=metric.replace("_", " "), title=f"L/n = {ratio:g} (L = {depth})")
            if row == 0:
                ax.legend(fontsize="small")
    if comparison is not None:
        base = len(metrics) * ncols
        diff = comparison[comparison["kind"] == "difference"]
        for i, (metric, label) in enumerate((("test_accuracy", "test accuracy"),
                                             ("train_loss_mean", "mean training loss"))):
            ax = axes[base + i]
            for init, part in diff[diff["metric"] == metric].groupby("init", sort=True):
                part = part.sort_values("depth_ratio")
                v = part["value"].to_numpy(float)
                ax.errorbar(part["depth_ratio"], v, yerr=[v - part["ci_lo"].to_numpy(float),
                                                          part["ci_hi"].to_numpy(float) - v],
                            color=style.color(init), marker="o", capsize=3,
                            label=f"{init} $-$ {part['reference'].iloc[0]}")
            ax.axhline(0.0, color="grey", lw=1)
            ax.set(xlabel="depth / width", ylabel=f"$\\Delta$ {label}", xscale="log",
                   title=f"$\\Delta$ {label} (95% CI, seeds)")
            ax.set_xticks(ratios, [f"{r:g}" for r in ratios])
            ax.xaxis.set_minor_formatter(ticker.NullFormatter())
            ax.legend(fontsize="small")
        ax = axes[base + 2]
        grid = frame[(frame["metric"] == "val_loss")]
        grid = grid[grid["step"] == grid.groupby(["init", "depth_ratio", "seed", "lr"])["step"].transform("max")]
        first_seed = grid.groupby(["init", "depth_ratio"])["seed"].transform("min")
        grid = grid[grid["seed"] == first_seed]
        for (init, ratio), part in grid.groupby(["init", "depth_ratio"], sort=True):
            part = part.sort_values("lr")
            ax.plot(part["lr"], part["value"], color=style.color(init), marker="o", ms=3,
                    ls=_LINESTYLES[ratios.index(ratio) % len(_LINESTYLES)], label=f"{init}, L/n={ratio:g}")
        lrs = sorted(grid["lr"].unique())
        ax.set(xlabel="learning rate", ylabel="final validation loss", xscale="log", yscale="log",
               title="learning-rate grid (first seed)")
        ax.set_xticks(lrs, [f"{r:g}" for r in lrs])
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        low, high = ax.get_ylim()
        ax.set_ylim(low, high * 3)  # room for the legend above the data
        ax.legend(fontsize="x-small", ncol=2, loc="upper left")
        for ax in axes[base + 3 : base + ncols]:
            ax.set_visible(False)
    fig.tight_layout()
    return style.save_figure(fig, out)


PLOTTERS = {"fluctuations": plot_fluctuations, "ntk": plot_ntk, "training": plot_training}
