"""Claims of the width stage, per model, from ``results/width/``: ``lr_optimum.csv``,
``coord_check.csv``, ``variance_slopes.csv`` and the cells' probe logits
(``cells/<model>/<arm>/<parametrization>/w<width>/``).

Every interval resamples the seeds (the independent unit: a seed sets a network's
initialisation and batch order; the same seed index is drawn for every width, so widths
are compared on the same draws); one seed gives no interval and the verdict ``not
resolved at this scale``. Claims (``width.<model>.<name>``):

* ``mup_lr_transfer``: shift of muP's optimal log2 learning rate from the narrowest to the
  widest width (online arm), inside ``[-1, 1]`` (within a factor of 2; Yang & Hu / Yang et
  al. 2022, Fig. 1 / Tensor Programs V). An optimum on the grid's edge at any width is
  no optimum: the claim is then ``not resolved``.
* ``sp_lr_drift``: the same shift under SP, ``< SP_DRIFT`` (-0.5: SP's optimum moves to
  smaller rates by more than a factor sqrt 2; a tiny but resolved drift is no drift).
* ``coord_check_mup_flat`` / ``coord_check_sp_grows``: log-log slope vs width of the RMS
  change of the output layer's activations after the coordinate check's steps, inside
  ``[-COORD_TOL, COORD_TOL]`` under muP, ``> COORD_TOL`` under SP (Tensor Programs V, coordinate check).
* ``agreement_across_widths``: top-1 agreement with the widest width of the second-widest
  minus the narrowest width (muP, online, last step), ``> 0`` (Vyas et al. 2023:
  predictions of feature-learning networks converge as width grows).
* ``variance_slope``: log-log slope of the output variance over seeds vs width (muP,
  online, last step), inside ``[-1 - VAR_TOL, -1 + VAR_TOL]`` (Vyas et al. 2023: variance
  ~ 1/width).
* ``narrow_ensembles_worse``: extrapolated infinite-ensemble probe loss of the narrowest
  width minus one network of the widest (muP, online, last step;
  :func:`dlrepro.width.analysis.ensemble_gap`), ``> 0`` (Vyas et al. 2023: ensembling
  narrow networks does not reach a wide one).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from dlrepro.claims import Claim, bootstrap_cis, fmt_scale, from_interval

TABLES = ("width/lr_optimum.csv", "width/coord_check.csv", "width/variance_slopes.csv")
COORD_TOL = 0.2
SP_DRIFT = -0.5
VAR_TOL = 0.5
TP5 = "Yang et al. 2022, Tensor Programs V (arXiv 2203.03466)"
VYAS = "Vyas et al. 2023, Feature-Learning Networks Are Consistent Across Widths At Realistic Scales (arXiv 2305.18411)"
PARAM_ARM = ("mup", "online")


def _scale(model: str, widths, steps=None, extra: str = "") -> str:
    w = sorted(int(x) for x in widths)
    return fmt_scale(f"{model}, widths {w[0]}-{w[-1]}" if w else model,
                     f"{steps} steps" if steps else "", extra)


def _lr_claims(model: str, opt: pd.DataFrame, config: dict) -> list[Claim]:
    out = []
    rules = {"mup": ("mup_lr_transfer", "Under muP the optimal learning rate transfers across widths "
                     "(stays within a factor of 2)", {"inside": (-1.0, 1.0)}, "about 0"),
             "sp": ("sp_lr_drift", "Under SP the optimal learning rate drifts to smaller values as "
                    "width grows (by more than a factor sqrt 2 over the widths)", {"below": SP_DRIFT},
                    "about -log2 of the width ratio (Adam)")}
    for param, (name, statement, rule, reference) in rules.items():
        g = opt[(opt["model"] == model) & (opt["arm"] == "online") & (opt["parametrization"] == param)]
        g = g.sort_values("width")
        if g.empty:
            continue
        widest = g.iloc[-1]
        edge = g[g["at_edge"] == 1]["width"].tolist()
        why = f"optimum at the grid's edge at width(s) {edge}: extend width.{model}.train.lr_log2_grid" \
            if edge else ""
        out.append(from_interval(
            claim=f"width.{model}.{name}", stage="width", statement=statement, source=f"{TP5}, Fig. 1",
            statistic=f"log2 shift of the optimal learning rate, width {int(g['width'].iloc[0])} -> "
                      f"{int(widest['width'])} ({param}, online arm, {widest['metric']})",
            value=float(widest["log2_shift"]), ci_lo=float(widest["log2_shift_lo"]),
            ci_hi=float(widest["log2_shift_hi"]), unit="seeds", n_units=int(g["n_seeds"].min()),
            scale=_scale(model, g["width"], extra=f"{len(g)} widths x learning-rate grid"),
            reference=reference, unresolved_because=why, **rule))
    return out


def _coord_claims(model: str, coord: pd.DataFrame) -> list[Claim]:
    out = []
    sub = coord[coord["model"] == model]
    if sub.empty:
        return out
    step = int(sub["step"].max())
    layers = list(dict.fromkeys(sub["layer"]))
    layer = "logits" if "logits" in layers else layers[-1]
    at = sub[(sub["step"] == step) & (sub["layer"] == layer)]
    for param, name, statement, rule in (
            ("mup", "coord_check_mup_flat", "Under muP the change of every layer's activations after a "
             "few steps is independent of width (flat coordinate check)", {"inside": (-COORD_TOL, COORD_TOL)}),
            ("sp", "coord_check_sp_grows", "Under SP the change of the output layer's activations after a "
             "few steps grows with width", {"above": COORD_TOL})):
        g = at[at["parametrization"] == param]
        if g.empty:
            continue
        cube = g.pivot_table(index="seed", columns="width", values="delta_rms", aggfunc="mean")
        widths = cube.columns.to_numpy(float)
        logw = np.log(widths) - np.log(widths).mean()

        def slope(units: np.ndarray) -> np.ndarray:
            y = np.log(np.nanmean(units, axis=0))
            return np.array([float((logw * (y - y.mean())).sum() / (logw * logw).sum())])

        value, lo, hi = bootstrap_cis(cube.to_numpy(float), slope)
        out.append(from_interval(
            claim=f"width.{model}.{name}", stage="width", statement=statement, source=f"{TP5}, coordinate check",
            statistic=f"log-log slope vs width of the RMS change of '{layer}' after {step} steps ({param})",
            value=float(value[0]), ci_lo=float(lo[0]), ci_hi=float(hi[0]), unit="seeds",
            n_units=len(cube), scale=_scale(model, widths, extra="coordinate check"),
            reference="0 (muP)" if param == "mup" else "about +1 for the readout (SP, Adam)", **rule))
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
            statistic=f"top-1 agreement with width {widths[-1]}: width {widths[-2]} minus width {widths[0]} "
                      f"(step {steps[-1]})", value=value, ci_lo=lo, ci_hi=hi, unit="seeds", n_units=n,
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
    if len(g):
        last = g[g["step"] == g["step"].max()].iloc[0]
        out.append(from_interval(
            claim=f"width.{model}.variance_slope", stage="width",
            statement="The variance of a network's output over initialisations falls as 1/width",
            source=VYAS, statistic=f"log-log slope of the output variance over seeds vs "
            f"width ({param}, {arm} arm, step {int(last['step'])}, {int(last['n_widths'])} widths)",
            value=float(last["slope"]), ci_lo=float(last["slope_lo"]), ci_hi=float(last["slope_hi"]),
            unit="seeds", n_units=int(last["n_seeds"]) if math.isfinite(last["n_seeds"]) else 0,
            scale=_scale(model, [], int(last["step"]), f"{int(last['n_widths'])} widths"),
            reference="-1", inside=(-1 - VAR_TOL, -1 + VAR_TOL)))
    return out


def claims(results_dir: Path, config: dict) -> list[Claim]:
    results_dir = Path(results_dir)
    opt = pd.read_csv(results_dir / "width" / "lr_optimum.csv")
    coord_path = results_dir / "width" / "coord_check.csv"
    coord = pd.read_csv(coord_path) if coord_path.exists() else pd.DataFrame(columns=["model"])
    slopes = pd.read_csv(results_dir / "width" / "variance_slopes.csv")
    models = list(dict.fromkeys(list(opt["model"]) + list(coord["model"])))
    out = []
    for model in models:
        out += _lr_claims(model, opt, config)
        out += _coord_claims(model, coord)
        out += _consistency_claims(model, results_dir, slopes)
    return out
