"""The claims core: verdicts from intervals, bootstrap intervals over independent units."""

import math

import numpy as np
import pytest

from dlrepro import claims as C


@pytest.mark.parametrize("lo, hi, rule, want", [
    (0.2, 0.9, {"above": 0.0}, C.REPRODUCED),        # a clear effect
    (-0.3, 0.4, {"above": 0.0}, C.NOT_RESOLVED),      # no resolvable effect
    (-0.9, -0.2, {"above": 0.0}, C.NOT_REPRODUCED),   # the opposite effect
    (-0.9, -0.2, {"below": 0.0}, C.REPRODUCED),
    (0.60, 0.70, {"inside": (0.5, 0.8)}, C.REPRODUCED),
    (0.70, 0.90, {"inside": (0.5, 0.8)}, C.NOT_RESOLVED),
    (0.85, 0.90, {"inside": (0.5, 0.8)}, C.NOT_REPRODUCED),
    (math.nan, 1.0, {"above": 0.0}, C.NOT_RESOLVED),
])
def test_decide(lo, hi, rule, want):
    assert C.decide(lo, hi, **rule) == want


def test_too_few_units_is_not_resolved():
    assert C.decide(0.5, 0.9, above=0.0, n_units=1) == C.NOT_RESOLVED
    value, lo, hi = C.bootstrap_ci(np.array([1.0]), np.mean)
    assert value == 1.0 and math.isnan(lo) and math.isnan(hi)


def test_decide_needs_one_rule():
    with pytest.raises(ValueError):
        C.decide(0, 1)
    with pytest.raises(ValueError):
        C.decide(0, 1, above=0, below=1)


def test_bootstrap_interval_covers_known_mean():
    """Percentile intervals of the mean of 40 normal units cover the true mean in roughly
    95% of 200 repetitions (binomial spread: 0.89-0.99 holds with high probability)."""
    rng = np.random.default_rng(1)
    hits = 0
    for rep in range(200):
        units = rng.normal(3.0, 2.0, size=40)
        _, lo, hi = C.bootstrap_ci(units, np.mean, n_resamples=400, seed=rep)
        hits += lo <= 3.0 <= hi
    assert 0.89 <= hits / 200 <= 0.99


def test_bootstrap_resamples_rows_of_units():
    """Rows are units: a statistic of a 2-D array sees whole rows resampled."""
    units = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]])
    seen = []

    def stat(x):
        seen.append(x.shape)
        assert np.all(x[:, 1] - x[:, 0] == 1.0)
        return float(x.mean())

    C.bootstrap_ci(units, stat, n_resamples=20)
    assert all(s == (3, 2) for s in seen)


def test_round_trip(tmp_path):
    rows = [C.Claim(claim="x.a", stage="x", statement="s", source="p", statistic="t",
                    value=1.0, ci_lo=0.5, ci_hi=1.5, verdict=C.REPRODUCED, expected="> 0",
                    unit="seeds", n_units=3, scale="tiny"),
            C.Claim(claim="x.b", stage="x", statement="s", source="p", statistic="t",
                    value=math.nan, ci_lo=math.nan, ci_hi=math.nan, verdict=C.NOT_RESOLVED,
                    expected="< 0", unit="seeds", n_units=1, scale="tiny", reference="2/3")]
    path = tmp_path / "claims.csv"
    C.write(path, rows)
    back = C.read(path)
    assert [b.claim for b in back] == ["x.a", "x.b"]
    assert back[0].value == 1.0 and back[1].reference == "2/3" and back[0].reference == ""
    assert list(C.frame(rows).columns) == C.COLUMNS
    with pytest.raises(ValueError):
        C.Claim(claim="x", stage="x", statement="", source="", statistic="", value=0, ci_lo=0,
                ci_hi=0, verdict="maybe", expected="", unit="", n_units=0, scale="")
