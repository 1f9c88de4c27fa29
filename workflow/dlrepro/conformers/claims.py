"""Claims of the conformer diffusion stage, from ``results/conformers/summary.csv``.

Replace rises / accumulate bounded (Gerstgrasser et al. 2024, the GeoDiff molecule
experiment) in two metrics on held-out molecules: the denoising test loss and MAT-R
(Angstrom; lower is better). Rows whose policy is not ``replace``, ``accumulate`` or
``real`` (generation 0), e.g. a force-field baseline, are ignored. The independent unit
is the seed (``conformers.seeds``). See :func:`dlrepro.claims.replace_vs_accumulate`.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dlrepro.claims import COLLAPSE_PAPER, Claim, fmt_scale, replace_vs_accumulate

TABLES = ("conformers/summary.csv",)
METRICS = ("test_loss", "mat_r")
POLICIES = ("replace", "accumulate", "real")


def claims(results_dir: Path, config: dict) -> list[Claim]:
    table = pd.read_csv(Path(results_dir) / "conformers" / "summary.csv")
    table = table[table["policy"].isin(POLICIES)]
    prep = (config.get("conformers") or {}).get("prepare") or {}
    scale = fmt_scale("MOSES molecules",
                      f"{prep['n_train_molecules']} training / {prep['n_test_molecules']} test molecules"
                      if "n_train_molecules" in prep and "n_test_molecules" in prep else "")
    out = []
    for metric in METRICS:
        if metric in table.columns:
            out += replace_vs_accumulate(table, metric, stage="conformers",
                                         what=f"Conformer diffusion ({metric})", scale=scale,
                                         source=f"{COLLAPSE_PAPER}, Sec. 5 (molecule conformations)",
                                         claim_prefix=f"{metric}.")
    return out
