"""Figures of the conformer collapse stage, in the study's style (``dlrepro.style``).

* :func:`plot_summary`: one panel per metric of ``summary.csv`` against generation, one
  line per policy (mean over seeds, a band for min..max when there are several seeds).
  Generation 0 rows have policy ``real`` (the model trained on real data only) and start
  every policy's line.
* :func:`draw_conformers`: a grid of conformers, one row per conformer set (real or
  synthetic of a policy/generation), one column per molecule: the first conformer of each
  molecule projected on its two principal axes, bonds as lines, atoms coloured by element.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from dlrepro import style

LABELS = {
    "test_loss": "fixed-noise test loss",
    "cov_r": "COV-R",
    "mat_r": "MAT-R (Å)",
}
# CPK-like element colours (atomic number -> colour); others grey
ELEMENT_COLORS = {6: "#404040", 7: "#3050F8", 8: "#FF0D0D", 9: "#90E050", 15: "#FF8000",
                  16: "#C8A000", 17: "#1FF01F", 35: "#A62929", 53: "#940094"}


def plot_summary(df: pd.DataFrame, out: str | os.PathLike, metrics: list[str]) -> None:
    missing = [c for c in ["policy", "generation", *metrics] if c not in df.columns]
    if missing:
        raise ValueError(f"summary table lacks columns {missing}; has {list(df.columns)}")
    base = df[df.policy == "real"]
    policies = sorted(p for p in df.policy.unique() if p != "real")
    fig, axes = style.subplots(len(metrics))
    for ax, metric in zip(axes, metrics):
        for policy in policies or ["real"]:
            rows = pd.concat([base, df[df.policy == policy]]) if policy != "real" else base
            stats = rows.groupby("generation")[metric].agg(["mean", "min", "max"]).sort_index()
            ax.plot(stats.index, stats["mean"], marker="o", color=style.color(policy), label=policy)
            if rows.groupby("generation").size().max() > 1:
                ax.fill_between(stats.index, stats["min"], stats["max"], color=style.color(policy), alpha=0.2)
        ax.set_xlabel("generation")
        ax.set_ylabel(LABELS.get(metric, metric))
        ax.xaxis.get_major_locator().set_params(integer=True)
    axes[0].legend()
    style.save_figure(fig, out)


def _projection(xyz: np.ndarray) -> np.ndarray:
    """Coordinates in the frame of their principal axes (largest spread first)."""
    centred = xyz - xyz.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt.T


def draw_conformers(sets: list, out: str | os.PathLike, n_molecules: int = 4) -> None:
    """Grid of conformer drawings: rows = ``sets`` (``ConformerSet``), columns = molecules."""
    if n_molecules < 1:
        raise ValueError(f"n_molecules must be >= 1, got {n_molecules}")
    n_cols = min(n_molecules, min(s.n_molecules for s in sets))
    fig, axes = style.subplots(len(sets) * n_cols, ncols=n_cols)
    axes = list(axes)
    for r, s in enumerate(sets):
        label = s.manifest.get("label") or s.manifest.get("split") or s.path.name
        for c in range(n_cols):
            ax = axes[r * n_cols + c]
            xyz = _projection(s.molecule_coords(c)[0].astype(np.float64))
            for i, j, code in s.molecule_bonds(c):
                ax.plot(xyz[[i, j], 0], xyz[[i, j], 1], color="#888888", lw=1.0 + 0.6 * (code in (2, 3)), zorder=1)
            colors = [ELEMENT_COLORS.get(int(z), "#999999") for z in s.molecule_atoms(c)[:, 0]]
            depth = (xyz[:, 2] - xyz[:, 2].min()) / max(1e-9, np.ptp(xyz[:, 2]))
            ax.scatter(xyz[:, 0], xyz[:, 1], c=colors, s=18 + 30 * depth, zorder=2, edgecolors="white", linewidths=0.5)
            ax.set_aspect("equal", adjustable="datalim")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            if c == 0:
                ax.set_ylabel(label)
            if r == 0:
                ax.set_title(str(s.molecules.smiles[c]), fontsize="x-small")
    style.save_figure(fig, out)
