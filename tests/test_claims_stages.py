"""Each stage's claims module on synthetic result tables: a clear effect is reproduced, no
effect is not resolved (or not reproduced), too few seeds is not resolved; the registry
gathers them; the README section is rewritten between its markers only."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from dlrepro import claims as C
from dlrepro.io import save_npy, write_json
from dlrepro.report import claims as registry
from dlrepro.report import readme

RNG = np.random.default_rng(0)


def _by_id(rows):
    return {c.claim: c for c in rows}


# --------------------------------------------------------------------------- replace vs accumulate


def _collapse_table(seeds, replace_rise, accumulate_rise, noise=0.01, generations=3):
    rng = np.random.default_rng(len(seeds))
    rows = []
    for s in seeds:
        g0 = 4.0 + rng.normal(0, noise)
        rows.append({"policy": "real", "generation": 0, "seed": s, "test_loss": g0})
        for g in range(1, generations + 1):
            for policy, rise in (("replace", replace_rise), ("accumulate", accumulate_rise)):
                rows.append({"policy": policy, "generation": g, "seed": s,
                             "test_loss": g0 + rise * g / generations + rng.normal(0, noise)})
    return pd.DataFrame(rows)


def test_replace_vs_accumulate_clear_effect():
    rows = _by_id(C.replace_vs_accumulate(_collapse_table(range(5), 0.8, 0.02), "test_loss", stage="x",
                                          what="toy", scale="tiny", source="paper"))
    assert rows["x.replace_rises"].verdict == C.REPRODUCED
    assert rows["x.replace_rises"].value == pytest.approx(0.8, abs=0.05)
    assert rows["x.accumulate_bounded"].verdict == C.REPRODUCED
    assert rows["x.replace_rises"].n_units == 5 and rows["x.replace_rises"].unit == "seeds"


def test_replace_vs_accumulate_no_effect_and_opposite():
    rows = _by_id(C.replace_vs_accumulate(_collapse_table(range(5), 0.0, 0.0, noise=0.05), "test_loss",
                                          stage="x", what="toy", scale="tiny", source="paper"))
    assert rows["x.replace_rises"].verdict != C.REPRODUCED
    # accumulate rising as much as replace: its bound is not reproduced
    rows = _by_id(C.replace_vs_accumulate(_collapse_table(range(6), 0.8, 0.8), "test_loss", stage="x",
                                          what="toy", scale="tiny", source="paper"))
    assert rows["x.accumulate_bounded"].verdict == C.NOT_REPRODUCED


def test_replace_vs_accumulate_one_seed_is_not_resolved():
    rows = C.replace_vs_accumulate(_collapse_table([0], 0.8, 0.02), "test_loss", stage="x", what="toy",
                                   scale="tiny", source="paper")
    assert {c.verdict for c in rows} == {C.NOT_RESOLVED}
    assert all(math.isnan(c.ci_lo) and c.n_units == 1 for c in rows)
    assert rows[0].value == pytest.approx(0.8, abs=0.05)  # the point estimate is still reported


def test_collapse_vae_conformers_modules(tmp_path):
    t = _collapse_table(range(4), 0.8, 0.02)
    (tmp_path / "collapse").mkdir()
    t.assign(model="m", n_params=1000, dataset="d").to_csv(tmp_path / "collapse" / "summary.csv", index=False)
    (tmp_path / "vae").mkdir()
    t.rename(columns={"test_loss": "test_neg_elbo"}).assign(n_train=100).to_csv(tmp_path / "vae" / "summary.csv",
                                                                               index=False)
    (tmp_path / "conformers").mkdir()
    conf = t.assign(mat_r=t["test_loss"], cov_r=0.0)
    baseline = pd.DataFrame([{"policy": "rdkit", "generation": 0, "seed": 0, "test_loss": 99.0, "mat_r": 99.0}])
    pd.concat([conf, baseline]).to_csv(tmp_path / "conformers" / "summary.csv", index=False)
    got = _by_id(registry.collect(["collapse", "vae", "conformers"], tmp_path, {}))
    assert set(got) == {"collapse.replace_rises", "collapse.accumulate_bounded", "vae.replace_rises",
                        "vae.accumulate_bounded", "conformers.test_loss.replace_rises",
                        "conformers.test_loss.accumulate_bounded", "conformers.mat_r.replace_rises",
                        "conformers.mat_r.accumulate_bounded"}
    assert {c.verdict for c in got.values()} == {C.REPRODUCED}
    # the baseline row (policy rdkit, generation 0) is ignored, not averaged into generation 0
    assert got["conformers.mat_r.replace_rises"].value == pytest.approx(0.8, abs=0.05)


# --------------------------------------------------------------------------- linear regression


def _linreg_table(tmp_path, replace_growth=True, sim_over_theory=1.0, sem=1e-3):
    from dlrepro import linreg

    rows = []
    for d, T in ((5, 50), (10, 100)):
        for policy in ("replace", "accumulate"):
            for it in range(6):
                theory = float(linreg.expected_error(policy, it, d, T, 1.0))
                mean = theory * sim_over_theory if (replace_growth or policy == "accumulate") else theory / (it + 1)
                bound = math.pi ** 2 / 6 * d / (T - d - 1)
                rows.append({"policy": policy, "iteration": it, "d": d, "T": T, "sigma": 1.0, "n_repeats": 200,
                             "n_train": T, "test_error_mean": mean, "test_error_sem": sem * mean,
                             "test_error_theory": theory, "test_error_bound": bound,
                             "test_error_limit": math.inf if policy == "replace" else 0.95 * bound,
                             "test_error_bound_limit": math.inf if policy == "replace" else bound,
                             "z_score": 0.0})
    (tmp_path / "linreg").mkdir(exist_ok=True)
    pd.DataFrame(rows).to_csv(tmp_path / "linreg" / "summary.csv", index=False)


def test_linreg_claims(tmp_path):
    _linreg_table(tmp_path)
    got = _by_id(registry.collect(["linreg"], tmp_path, {}))
    assert got["linreg.replace_rises"].verdict == C.REPRODUCED
    assert got["linreg.replace_rises"].value == pytest.approx(6.0, rel=1e-6)
    assert got["linreg.replace_closed_form"].verdict == C.REPRODUCED
    # a table without the doubling columns cannot decide boundedness
    assert got["linreg.accumulate_bounded"].verdict == C.NOT_RESOLVED


def test_linreg_accumulate_bounded_from_the_simulation(tmp_path):
    """The doubling ratio on a real (small) simulation: accumulate's below 1 (exact about
    0.6), replace's about 2; a table whose accumulate grows like replace is not reproduced."""
    from dlrepro import linreg
    from dlrepro.linreg_claims import doubling_ratio

    errors = linreg.simulate_errors(5, 50, 1.0, 16, 2000, 0)
    table = linreg.summarize(errors, 5, 50, 1.0)
    (tmp_path / "linreg").mkdir()
    table.to_csv(tmp_path / "linreg" / "summary.csv", index=False)
    got = _by_id(registry.collect(["linreg"], tmp_path, {}))["linreg.accumulate_bounded"]
    assert got.verdict == C.REPRODUCED and got.ci_hi < 1.0
    exact = float(table.loc[table["policy"] == "accumulate", "doubling_theory"].iloc[0])
    assert 0.5 < exact < 0.8 and got.ci_lo <= exact <= got.ci_hi
    ratio, lo, hi, exact_r = doubling_ratio(errors["replace"], lambda it: linreg.expected_error("replace", it, 5, 50, 1.0))
    assert exact_r == pytest.approx(2.0) and lo <= 2.0 <= hi and lo > 1.0
    # accumulate's column replaced by replace's: the rule must fail
    swapped = table.copy()
    rep = table[table["policy"] == "replace"]
    for col in ("doubling_ratio", "doubling_ci_lo", "doubling_ci_hi"):
        swapped.loc[swapped["policy"] == "accumulate", col] = rep[col].iloc[0]
    swapped.to_csv(tmp_path / "linreg" / "summary.csv", index=False)
    got = _by_id(registry.collect(["linreg"], tmp_path, {}))["linreg.accumulate_bounded"]
    assert got.verdict == C.NOT_REPRODUCED
    # a simulation 20% off its closed form is not reproduced
    _linreg_table(tmp_path, sim_over_theory=1.2)
    got = _by_id(registry.collect(["linreg"], tmp_path, {}))
    assert got["linreg.replace_closed_form"].verdict == C.NOT_REPRODUCED
    # noisy means (large standard errors) cannot tell
    _linreg_table(tmp_path, sim_over_theory=1.05, sem=0.2)
    got = _by_id(registry.collect(["linreg"], tmp_path, {}))
    assert got["linreg.replace_closed_form"].verdict == C.NOT_RESOLVED


