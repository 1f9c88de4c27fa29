"""Claims of the language-model collapse stage, from ``results/collapse/summary.csv``.

Replace rises / accumulate bounded (Gerstgrasser et al. 2024, Fig. 2 for language models)
in test cross-entropy (nats/token) on the real held-out split, per model; the independent
unit is the seed (``collapse.seeds``): with fewer than 3 seeds the verdict is ``not resolved at
this scale``. See :func:`dlrepro.claims.replace_vs_accumulate`.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dlrepro.claims import COLLAPSE_PAPER, Claim, fmt_scale, replace_vs_accumulate

TABLES = ("collapse/summary.csv",)


def claims(results_dir: Path, config: dict) -> list[Claim]:
    table = pd.read_csv(Path(results_dir) / "collapse" / "summary.csv")
    models = sorted(table["model"].unique())
    out = []
    for model in models:
        rows = table[table["model"] == model]
        n_params = int(rows["n_params"].iloc[0]) if "n_params" in rows else None
        dataset = rows["dataset"].iloc[0] if "dataset" in rows else ""
        scale = fmt_scale(f"{model} ({n_params:,} parameters)" if n_params else model, dataset)
        out += replace_vs_accumulate(
            rows, "test_loss", stage="collapse", what="Language model", scale=scale,
            source=f"{COLLAPSE_PAPER}, Sec. 4 / Fig. 2 (language models)",
            claim_prefix=f"{model}." if len(models) > 1 else "")
    return out
