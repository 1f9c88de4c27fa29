"""Analyses of the width sweep: merged tables, learning-rate optima, consistency across widths.

All functions read the cells written by :func:`dlrepro.width.runs.run_cell`. A *group* is
one (model, arm, parametrization); its widths are compared with each other.

Tables
------
``curves.csv`` / ``lr_sweep.csv``: the cells' part-tables concatenated (columns
:data:`~dlrepro.width.runs.CURVE_COLUMNS` / :data:`~dlrepro.width.runs.LR_SWEEP_COLUMNS`).

``lr_optimum.csv`` (:func:`lr_optimum`), one row per (model, arm, parametrization, width):
``model, arm, parametrization, width, n_params, metric, n_seeds, lr_best, log2_lr_best,
log2_lr_opt, loss_best, at_edge, log2_shift, wider_better``. The loss at each learning
rate is the mean of ``metric`` over the sweep's seeds (a diverged run counts as infinite
loss). ``lr_best`` is the grid point with the lowest loss; ``log2_lr_opt`` refines it by
the vertex of the parabola through it and its two neighbours in ``log2 lr`` (the grid
point itself when it lies on the grid's edge, ``at_edge = 1``, or a neighbour diverged).
``log2_shift`` is ``log2_lr_opt`` minus that of the group's narrowest width (0 at the
narrowest). ``wider_better`` is the fraction of learning rates, among those where both
runs are finite, at which this width's loss is below the next narrower width's (NaN for
the narrowest).

``agreement.csv`` (:func:`agreement`), one row per (model, arm, parametrization, width,
eval step): ``model, arm, parametrization, width, reference_width, n_seeds, step,
logit_distance, relative_distance, top1_agreement, output_variance``. Logits are centred
over classes (softmax is invariant to a shift); ``f_w`` is the seed average of width ``w``'s
centred probe logits and ``f_ref`` that of the group's widest width:
``logit_distance = rms(f_w - f_ref)``, ``relative_distance = logit_distance / rms(f_ref)``,
``top1_agreement`` = fraction of probe rows where ``argmax f_w == argmax f_ref``,
``output_variance`` = the variance over seeds (ddof 1) of the centred logits, averaged
over probe rows and classes (NaN with one seed). Rows whose logits are not finite (a
diverged seed) have NaN metrics.

``variance_slopes.csv`` (:func:`variance_slopes`), one row per (model, arm,
parametrization, step): ``model, arm, parametrization, step, n_widths, slope,
slope_stderr, intercept`` of the least-squares line ``log output_variance = intercept +
slope * log width`` (Vyas et al. 2023 expect a slope near -1 in the feature-learning
regime).

``ensembles.csv`` (:func:`ensembles`), one row per (model, arm, parametrization, width,
eval step, k): ``model, arm, parametrization, width, step, k, n_subsets, loss,
accuracy``: the cross-entropy and top-1 accuracy on the probe labels of the average of
``k`` networks' centred logits, averaged over every subset of ``k`` of the seeds
(``n_subsets`` of them).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import log_softmax
from scipy.stats import linregress

from dlrepro.io import load_npy, read_json
from dlrepro.log import get_logger
from dlrepro.width.runs import CURVE_COLUMNS, LR_SWEEP_COLUMNS

GROUP = ["model", "arm", "parametrization"]
LR_OPTIMUM_COLUMNS = ["model", "arm", "parametrization", "width", "n_params", "metric", "n_seeds",
                      "lr_best", "log2_lr_best", "log2_lr_opt", "loss_best", "at_edge", "log2_shift",
                      "wider_better"]
AGREEMENT_COLUMNS = ["model", "arm", "parametrization", "width", "reference_width", "n_seeds", "step",
                     "logit_distance", "relative_distance", "top1_agreement", "output_variance"]
SLOPE_COLUMNS = ["model", "arm", "parametrization", "step", "n_widths", "slope", "slope_stderr", "intercept"]
ENSEMBLE_COLUMNS = ["model", "arm", "parametrization", "width", "step", "k", "n_subsets", "loss", "accuracy"]
TABLES = {"curves.csv": CURVE_COLUMNS, "lr_sweep.csv": LR_SWEEP_COLUMNS}


# --------------------------------------------------------------------------- cells


@dataclass
class Cell:
    """One cell's meta and probe arrays (memory-mapped)."""

    path: Path
    meta: dict
    logits: np.ndarray  # [seeds, evals, rows, classes]
    labels: np.ndarray  # [rows]

    @property
    def group(self) -> tuple[str, str, str]:
        return tuple(self.meta[k] for k in GROUP)