# --------------------------------------------------------------------------- width
# the width claims' tests: tests/test_width_protocols.py


# --------------------------------------------------------------------------- scaling


def _scaling_tables(tmp_path, alphas, n_distinct=6, group=""):
    from dlrepro.scaling.per_seed import COLUMNS

    d = tmp_path / "scaling"
    d.mkdir(parents=True, exist_ok=True)
    pd.DataFrame([{"sweep": "data", "kind": "single", "group": group, "x": "train_tokens", "E": 2.0, "A": 50.0,
                   "alpha": float(np.mean(alphas)), "alpha_lo": min(alphas), "alpha_hi": max(alphas), "n_points": n_distinct * len(alphas), "regime": "",
                   "warning": ""}]).to_csv(d / "fits.csv", index=False)
    pd.DataFrame([{"sweep": "data", "group_column": "", "group": group, "x": "train_tokens", "seed": i,
                   "n_points": n_distinct, "n_distinct": n_distinct, "E": 2.0, "A": 50.0, "alpha": a,
                   "determined": int(n_distinct >= 5)} for i, a in enumerate(alphas)],
                 columns=COLUMNS).to_csv(d / "seed_fits.csv", index=False)
    return tmp_path


@pytest.mark.parametrize("alphas, n_distinct, verdict", [
    ([0.28, 0.30, 0.31, 0.29, 0.27, 0.30], 6, C.REPRODUCED),       # a clear exponent, six seeds
    ([0.30, -0.25, 0.02, 0.1, -0.2, 0.25], 6, C.NOT_RESOLVED),     # no consistent sign
    ([-0.20, -0.22, -0.19, -0.21, -0.2, -0.23], 6, C.NOT_REPRODUCED),  # the loss rises
    ([0.28, 0.30, 0.31], 6, C.NOT_RESOLVED),                       # three seeds: under-covers
    ([0.28, 0.30, 0.31, 0.29, 0.27, 0.30], 4, C.NOT_RESOLVED),     # each seed's law undetermined
])
def test_scaling_claim_is_a_t_interval_over_per_seed_exponents(tmp_path, alphas, n_distinct, verdict):
    from dlrepro.scaling.claims import MIN_SEEDS

    (claim,) = registry.collect(["scaling"], _scaling_tables(tmp_path, alphas, n_distinct), {})
    assert claim.claim == "scaling.data" and claim.verdict == verdict, claim
    if n_distinct >= 5:
        assert (claim.value, claim.ci_lo, claim.ci_hi) == pytest.approx(C.t_interval(alphas))
        assert claim.n_units == len(alphas)
    if n_distinct < 5:
        assert "distinct train_tokens values" in claim.scale
    elif len(alphas) < MIN_SEEDS:
        assert f"from {MIN_SEEDS} seeds" in claim.scale


