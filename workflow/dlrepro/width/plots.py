"""Figures of the width stage, each drawn from one table only (PNG and PDF via dlrepro.style).

- :func:`plot_curves`       ``curves.csv``: test loss vs step, one panel per (model, arm) and
                            parametrization, one line per width (mean over seeds, min-max band).
- :func:`plot_lr_sweep`     ``lr_sweep.csv``: final loss vs learning rate per width, one panel per
                            (model, arm) and parametrization, and the optimal learning rate
                            (``log2_lr_opt`` of :func:`~dlrepro.width.analysis.lr_optimum`) vs width.
- :func:`plot_coord_check`  ``coord_check.csv``: :func:`dlrepro.parametrization.plot_coord_check`
                            for one model.
- :func:`plot_agreement`    ``agreement.csv``: top-1 agreement and relative distance to the widest
                            width vs step, and output variance vs width at the last step with
                            its log-log slope; online arm solid, offline dashed.
- :func:`plot_ensembles`    ``ensembles.csv``: ensemble loss vs k at the last step, one line per
                            width, the widest width's single network dashed.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from dlrepro import style
from dlrepro.width.analysis import AGREEMENT_COLUMNS, ENSEMBLE_COLUMNS, lr_optimum, variance_slopes
from dlrepro.width.coord_check import COORD_COLUMNS
from dlrepro.width.runs import CURVE_COLUMNS, LR_SWEEP_COLUMNS

LABELS = {"sp": "SP", "ntk": "NTK", "mup": "μP"}
ARM_STYLE = {"online": "-", "offline": "--"}
ORDER = {"sp": 0, "ntk": 1, "mup": 2}
GROUP_KEYS = ["model", "arm", "parametrization"]


def _check(table: pd.DataFrame, columns: list[str], what: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{what} table lacks columns {missing}")
    if table.empty:
        raise ValueError(f"{what} table is empty")


def _width_colours(widths) -> dict[int, tuple]:
    import seaborn as sns

    widths = sorted(set(int(w) for w in widths))
    return dict(zip(widths, sns.color_palette("viridis", len(widths))))


def _width_legend(fig, colours: dict, extra: list[tuple[str, dict]] = ()) -> None:
    """One legend for the whole figure: a line per width (and ``extra`` (label, style) lines)."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=c, label=str(w)) for w, c in colours.items()]
    handles += [Line2D([], [], label=label, **kw) for label, kw in extra]
    fig.legend(handles=handles, title="width", loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize="small")


def _params(table: pd.DataFrame) -> list[str]:
    return sorted(table["parametrization"].unique(), key=lambda p: ORDER.get(p, 9))


def _panels(table: pd.DataFrame, extra_cols: int = 0):
    """Axes for one row per (model, arm): a panel per parametrization run in that arm, packed
    from the left (+ ``extra_cols`` panels after them), so that an (arm, parametrization)
    pair that was not run leaves no gap. Returns ``fig, rows`` with ``rows`` a list of
    ``(model, arm, [(parametrization, ax)], [extra ax])``; unused cells are hidden."""
    keys = list(table[["model", "arm"]].drop_duplicates().sort_values(["model", "arm"]).itertuples(index=False))
    per_row = [_params(table[(table["model"] == m) & (table["arm"] == a)]) for m, a in keys]
    ncols = max(len(p) for p in per_row) + extra_cols
    fig, axes = style.subplots(len(keys) * ncols, ncols=ncols)
    fig.set_layout_engine("tight")
    rows = []
    for r, ((model, arm), params) in enumerate(zip(keys, per_row)):
        cells = list(axes[r * ncols:(r + 1) * ncols])
        used = len(params) + extra_cols
        for ax in cells[used:]:
            ax.set_visible(False)
        rows.append((model, arm, list(zip(params, cells[:len(params)])), cells[len(params):used]))
    return fig, rows


def plot_curves(table: pd.DataFrame, path: str | os.PathLike, y: str = "test_loss") -> list[Path]:
    _check(table, CURVE_COLUMNS, "curves")
    colours = _width_colours(table["width"])
    fig, rows = _panels(table)
    for model, arm, panels, _ in rows:
        for c, (param, ax) in enumerate(panels):
            sub = table[(table["model"] == model) & (table["arm"] == arm) & (table["parametrization"] == param)]
            stats = sub.groupby(["width", "step"])[y].agg(["mean", "min", "max"]).reset_index()
            for width, g in stats.groupby("width"):
                ax.plot(g["step"], g["mean"], color=colours[width], label=f"{width}")
                ax.fill_between(g["step"], g["min"], g["max"], color=colours[width], alpha=0.2, lw=0)
            ax.set_xscale("symlog", linthresh=1)
            ax.set_xlim(left=0)
            ax.set_title(f"{model} {arm}, {LABELS.get(param, param)}")
            ax.set_xlabel("step")
            if c == 0:
                ax.set_ylabel(y.replace("_", " "))
    _width_legend(fig, colours)
    return style.save_figure(fig, path)


