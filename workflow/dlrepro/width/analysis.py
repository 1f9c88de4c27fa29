"""Analyses of the width sweep: merged tables, learning-rate optima, consistency across widths.

All functions read the cells written by :func:`dlrepro.width.runs.run_cell`. A *group* is
one (model, arm, parametrization); its widths are compared with each other.

Tables
------
``curves.csv`` / ``lr_sweep.csv``: the cells' part-tables concatenated (columns
:data:`~dlrepro.width.runs.CURVE_COLUMNS` / :data:`~dlrepro.width.runs.LR_SWEEP_COLUMNS`).

``lr_optimum.csv`` (:func:`lr_optimum`), one row per (model, arm, parametrization, width):
``model, arm, parametrization, width, n_params, metric, n_seeds, lr_best, log2_lr_best,
log2_lr_opt, log2_lr_opt_lo, log2_lr_opt_hi, loss_best, at_edge, log2_shift, log2_shift_lo,
log2_shift_hi, wider_better``. The loss at each learning
rate is the mean of ``metric`` over the sweep's seeds (a diverged run counts as infinite
loss). ``lr_best`` is the grid point with the lowest loss; ``log2_lr_opt`` refines it by
the vertex of the parabola through it and its two neighbours in ``log2 lr`` (the grid
point itself when it lies on the grid's edge, ``at_edge = 1``, or a neighbour diverged).
``log2_shift`` is ``log2_lr_opt`` minus that of the group's narrowest width (0 at the
narrowest). ``*_lo`` / ``*_hi``: 95% percentile interval of the same quantity over a
bootstrap of the sweep's seeds (:func:`dlrepro.claims.bootstrap_ci`; the seeds resampled
jointly for every width of the group, so a shift compares widths on the same resampled
seeds); NaN with one seed. ``wider_better`` is the fraction of learning rates, among those where both
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
slope_stderr, intercept, n_seeds, slope_lo, slope_hi`` of the least-squares line
``log output_variance = intercept + slope * log width`` (Vyas et al. 2023 expect a slope
near -1 in the feature-learning regime). ``slope_stderr`` is the regression's standard
error (it treats the widths as independent points); ``slope_lo`` / ``slope_hi`` is the 95%
interval from a bootstrap over seeds (seeds resampled jointly for every width, the output
variance and the slope recomputed; a resample with one distinct seed has no variance and
is skipped), computed from the cells' probe logits when the command is given them (NaN
otherwise, and with fewer than 3 seeds, whose resamples hardly vary).

:func:`seed_bootstrap` resamples the seeds of a group's cells for any statistic of their
probe logits (:func:`ensemble_gap`, :func:`agreement_gain`: the width stage's claims).

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

from dlrepro.claims import bootstrap_cis
from dlrepro.io import load_npy, read_json
from dlrepro.log import get_logger
from dlrepro.width.runs import CURVE_COLUMNS, LR_SWEEP_COLUMNS

GROUP = ["model", "arm", "parametrization"]
LR_OPTIMUM_COLUMNS = ["model", "arm", "parametrization", "width", "n_params", "metric", "n_seeds",
                      "lr_best", "log2_lr_best", "log2_lr_opt", "log2_lr_opt_lo", "log2_lr_opt_hi",
                      "loss_best", "at_edge", "log2_shift", "log2_shift_lo", "log2_shift_hi",
                      "wider_better"]
N_RESAMPLES = 1000  # bootstrap resamples of the seeds (intervals of lr optima, slopes, claims)
AGREEMENT_COLUMNS = ["model", "arm", "parametrization", "width", "reference_width", "n_seeds", "step",
                     "logit_distance", "relative_distance", "top1_agreement", "output_variance"]
SLOPE_COLUMNS = ["model", "arm", "parametrization", "step", "n_widths", "slope", "slope_stderr", "intercept",
                 "n_seeds", "slope_lo", "slope_hi"]
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


def _nanmean(x: np.ndarray) -> np.ndarray:
    """Mean over the first axis ignoring NaN (all-NaN: NaN; an infinite loss stays infinite)."""
    count = np.sum(~np.isnan(x), axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, np.nansum(x, axis=0) / np.maximum(count, 1), np.nan)


def _optimum(log2_lr: np.ndarray, losses: np.ndarray) -> tuple[int, bool, float]:
    """Index of the best grid point, whether it is on the grid's edge, and the refined optimum."""
    i = int(np.argmin(losses))
    at_edge = i in (0, len(losses) - 1)
    if not np.isfinite(losses[i]):
        return i, at_edge, math.nan
    if at_edge or not np.all(np.isfinite(losses[i - 1:i + 2])):
        return i, at_edge, float(log2_lr[i])
    return i, at_edge, _parabola_vertex(log2_lr[i - 1:i + 2], losses[i - 1:i + 2])


