"""The init stage's claims, decided from its result tables (``results/init/*.csv``).

Each claim's interval comes from the table that holds it, computed over the independent
unit: initialisations (draws) for the fluctuation and NTK curves (``shapes.csv``,
``width_sweep.csv``: normal intervals with the jackknife standard error over draws),
seeds for training (``training_comparison.csv``: Student-t intervals of the per-seed
orthogonal-minus-Gaussian differences, paired by seed). Coverage of both at the unit
counts used: :mod:`dlrepro.coverage`.
A missing table or row gives a NaN statistic, hence ``not resolved at this scale``.

Decision rules (the ``expected`` column):

* "grows linearly": the deep log-log slope ``d log F / d log depth`` lies in
  [0.75, 1.25] (1 is linear growth);
* "does not grow" / "saturates": that slope lies below 0.25 (0 is saturation, -1 a
  1/depth decay; 1 the Gaussian's linear growth); the threshold sits a quarter of the way
  from saturation to linear growth, so slow power-law growth (depth^0.5) is not
  counted as saturation;
* "slope -> 2/3 as width grows": the slope extrapolated to infinite width,
  ``s(n) = s_inf + c/n``, lies within 10% of 2/3 ([0.6, 0.733], which also holds the
  leading-order theory's finite-depth slope over the fitted layers), and the slope at the
  narrowest width exceeds that at the widest (> 0);
* training: orthogonal minus Gaussian, each at its own selected learning rate, over
  seeds: mean training loss over the run < 0 (faster) and final test accuracy > 0
  (generalises better), for every depth ratio >= 1 (the paper's regime, depth ~ width).
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from dlrepro.claims import Claim, NOT_RESOLVED, decide, expected_text

STAGE = "init"
DKR = "Day, Kahn & Roberts 2023 (arXiv:2310.07765)"
RYH = "Roberts, Yaida & Hanin 2022, The Principles of Deep Learning Theory, sec. 5.3.3"
LINEAR = (0.75, 1.25)
NO_GROWTH = 0.25
TWO_THIRDS = (0.6, 0.7333)


def _read(results_dir: Path, name: str) -> pd.DataFrame | None:
    path = Path(results_dir) / "init" / name
    return pd.read_csv(path) if path.exists() else None


def _claim(name, statement, source, statistic, row, rule, unit, scale, reference="", n_units=None):
    """A Claim from a table row with ``value, ci_lo, ci_hi`` (or None: not resolved)."""
    if row is None:
        value = lo = hi = math.nan
        n = 0
    else:
        value, lo, hi = (float(row[k]) for k in ("value", "ci_lo", "ci_hi"))
        n = int(n_units if n_units is not None else row["n_units"])
    verdict = decide(lo, hi, n_units=n, **rule) if row is not None else NOT_RESOLVED
    return Claim(claim=f"{STAGE}.{name}", stage=STAGE, statement=statement, source=source, statistic=statistic,
                 value=value, ci_lo=lo, ci_hi=hi, verdict=verdict, expected=expected_text(**rule), unit=unit,
                 n_units=n, scale=scale, reference=reference)


def _shape_row(shapes, init, quantity, statistic="loglog_slope"):
    if shapes is None:
        return None
    part = shapes[(shapes["init"] == init) & (shapes["quantity"] == quantity) & (shapes["statistic"] == statistic)]
    if part.empty:
        return None
    row = part.sort_values("width").iloc[0]  # the narrowest width run (the default has one)
    return {"value": row["value"], "ci_lo": row["ci_lo"], "ci_hi": row["ci_hi"], "n_units": row["n_inits"],
            "width": int(row["width"]), "depth_min": int(row["depth_min"]), "depth_max": int(row["depth_max"])}


def _curve_claims(shapes) -> list[Claim]:
    out = []
    specs = [
        ("gaussian_fluctuations_linear", "gaussian", "normalized_variance", {"inside": LINEAR},
         "At criticality, the normalised preactivation-kernel fluctuation of Gaussian-initialised tanh "
         "networks grows linearly with depth", f"{DKR}, sec. 1-2; {RYH}", "1 (linear; slope 2/3 per layer)"),
        ("orthogonal_fluctuations_not_growing", "orthogonal", "normalized_variance", {"below": NO_GROWTH},
         "With orthogonal weights the normalised preactivation fluctuation does not grow with depth "
         "(depth independent to leading order in 1/width)", f"{DKR}, abstract and sec. 3", "no growth"),
        ("orthogonal_ntk_saturates", "orthogonal", "ntk_normalized_variance", {"below": NO_GROWTH},
         "At initialisation, the orthogonal network's NTK fluctuations saturate with depth (at a depth of ~20) "
         "rather than growing without bound", f"{DKR}, abstract and sec. 4", "saturation at depth ~20"),
        ("gaussian_ntk_grows", "gaussian", "ntk_normalized_variance", {"above": NO_GROWTH},
         "With Gaussian weights the NTK fluctuations grow with depth without bound",
         f"{DKR}, abstract; {RYH.replace('5.3.3', '8-9')}", "growth ~ depth/width"),
    ]
    for name, init, quantity, rule, statement, source, reference in specs:
        row = _shape_row(shapes, init, quantity)
        what = "n Var(G_hat)/G^2" if quantity == "normalized_variance" else "n Var(Theta_hat)/Theta^2"
        if row is None:
            statistic, scale = f"deep log-log slope of {what} vs depth ({init})", "table missing"
        else:
            statistic = (f"log-log slope of {what} vs depth, depths {row['depth_min']}-{row['depth_max']} "
                         f"({init})")
            scale = f"width {row['width']}, depth <= {row['depth_max']}, {int(row['n_units'])} initialisations"
        out.append(_claim(name, statement, source, statistic, row, rule, "initialisations", scale, reference))
    return out


def _sweep_claims(sweep) -> list[Claim]:
    rows = {}
    if sweep is not None:
        for kind in ("extrapolated", "narrow_minus_wide"):
            part = sweep[(sweep["init"] == "gaussian") & (sweep["kind"] == kind)]
            if not part.empty:
                r = part.iloc[0]
                rows[kind] = {"value": r["fitted_slope"], "ci_lo": r["ci_lo"], "ci_hi": r["ci_hi"],
                              "n_units": r["n_inits"]}
    widths = []
    if sweep is not None:
        widths = sorted(sweep[(sweep["init"] == "gaussian") & (sweep["kind"] == "measured")]["width"].tolist())
    if sweep is not None and widths:
        r = sweep.iloc[0]
        layers = f"layers {r['layer_min']}-{r['layer_max']}"
        scale = (f"widths {', '.join(map(str, widths))}, depth {r['depth']}, {r['n_inits']} initialisations "
                 f"per width")
    else:
        layers, scale = "deep layers", "table missing"
    return [
        _claim("gaussian_slope_two_thirds",
               "The depth slope of the Gaussian network's normalised fluctuation tends to 2/3 per layer as the "
               "width grows (the finite-width excess is an O(depth/width) correction)", f"{RYH}; {DKR}, sec. 2",
               f"slope over {layers} extrapolated to infinite width (s = s_inf + c/width)",
               rows.get("extrapolated"), {"inside": TWO_THIRDS}, "initialisations", scale, "2/3"),
        _claim("gaussian_slope_excess_shrinks",
               "The Gaussian slope's excess over 2/3 shrinks as the width grows", f"{RYH}",
               f"slope over {layers} at the narrowest minus the widest width",
               rows.get("narrow_minus_wide"), {"above": 0.0}, "initialisations", scale, "> 0"),
    ]


def _lr_text(lr: float, grid) -> str:
    """The selected rate, flagged when it sits on the edge of the configured grid."""
    if lr is None or (isinstance(lr, float) and math.isnan(lr)):
        return "nan"
    edge = bool(grid) and lr in (min(grid), max(grid)) and len(grid) > 1
    return f"{lr:g}" + (" (grid edge)" if edge else "")


def _training_claims(comparison, grid=None) -> list[Claim]:
    if comparison is None:
        return [_claim(name, statement, f"{DKR}, abstract and sec. 5", "table missing", None, rule, "seeds",
                       "table missing")
                for name, statement, rule in (
                    ("orthogonal_trains_faster", "Orthogonal networks train faster under full-batch GD", {"below": 0.0}),
                    ("orthogonal_generalises_better", "Orthogonal networks generalise better under full-batch GD",
                     {"above": 0.0}))]
    out = []
    diff = comparison[comparison["kind"] == "difference"]
    means = comparison[comparison["kind"] == "mean"]
    for ratio in sorted(diff["depth_ratio"].unique()):
        if ratio < 1:
            continue
        label = f"{ratio:g}".replace(".", "p")
        for name, metric, rule, what, statement in (
            ("orthogonal_trains_faster", "train_loss_mean", {"below": 0.0}, "mean training loss over the run",
             "Orthogonal networks train faster than Gaussian ones under full-batch gradient descent when depth is "
             "comparable to width"),
            ("orthogonal_generalises_better", "test_accuracy", {"above": 0.0}, "final test accuracy",
             "Orthogonal networks generalise better than Gaussian ones under full-batch gradient descent when depth "
             "is comparable to width"),
        ):
            part = diff[(diff["depth_ratio"] == ratio) & (diff["metric"] == metric) & (diff["init"] == "orthogonal")]
            lrs = means[(means["depth_ratio"] == ratio) & (means["metric"] == metric)].set_index("init")["lr"]
            row = None
            if not part.empty:
                r = part.iloc[0]
                row = {"value": r["value"], "ci_lo": r["ci_lo"], "ci_hi": r["ci_hi"], "n_units": r["n_seeds"]}
                depth = int(r["depth"])
            else:
                depth = -1
            scale = (f"L/n = {ratio:g} (depth {depth}), lr orthogonal {_lr_text(lrs.get('orthogonal'), grid)} / "
                     f"gaussian {_lr_text(lrs.get('gaussian'), grid)} (each selected on validation loss), "
                     f"{int(row['n_units']) if row else 0} seeds per init")
            out.append(_claim(f"{name}_r{label}", statement, f"{DKR}, abstract and sec. 5",
                              f"orthogonal minus Gaussian {what}, at L/n = {ratio:g}", row, rule, "seeds", scale,
                              "orthogonal better at L/n ~ 1"))
    return out


def claims(results_dir: Path, config: dict) -> list[Claim]:
    """Every init-stage claim, decided from the tables under ``results_dir / "init"``."""
    grid = ((config or {}).get("init") or {}).get("training", {}).get("lrs")
    return (_curve_claims(_read(results_dir, "shapes.csv")) + _sweep_claims(_read(results_dir, "width_sweep.csv"))
            + _training_claims(_read(results_dir, "training_comparison.csv"), grid))