def _row_legend(ax, colours: dict, extra: list[tuple[str, dict]] = ()) -> None:
    """A legend beside ``ax`` for one row (one model): its widths and ``extra`` lines."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=c, label=str(w)) for w, c in colours.items()]
    handles += [Line2D([], [], label=label, **kw) for label, kw in extra]
    ax.legend(handles=handles, title="width", loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize="small")


#: the optimal-lr panel: each parametrization's own marker, line style and a small horizontal
#: offset, so that lines that coincide (every parametrization is the same network at the base
#: width) stay visible
OPT_STYLE = {"sp": {"marker": "s", "ls": "-", "dodge": -0.06, "zorder": 4},
             "ntk": {"marker": "^", "ls": ":", "dodge": 0.0, "zorder": 3},
             "mup": {"marker": "o", "ls": "--", "dodge": 0.06, "zorder": 2}}


def plot_lr_sweep(table: pd.DataFrame, path: str | os.PathLike, metric: str = "train_loss") -> list[Path]:
    _check(table, LR_SWEEP_COLUMNS, "lr-sweep")
    optimum = lr_optimum(table, metric)
    per_model = table.groupby(GROUP_KEYS + ["width", "lr"])["seed"].nunique().groupby(level="model").min()
    n_seeds = (f"{int(per_model.iloc[0])} seed(s)" if per_model.nunique() == 1
               else "the seeds (" + ", ".join(f"{m}: {int(n)}" for m, n in per_model.items()) + ")")
    fig, rows = _panels(table, extra_cols=1)
    for model, arm, panels, (opt_ax,) in rows:
        here = table[(table["model"] == model) & (table["arm"] == arm)]
        colours = _width_colours(table[table["model"] == model]["width"])  # this model's widths only
        finite = here[metric][np.isfinite(here[metric]) & (here["diverged"] == 0)]
        top = None
        if len(finite):  # the 90th percentile, but never above a width's best point
            ok = here[np.isfinite(here[metric]) & (here["diverged"] == 0)]
            bests = ok.groupby(["parametrization", "width", "lr"])[metric].mean().groupby(level=[0, 1]).min()
            top = max(float(np.nanpercentile(finite, 90)), float(bests.max()))
            top += 0.05 * (top - float(finite.min()))
        for c, (param, ax) in enumerate(panels):
            sub = here[here["parametrization"] == param]
            sub = sub[np.isfinite(sub[metric]) & (sub["diverged"] == 0)]
            stats = sub.groupby(["width", "lr"])[metric].agg(["mean", "min", "max"]).reset_index()
            for width, g in stats.groupby("width"):
                ax.errorbar(g["lr"], g["mean"], yerr=[g["mean"] - g["min"], g["max"] - g["mean"]],
                            marker="o", ms=3, capsize=2, lw=1.2, color=colours[width], label=f"{width}")
                best = g.loc[g["mean"].idxmin()]
                ax.plot(best["lr"], best["mean"], marker="*", ms=10, color=colours[width])
            ax.set_xscale("log", base=2)
            if top is not None and top > float(finite.min()):
                ax.set_ylim(float(finite.min()) - 0.05 * (top - float(finite.min())), top)
            ax.set_title(f"{model} {arm}, {LABELS.get(param, param)}")
            ax.set_xlabel("learning rate")
            if c == 0:
                ax.set_ylabel(f"final {metric.replace('_', ' ')}")
        opt = optimum[(optimum["model"] == model) & (optimum["arm"] == arm)]
        shown = []
        for param, _ in panels:
            g = opt[opt["parametrization"] == param].sort_values("width")
            if g.empty:
                continue
            shown.append(param)
            st = OPT_STYLE.get(param, {"marker": "o", "ls": "-", "dodge": 0.0, "zorder": 2})
            x = g["width"] * 2.0 ** st["dodge"]
            y = 2.0 ** g["log2_lr_opt"]
            lo = 2.0 ** g["log2_lr_opt_lo"].fillna(g["log2_lr_opt"])
            hi = 2.0 ** g["log2_lr_opt_hi"].fillna(g["log2_lr_opt"])
            opt_ax.errorbar(x, y, yerr=[np.maximum(y - lo, 0), np.maximum(hi - y, 0)], marker=st["marker"],
                            ls=st["ls"], mfc="none" if param == "mup" else None, capsize=3,
                            color=style.color(param), zorder=st["zorder"], label=LABELS.get(param, param))
            edge = g[g["at_edge"] == 1]
            opt_ax.plot(edge["width"] * 2.0 ** st["dodge"], 2.0 ** edge["log2_lr_opt"], ls="none", marker="o",
                        ms=11, mfc="none", mec="k", mew=1.0, zorder=5)
        opt_ax.set_xscale("log", base=2)
        opt_ax.set_yscale("log", base=2)
        lo_all, hi_all = opt_ax.get_ylim()
        if hi_all < 2.0 * lo_all:  # at least an octave shown: identical optima still get labelled ticks
            mid = (lo_all * hi_all) ** 0.5
            opt_ax.set_ylim(mid / 2 ** 0.5, mid * 2 ** 0.5)
        # half-octave ticks, labelled as plain numbers: a narrow span of optima keeps several
        opt_ax.yaxis.set_major_locator(LogLocator(base=2, subs=(1.0, 2 ** 0.5)))
        opt_ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:.3g}"))
        opt_ax.yaxis.set_minor_formatter(NullFormatter())
        opt_ax.set_title(f"{model} {arm}: optimal lr")
        opt_ax.set_xlabel("width")
        extra = [(LABELS.get(p, p), {"color": style.color(p), "marker": OPT_STYLE.get(p, {}).get("marker", "o"),
                                     "ls": OPT_STYLE.get(p, {}).get("ls", "-")}) for p in shown]
        extra += [("optimum < 1 octave\nfrom grid edge", {"color": "k", "marker": "o", "mfc": "none", "ls": "none"})]
        _row_legend(opt_ax, colours, extra)
    fig.text(0.0, 0.0, f"bars: range over {n_seeds} (loss); 95% Student-t interval of the per-seed "
             "optima (optimal lr)", fontsize="small", ha="left", va="top")
    return style.save_figure(fig, path)


def plot_coord_check(table: pd.DataFrame, path: str | os.PathLike, model: str = "mlp",
                     step: int | None = None) -> list[Path]:
    """The coordinate check of ``model``: per parametrization (columns), the RMS change since
    init of every layer's output vs width at ``step`` (default: the last; log-log, mean over
    seeds, the y range at least a factor 4 so that it has labelled ticks), and the training
    loss vs step per width (the check is valid only if no loss rises above its initial one)."""
    import seaborn as sns
    from matplotlib.ticker import FuncFormatter, LogLocator

    _check(table, COORD_COLUMNS, "coordinate-check")
    sub = table[table["model"] == model]
    if sub.empty:
        raise ValueError(f"no coordinate-check rows of model {model!r}; the table has {sorted(table['model'].unique())}")
    step = int(sub["step"].max()) if step is None else step
    names = _params(sub)
    layers = list(dict.fromkeys(sub["layer"]))
    colours = dict(zip(layers, sns.color_palette("viridis", len(layers))))
    wcolours = _width_colours(sub["width"])
    at = sub[sub["step"] == step].groupby(["parametrization", "layer", "width"])["delta_rms"].mean().reset_index()
    fig, axes = style.subplots(2 * len(names), ncols=len(names), sharey="row")
    fig.set_layout_engine("tight")
    positive = at["delta_rms"][at["delta_rms"] > 0]
    lo, hi = (float(positive.min()), float(positive.max())) if len(positive) else (1e-3, 1.0)
    centre = math.sqrt(lo * hi)
    span = max(hi / lo, 4.0) * 1.3
    for col, name in enumerate(names):
        ax, lax = axes[col], axes[len(names) + col]
        g = sub[sub["parametrization"] == name]
        for layer in layers:
            line = at[(at["parametrization"] == name) & (at["layer"] == layer)]
            ax.plot(line["width"], line["delta_rms"], marker="o", color=colours[layer], label=layer)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log", base=2)
        ax.set_ylim(centre / math.sqrt(span), centre * math.sqrt(span))
        ax.yaxis.set_major_locator(LogLocator(base=2, numticks=12))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
        rate = f", lr {g['lr'].iloc[0]:.2g}" if len(g) else ""
        ax.set_title(f"{model}, {LABELS.get(name, name)}{rate}: step {step}")
        ax.set_xlabel("width")
        losses = g.groupby(["width", "step"])[["loss", "valid"]].mean().reset_index()
        for width, lg in losses.groupby("width"):
            ok = bool((lg["valid"] == 1).all())
            lax.plot(lg["step"], lg["loss"], marker="o", ms=3, color=wcolours[int(width)],
                     ls="-" if ok else ":", label=f"{int(width)}" + ("" if ok else " (invalid)"))
        lax.set_xlabel("step")
        lax.xaxis.set_major_locator(MaxNLocator(integer=True))
        lax.set_title(f"{model}, {LABELS.get(name, name)}: training loss")
        if col == 0:
            ax.set_ylabel("RMS change since init")
            lax.set_ylabel("loss on the check's batch")
    axes[len(names) - 1].legend(title="layer", loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize="small")
    axes[2 * len(names) - 1].legend(title="width", loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize="small")
    return style.save_figure(fig, path)


def plot_agreement(table: pd.DataFrame, path: str | os.PathLike) -> list[Path]:
    _check(table, AGREEMENT_COLUMNS, "agreement")
    colours = _width_colours(table["width"])
    slopes = variance_slopes(table)
    groups = list(table[["model", "parametrization"]].drop_duplicates()
                  .sort_values(["model", "parametrization"], key=lambda s: s.map(lambda v: ORDER.get(v, v)))
                  .itertuples(index=False))
    fig, axes = style.subplots(3 * len(groups), ncols=3)
    fig.set_layout_engine("tight")
    for r, (model, param) in enumerate(groups):
        sub = table[(table["model"] == model) & (table["parametrization"] == param)]
        name = f"{model}, {LABELS.get(param, param)}"
        for arm, g_arm in sub.groupby("arm"):
            ls = ARM_STYLE.get(arm, ":")
            for width, g in g_arm[g_arm["width"] != g_arm["reference_width"]].groupby("width"):
                axes[3 * r].plot(g["step"], g["top1_agreement"], ls=ls, color=colours[width])
                axes[3 * r + 1].plot(g["step"], g["relative_distance"], ls=ls, color=colours[width])
            last = g_arm[g_arm["step"] == g_arm["step"].max()].sort_values("width")
            at = slopes[(slopes["model"] == model) & (slopes["parametrization"] == param)
                        & (slopes["arm"] == arm) & (slopes["step"] == last["step"].max())]
            for source, column, marker in (("init", "output_variance", "o"), ("data", "data_variance", "s")):
                slope = at[at["source"] == source]
                if not np.isfinite(last[column]).any():
                    continue
                label = f"{arm}, over {source} seeds" + (f", slope {slope['slope'].iloc[0]:.2f}" if len(slope) else "")
                axes[3 * r + 2].plot(last["width"], last[column], ls=ls, marker=marker,
                                     mfc=None if source == "init" else "none", color=style.color(param),
                                     alpha=1.0 if source == "init" else 0.6, label=label)
        axes[3 * r].set_title(f"{name}: top-1 agreement with widest")
        axes[3 * r + 1].set_title(f"{name}: distance to widest")
        _log_if_positive(axes[3 * r + 1], sub["relative_distance"])
        for ax in axes[3 * r:3 * r + 2]:
            ax.set_xscale("symlog", linthresh=1)
            ax.set_xlim(left=0)
            ax.set_xlabel("step")
        ax = axes[3 * r + 2]
        ax.set_xscale("log", base=2)
        _log_if_positive(ax, pd.concat([sub["output_variance"], sub["data_variance"]]))
        ax.set_title(f"{name}: output variance (last step)")
        ax.set_xlabel("width")
        ax.legend(fontsize="small")
    _width_legend(fig, colours, extra=[(arm, {"color": "k", "ls": ls}) for arm, ls in ARM_STYLE.items()])
    return style.save_figure(fig, path)


def _log_if_positive(ax, values: pd.Series) -> None:
    """Log y-axis when there is something positive to show (one seed has no variance)."""
    values = values[np.isfinite(values)]
    if (values > 0).any():
        ax.set_yscale("log")
        style.readable_log_axis(ax, "y")  # ticks at 1-9 or 1, 2, 5 per decade: a narrow range keeps several


def plot_ensembles(table: pd.DataFrame, path: str | os.PathLike) -> list[Path]:
    _check(table, ENSEMBLE_COLUMNS, "ensembles")
    colours = _width_colours(table["width"])
    last = table[table["step"] == table.groupby(["model", "arm", "parametrization"])["step"].transform("max")]
    fig, rows = _panels(last)
    for model, arm, panels, _ in rows:
        for c, (param, ax) in enumerate(panels):
            sub = last[(last["model"] == model) & (last["arm"] == arm) & (last["parametrization"] == param)]
            for width, g in sub.groupby("width"):
                ax.plot(g["k"], g["loss"], marker="o", color=colours[width], label=str(width))
            if len(sub):
                widest = sub[(sub["width"] == sub["width"].max()) & (sub["k"] == 1)]["loss"]
                ax.axhline(float(widest.iloc[0]), color="k", ls="--", lw=1, label="widest, k=1")
            ax.set_title(f"{model} {arm}, {LABELS.get(param, param)}")
            ax.set_xlabel("networks in ensemble (k)")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if c == 0:
                ax.set_ylabel("probe loss of ensemble")
    _width_legend(fig, colours, extra=[("widest, k=1", {"color": "k", "ls": "--"})])
    return style.save_figure(fig, path)


PLOTS = {"curves": plot_curves, "lr_sweep": plot_lr_sweep, "coord_check": plot_coord_check,
         "agreement": plot_agreement, "ensembles": plot_ensembles}