def lr_optimum(sweep: pd.DataFrame, metric: str = "train_loss", n_resamples: int = N_RESAMPLES,
               seed: int = 0) -> pd.DataFrame:
    """The optimal learning rate of every (model, arm, parametrization, width) (module docstring)."""
    if metric not in ("train_loss", "test_loss"):
        raise ValueError(f"metric must be 'train_loss' or 'test_loss', got {metric!r}")
    missing = [c for c in LR_SWEEP_COLUMNS if c not in sweep.columns]
    if missing:
        raise ValueError(f"lr-sweep table lacks columns {missing}")
    loss = sweep[metric].where(np.isfinite(sweep[metric]) & (sweep["diverged"] == 0), np.inf)
    sweep = sweep.assign(loss=loss)
    rows = []
    for (model, arm, param), group in sweep.groupby(GROUP, sort=True):
        # losses[seed, width, lr] (NaN where a seed did not run that point)
        cube = group.pivot_table(index="seed", columns=["width", "lr"], values="loss", aggfunc="mean",
                                 dropna=False)
        widths = sorted(group["width"].unique())
        lrs = sorted(group["lr"].unique())
        cube = cube.reindex(columns=pd.MultiIndex.from_product([widths, lrs]))
        losses = cube.to_numpy(float).reshape(len(cube), len(widths), len(lrs))
        log2_lr = np.log2(np.asarray(lrs, float))
        n_params = group.groupby("width")["n_params"].first()
        n_seeds = group.groupby(["width", "lr"])["seed"].nunique().groupby("width").min()

        def optima(units: np.ndarray) -> np.ndarray:
            """Refined optimum of every width, then each width's shift from the narrowest."""
            mean = _nanmean(units)
            opt = np.array([_optimum(log2_lr, mean[w])[2] for w in range(len(widths))])
            return np.concatenate([opt, opt - opt[0]])

        mean = _nanmean(losses)
        _, lo, hi = bootstrap_cis(losses, optima, n_resamples=n_resamples, seed=seed)
        base_opt = None
        for j, width in enumerate(widths):
            i, at_edge, opt = _optimum(log2_lr, mean[j])
            base_opt = opt if base_opt is None else base_opt
            opt_lo, opt_hi = lo[j], hi[j]
            shift_lo, shift_hi = lo[len(widths) + j], hi[len(widths) + j]
            wider_better = math.nan
            if j > 0:
                both = np.isfinite(mean[j]) & np.isfinite(mean[j - 1])
                if both.any():
                    wider_better = float((mean[j][both] < mean[j - 1][both]).mean())
            rows.append({
                "model": model, "arm": arm, "parametrization": param, "width": int(width),
                "n_params": int(n_params[width]), "metric": metric, "n_seeds": int(n_seeds[width]),
                "lr_best": float(lrs[i]), "log2_lr_best": float(log2_lr[i]), "log2_lr_opt": opt,
                "log2_lr_opt_lo": opt_lo, "log2_lr_opt_hi": opt_hi,
                "loss_best": float(mean[j][i]), "at_edge": int(at_edge), "log2_shift": opt - base_opt,
                "log2_shift_lo": shift_lo, "log2_shift_hi": shift_hi, "wider_better": wider_better,
            })
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


