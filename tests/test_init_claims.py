"""The init stage's claims: verdicts from synthetic result tables (a clear effect, no
effect, too few draws or seeds, a missing table)."""

import math

import pandas as pd
import pytest

from dlrepro import claims as C
from dlrepro.init.claims import claims


def _shapes(gauss_ntk=(1.1, 0.9, 1.3), orth_ntk=(-0.8, -1.0, -0.6), gauss_f=(1.0, 0.8, 1.2),
            orth_f=(-1.4, -1.8, -1.0), n_inits=1000):
    rows = []
    for init, quantity, (v, lo, hi) in (("gaussian", "ntk_normalized_variance", gauss_ntk),
                                        ("orthogonal", "ntk_normalized_variance", orth_ntk),
                                        ("gaussian", "normalized_variance", gauss_f),
                                        ("orthogonal", "normalized_variance", orth_f)):
        rows.append({"init": init, "quantity": quantity, "width": 32, "n_inits": n_inits, "depth_min": 16,
                     "depth_max": 32, "statistic": "loglog_slope", "value": v, "ci_lo": lo, "ci_hi": hi})
        rows.append({"init": init, "quantity": quantity, "width": 32, "n_inits": n_inits, "depth_min": 1,
                     "depth_max": 32, "statistic": "peak_depth", "value": 6, "ci_lo": 4, "ci_hi": 8})
    return pd.DataFrame(rows)


def _sweep(extrapolated=(0.65, 0.62, 0.69), drop=(0.2, 0.1, 0.3), n_inits=8000):
    base = {"init": "gaussian", "n_inits": n_inits, "depth": 32, "layer_min": 16, "layer_max": 32,
            "theory_slope": 0.653, "asymptotic_theory_slope": 2 / 3}
    rows = [{**base, "kind": "measured", "width": w, "fitted_slope": s, "ci_lo": s - 0.05, "ci_hi": s + 0.05}
            for w, s in ((32, 0.9), (256, 0.68))]
    for kind, (v, lo, hi) in (("extrapolated", extrapolated), ("narrow_minus_wide", drop)):
        rows.append({**base, "kind": kind, "width": 0, "fitted_slope": v, "ci_lo": lo, "ci_hi": hi})
    return pd.DataFrame(rows)


def _comparison(loss_diff=(-0.05, -0.08, -0.02), acc_diff=(0.1, 0.05, 0.15), n_seeds=3):
    rows = []
    for ratio, depth in ((0.25, 8), (1.0, 32)):
        for metric, diff in (("train_loss_mean", loss_diff), ("test_accuracy", acc_diff)):
            for init, lr in (("gaussian", 2.0), ("orthogonal", 4.0)):
                rows.append({"depth_ratio": ratio, "depth": depth, "metric": metric, "init": init, "reference": "",
                             "kind": "mean", "lr": lr, "value": 0.5, "ci_lo": 0.4, "ci_hi": 0.6, "n_seeds": n_seeds})
            rows.append({"depth_ratio": ratio, "depth": depth, "metric": metric, "init": "orthogonal",
                         "reference": "gaussian", "kind": "difference", "lr": math.nan, "value": diff[0],
                         "ci_lo": diff[1], "ci_hi": diff[2], "n_seeds": n_seeds})
    return pd.DataFrame(rows)


def _write(tmp_path, shapes=None, sweep=None, comparison=None, config=None):
    folder = tmp_path / "init"
    folder.mkdir(parents=True, exist_ok=True)
    for name, table in (("shapes", shapes), ("width_sweep", sweep), ("training_comparison", comparison)):
        if table is not None:
            table.to_csv(folder / f"{name}.csv", index=False)
    return {c.claim: c for c in claims(tmp_path, config or {})}


def test_clear_effects_are_reproduced(tmp_path):
    out = _write(tmp_path, _shapes(), _sweep(), _comparison())
    for name in ("gaussian_fluctuations_linear", "orthogonal_fluctuations_not_growing", "orthogonal_ntk_saturates",
                 "gaussian_ntk_grows", "gaussian_slope_two_thirds", "gaussian_slope_excess_shrinks",
                 "orthogonal_trains_faster_r1", "orthogonal_generalises_better_r1"):
        claim = out[f"init.{name}"]
        assert claim.verdict == C.REPRODUCED, (name, claim)
        assert claim.stage == "init" and claim.ci_lo <= claim.value <= claim.ci_hi
    # the shallow ratio (L/n < 1) is not a claim of the paper
    assert "init.orthogonal_trains_faster_r0p25" not in out
    assert out["init.orthogonal_ntk_saturates"].unit == "initialisations"
    assert out["init.orthogonal_trains_faster_r1"].unit == "seeds"
    assert "lr orthogonal 4 / gaussian 2" in out["init.orthogonal_trains_faster_r1"].scale
    assert list(C.frame(out.values()).columns) == C.COLUMNS
    edge = _write(tmp_path, _shapes(), _sweep(), _comparison(), {"init": {"training": {"lrs": [1.0, 2.0, 4.0]}}})
    assert "lr orthogonal 4 (grid edge) / gaussian 2 (" in edge["init.orthogonal_trains_faster_r1"].scale


def test_no_effect_is_not_resolved_and_the_opposite_not_reproduced(tmp_path):
    out = _write(tmp_path, _shapes(orth_ntk=(0.3, -0.2, 0.8), gauss_ntk=(-0.9, -1.2, -0.6)),
                 _sweep(extrapolated=(0.9, 0.8, 1.0), drop=(0.0, -0.1, 0.1)),
                 _comparison(loss_diff=(0.0, -0.05, 0.05), acc_diff=(-0.1, -0.15, -0.05)))
    assert out["init.orthogonal_ntk_saturates"].verdict == C.NOT_RESOLVED  # straddles 0.25
    assert out["init.gaussian_ntk_grows"].verdict == C.NOT_REPRODUCED
    assert out["init.gaussian_slope_two_thirds"].verdict == C.NOT_REPRODUCED  # interval above 0.733
    assert out["init.gaussian_slope_excess_shrinks"].verdict == C.NOT_RESOLVED
    assert out["init.orthogonal_trains_faster_r1"].verdict == C.NOT_RESOLVED
    assert out["init.orthogonal_generalises_better_r1"].verdict == C.NOT_REPRODUCED


def test_too_few_draws_or_seeds_and_missing_tables_are_not_resolved(tmp_path):
    out = _write(tmp_path, _shapes(n_inits=1), _sweep(n_inits=1), _comparison(n_seeds=1))
    assert all(c.verdict == C.NOT_RESOLVED for c in out.values())
    assert all(c.n_units == 1 for c in out.values())
    empty = _write(tmp_path / "none")
    assert empty and all(c.verdict == C.NOT_RESOLVED and math.isnan(c.value) for c in empty.values())
    assert {"init.orthogonal_ntk_saturates", "init.orthogonal_trains_faster"} <= set(empty)