# --------------------------------------------------------------------------- registry, CLI, README


def test_registry_refuses_unknown_stage(tmp_path):
    with pytest.raises(ValueError, match="no claims"):
        registry.collect(["nope"], tmp_path, {})
    assert "init" not in registry.STAGES or registry.module_name("init") == "dlrepro.init.claims"


def test_claims_command_writes_csv_and_html(tmp_path):
    from dlrepro.report.cli import main

    _scaling_tables(tmp_path, [0.28, 0.30, 0.31, 0.29, 0.27, 0.30])
    _linreg_table(tmp_path)
    out = tmp_path / "claims.csv"
    assert main(["claims", "--stages", "linreg", "scaling", "--results", str(tmp_path), "--config", "{}",
                 "--out", str(out), "--html", str(tmp_path / "claims.html")]) == 0
    table = pd.read_csv(out)
    assert list(table.columns) == C.COLUMNS and set(table["verdict"]) <= set(C.VERDICTS)
    assert table["claim"].tolist()[0].startswith("linreg.")
    assert "scaling.data" in (tmp_path / "claims.html").read_text()
    with pytest.raises(SystemExit, match="no claims"):
        main(["claims", "--stages", "bogus", "--config", "{}", "--out", str(out)])


def test_readme_section_is_rewritten_between_markers_only(tmp_path):
    from dlrepro.report.cli import main

    rows = [C.Claim(claim="x.a", stage="x", statement="A rises", source="P", statistic="rise", value=0.5,
                    ci_lo=0.2, ci_hi=0.8, verdict=C.REPRODUCED, expected="> 0", unit="seeds", n_units=3,
                    scale="tiny"),
            C.Claim(claim="x.b", stage="x", statement="B flat", source="P", statistic="slope", value=0.1,
                    ci_lo=math.nan, ci_hi=math.nan, verdict=C.NOT_RESOLVED, expected="< 0.2", unit="seeds",
                    n_units=1, scale="tiny", reference="0")]
    C.write(tmp_path / "claims.csv", rows)
    results = tmp_path / "results"
    _scaling_tables(results, [0.28, 0.30, 0.31, 0.29, 0.27, 0.30])
    figures = tmp_path / "figs"
    figures.mkdir()
    (figures / "scaling_laws.png").write_bytes(b"png")
    doc = tmp_path / "README.md"
    doc.write_text(f"# T\n\nbefore\n\n{readme.BEGIN}\nstale 2.08 / 1.90\n{readme.END}\n\nafter\n")
    argv = ["readme", "--readme", str(doc), "--claims", str(tmp_path / "claims.csv"), "--results", str(results),
            "--figures", str(figures), "--link-prefix", "docs/figures"]
    assert main(argv) == 0
    text = doc.read_text()
    assert text.startswith("# T\n\nbefore\n\n") and text.endswith(f"{readme.END}\n\nafter\n")
    assert "stale" not in text
    assert "| `x.a` | A rises | 0.5 [0.2, 0.8] | > 0 | - | 3 seeds | reproduced |" in text
    assert "0.1 (no interval)" in text and "not resolved at this scale" in text
    assert "![scaling laws](docs/figures/scaling_laws.png)" in text
    assert "**Scaling laws**: data: L = 2 + 50 train_tokens^-0.292" in text
    assert main(argv) == 0 and doc.read_text() == text  # idempotent
    doc.write_text("no markers\n")
    with pytest.raises(SystemExit, match="markers"):
        main(argv)


