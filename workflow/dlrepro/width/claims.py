"""Claims of the width stage, per model, from ``results/width/``: ``lr_sweep.csv`` and
``lr_optimum.csv``, ``coord_check.csv``, ``variance_slopes.csv`` and the cells' probe logits
(``cells/<model>/<arm>/<parametrization>/w<width>/``).

The independent unit is the initialisation seed: the main and sweep runs of a cell share one
data stream (``train.data_seed``) and differ only in their initialisation, so every interval
below is conditional on that stream (the data-order part of the variance is reported apart,
``variance_slopes.csv`` rows with ``source = data``). The same seed index is used at every
width and parametrization, so per-seed differences pair them. Fewer than
:data:`dlrepro.claims.MIN_UNITS` seeds give ``not resolved at this scale``. Claims
(``width.<model>.<name>``):

* ``mup_lr_transfer``: ``|SP shift| - |muP shift|`` of the optimal log2 learning rate from
  the narrowest to the widest width (online arm), ``> 0`` (Tensor Programs V: muP's optimum
  stays put while SP's drifts). Per seed: each width's optimum is the vertex of the
  least-squares parabola through that seed's final ``train_loss`` at the grid points within
  an octave of its best (:func:`dlrepro.width.analysis.seed_optima`); the interval is
  Student-t over the per-seed values (:func:`dlrepro.claims.t_interval`), at least
  :data:`MIN_LR_SEEDS` seeds. A width whose (seed-mean) optimum is within an octave of its
  grid's edge leaves the claim ``not resolved``. (``muP shift - SP shift`` would only restate
  the rate rescaling, so it is not used.)
* ``sp_lr_drift``: SP's shift alone, ``< SP_DRIFT`` (-0.5: SP's optimum moves to smaller
  rates by more than a factor sqrt 2), Student-t over seeds.
* ``coord_check_mup_flat`` / ``coord_check_sp_grows``: log-log slope vs width of the RMS
  change of the logits during the coordinate check, judged at every recorded step: per step,
  the Student-t interval of the per-seed slopes; the claim is ``reproduced`` only if every
  step's interval is (inside ``[-COORD_TOL, COORD_TOL]`` under muP, above ``COORD_TOL`` under
  SP), ``not reproduced`` if every step's is on the other side; the row shows the step whose
  interval is nearest the boundary. A check in which any width's loss rose above its initial
  loss (``valid = 0`` in ``coord_check.csv``) is no coordinate check: ``not resolved``.
* ``agreement_across_widths``: top-1 agreement with the widest width's network of the same
  seed, of the second-widest minus the narrowest width's (muP, online, last step), ``> 0``
  (Vyas et al. 2023); Student-t over the per-seed values.
* ``variance_slope``: log-log slope of the output variance over initialisation seeds vs width
  (muP, online, last step), inside ``[-1 - VAR_TOL, -1 + VAR_TOL]`` (Vyas et al. 2023:
  variance ~ 1/width); jackknife interval over seeds (coverage checked in the tests), at
  least :data:`MIN_VARIANCE_SEEDS` seeds.
* ``narrow_ensembles_worse``: extrapolated infinite-ensemble probe loss of the narrowest
  width minus one network of the widest (muP, online, last step;
  :func:`dlrepro.width.analysis.ensemble_gap`), ``> 0``; delete-one jackknife over seeds
  (:func:`dlrepro.width.analysis.seed_jackknife`; the extrapolation in 1/k estimates the same
  infinite ensemble from any number of members, so leaving one out keeps its target).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from dlrepro.claims import Claim, decide, fmt_scale, from_interval, t_interval, NOT_RESOLVED, REPRODUCED

TABLES = ("width/lr_optimum.csv", "width/lr_sweep.csv", "width/coord_check.csv", "width/variance_slopes.csv")
COORD_TOL = 0.2
SP_DRIFT = -0.5
VAR_TOL = 0.5
MIN_LR_SEEDS = 4  # seeds of the learning-rate sweep for the transfer claims
MIN_VARIANCE_SEEDS = 6  # initialisation seeds for a variance over seeds
TP5 = "Yang et al. 2022, Tensor Programs V (arXiv 2203.03466)"
VYAS = "Vyas et al. 2023, Feature-Learning Networks Are Consistent Across Widths At Realistic Scales (arXiv 2305.18411)"
PARAM_ARM = ("mup", "online")
#: what resolves the transfer claim when the default widths do not (the paper preset's MLP;
#: cost from ``python -m dlrepro plan --configfile workflow/presets/paper.yaml``)
LR_TRANSFER_SCALE = ("SP's drift grows with the width ratio (about -1.1 octaves over 64-512 at 150 steps): "
                     "resolving |SP shift| - |muP shift| needs widths 128-4096 (the paper preset's MLP, "
                     "5000 steps; see `python -m dlrepro plan --configfile workflow/presets/paper.yaml`)")


def _scale(model: str, widths, steps=None, extra: str = "") -> str:
    w = sorted(int(x) for x in widths)
    return fmt_scale(f"{model}, widths {w[0]}-{w[-1]}" if w else model,
                     f"{steps} steps" if steps else "", extra)


def _lr_claims(model: str, opt: pd.DataFrame, sweep: pd.DataFrame) -> list[Claim]:
    from dlrepro.width.analysis import seed_optima

    sweep = sweep[(sweep["model"] == model) & (sweep["arm"] == "online")]
    if sweep.empty:
        return []
    per = seed_optima(sweep)
    shifts, edges = {}, []
    for param in ("sp", "mup"):
        g = per[per["parametrization"] == param]
        if g.empty:
            return []
        wide = g.pivot_table(index="seed", columns="width", values="log2_lr_opt")
        shifts[param] = wide[wide.columns.max()] - wide[wide.columns.min()]
        o = opt[(opt["model"] == model) & (opt["arm"] == "online") & (opt["parametrization"] == param)]
        edges += [f"{param} width {int(w)}" for w in o[o["at_edge"] == 1]["width"]]
    widths = sorted(per["width"].unique())
    steps = int(sweep["steps"].iloc[0])
    why = (f"optimum within an octave of the grid's edge ({', '.join(edges)}): extend "
           f"width.{model}.train.lr_log2_grid or lr_grid_extend") if edges else ""
    paired = pd.concat([shifts["sp"], shifts["mup"]], axis=1, keys=["sp", "mup"]).dropna()
    n = len(paired)
    few = f"{n} sweep seeds (the transfer claims need {MIN_LR_SEEDS})" if n < MIN_LR_SEEDS else ""
    scale = _scale(model, widths, steps, f"{len(widths)} widths x learning-rate grid, {n} seeds")
    out = []
    value, lo, hi = t_interval((paired["sp"].abs() - paired["mup"].abs()).to_numpy())
    unresolved = why or few
    if not unresolved and decide(lo, hi, above=0.0, n_units=n) == NOT_RESOLVED:
        scale = fmt_scale(scale, LR_TRANSFER_SCALE)
    out.append(from_interval(
        claim=f"width.{model}.mup_lr_transfer", stage="width",
        statement="Under muP the optimal learning rate moves less across widths than under SP",
        source=f"{TP5}, Fig. 1", statistic=f"|SP shift| - |muP shift| of the optimal log2 learning rate, "
        f"width {widths[0]} -> {widths[-1]} (online arm, train_loss, per seed)",
        value=value, ci_lo=lo, ci_hi=hi, unit="seeds", n_units=n, scale=scale,
        reference="> 0 (muP's optimum stays, SP's drifts by about -log2 of the width ratio for Adam)",
        unresolved_because=unresolved, above=0.0))
    value, lo, hi = t_interval(paired["sp"].to_numpy())
    out.append(from_interval(
        claim=f"width.{model}.sp_lr_drift", stage="width",
        statement="Under SP the optimal learning rate drifts to smaller values as width grows "
                  "(by more than a factor sqrt 2 over the widths)", source=f"{TP5}, Fig. 1",
        statistic=f"log2 shift of SP's optimal learning rate, width {widths[0]} -> {widths[-1]} "
                  f"(online arm, train_loss, per seed)",
        value=value, ci_lo=lo, ci_hi=hi, unit="seeds", n_units=n,
        scale=_scale(model, widths, steps, f"{len(widths)} widths x learning-rate grid, {n} seeds"),
        reference="about -log2 of the width ratio (Adam)", unresolved_because=why or few, below=SP_DRIFT))
    return out


def _step_slopes(at: pd.DataFrame) -> list[tuple[int, float, float, float, int]]:
    """Per step: ``(step, mean, lo, hi, n_seeds)`` of the per-seed log-log slopes of
    ``delta_rms`` vs width (Student-t over seeds)."""
    out = []
    for step, g in at[at["step"] > 0].groupby("step"):
        cube = g.pivot_table(index="seed", columns="width", values="delta_rms", aggfunc="mean")
        logw = np.log(cube.columns.to_numpy(float))
        logw = logw - logw.mean()
        with np.errstate(divide="ignore", invalid="ignore"):
            y = np.log(cube.to_numpy(float))
        slopes = ((y - y.mean(axis=1, keepdims=True)) * logw).sum(axis=1) / (logw * logw).sum()
        out.append((int(step), *t_interval(slopes), len(cube)))
    return out


def _coord_claims(model: str, coord: pd.DataFrame) -> list[Claim]:
    out = []
    sub = coord[coord["model"] == model]
    if sub.empty:
        return out
    layers = list(dict.fromkeys(sub["layer"]))
    layer = "logits" if "logits" in layers else layers[-1]
    rate = ", ".join(f"{p} lr {v:.3g}" for p, v in sub.groupby("parametrization")["lr"].first().items()) \
        if "lr" in sub.columns else ""
    for param, name, statement, rule in (
            ("mup", "coord_check_mup_flat", "Under muP the change of every layer's activations after a "
             "few steps is independent of width (flat coordinate check)", {"inside": (-COORD_TOL, COORD_TOL)}),
            ("sp", "coord_check_sp_grows", "Under SP the change of the output layer's activations after a "
             "few steps grows with width", {"above": COORD_TOL})):
        g = sub[(sub["parametrization"] == param) & (sub["layer"] == layer)]
        if g.empty:
            continue
        per_step = _step_slopes(g)
        verdicts = [decide(lo, hi, n_units=n, **rule) for _, _, lo, hi, n in per_step]
        # the step nearest the boundary: the one whose verdict is weakest, then the widest excursion
        def weakness(row):
            _, _, lo, hi, _ = row
            if "above" in rule:
                return -(lo - rule["above"]) if math.isfinite(lo) else math.inf
            a, b = rule["inside"]
            return max(hi - b, a - lo) if math.isfinite(lo) else math.inf
        worst = max(range(len(per_step)), key=lambda i: (verdicts[i] != REPRODUCED, weakness(per_step[i])))
        step, value, lo, hi, n = per_step[worst]
        why = ""
        if "valid" in g.columns and not g["valid"].astype(bool).all():
            bad = sorted(set(int(w) for w in g.loc[~g["valid"].astype(bool), "width"]))
            why = f"invalid coordinate check: the training loss rose above its initial loss at width(s) {bad}"
        elif len(set(verdicts)) > 1:
            why = f"the steps disagree ({', '.join(f'step {s}: {v}' for (s, *_), v in zip(per_step, verdicts))})"
        out.append(from_interval(
            claim=f"width.{model}.{name}", stage="width", statement=statement, source=f"{TP5}, coordinate check",
            statistic=f"log-log slope vs width of the RMS change of '{layer}' ({param}), judged at each of "
                      f"steps 1-{max(s for s, *_ in per_step)}; shown: step {step}",
            value=value, ci_lo=lo, ci_hi=hi, unit="seeds", n_units=n,
            scale=_scale(model, g["width"].unique(), extra=f"coordinate check, {rate}" if rate else "coordinate check"),
            reference="0 (muP)" if param == "mup" else "about +1 for the readout (SP, Adam)",
            unresolved_because=why, **rule))
    return out


def _consistency_claims(model: str, results_dir: Path, slopes: pd.DataFrame) -> list[Claim]:
    from dlrepro.width.analysis import agreement_gain, ensemble_gap, grouped_cells

    out = []
    param, arm = PARAM_ARM
    root = results_dir / "width" / "cells" / model / arm / param
    paths = sorted(p for p in root.glob("w*") if (p / "meta.json").exists()) if root.exists() else []
    cells = grouped_cells(paths).get((model, arm, param), []) if paths else []
    if len(cells) >= 3 and cells[0].labels.size:
        steps = cells[0].meta["eval_steps"]
        widths = [c.meta["width"] for c in cells]
        scale = _scale(model, widths, steps[-1], f"{param}, {arm} arm, {len(cells[0].labels)} probe items")
        value, lo, hi, n = agreement_gain(cells)
        out.append(from_interval(
            claim=f"width.{model}.agreement_across_widths", stage="width",
            statement="Predictions of networks of different widths agree more the wider they are "
                      "(feature-learning networks are consistent across widths)", source=VYAS,
            statistic=f"top-1 agreement with the width-{widths[-1]} network of the same seed: width "
                      f"{widths[-2]} minus width {widths[0]} (step {steps[-1]}, per seed)", value=value, ci_lo=lo, ci_hi=hi, unit="seeds", n_units=n,
            scale=scale, reference="rises towards 1 with width", above=0.0))
        value, lo, hi, n = ensemble_gap(cells)
        out.append(from_interval(
            claim=f"width.{model}.narrow_ensembles_worse", stage="width",
            statement="Ensembles of narrow networks are worse than one wide network (width's benefit "
                      "is not only variance reduction)", source=VYAS,
            statistic=f"probe loss of an infinite ensemble of width {widths[0]} (extrapolated in 1/k) "
                      f"minus one network of width {widths[-1]} (step {steps[-1]})",
            value=value, ci_lo=lo, ci_hi=hi, unit="seeds", n_units=n, scale=scale,
            reference="> 0", above=0.0))
    g = slopes[(slopes["model"] == model) & (slopes["arm"] == arm) & (slopes["parametrization"] == param)]
    if "source" in g.columns:
        data = g[g["source"] == "data"]
        g = g[g["source"] == "init"]
    else:
        data = g.iloc[:0]
    if len(g):
        last = g[g["step"] == g["step"].max()].iloc[0]
        n = int(last["n_seeds"]) if math.isfinite(last["n_seeds"]) else 0
        d = data[data["step"] == last["step"]]
        data_text = (f"; data-order part (initialisation fixed, {int(d['n_seeds'].iloc[0])} data seeds): slope "
                     f"{d['slope'].iloc[0]:+.2f} [{d['slope_lo'].iloc[0]:+.2f}, {d['slope_hi'].iloc[0]:+.2f}]"
                     if len(d) else "")
        out.append(from_interval(
            claim=f"width.{model}.variance_slope", stage="width",
            statement="The variance of a network's output over initialisations falls as 1/width",
            source=VYAS, statistic=f"log-log slope of the output variance over initialisation seeds (data "
            f"fixed) vs width ({param}, {arm} arm, step {int(last['step'])}, {int(last['n_widths'])} widths)"
            + data_text,
            value=float(last["slope"]), ci_lo=float(last["slope_lo"]), ci_hi=float(last["slope_hi"]),
            unit="seeds", n_units=n,
            scale=_scale(model, [], int(last["step"]), f"{int(last['n_widths'])} widths"),
            reference="-1", inside=(-1 - VAR_TOL, -1 + VAR_TOL),
            unresolved_because=f"{n} initialisation seeds (a variance over seeds needs {MIN_VARIANCE_SEEDS})"
            if n < MIN_VARIANCE_SEEDS else ""))
    return out


def claims(results_dir: Path, config: dict) -> list[Claim]:
    results_dir = Path(results_dir)
    opt = pd.read_csv(results_dir / "width" / "lr_optimum.csv")
    sweep = pd.read_csv(results_dir / "width" / "lr_sweep.csv")
    coord_path = results_dir / "width" / "coord_check.csv"
    coord = pd.read_csv(coord_path) if coord_path.exists() else pd.DataFrame(columns=["model"])
    slopes = pd.read_csv(results_dir / "width" / "variance_slopes.csv")
    models = list(dict.fromkeys(list(opt["model"]) + list(coord["model"])))
    out = []
    for model in models:
        out += _lr_claims(model, opt, sweep)
        out += _coord_claims(model, coord)
        out += _consistency_claims(model, results_dir, slopes)
    return out
