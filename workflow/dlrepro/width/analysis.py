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

from dlrepro.claims import t_interval
from dlrepro.errors import InputFileError, ParamsError
from dlrepro.io import load_npy, read_json
from dlrepro.log import get_logger
from dlrepro.width.optimum import REACH, near_edge, quadratic_optimum  # noqa: F401  (re-exported)
from dlrepro.width.runs import CURVE_COLUMNS, LR_SWEEP_COLUMNS

GROUP = ["model", "arm", "parametrization"]
LR_OPTIMUM_COLUMNS = ["model", "arm", "parametrization", "width", "n_params", "metric", "n_seeds",
                      "lr_best", "log2_lr_best", "log2_lr_opt", "log2_lr_opt_lo", "log2_lr_opt_hi",
                      "loss_best", "at_edge", "log2_shift", "log2_shift_lo", "log2_shift_hi",
                      "wider_better"]
SEED_OPTIMA_COLUMNS = ["model", "arm", "parametrization", "width", "seed", "log2_lr_opt", "at_edge"]
AGREEMENT_COLUMNS = ["model", "arm", "parametrization", "width", "reference_width", "n_seeds", "step",
                     "logit_distance", "relative_distance", "top1_agreement", "output_variance",
                     "n_data_seeds", "data_variance"]
SLOPE_COLUMNS = ["model", "arm", "parametrization", "source", "step", "n_widths", "slope", "slope_stderr",
                 "intercept", "n_seeds", "slope_lo", "slope_hi"]
SOURCES = ("init", "data")  # what the runs of a variance differ in: initialisation or data seed
ENSEMBLE_COLUMNS = ["model", "arm", "parametrization", "width", "step", "k", "n_subsets", "loss", "accuracy"]
TABLES = {"curves.csv": CURVE_COLUMNS, "lr_sweep.csv": LR_SWEEP_COLUMNS}


# --------------------------------------------------------------------------- cells


@dataclass
class Cell:
    """One cell's meta and probe arrays (memory-mapped)."""

    path: Path
    meta: dict
    logits: np.ndarray  # [seeds, evals, rows, classes]: the main runs (initialisation seeds)
    labels: np.ndarray  # [rows]
    data_logits: np.ndarray | None = None  # [data seeds, evals, rows, classes]: the data runs

    @property
    def group(self) -> tuple[str, str, str]:
        return tuple(self.meta[k] for k in GROUP)


def read_cell(path: str | Path) -> Cell:
    path = Path(path)
    for name in ("meta.json", "probe_logits.npy", "probe_labels.npy"):
        if not (path / name).exists():
            raise InputFileError(f"{path} is not a width cell: it lacks {name}")
    meta = read_json(path / "meta.json")
    logits, labels = load_npy(path / "probe_logits.npy"), load_npy(path / "probe_labels.npy")
    if logits.ndim != 4 or logits.shape[:2] != (len(meta["seeds"]), len(meta["eval_steps"])) \
            or logits.shape[2] != len(labels):
        raise InputFileError(f"{path}: probe_logits shape {logits.shape} does not match its meta "
                         f"({len(meta['seeds'])} seeds, {len(meta['eval_steps'])} steps, {len(labels)} labels)")
    data = path / "probe_logits_data.npy"
    data_logits = load_npy(data) if data.exists() else None
    if data_logits is not None and data_logits.shape[1:] != logits.shape[1:]:
        raise InputFileError(f"{path}: probe_logits_data shape {data_logits.shape} does not match probe_logits "
                         f"{logits.shape}")
    return Cell(path, meta, logits, labels, data_logits)


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
            raise InputFileError(f"group {key} has two cells of the same width: {[str(c.path) for c in cells]}")
        first = cells[0]
        for c in cells[1:]:
            for what in ("eval_steps", "seeds"):
                if c.meta[what] != first.meta[what]:
                    raise InputFileError(f"cells {first.path} and {c.path} have different {what}: "
                                     f"{first.meta[what]} vs {c.meta[what]}")
            if not np.array_equal(c.labels, first.labels):
                raise InputFileError(f"cells {first.path} and {c.path} have different probe sets")
    return dict(sorted(groups.items()))


