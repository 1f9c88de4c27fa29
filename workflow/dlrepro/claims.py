"""Claims: each seed-paper claim as a verdict with an interval.

A stage turns its result tables into :class:`Claim` rows (its own ``claims`` module); the
report stage concatenates them into ``results/claims.csv``. This module is a lower layer:
it knows nothing of the stages, only how a claim is decided and written.

The verdict is decided from a confidence interval of the measured statistic, never from the
point estimate alone:

* ``reproduced``: the whole interval lies on the side the claim predicts (or inside the
  range it predicts);
* ``not reproduced``: the whole interval lies on the other side (or outside the range);
* ``not resolved at this scale``: the interval straddles the boundary, or there are fewer
  independent units (seeds, initialisations, runs) than :data:`MIN_UNITS` to resample, or
  the statistic could not be computed (NaN).

Intervals come from resampling the independent unit (:func:`bootstrap_ci`): the rows of
``units`` are resampled with replacement and the statistic recomputed on each resample;
the interval is the percentile interval of those draws.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
NOT_RESOLVED = "not resolved at this scale"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, NOT_RESOLVED)

#: fewer independent units than this cannot give an interval: the claim is not resolved
MIN_UNITS = 2

#: the columns of ``claims.csv``, in order (documented in the README, "Claims")
COLUMNS = [
    "claim", "stage", "statement", "source", "statistic", "value", "ci_lo", "ci_hi",
    "ci_level", "reference", "expected", "verdict", "unit", "n_units", "scale",
]


@dataclasses.dataclass(frozen=True)
class Claim:
    """One row of ``claims.csv``.

    ``claim`` is a short stable id (``<stage>.<name>``); ``statement`` the claim in words;
    ``source`` where the paper makes it (paper, section or figure); ``statistic`` what is
    measured here; ``value`` / ``ci_lo`` / ``ci_hi`` its point estimate and interval at
    ``ci_level``; ``reference`` the paper's value where one exists (free text, e.g.
    ``"2/3"``, or empty); ``expected`` the decision rule in words (e.g. ``"> 0"``);
    ``unit`` / ``n_units`` the independent unit resampled and how many there were;
    ``scale`` the scale it was measured at (e.g. ``"default preset: d64 GPT-2, 4 generations"``).
    """

    claim: str
    stage: str
    statement: str
    source: str
    statistic: str
    value: float
    ci_lo: float
    ci_hi: float
    verdict: str
    expected: str
    unit: str
    n_units: int
    scale: str
    reference: str = ""
    ci_level: float = 0.95

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"claim {self.claim}: verdict {self.verdict!r} is not one of {VERDICTS}")


def decide(ci_lo: float, ci_hi: float, *, above: float | None = None, below: float | None = None,
           inside: tuple[float, float] | None = None, n_units: int | None = None) -> str:
    """The verdict for an interval ``[ci_lo, ci_hi]`` under exactly one rule.

    ``above=t``: the claim predicts a statistic greater than ``t``; ``below=t``: smaller
    than ``t``; ``inside=(a, b)``: between ``a`` and ``b``. ``n_units`` below
    :data:`MIN_UNITS`, or a non-finite bound, gives ``not resolved at this scale``.
    """
    rules = [r for r in (above, below, inside) if r is not None]
    if len(rules) != 1:
        raise ValueError("decide() takes exactly one of above=, below=, inside=")
    if n_units is not None and n_units < MIN_UNITS:
        return NOT_RESOLVED
    if not (math.isfinite(ci_lo) and math.isfinite(ci_hi)):
        return NOT_RESOLVED
    lo, hi = min(ci_lo, ci_hi), max(ci_lo, ci_hi)
    if above is not None:
        return REPRODUCED if lo > above else NOT_REPRODUCED if hi < above else NOT_RESOLVED
    if below is not None:
        return REPRODUCED if hi < below else NOT_REPRODUCED if lo > below else NOT_RESOLVED
    a, b = sorted(inside)
    if a <= lo and hi <= b:
        return REPRODUCED
    if hi < a or lo > b:
        return NOT_REPRODUCED
    return NOT_RESOLVED


def expected_text(*, above: float | None = None, below: float | None = None,
                  inside: tuple[float, float] | None = None) -> str:
    """The decision rule of :func:`decide` in words, for the ``expected`` column."""
    if above is not None:
        return f"> {above:g}"
    if below is not None:
        return f"< {below:g}"
    a, b = sorted(inside)
    return f"in [{a:g}, {b:g}]"


def bootstrap_ci(units: np.ndarray | Sequence, statistic: Callable[[np.ndarray], float], *,
                 n_resamples: int = 2000, level: float = 0.95, seed: int = 0
                 ) -> tuple[float, float, float]:
    """Point estimate and percentile interval of ``statistic`` over resampled units.

    ``units`` has one row (first axis) per independent unit (a seed, an initialisation, a
    run); each resample draws that many rows with replacement, from a generator seeded by
    ``seed``. Returns ``(statistic(units), lo, hi)``; NaN bounds when there are fewer than
    :data:`MIN_UNITS` units or when every resample's statistic is non-finite.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    data = np.asarray(units)
    value = float(statistic(data))
    n = data.shape[0]
    if n < MIN_UNITS:
        return value, math.nan, math.nan
    rng = np.random.default_rng(seed)
    draws = np.array([statistic(data[rng.integers(0, n, n)]) for _ in range(n_resamples)],
                     dtype=float)
    draws = draws[np.isfinite(draws)]
    if draws.size == 0:
        return value, math.nan, math.nan
    alpha = (1 - level) / 2
    lo, hi = np.quantile(draws, [alpha, 1 - alpha])
    return value, float(lo), float(hi)


def frame(claims: Iterable[Claim]) -> pd.DataFrame:
    """Claims as a tidy table with :data:`COLUMNS`, in the order given."""
    rows = [dataclasses.asdict(c) for c in claims]
    return pd.DataFrame(rows, columns=COLUMNS)


def write(path, claims: Iterable[Claim]) -> None:
    """Write claims as CSV atomically (``dlrepro.io``)."""
    from dlrepro.io import write_csv

    write_csv(path, frame(claims))


def read(path) -> list[Claim]:
    """Claims back from a CSV written by :func:`write` (an empty file gives none)."""
    table = pd.read_csv(path, keep_default_na=False, na_values=[""])
    out = []
    for rec in table.to_dict("records"):
        rec = {k: rec[k] for k in COLUMNS}
        rec["reference"] = "" if isinstance(rec["reference"], float) and math.isnan(rec["reference"]) \
            else str(rec["reference"])
        rec["n_units"] = int(rec["n_units"])
        out.append(Claim(**rec))
    return out
