"""Claims of the VAE collapse stage, from ``results/vae/summary.csv``.

Replace rises / accumulate bounded (Gerstgrasser et al. 2024, the VAE experiment) in the
negative ELBO of real test images (nats/image); the independent unit is the seed
(``vae.seeds``). See :func:`dlrepro.claims.replace_vs_accumulate`.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dlrepro.claims import COLLAPSE_PAPER, Claim, fmt_scale, replace_vs_accumulate

TABLES = ("vae/summary.csv",)


def claims(results_dir: Path, config: dict) -> list[Claim]:
    table = pd.read_csv(Path(results_dir) / "vae" / "summary.csv")
    train = (config.get("vae") or {}).get("train") or {}
    n_train = int(table.loc[table["generation"] == 0, "n_train"].iloc[0]) if "n_train" in table else None
    scale = fmt_scale("MNIST", f"{n_train:,} real training images" if n_train else "",
                      f"latent {train['latent_dim']}" if "latent_dim" in train else "")
    return replace_vs_accumulate(table, "test_neg_elbo", stage="vae", what="VAE on MNIST", scale=scale,
                                 source=f"{COLLAPSE_PAPER}, Sec. 5 (VAE on images)")
