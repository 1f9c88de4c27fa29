"""Claims of the scaling stage, from ``results/scaling/fits.csv``.

One claim per single-variable law ``L(x) = E + A x^-alpha`` (``scaling.<sweep>`` or
``scaling.<sweep>.<group>``): the loss falls as a power law of ``x``, i.e. ``alpha > 0``,
with the fit's bootstrap interval of ``alpha`` (runs resampled, clustered by seed where
the sweep has seeds: ``bootstrap_unit``). The paper's exponent is the reference where one
applies (Kaplan et al. 2020: ``alpha_D`` about 0.095 for language models' data size);
the regime (variance- vs resolution-limited, Bahri et al. 2021) and the fitter's
identification warnings go into ``scale``; a warning that the intervals are unreliable or
the law not identified (:data:`UNRELIABLE`) makes the claim ``not resolved``.

The independent unit is the seed where the runs are resampled by seed
(``bootstrap_clusters`` seeds, so ``n_units`` counts seeds, not runs): fewer than
:data:`dlrepro.claims.MIN_UNITS` seeds give no verdict (two seeds make three distinct
resamples; their "interval" is no interval). The coverage of this bootstrap of a nonlinear
fit has not been measured (``docs/claims.md``).
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from dlrepro.claims import Claim, fmt_scale, from_interval

TABLES = ("scaling/fits.csv",)
#: words of the fitter's warnings (``warning`` column) that make its interval uninformative
UNRELIABLE = ("unreliable", "not identified")
KAPLAN = "Kaplan et al. 2020 (arXiv 2001.08361)"
BAHRI = "Bahri et al. 2021 (arXiv 2102.06701)"
REFERENCES = {"train_tokens": "about 0.095 (Kaplan et al., alpha_D)",
              "n_params": "about 0.076 for LMs (Kaplan et al., alpha_N); about 1 if variance-limited (Bahri et al.)"}


def _text(v) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)


def claims(results_dir: Path, config: dict) -> list[Claim]:
    fits = pd.read_csv(Path(results_dir) / "scaling" / "fits.csv")
    out = []
    for row in fits.to_dict("records"):
        clusters = row.get("bootstrap_clusters", math.nan)
        by_seed = _text(row.get("bootstrap_unit")) == "seed"
        n_units = int(clusters) if by_seed and math.isfinite(clusters) else int(row["n_points"])
        if _text(row.get("kind")) not in ("", "single"):
            continue
        group = _text(row.get("group"))
        x = _text(row.get("x"))
        name = f"scaling.{row['sweep']}" + (f".{group}" if group else "")
        scale = fmt_scale(f"{int(row['n_points'])} runs" if math.isfinite(row.get("n_points", math.nan)) else "",
                          f"regime: {_text(row.get('regime'))}" if _text(row.get("regime")) else "",
                          _text(row.get("warning")))
        out.append(from_interval(
            claim=name, stage="scaling",
            statement=f"Test loss falls as a power law E + A {x}^-alpha of {x}"
                      + (f" ({group})" if group else ""),
            source=f"{KAPLAN}; {BAHRI}", statistic=f"alpha of L({x}) = E + A {x}^-alpha "
            f"(E = {row['E']:.3g})", value=float(row["alpha"]), ci_lo=float(row["alpha_lo"]),
            ci_hi=float(row["alpha_hi"]), unit="seeds (their runs resampled together)" if by_seed else "runs",
            n_units=n_units, scale=scale, reference=REFERENCES.get(x, ""),
            ci_level=float(row.get("ci_level", 0.95)), above=0.0,
            unresolved_because="the fitter flags its intervals as unreliable"
            if any(w in _text(row.get("warning")) for w in UNRELIABLE) else ""))
    return out
