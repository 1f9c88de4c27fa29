"""Training curves as data: every training job's step history as one tidy table.

Every Lightning training job of the study (through :func:`dlrepro.training.fit`) keeps its
logged history in its ``train_metrics.json`` (key ``history``: one row per logged step,
and one per validation). ``python -m dlrepro curves table`` turns those files into one
table per stage, ``results/<stage>/curves.csv``; ``python -m dlrepro curves plot`` draws it,
one panel per policy (and model), one line per generation.

Columns of ``curves.csv``: the job's keys (``model`` where the stage has several: the
collapse models by name, the VAE stage's ``vae`` and its judge ``classifier``,
``policy``, ``generation``, ``seed``), then ``step``, ``train_loss``, ``lr`` and
``val_loss`` (where the job validated; empty otherwise). Throughput is a timing, so it is
not in the tables (which are the same bytes on every run): it is in each job's log line
and, with ``compute.logger``, in the tracker (``items_per_s``). Generation 0 trains on
real data only and is listed once, as policy ``real``; the figure draws it in every
policy's panel.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pandas as pd

from dlrepro.errors import InputFileError, UserError
from dlrepro.io import read_json, write_csv

STEP_COLUMNS = ["step", "train_loss", "lr", "val_loss"]
REAL = "real"  # the policy name of generation 0, which every policy shares


def from_path(path: str | os.PathLike) -> dict:
    """``seed``, ``policy`` and ``generation`` of a job folder laid out as the stages lay
    them out: ``.../seed<s>/gen0/...`` (generation 0, policy ``real``) or
    ``.../seed<s>/<policy>/gen<g>/...``."""
    parts = Path(path).parts
    out = {}
    for i, part in enumerate(parts):
        if part.startswith("seed") and part[4:].isdigit():
            out["seed"] = int(part[4:])
        if part.startswith("gen") and part[3:].isdigit():
            out["generation"] = int(part[3:])
            parent = parts[i - 1] if i else ""
            out["policy"] = REAL if parent.startswith("seed") else parent
    return out


def job_rows(metrics: dict, keys: dict[str, str], path: str | os.PathLike | None = None) -> pd.DataFrame:
    """One job's history as rows with ``keys`` (column -> field of ``metrics``) in front.

    A key the metrics do not hold is read from the job's folder (:func:`from_path`). Train
    rows and validation rows of the same step are merged into one row; the final ``done``
    marker of the history is dropped.
    """
    ident = {col: metrics.get(field) for col, field in keys.items()}
    if path is not None:
        found = from_path(path)
        ident = {col: found.get(col) if value is None else value for col, value in ident.items()}
    if "policy" in ident and ident["policy"] in (None, "", "none"):
        ident["policy"] = REAL
    train = [r for r in metrics.get("history", []) if "train_loss" in r]
    val = [{"step": r["step"], "val_loss": r.get("val_loss", r.get("val/loss"))}
           for r in metrics.get("history", []) if any(k.startswith("val") for k in r)]
    frame = pd.DataFrame(train, columns=[c for c in STEP_COLUMNS if c != "val_loss"])
    if val:
        frame = frame.merge(pd.DataFrame(val), on="step", how="outer")
    frame = frame.reindex(columns=STEP_COLUMNS).sort_values("step", kind="stable")
    for col, value in reversed(list(ident.items())):
        frame.insert(0, col, value)
    return frame


def table(paths: list[str | os.PathLike], keys: dict[str, str]) -> pd.DataFrame:
    """The curves of every job in ``paths`` (``train_metrics.json`` files), sorted by key."""
    if not paths:
        raise UserError("no train_metrics.json files given")
    frames = [job_rows(read_json(p), keys, p) for p in paths]
    out = pd.concat(frames, ignore_index=True)
    return out.sort_values([*keys, "step"], kind="stable").reset_index(drop=True)


def plot(curves: pd.DataFrame, out: str | os.PathLike, *, ylabel: str = "training loss",
         ylabels: dict[str, str] | None = None) -> list[Path]:
    """Training loss against step: one panel per policy (and model), one line per generation.

    Generation 0 (policy ``real``) is drawn in every policy's panel; a model trained only
    on real data (the VAE stage's classifier) gets one panel. ``ylabels`` gives a model
    its own y label (its loss is another quantity). Returns the PNG and PDF paths.
    """
    from dlrepro import style  # selects the Agg backend before pyplot is used
    import matplotlib as mpl

    missing = [c for c in ("policy", "generation", "step", "train_loss") if c not in curves.columns]
    if missing:
        raise InputFileError(f"curves table lacks columns {missing}")
    if curves.empty:
        raise InputFileError("curves table has no rows")
    rows = curves.dropna(subset=["train_loss"])
    ylabels = ylabels or {}
    models = sorted(rows["model"].unique()) if "model" in rows.columns else [None]
    by_model = {}
    for m in models:
        of_model = rows if m is None else rows[rows["model"] == m]
        by_model[m] = sorted(set(of_model["policy"]) - {REAL}) or [REAL]
    # models trained on real data only (one panel each) after those with policies
    panels = [(m, p) for m in sorted(models, key=lambda m: by_model[m] == [REAL]) for p in by_model[m]]
    ncols = min(max(sum(1 for m, _ in panels if m == model) for model in models), 4)
    fig, axes = style.subplots(len(panels), ncols=ncols)
    n_gen = int(rows["generation"].max())
    cmap = mpl.colormaps["viridis"]
    previous = None
    for i, (ax, (model, policy)) in enumerate(zip(axes, panels)):
        sub = rows if model is None else rows[rows["model"] == model]
        sub = sub[sub["policy"].isin({policy, REAL})]
        for gen, g in sorted(sub.groupby("generation"), key=lambda kv: kv[0]):
            mean = g.groupby("step")["train_loss"].mean()  # over seeds
            ax.plot(mean.index, mean.values, color=cmap(gen / max(1, n_gen) * 0.9),
                    label=f"gen {gen}", linewidth=1.2,
                    marker="o" if len(mean) < 5 else None, markersize=3)  # a short job's few points show
        ax.set_title(policy if model is None else f"{model} · {policy}")
        ax.set_xlabel("step")
        label = ylabels.get(model, ylabel)
        ax.set_ylabel(label if i % ncols == 0 or label != previous else "")  # once per row
        previous = label
    fig.tight_layout()  # rows apart: a row's x labels clear of the next row's titles
    # one legend for all panels, outside them (every panel's generations are a prefix of it)
    widest = max(axes, key=lambda a: len(a.get_lines()))
    fig.legend(*widest.get_legend_handles_labels(), title="generation", loc="center left",
               bbox_to_anchor=(1.0, 0.5), fontsize="small")
    n_seeds = rows.groupby(["policy", "generation"])["seed"].nunique().max() if "seed" in rows else 1
    if n_seeds > 1:
        fig.suptitle(f"lines: mean over {n_seeds} seeds", fontsize="small")
    return style.save_figure(fig, out)


def _keys(text: str) -> dict[str, str]:
    """``model=name,policy,generation`` -> {"model": "name", "policy": "policy", ...}."""
    out = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        col, _, field = item.partition("=")
        out[col] = field or col
    return out


def _model_label(text: str) -> tuple[str, str]:
    model, sep, label = text.partition("=")
    if not (sep and model and label):
        raise argparse.ArgumentTypeError(f"{text!r} is not MODEL=LABEL")
    return model, label


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m dlrepro curves", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("table", help="concatenate jobs' histories into curves.csv")
    t.add_argument("--metrics", nargs="+", required=True, help="train_metrics.json files")
    t.add_argument("--keys", required=True,
                   help="key columns, as column[=field of train_metrics.json], comma-separated")
    t.add_argument("--out", required=True)
    p = sub.add_parser("plot", help="draw curves.csv")
    p.add_argument("--csv", required=True)
    p.add_argument("--ylabel", default="training loss")
    p.add_argument("--ylabel-for", action="append", default=[], metavar="MODEL=LABEL", type=_model_label,
                   help="the y label of one model's panels (repeatable)")
    p.add_argument("--out", required=True, help="output path without suffix (PNG and PDF)")
    args = parser.parse_args(argv)
    if args.cmd == "table":
        write_csv(args.out, table(args.metrics, _keys(args.keys)))
    else:
        ylabels = dict(args.ylabel_for)
        plot(pd.read_csv(args.csv), args.out, ylabel=args.ylabel, ylabels=ylabels)
    return 0