def _slope(log_w: np.ndarray, log_v: np.ndarray) -> float:
    """Least-squares slope of ``log_v`` on ``log_w`` (NaN unless two finite points)."""
    ok = np.isfinite(log_v)
    if ok.sum() < 2:
        return math.nan
    x, y = log_w[ok], log_v[ok]
    x = x - x.mean()
    return float((x * (y - y.mean())).sum() / (x * x).sum())


def _variance_draws(cells: list[Cell], n_resamples: int, seed: int) -> dict[int, tuple[int, float, float]]:
    """Per eval step: (n_seeds, lo, hi) of the variance slope over a bootstrap of the seeds.

    The output variance of a resample (seeds drawn with replacement, the same draw for
    every width) is computed from each (cell, step)'s Gram matrix of the seeds' centred
    logits: with counts ``c`` of the drawn seeds, ``sum c_s |x_s|^2 - |sum c_s x_s|^2 / n``
    over ``(n - 1) * rows * classes``."""
    n = len(cells[0].meta["seeds"])
    log_w = np.log(np.array([c.meta["width"] for c in cells], float))
    out = {}
    if n < MIN_SEEDS_SPREAD:  # a resample needs two distinct seeds for a variance
        return {int(step): (n, math.nan, math.nan) for step in cells[0].meta["eval_steps"]}
    for e, step in enumerate(cells[0].meta["eval_steps"]):
        grams = []
        for cell in cells:
            x = centred(cell.logits[:, e]).reshape(n, -1)
            grams.append((x @ x.T, x.shape[1]))

        def stat(idx: np.ndarray) -> float:
            c = np.bincount(idx.astype(int), minlength=n).astype(float)
            if (c > 0).sum() < 2:  # one distinct seed has no variance
                return math.nan
            logv = []
            for g, size in grams:
                var = (c @ np.diag(g) - c @ g @ c / n) / ((n - 1) * size)
                logv.append(math.log(var) if np.isfinite(var) and var > 0 else math.nan)
            return _slope(log_w, np.array(logv))

        _, lo, hi = bootstrap_cis(np.arange(n), lambda idx: np.array([stat(idx)]),
                                  n_resamples=n_resamples, seed=seed)
        out[int(step)] = (n, float(lo[0]), float(hi[0]))
    return out


def variance_slopes(table: pd.DataFrame, paths=None, n_resamples: int = N_RESAMPLES,
                    seed: int = 0) -> pd.DataFrame:
    """Slope of ``log output_variance`` against ``log width`` per group and step (module docstring);
    steps with fewer than two finite, positive variances are left out. With the cells'
    ``paths``, ``slope_lo`` / ``slope_hi`` come from a bootstrap over seeds."""
    intervals = {}
    if paths is not None:
        for key, cells in grouped_cells(paths).items():
            if cells[0].labels.size and len(cells) >= 2:
                intervals[key] = _variance_draws(cells, n_resamples, seed)
    rows = []
    for (model, arm, param, step), g in table.groupby(GROUP + ["step"], sort=True):
        g = g[np.isfinite(g["output_variance"]) & (g["output_variance"] > 0)]
        if g["width"].nunique() < 2:
            continue
        x, y = np.log(g["width"].to_numpy(float)), np.log(g["output_variance"].to_numpy(float))
        fit = linregress(x, y)
        n_seeds, lo, hi = intervals.get((model, arm, param), {}).get(
            int(step), (int(g["n_seeds"].min()), math.nan, math.nan))
        rows.append({"model": model, "arm": arm, "parametrization": param, "step": int(step),
                     "n_widths": int(g["width"].nunique()), "slope": float(fit.slope),
                     "slope_stderr": float(fit.stderr) if len(g) > 2 else math.nan,
                     "intercept": float(fit.intercept), "n_seeds": int(n_seeds),
                     "slope_lo": lo, "slope_hi": hi})
    return pd.DataFrame(rows, columns=SLOPE_COLUMNS)


