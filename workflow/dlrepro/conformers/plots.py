"""Figures of the conformer collapse stage, in the study's style (``dlrepro.style``).

* :func:`plot_summary`: one panel per metric of ``summary.csv`` against generation, one
  line per policy (mean over seeds, a band for min..max when there are several seeds).
  Generation 0 rows have policy ``real`` (the model trained on real data only) and start
  every policy's line; the RDKit baseline (policy ``rdkit-etkdg``) is a dashed horizontal
  line where it has a value.
* :func:`draw_conformers`: a grid of conformers, one row per conformer set (the real set
  first, then synthetic sets of a policy/generation), one column per molecule. Every
  conformer is rigidly aligned to the first conformer of the same molecule in the first
  set (the real reference; RDKit's symmetry-aware ``GetBestRMS``, whose RMSD is printed in
  the panel), then all are projected on the reference's two principal axes, so that a
  column shows one molecule in one orientation and at one scale; bonds as lines, atoms
  coloured by element. A set listed twice is drawn once; rows are labelled by the model
  that sampled them (synthetic set g comes from generation g - 1).
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from dlrepro import style
from dlrepro.errors import InputFileError

LABELS = {
    "test_loss": "fixed-noise test loss",
    "cov_r": "COV-R",
    "mat_r": "MAT-R (Å)",
    "cov_p": "COV-P",
    "mat_p": "MAT-P (Å)",
    "bond_valid": "bonds valid",
    "bond_in_range": "bonds in 1-2 Å",
    "mol_intact": "molecules intact",
}
BASELINE_POLICY = "rdkit-etkdg"
# CPK-like element colours (atomic number -> colour); others grey
ELEMENT_COLORS = {6: "#404040", 7: "#3050F8", 8: "#FF0D0D", 9: "#90E050", 15: "#FF8000",
                  16: "#C8A000", 17: "#1FF01F", 35: "#A62929", 53: "#940094"}


def plot_summary(df: pd.DataFrame, out: str | os.PathLike, metrics: list[str]) -> None:
    """Each policy has its own colour, marker and line style and is shifted by a few
    hundredths of a generation, so that two policies with equal values (generation 1 of
    every policy is trained on the same first synthetic set) are both visible; one legend
    for the figure, below the panels."""
    missing = [c for c in ["policy", "generation", *metrics] if c not in df.columns]
    if missing:
        raise InputFileError(f"summary table lacks columns {missing}; has {list(df.columns)}")
    base = df[df.policy == "real"]
    baseline = df[df.policy == BASELINE_POLICY]
    policies = sorted(p for p in df.policy.unique() if p not in ("real", BASELINE_POLICY)) or ["real"]
    fig, axes = style.subplots(len(metrics), ncols=min(len(metrics), 5))
    fig.set_layout_engine("constrained")
    shift = {p: 0.04 * (i - (len(policies) - 1) / 2) for i, p in enumerate(policies)}
    for ax, metric in zip(axes, metrics):
        if len(baseline) and baseline[metric].notna().any():
            ax.axhline(float(baseline[metric].mean()), color="#555555", ls="--", lw=1.2, label="RDKit ETKDGv3")
        for i, policy in enumerate(policies):
            rows = pd.concat([base, df[df.policy == policy]]) if policy != "real" else base
            stats = rows.groupby("generation")[metric].agg(["mean", "min", "max"]).sort_index()
            x = stats.index.to_numpy(float) + shift[policy]
            ax.plot(x, stats["mean"], marker=style.marker(policy), markersize=7 - 1.5 * i,
                    linestyle=style.linestyle(policy), color=style.color(policy), label=policy)
            if rows.groupby("generation").size().max() > 1:
                ax.fill_between(x, stats["min"], stats["max"], color=style.color(policy), alpha=0.2)
        ax.set_xlabel("generation")
        ax.set_ylabel(LABELS.get(metric, metric))
        ax.xaxis.get_major_locator().set_params(integer=True)
    handles = {}
    for ax in axes:  # one legend with every line (the baseline has no test loss)
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    fig.legend(handles.values(), handles.keys(), loc="outside lower center", ncol=len(handles),
               fontsize="small", frameon=False)
    style.save_figure(fig, out)


def _aligned(template, ref: np.ndarray, xyz: np.ndarray) -> tuple[np.ndarray, float]:
    """``xyz`` moved onto ``ref`` by the best symmetry-aware rigid alignment, and the RMSD."""
    from rdkit.Chem import rdMolAlign

    from dlrepro.conformers.dataset import with_conformers

    ref_mol = with_conformers(template, ref[None])
    prb = with_conformers(template, xyz[None])
    rmsd = rdMolAlign.GetBestRMS(prb, ref_mol)  # moves prb's conformer onto the reference
    return prb.GetConformer().GetPositions(), float(rmsd)


def _row_label(s) -> str:
    """``<policy>: gen <g-1> model`` for synthetic set g (set 1 is every policy's)."""
    g = s.manifest.get("generation")
    if g is None:
        return s.manifest.get("label") or s.manifest.get("split") or s.path.name
    policy = s.manifest.get("policy")
    return f"gen {int(g) - 1} model" + (f" ({policy})" if policy and int(g) > 1 else "")


def draw_conformers(sets: list, out: str | os.PathLike, n_molecules: int = 4) -> None:
    """Grid of conformer drawings: rows = ``sets`` (``ConformerSet``, the reference set
    first), columns = molecules; every conformer aligned to the first set's."""
    if n_molecules < 1:
        raise ValueError(f"n_molecules must be >= 1, got {n_molecules}")
    n_cols = min(n_molecules, min(s.n_molecules for s in sets))
    unique = {}
    for s in sets:  # a set listed twice (synthetic 1 is every policy's) is drawn once
        unique.setdefault(s.path.resolve(), s)
    sets = list(unique.values())
    if any(list(s.molecules.smiles[:n_cols]) != list(sets[0].molecules.smiles[:n_cols]) for s in sets):
        raise ValueError("conformer sets to draw must hold the same molecules in the same order")
    templates = sets[0].templates()
    refs = [sets[0].molecule_coords(c)[0].astype(np.float64) for c in range(n_cols)]
    frames = []
    for ref in refs:  # the reference's principal axes, one frame per molecule
        _, _, vt = np.linalg.svd(ref - ref.mean(0), full_matrices=False)
        frames.append((ref.mean(0), vt.T))
    fig, axes = style.subplots(len(sets) * n_cols, ncols=n_cols)
    axes = list(axes)
    extent = np.zeros(n_cols)  # one scale per column: a scattered sample looks scattered
    for r, s in enumerate(sets):
        label = _row_label(s) if r > 0 else "real (reference)"
        for c in range(n_cols):
            ax = axes[r * n_cols + c]
            xyz = s.molecule_coords(c)[0].astype(np.float64)
            if r > 0:
                xyz, rmsd = _aligned(templates[c], refs[c], xyz)
                ax.text(0.02, 0.02, f"RMSD {rmsd:.2f} Å", transform=ax.transAxes, fontsize="xx-small",
                        va="bottom", ha="left")
            centre, axes_c = frames[c]
            xyz = (xyz - centre) @ axes_c
            for i, j, code in s.molecule_bonds(c):
                ax.plot(xyz[[i, j], 0], xyz[[i, j], 1], color="#888888", lw=1.0 + 0.6 * (code in (2, 3)), zorder=1)
            colors = [ELEMENT_COLORS.get(int(z), "#999999") for z in s.molecule_atoms(c)[:, 0]]
            depth = (xyz[:, 2] - xyz[:, 2].min()) / max(1e-9, np.ptp(xyz[:, 2]))
            ax.scatter(xyz[:, 0], xyz[:, 1], c=colors, s=18 + 30 * depth, zorder=2, edgecolors="white", linewidths=0.5)
            extent[c] = max(extent[c], float(np.abs(xyz[:, :2]).max()) + 0.8)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            if c == 0:
                ax.set_ylabel(label)
            if r == 0:
                ax.set_title(str(s.molecules.smiles[c]), fontsize="x-small")
    for k, ax in enumerate(axes):
        c = k % n_cols
        ax.set_xlim(-extent[c], extent[c])
        ax.set_ylim(-extent[c], extent[c])
        ax.set_aspect("equal", adjustable="box")
    style.save_figure(fig, out)