def merge_tables(paths, name: str) -> pd.DataFrame:
    """The part-table ``name`` (``curves.csv`` or ``lr_sweep.csv``) of every cell, concatenated."""
    if name not in TABLES:
        raise ValueError(f"name must be one of {list(TABLES)}, got {name!r}")
    # a cell without sweep runs (a parametrization outside lr_sweep_parametrizations) has an
    # empty lr_sweep.csv: left out, or it would turn every column into objects
    for p in paths:
        if not (Path(p) / name).is_file():
            raise InputFileError(f"{p} is not a width cell: it lacks {name}")
    frames = [f for f in (pd.read_csv(Path(p) / name) for p in paths) if len(f)]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=TABLES[name])
    missing = [c for c in TABLES[name] if c not in table.columns]
    if missing:
        raise InputFileError(f"{name} of the cells lacks columns {missing}")
    keys = ["model", "arm", "parametrization", "width", "seed", "lr"] + (["step"] if name == "curves.csv" else [])
    if table.duplicated(keys).any():
        raise InputFileError(f"{name}: some cells overlap (duplicate {keys})")
    return table[TABLES[name]].sort_values(keys, kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------------- learning rates


def _nanmean(x: np.ndarray) -> np.ndarray:
    """Mean over the first axis ignoring NaN (all-NaN: NaN; an infinite loss stays infinite)."""
    count = np.sum(~np.isnan(x), axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, np.nansum(x, axis=0) / np.maximum(count, 1), np.nan)


def _sweep_cube(group: pd.DataFrame) -> tuple[list, list, list, np.ndarray]:
    """``(seeds, widths, lrs, losses[seed, width, lr])`` of one group (NaN: not run)."""
    cube = group.pivot_table(index="seed", columns=["width", "lr"], values="loss", aggfunc="mean", dropna=False)
    seeds, widths, lrs = sorted(group["seed"].unique()), sorted(group["width"].unique()), sorted(group["lr"].unique())
    cube = cube.reindex(index=seeds, columns=pd.MultiIndex.from_product([widths, lrs]))
    return seeds, widths, lrs, cube.to_numpy(float).reshape(len(seeds), len(widths), len(lrs))


def _with_loss(sweep: pd.DataFrame, metric: str) -> pd.DataFrame:
    if metric not in ("train_loss", "test_loss"):
        raise ParamsError(f"metric must be 'train_loss' or 'test_loss', got {metric!r}")
    missing = [c for c in LR_SWEEP_COLUMNS if c not in sweep.columns]
    if missing:
        raise InputFileError(f"lr-sweep table lacks columns {missing}")
    loss = sweep[metric].where(np.isfinite(sweep[metric]) & (sweep["diverged"] == 0), np.inf)
    return sweep.assign(loss=loss)


def seed_optima(sweep: pd.DataFrame, metric: str = "train_loss") -> pd.DataFrame:
    """The optimal log2 learning rate of every (model, arm, parametrization, width, seed)
    (:func:`quadratic_optimum` of that seed's losses), columns :data:`SEED_OPTIMA_COLUMNS`;
    ``at_edge``: the width's grid does not reach an octave past this optimum."""
    rows = []
    for key, group in _with_loss(sweep, metric).groupby(GROUP, sort=True):
        seeds, widths, lrs, losses = _sweep_cube(group)
        log2_lr = np.log2(np.asarray(lrs, float))
        for j, width in enumerate(widths):
            ran = ~np.isnan(losses[:, j]).all(axis=0)
            for k, seed in enumerate(seeds):
                opt, _ = quadratic_optimum(log2_lr[ran], losses[k, j, ran])
                rows.append({**dict(zip(GROUP, key)), "width": int(width), "seed": int(seed),
                             "log2_lr_opt": opt, "at_edge": int(near_edge(log2_lr[ran], opt))})
    return pd.DataFrame(rows, columns=SEED_OPTIMA_COLUMNS)


def lr_optimum(sweep: pd.DataFrame, metric: str = "train_loss") -> pd.DataFrame:
    """The optimal learning rate of every (model, arm, parametrization, width) (module docstring)."""
    sweep = _with_loss(sweep, metric)
    per_seed = seed_optima(sweep, metric)
    rows = []
    for (model, arm, param), group in sweep.groupby(GROUP, sort=True):
        seeds, widths, lrs, losses = _sweep_cube(group)
        log2_lr = np.log2(np.asarray(lrs, float))
        n_params = group.groupby("width")["n_params"].first()
        n_seeds = group.groupby(["width", "lr"])["seed"].nunique().groupby("width").min()
        mine = per_seed[(per_seed["model"] == model) & (per_seed["arm"] == arm) & (per_seed["parametrization"] == param)]
        by_seed = mine.pivot_table(index="seed", columns="width", values="log2_lr_opt")
        mean = _nanmean(losses)
        base_opt = None
        for j, width in enumerate(widths):
            ran = ~np.isnan(losses[:, j]).all(axis=0)
            opt, i = quadratic_optimum(log2_lr[ran], mean[j, ran])
            best = np.flatnonzero(ran)[i] if i >= 0 else 0
            base_opt = opt if base_opt is None else base_opt
            _, opt_lo, opt_hi = t_interval(by_seed[width].to_numpy(float))
            _, shift_lo, shift_hi = t_interval((by_seed[width] - by_seed[widths[0]]).to_numpy(float))
            wider_better = math.nan
            if j > 0:
                both = np.isfinite(mean[j]) & np.isfinite(mean[j - 1])
                if both.any():
                    wider_better = float((mean[j][both] < mean[j - 1][both]).mean())
            rows.append({
                "model": model, "arm": arm, "parametrization": param, "width": int(width),
                "n_params": int(n_params[width]), "metric": metric, "n_seeds": int(n_seeds[width]),
                "lr_best": float(lrs[best]), "log2_lr_best": float(log2_lr[best]), "log2_lr_opt": opt,
                "log2_lr_opt_lo": opt_lo, "log2_lr_opt_hi": opt_hi,
                "loss_best": float(mean[j][best]), "at_edge": int(near_edge(log2_lr[ran], opt)),
                "log2_shift": opt - base_opt, "log2_shift_lo": shift_lo, "log2_shift_hi": shift_hi,
                "wider_better": wider_better,
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
            xd = centred(cell.data_logits) if cell.data_logits is not None else None
            n_data = 0 if xd is None else xd.shape[0]
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
                    "output_variance": _variance_of(x[:, e].reshape(n_seeds, -1), np.ones(n_seeds, bool)),
                    "n_data_seeds": n_data, "data_variance": _variance_of(
                        xd[:, e].reshape(n_data, -1), np.ones(n_data, bool)) if n_data else math.nan,
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


def _variance_of(x: np.ndarray, keep: np.ndarray) -> float:
    """Output variance (ddof 1, averaged over rows and classes) of the runs ``keep`` of
    ``x`` (``[runs, rows * classes]`` centred logits); NaN unless finite and positive."""
    sub = x[keep]
    if len(sub) < 2 or not np.isfinite(sub).all():
        return math.nan
    var = float(sub.var(axis=0, ddof=1).mean())
    return var if var > 0 else math.nan


def variance_slope(xs: list[np.ndarray], widths, level: float = 0.95) -> tuple[float, float, float, int]:
    """``(slope, lo, hi, n)``: least-squares slope of the log output variance over runs
    against log width, and its delete-one jackknife interval over the runs.

    ``xs[j]`` holds width ``j``'s centred logits, ``[n, rows * classes]``, run ``i`` of every
    width sharing index ``i`` (the same seed). Leaving run ``i`` out of every width gives
    ``slope_(i)``; the pseudo-values ``n slope - (n - 1) slope_(i)`` are treated as ``n``
    independent values (:func:`dlrepro.claims.t_interval`, Student-t with ``n - 1`` degrees
    of freedom). Coverage at 6 runs with normal and skewed outputs is checked by a
    simulation in the tests. NaN bounds with fewer than 3 runs."""
    log_w = np.log(np.asarray(widths, float))
    n = len(xs[0])
    full = np.ones(n, bool)
    value = _slope(log_w, np.log([_variance_of(x, full) for x in xs]))
    if n < 3:
        return value, math.nan, math.nan, n
    return (value, *seed_jackknife(n, lambda keep: _slope(log_w, np.log([_variance_of(x, keep) for x in xs])),
                                   level=level)[1:3], n)


def seed_jackknife(n: int, statistic, level: float = 0.95) -> tuple[float, float, float, int]:
    """``(value, lo, hi, n)`` of ``statistic(keep)`` (``keep``: a boolean mask of the ``n``
    seeds, the same for every width of a group) with a delete-one jackknife interval:
    Student-t of the pseudo-values ``n value - (n - 1) statistic(all but seed i)``
    (:func:`dlrepro.claims.t_interval`; NaN bounds with fewer than 3 seeds)."""
    full = np.ones(n, bool)
    value = float(statistic(full))
    if n < 3:
        return value, math.nan, math.nan, n
    loo = []
    for i in range(n):
        keep = full.copy()
        keep[i] = False
        loo.append(statistic(keep))
    pseudo = n * value - (n - 1) * np.asarray(loo, float)
    if not np.isfinite(pseudo).all():
        return value, math.nan, math.nan, n
    _, lo, hi = t_interval(pseudo, level=level)
    return value, lo, hi, n


def variance_slopes(table: pd.DataFrame, paths=None) -> pd.DataFrame:
    """Slope of the log output variance against log width per group, step and source
    (``init``: over initialisation seeds, data fixed; ``data``: over data seeds, initialisation
    fixed) (module docstring); steps with fewer than two finite, positive variances are left
    out. With the cells' ``paths``, ``slope_lo`` / ``slope_hi`` are the jackknife interval
    over seeds (:func:`variance_slope`)."""
    intervals = {}
    for key, cells in (grouped_cells(paths).items() if paths is not None else []):
        if not cells[0].labels.size or len(cells) < 2:
            continue
        widths = [c.meta["width"] for c in cells]
        for source in SOURCES:
            arrays = [c.logits if source == "init" else c.data_logits for c in cells]
            if any(a is None for a in arrays):
                continue
            for e, step in enumerate(cells[0].meta["eval_steps"]):
                xs = [centred(a[:, e]).reshape(len(a), -1) for a in arrays]
                intervals[(*key, source, int(step))] = variance_slope(xs, widths)
    rows = []
    for source, column in (("init", "output_variance"), ("data", "data_variance")):
        for (model, arm, param, step), g in table.groupby(GROUP + ["step"], sort=True):
            g = g[np.isfinite(g[column]) & (g[column] > 0)]
            if g["width"].nunique() < 2:
                continue
            x, y = np.log(g["width"].to_numpy(float)), np.log(g[column].to_numpy(float))
            fit = linregress(x, y)
            n_runs = int(g["n_seeds" if source == "init" else "n_data_seeds"].min())
            _, lo, hi, _ = intervals.get((model, arm, param, source, int(step)), (0, math.nan, math.nan, 0))
            rows.append({"model": model, "arm": arm, "parametrization": param, "source": source,
                         "step": int(step), "n_widths": int(g["width"].nunique()), "slope": float(fit.slope),
                         "slope_stderr": float(fit.stderr) if len(g) > 2 else math.nan,
                         "intercept": float(fit.intercept), "n_seeds": n_runs,
                         "slope_lo": lo, "slope_hi": hi})
    return pd.DataFrame(rows, columns=SLOPE_COLUMNS)


def _probe_loss(logits: np.ndarray, labels: np.ndarray) -> float:
    logp = log_softmax(logits, axis=-1)
    return -float(np.take_along_axis(logp, labels[:, None], axis=-1).mean())


def ensemble_gap(cells: list[Cell], eval_index: int = -1) -> tuple[float, float, float, int]:
    """Extrapolated loss of an infinite ensemble of the group's narrowest width minus the
    loss of one network of its widest width, at one eval step, with a jackknife interval
    over the initialisation seeds (:func:`seed_jackknife`).

    With ``m`` seeds, ``L(1)`` is the mean single-network probe loss and ``L(m)`` the loss of
    the average of all ``m`` centred logits; ``L(inf) = (m L(m) - L(1)) / (m - 1)``
    extrapolates linearly in ``1/k`` (the variance part of an ensemble's loss falls as
    ``1/k``). Positive: even infinitely many narrow networks lose to one wide one."""
    narrow, wide = centred(cells[0].logits[:, eval_index]), centred(cells[-1].logits[:, eval_index])
    labels = np.asarray(cells[0].labels)
    single_n = np.array([_probe_loss(x, labels) for x in narrow])
    single_w = np.array([_probe_loss(x, labels) for x in wide])

    def stat(keep: np.ndarray) -> float:
        m = int(keep.sum())
        if m < 2:
            return math.nan
        l1, lm = single_n[keep].mean(), _probe_loss(narrow[keep].mean(axis=0), labels)
        return float((m * lm - l1) / (m - 1) - single_w[keep].mean())

    return seed_jackknife(len(narrow), stat)


def agreement_gain(cells: list[Cell], eval_index: int = -1) -> tuple[float, float, float, int]:
    """Top-1 agreement with the widest width's network of the same seed index, of the
    second-widest width's network minus the narrowest's, at one eval step; mean and
    Student-t interval over the seeds (:func:`dlrepro.claims.t_interval`: every seed's value
    compares three networks of its own, independent of the other seeds'). Positive: the
    predictions of single networks converge as width grows."""
    if len(cells) < 3:
        raise ValueError("agreement_gain needs at least three widths")
    narrow, second, wide = (centred(c.logits[:, eval_index]).argmax(-1) for c in (cells[0], cells[-2], cells[-1]))
    per_seed = (second == wide).mean(axis=-1) - (narrow == wide).mean(axis=-1)
    value, lo, hi = t_interval(per_seed)
    return value, lo, hi, len(per_seed)


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