MIN_SEEDS_SPREAD = 3  # statistics of the spread over seeds need this many for an interval


def seed_bootstrap(cells: list[Cell], statistic, n_resamples: int = N_RESAMPLES, seed: int = 0,
                   level: float = 0.95, min_seeds: int = 2) -> tuple[float, float, float, int]:
    """``(value, lo, hi, n_seeds)`` of ``statistic(idx)`` (``idx``: seed indices, drawn with
    replacement, the same for every cell of the group) over a bootstrap of the seeds; NaN
    bounds with fewer than ``min_seeds`` seeds."""
    n = len(cells[0].meta["seeds"])
    if n < min_seeds:
        value = float(statistic(np.arange(n)))
        return value, math.nan, math.nan, n
    value, lo, hi = bootstrap_cis(np.arange(n), lambda idx: np.array([statistic(idx.astype(int))]),
                                  n_resamples=n_resamples, seed=seed, level=level)
    return float(value[0]), float(lo[0]), float(hi[0]), n


def _probe_loss(logits: np.ndarray, labels: np.ndarray) -> float:
    logp = log_softmax(logits, axis=-1)
    return -float(np.take_along_axis(logp, labels[:, None], axis=-1).mean())


def ensemble_gap(cells: list[Cell], eval_index: int = -1, **kw) -> tuple[float, float, float, int]:
    """Extrapolated loss of an infinite ensemble of the group's narrowest width minus the
    loss of one network of its widest width, at one eval step, with a seed-bootstrap
    interval (:func:`seed_bootstrap`).

    With ``n`` distinct seeds, ``L(1)`` is the mean single-network probe loss and ``L(n)``
    the loss of the average of all ``n`` centred logits; ``L(inf) = (n L(n) - L(1)) / (n - 1)``
    extrapolates linearly in ``1/k`` (the variance part of an ensemble's loss falls as
    ``1/k``). A bootstrap resample uses its distinct seeds as the ensemble (NaN with one).
    Positive: even infinitely many narrow networks lose to one wide one."""
    narrow, wide = centred(cells[0].logits[:, eval_index]), centred(cells[-1].logits[:, eval_index])
    labels = np.asarray(cells[0].labels)
    single_n = np.array([_probe_loss(x, labels) for x in narrow])
    single_w = np.array([_probe_loss(x, labels) for x in wide])
    n = len(narrow)

    def stat(idx: np.ndarray) -> float:
        members = np.unique(idx)
        m = len(members)
        if m < 2:
            return math.nan
        l1, lm = single_n[members].mean(), _probe_loss(narrow[members].mean(axis=0), labels)
        return float((m * lm - l1) / (m - 1) - single_w[idx].mean())

    return seed_bootstrap(cells, stat, min_seeds=MIN_SEEDS_SPREAD, **kw)


def agreement_gain(cells: list[Cell], eval_index: int = -1, **kw) -> tuple[float, float, float, int]:
    """Top-1 agreement with the widest width of the second-widest width minus that of the
    narrowest, at one eval step (seed-averaged centred logits, as in :func:`agreement`),
    with a seed-bootstrap interval. Positive: predictions converge as width grows."""
    if len(cells) < 3:
        raise ValueError("agreement_gain needs at least three widths")
    xs = [centred(c.logits[:, eval_index]) for c in cells]

    def stat(idx: np.ndarray) -> float:
        ref = xs[-1][idx].mean(axis=0).argmax(-1)
        top1 = [float((x[idx].mean(axis=0).argmax(-1) == ref).mean()) for x in (xs[0], xs[-2])]
        return top1[1] - top1[0]

    return seed_bootstrap(cells, stat, **kw)


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