def read_cell(path: str | Path) -> Cell:
    path = Path(path)
    for name in ("meta.json", "probe_logits.npy", "probe_labels.npy"):
        if not (path / name).exists():
            raise ValueError(f"{path} is not a width cell: it lacks {name}")
    meta = read_json(path / "meta.json")
    logits, labels = load_npy(path / "probe_logits.npy"), load_npy(path / "probe_labels.npy")
    if logits.ndim != 4 or logits.shape[:2] != (len(meta["seeds"]), len(meta["eval_steps"])) \
            or logits.shape[2] != len(labels):
        raise ValueError(f"{path}: probe_logits shape {logits.shape} does not match its meta "
                         f"({len(meta['seeds'])} seeds, {len(meta['eval_steps'])} steps, {len(labels)} labels)")
    return Cell(path, meta, logits, labels)


def grouped_cells(paths) -> dict[tuple[str, str, str], list[Cell]]:
    """Cells by (model, arm, parametrization), sorted by width; a group's cells must share
    eval steps, seeds and probe labels (else they are not comparable)."""
    groups: dict[tuple[str, str, str], list[Cell]] = {}
    for path in paths:
        cell = read_cell(path)
        groups.setdefault(cell.group, []).append(cell)
    for key, cells in groups.items():
        cells.sort(key=lambda c: c.meta["width"])
        widths = [c.meta["width"] for c in cells]
        if len(set(widths)) != len(widths):
            raise ValueError(f"group {key} has two cells of the same width: {[str(c.path) for c in cells]}")
        first = cells[0]
        for c in cells[1:]:
            for what in ("eval_steps", "seeds"):
                if c.meta[what] != first.meta[what]:
                    raise ValueError(f"cells {first.path} and {c.path} have different {what}: "
                                     f"{first.meta[what]} vs {c.meta[what]}")
            if not np.array_equal(c.labels, first.labels):
                raise ValueError(f"cells {first.path} and {c.path} have different probe sets")
    return dict(sorted(groups.items()))


def merge_tables(paths, name: str) -> pd.DataFrame:
    """The part-table ``name`` (``curves.csv`` or ``lr_sweep.csv``) of every cell, concatenated."""
    if name not in TABLES:
        raise ValueError(f"name must be one of {list(TABLES)}, got {name!r}")
    frames = [pd.read_csv(Path(p) / name) for p in paths]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=TABLES[name])
    missing = [c for c in TABLES[name] if c not in table.columns]
    if missing:
        raise ValueError(f"{name} of the cells lacks columns {missing}")
    keys = ["model", "arm", "parametrization", "width", "seed", "lr"] + (["step"] if name == "curves.csv" else [])
    if table.duplicated(keys).any():
        raise ValueError(f"{name}: some cells overlap (duplicate {keys})")
    return table[TABLES[name]].sort_values(keys, kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------------- learning rates


def _parabola_vertex(x: np.ndarray, y: np.ndarray) -> float:
    """Vertex of the parabola through three points (``x[1]`` if it is not a minimum)."""
    a, b, _ = np.polyfit(x, y, 2)
    if not a > 0:
        return float(x[1])
    return float(np.clip(-b / (2 * a), x[0], x[2]))


def lr_optimum(sweep: pd.DataFrame, metric: str = "train_loss") -> pd.DataFrame:
    """The optimal learning rate of every (model, arm, parametrization, width) (module docstring)."""
    if metric not in ("train_loss", "test_loss"):
        raise ValueError(f"metric must be 'train_loss' or 'test_loss', got {metric!r}")
    missing = [c for c in LR_SWEEP_COLUMNS if c not in sweep.columns]
    if missing:
        raise ValueError(f"lr-sweep table lacks columns {missing}")
    loss = sweep[metric].where(np.isfinite(sweep[metric]) & (sweep["diverged"] == 0), np.inf)
    mean = (sweep.assign(loss=loss).groupby(GROUP + ["width", "n_params", "lr"], sort=True)
            .agg(loss=("loss", "mean"), n_seeds=("seed", "nunique")).reset_index())
    rows = []
    for (model, arm, param), group in mean.groupby(GROUP, sort=True):
        narrower = None
        base_opt = None
        for (width, n_params), g in group.groupby(["width", "n_params"], sort=True):
            g = g.sort_values("lr")
            log2_lr, losses = np.log2(g["lr"].to_numpy()), g["loss"].to_numpy()
            i = int(np.argmin(losses))
            at_edge = i in (0, len(g) - 1)
            if not np.isfinite(losses[i]):
                opt = math.nan
            elif at_edge or not np.all(np.isfinite(losses[i - 1:i + 2])):
                opt = float(log2_lr[i])
            else:
                opt = _parabola_vertex(log2_lr[i - 1:i + 2], losses[i - 1:i + 2])
            base_opt = opt if base_opt is None else base_opt
            wider_better = math.nan
            if narrower is not None:
                both = pd.merge(narrower, g, on="lr", suffixes=("_n", "_w"))
                both = both[np.isfinite(both["loss_n"]) & np.isfinite(both["loss_w"])]
                if len(both):
                    wider_better = float((both["loss_w"] < both["loss_n"]).mean())
            rows.append({
                "model": model, "arm": arm, "parametrization": param, "width": int(width),
                "n_params": int(n_params), "metric": metric, "n_seeds": int(g["n_seeds"].min()),
                "lr_best": float(g["lr"].iloc[i]), "log2_lr_best": float(log2_lr[i]), "log2_lr_opt": opt,
                "loss_best": float(losses[i]), "at_edge": int(at_edge), "log2_shift": opt - base_opt,
                "wider_better": wider_better,
            })
            narrower = g
    return pd.DataFrame(rows, columns=LR_OPTIMUM_COLUMNS)


# --------------------------------------------------------------------------- consistency


def centred(logits: np.ndarray) -> np.ndarray:
    """Logits minus their mean over classes (float64)."""
    x = np.asarray(logits, dtype=np.float64)
    return x - x.mean(axis=-1, keepdims=True)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x))))


