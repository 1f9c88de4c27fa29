"""Log-log figures of the scaling fits: data, fitted law (legend) and bootstrap CI band.

Drawn from the outputs of ``scaling sweeps`` (``fits.json`` for the fitted formula and the
input each sweep read -- its path and sha256 -- whose selected rows are the data points;
``predictions.csv`` for the curves and bands). An input that changed since the fit is an
error. One panel per
single-variable sweep with one curve per group (coloured by :func:`dlrepro.style.color`,
so "mup" has the same colour as everywhere in the study); one panel per (sweep, group)
of a joint law, with one curve in N per value of D. The extrapolated part of each curve
is dashed. Axes are labelled in words (:data:`AXIS_WORDS`, else the column name with
spaces), log ticks as plain numbers (:func:`dlrepro.style.readable_log_axis`).
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.colors import ListedColormap
import numpy as np
import pandas as pd

from dlrepro import style
from dlrepro.io import read_json
from dlrepro.io import sha256_file
from dlrepro.scaling.fit import PREDICTION_COLUMNS
from dlrepro.scaling.sweeps import InputError, SweepSpec, groups_of, load_sweep_table, read_table


#: words (with units) for the columns the workflow's sweeps use; other columns are shown by name
AXIS_WORDS = {
    "train_tokens": "training tokens",
    "tokens": "training tokens",
    "n_params": "parameters",
    "test_loss": "test loss (cross-entropy, nats)",
    "loss_c4_val": "C4 validation loss (nats/token)",
}
#: titles of the workflow's sweeps (``fits.json``'s sweep names)
SWEEP_TITLES = {"data": "language model, data-size sweep", "width": "width sweep"}


def _words(column: str) -> str:
    return AXIS_WORDS.get(column, column.replace("_", " "))


def _title(name: str, record: dict) -> str:
    """The sweep's title, with what its rows were filtered to (e.g. ``model mlp, arm online``)."""
    spec = next((s for s in record.get("sweeps", []) if s.get("name") == name), {})
    where = ", ".join(f"{k} {v}" for k, v in (spec.get("filter") or {}).items())
    return SWEEP_TITLES.get(name, name) + (f"\n({where})" if where else "")


def _points(record: dict) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
    """(sweep, group) -> (X, y) of the rows each fit used, re-read from the recorded input."""
    points = {}
    for spec in record["sweeps"]:
        spec = dict(spec)
        source = spec.pop("input")
        path = Path(source["path"])
        if not path.is_file() or sha256_file(path) != source["sha256"]:
            raise InputError(f"{source['path']}: missing or changed since the fit (sha256 {source['sha256'][:12]}...)")
        sweep = SweepSpec(**spec)
        for group, part in groups_of(sweep, load_sweep_table(sweep)):
            points[(sweep.name, str(group))] = (part[sweep.x_columns].to_numpy(float), part[sweep.y].to_numpy(float))
    return points


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
    for path in (fits_json, predictions_csv):
        if not Path(path).is_file():
            raise InputError(f"{path}: no such file")
    record = read_json(fits_json)
    fits = record.get("fits") if isinstance(record, dict) else None
    if not fits or "sweeps" not in record:
        raise InputError(f"{fits_json} holds no fits to plot (expected the JSON of scaling fit/fit2/sweeps)")
    preds = read_table(str(predictions_csv))
    missing = [c for c in PREDICTION_COLUMNS if c not in preds.columns]
    if missing:
        raise InputError(f"{predictions_csv} lacks column(s) {missing}")
    panels = _panels(fits)
    points = _points(record)
    fig, axes = style.subplots(len(panels))
    fig.set_layout_engine("constrained")
    for ax, (title, members) in zip(axes, panels):
        for fit in members:
            X, y = points[(fit["sweep"], str(fit["group"]))]
            part = _rows(preds, fit)
            if part.empty:
                raise InputError(f"{predictions_csv} has no rows for sweep {fit['sweep']!r}, group {fit['group']!r}")
            ci = f"{fit['ci_level']:.0%} CI" if fit["bootstrap"]["n_resamples"] else "no CI"
            if fit["kind"] == "single":
                color = style.color(str(fit["group"]) or fit["sweep"])
                prefix = f"{fit['group']}: " if fit["group"] != "" else ""
                ax.scatter(X[:, 0], y, s=12, color=color, alpha=0.8, linewidths=0)
                regime = next(iter(fit["regime"].values()))
                _draw_curve(ax, part, color, f"{prefix}{_short(fit['formula'])}\n({regime})")
            else:
                d_values = sorted(part["d"].unique())
                # viridis without its pale-yellow end (dlrepro.figcheck: contrast on white)
                cmap = ListedColormap(plt.get_cmap("viridis")(np.linspace(0.0, 0.8, 256)))
                shades = [cmap(i / max(len(d_values) - 1, 1)) for i in range(len(d_values))]
                for shade, d in zip(shades, d_values):
                    _draw_curve(ax, part[part["d"] == d], shade, f"{_words(fit['x'][1])} = {style.number(d)}")
                ax.scatter(X[:, 0], y, s=10, c=np.log(X[:, 1]), cmap=cmap, alpha=0.8, linewidths=0)
                ax.text(0.02, 0.02, fit["formula"], transform=ax.transAxes, fontsize="x-small")
        ax.set(xscale="log", yscale="log", xlabel=_words(members[0]["x"][0]), ylabel=_words(members[0]["y"]),
               title=f"{_title(members[0]['sweep'], record)}" + (title[len(members[0]['sweep']):] or ""))
        ax.autoscale_view()
        style.readable_log_axis(ax)
        # below the panel: inside it, the formulas would cover data or the next panel
        ax.legend(fontsize="x-small", title=f"fitted law (band: {ci}; dashed: extrapolated)",
                  title_fontsize="x-small", loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=1)
    return style.save_figure(fig, out)