def test_bootstrap_cis_matches_bootstrap_ci_per_component():
    units = np.random.default_rng(3).normal(size=(20, 2))
    values, lo, hi = C.bootstrap_cis(units, lambda x: x.mean(axis=0), n_resamples=300, seed=5)
    for j in range(2):
        v, l, h = C.bootstrap_ci(units, lambda x: float(x[:, j].mean()), n_resamples=300, seed=5)
        assert (values[j], lo[j], hi[j]) == pytest.approx((v, l, h))
    # a statistic undefined on most resamples has no interval
    _, lo, hi = C.bootstrap_cis(np.arange(3.0), lambda x: np.array([1.0 if len(set(x)) == 3 else math.nan]),
                                n_resamples=200)
    assert math.isnan(lo[0]) and math.isnan(hi[0])


def test_scaling_claim_with_unreliable_fit_is_not_resolved(tmp_path):
    # the pooled fit's warning is shown beside the verdict, which the per-seed fits decide
    _scaling_tables(tmp_path, [0.28, 0.30, 0.31, 0.29, 0.27, 0.30], n_distinct=4)
    path = tmp_path / "scaling" / "fits.csv"
    pd.read_csv(path).assign(warning="only 4 distinct points for 3 parameters: the law is barely determined "
                                     "and its CIs are unreliable").to_csv(path, index=False)
    (claim,) = registry.collect(["scaling"], tmp_path, {})
    assert claim.verdict == C.NOT_RESOLVED and "unreliable" in claim.scale


def test_readme_conformer_table_orders_rows_and_reads_every_corpus(tmp_path):
    from dlrepro.io import write_json

    rows = [{"policy": p, "generation": g, "seed": 0, "test_loss": tl, "cov_r": 0.9, "mat_r": mr,
             "bond_in_range": 0.9} for p, g, tl, mr in
            [("replace", 1, 0.2, 1.1), ("rdkit-etkdg", 0, None, 0.47), ("accumulate", 1, 0.19, 1.0),
             ("real", 0, 0.18, 0.95)]]
    (tmp_path / "conformers").mkdir()
    pd.DataFrame(rows).to_csv(tmp_path / "conformers" / "summary.csv", index=False)
    for sub, gen, policy, v in (("seed0/synthetic1", 1, None, 0.93), ("seed0/replace/synthetic2", 2, "replace", 0.87)):
        write_json(tmp_path / "conformers" / sub / "manifest.json",
                   {"seed": 0, "generation": gen, "policy": policy, "n_conformers": 300,
                    "validity": {"bond_in_range": v, "bond_valid": 0.6, "mol_intact": 0.95}})
    text = readme.conformer_table(tmp_path)
    body = [line.split(" | ")[0] for line in text.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert body == ["| RDKit ETKDGv3", "| EGNN, real", "| EGNN, accumulate", "| EGNN, replace"]
    assert "| RDKit ETKDGv3 | – | 1 | – | 0.900 | 0.470 |" in text  # no test loss for RDKit
    assert text.index("generation 0 (synthetic1") < text.index("generation 1, replace (synthetic2")
    assert "bonds in 1-2 Å 0.870" in text
    assert readme.conformer_table(tmp_path / "absent") == ""