def agreement(paths) -> pd.DataFrame:
    """Agreement of every width's seed-averaged probe predictions with the widest width's, and
    the output variance over seeds (module docstring)."""
    log = get_logger("width", step="agreement")
    rows = []
    for key, cells in grouped_cells(paths).items():
        if cells[0].labels.size == 0:
            log.info("group %s has no probe set; skipped", key)
            continue
        ref_cell = cells[-1]
        ref = centred(ref_cell.logits).mean(axis=0)  # [evals, rows, classes]
        for cell in cells:
            x = centred(cell.logits)
            mean = x.mean(axis=0)
            n_seeds = x.shape[0]
            for e, step in enumerate(cell.meta["eval_steps"]):
                finite = np.isfinite(mean[e]).all() and np.isfinite(ref[e]).all()
                dist = _rms(mean[e] - ref[e]) if finite else math.nan
                ref_rms = _rms(ref[e]) if finite else math.nan
                rows.append({
                    **dict(zip(GROUP, key)), "width": cell.meta["width"],
                    "reference_width": ref_cell.meta["width"], "n_seeds": n_seeds, "step": step,
                    "logit_distance": dist,
                    "relative_distance": dist / ref_rms if finite and ref_rms > 0 else math.nan,
                    "top1_agreement": float((mean[e].argmax(-1) == ref[e].argmax(-1)).mean()) if finite else math.nan,
                    "output_variance": float(x[:, e].var(axis=0, ddof=1).mean())
                    if n_seeds > 1 and np.isfinite(x[:, e]).all() else math.nan,
                })
    return pd.DataFrame(rows, columns=AGREEMENT_COLUMNS)


def variance_slopes(table: pd.DataFrame) -> pd.DataFrame:
    """Slope of ``log output_variance`` against ``log width`` per group and step (module docstring);
    steps with fewer than two finite, positive variances are left out."""
    rows = []
    for (model, arm, param, step), g in table.groupby(GROUP + ["step"], sort=True):
        g = g[np.isfinite(g["output_variance"]) & (g["output_variance"] > 0)]
        if g["width"].nunique() < 2:
            continue
        x, y = np.log(g["width"].to_numpy(float)), np.log(g["output_variance"].to_numpy(float))
        fit = linregress(x, y)
        rows.append({"model": model, "arm": arm, "parametrization": param, "step": int(step),
                     "n_widths": int(g["width"].nunique()), "slope": float(fit.slope),
                     "slope_stderr": float(fit.stderr) if len(g) > 2 else math.nan,
                     "intercept": float(fit.intercept)})
    return pd.DataFrame(rows, columns=SLOPE_COLUMNS)


def ensemble_scores(logits: np.ndarray, labels: np.ndarray, k: int) -> tuple[float, float, int]:
    """Mean cross-entropy and accuracy of the averages of ``k`` of the ``logits``
    (``[members, rows, classes]``) over every subset of ``k`` members, and the number of subsets."""
    x = centred(logits)
    losses, accs = [], []
    for subset in itertools.combinations(range(len(x)), k):
        avg = x[list(subset)].mean(axis=0)
        logp = log_softmax(avg, axis=-1)
        losses.append(-float(np.take_along_axis(logp, labels[:, None], axis=-1).mean()))
        accs.append(float((avg.argmax(-1) == labels).mean()))
    return float(np.mean(losses)), float(np.mean(accs)), len(losses)


def ensembles(paths) -> pd.DataFrame:
    """Loss and accuracy of ensembles of ``k = 1 .. n_seeds`` networks of every width (module docstring)."""
    rows = []
    for key, cells in grouped_cells(paths).items():
        for cell in cells:
            labels = np.asarray(cell.labels)
            if labels.size == 0:
                continue
            for e, step in enumerate(cell.meta["eval_steps"]):
                logits = np.asarray(cell.logits[:, e])
                for k in range(1, len(logits) + 1):
                    if np.isfinite(logits).all():
                        loss, acc, n = ensemble_scores(logits, labels, k)
                    else:
                        loss, acc, n = math.nan, math.nan, math.comb(len(logits), k)
                    rows.append({**dict(zip(GROUP, key)), "width": cell.meta["width"], "step": step,
                                 "k": k, "n_subsets": n, "loss": loss, "accuracy": acc})
    return pd.DataFrame(rows, columns=ENSEMBLE_COLUMNS)
