"""Log-log figures of the scaling fits: data, fitted law (legend) and bootstrap CI band.

Drawn only from the outputs of ``scaling fit-sweeps`` (``fits.json`` for the data points
and the fitted formula, ``predictions.csv`` for the curves and bands). One panel per
single-variable sweep with one curve per group (coloured by :func:`dlrepro.style.color`,
so "mup" has the same colour as everywhere in the study); one panel per (sweep, group)
of a joint law, with one curve in N per value of D. The extrapolated part of each curve
is dashed.
"""

from __future__ import annotations

import os

import matplotlib.pyplot as plt
from matplotlib.ticker import NullFormatter
import numpy as np
import pandas as pd

from dlrepro import style
from dlrepro.io import read_json
from dlrepro.scaling.fit import PREDICTION_COLUMNS


def _panels(fits: list[dict]) -> list[tuple[str, list[dict]]]:
    """(title, fits drawn in it): single laws share a panel per sweep, joint laws get their own."""
    panels: dict[str, list[dict]] = {}
    for f in fits:
        title = f["sweep"] if f["kind"] == "single" or not f["group"] else f"{f['sweep']} ({f['group']})"
        panels.setdefault(title, []).append(f)
    return list(panels.items())


def _rows(preds: pd.DataFrame, fit: dict) -> pd.DataFrame:
    same = (preds["sweep"] == fit["sweep"]) & (preds["group"].fillna("").astype(str) == str(fit["group"]))
    return preds[same]


def _short(formula: str) -> str:
    """The fitted formula with its long variable names kept but ``*`` dropped."""
    return formula.replace("*", " ")


def _draw_curve(ax, part: pd.DataFrame, color: str, label: str) -> None:
    part = part.sort_values("x")
    inside = ~part["extrapolated"].astype(bool)
    ax.fill_between(part["x"], part["y_lo"], part["y_hi"], color=color, alpha=0.2, linewidth=0)
    ax.plot(part["x"], part["y_hat"], color=color, linestyle="--", linewidth=1.0)
    ax.plot(part["x"].where(inside), part["y_hat"].where(inside), color=color, linewidth=1.6, label=label)


def plot_fits(fits_json: str | os.PathLike, predictions_csv: str | os.PathLike, out: str | os.PathLike):
    """Render the figure; returns the written paths (PNG and PDF)."""
    fits = read_json(fits_json)["fits"]
    preds = pd.read_csv(predictions_csv)
    if not fits:
        raise ValueError(f"{fits_json} holds no fits to plot")
    missing = [c for c in PREDICTION_COLUMNS if c not in preds.columns]
    if missing:
        raise ValueError(f"{predictions_csv} lacks column(s) {missing}")
    panels = _panels(fits)
    fig, axes = style.subplots(len(panels))
    fig.set_layout_engine("constrained")
    for ax, (title, members) in zip(axes, panels):
        for fit in members:
            X, y = np.asarray(fit["data"]["X"]), np.asarray(fit["data"]["y"])
            part = _rows(preds, fit)
            if part.empty:
                raise ValueError(f"{predictions_csv} has no rows for sweep {fit['sweep']!r}, group {fit['group']!r}")
            ci = f"{fit['ci_level']:.0%} CI" if fit["bootstrap"]["n_resamples"] else "no CI"
            if fit["kind"] == "single":
                color = style.color(str(fit["group"]) or fit["sweep"])
                prefix = f"{fit['group']}: " if fit["group"] != "" else ""
                ax.scatter(X[:, 0], y, s=10, color=color, alpha=0.6, linewidths=0)
                _draw_curve(ax, part, color, f"{prefix}{_short(fit['formula'])}\n({fit['regime']['alpha']})")
            else:
                d_values = sorted(part["d"].unique())
                cmap = plt.get_cmap("viridis", len(d_values))
                for i, d in enumerate(d_values):
                    _draw_curve(ax, part[part["d"] == d], cmap(i), f"{fit['x'][1]}={d:.3g}")
                ax.scatter(X[:, 0], y, s=10, c=np.log(X[:, 1]), cmap="viridis", alpha=0.6, linewidths=0)
                ax.text(0.02, 0.02, fit["formula"], transform=ax.transAxes, fontsize="x-small")
        ax.set(xscale="log", yscale="log", xlabel=members[0]["x"][0], ylabel=members[0]["y"],
               title=f"{title} (band: {ci})")  # fmt: skip
        ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels of a log axis collide
        # below the panel: inside it, the formulas would cover data or the next panel
        ax.legend(fontsize="x-small", loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=1)
    return style.save_figure(fig, out)
