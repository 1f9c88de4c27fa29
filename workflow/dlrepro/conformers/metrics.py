"""Conformer-quality metrics as in GeoDiff (Xu et al. 2022) / ConfGF (Shi et al. 2021).

For one molecule with reference conformers ``C_r`` and generated conformers ``C_g``
(GeoDiff generates twice as many as there are references), ``RMSD(R, G)`` is the heavy-atom
RMSD after optimal rigid alignment over all symmetry-equivalent atom orders
(``rdkit.Chem.rdMolAlign.GetBestRMS``):

* ``COV-R(delta) = |{R in C_r : min_G RMSD(R, G) <= delta}| / |C_r|`` (recall coverage)
* ``MAT-R = mean_{R in C_r} min_G RMSD(R, G)`` (recall matching, Angstrom)
* ``COV-P(delta) = |{G in C_g : min_R RMSD(R, G) <= delta}| / |C_g|`` and
  ``MAT-P = mean_{G in C_g} min_R RMSD(R, G)``: the precision side (is every generated
  conformer close to some reference?)

All are computed per molecule and then averaged (mean and median) over molecules.

**Validity** of generated conformers (:func:`validity`), from their bond graph:

* ``bond_valid``: the fraction of bonds whose length lies in the real range of its bond
  type (element pair and bond order) widened by ``bond_tolerance`` on each side; the real
  ranges come from the real training conformers (:func:`bond_ranges`);
* ``bond_in_range``: the fraction of bonds between 1.0 and 2.0 Angstrom (every real
  heavy-atom bond of these sets lies there);
* ``mol_intact``: the fraction of conformers in which no atom is farther than
  ``max_bond_length`` from any of its bonded neighbours (no atom has drifted away).

:func:`evaluate` also measures the **fixed-noise test loss**: the diffusion loss of every
held-out conformer at fixed noise levels ``t/T`` with noise drawn from
``default_rng([noise_seed, conformer, level])``, so that the numbers of different
generations (models) are computed on exactly the same noisy inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dlrepro.conformers import require_positive_int
from dlrepro.errors import ParamsError

ACCELERATORS = ("auto", "cpu", "gpu")


@dataclass
class EvalParams:
    """``conformers.evaluate``: fixed-noise test loss and GeoDiff's COV-R / MAT-R."""

    noise_levels: list = field(default_factory=lambda: [0.1, 0.3, 0.5, 0.7, 0.9])  # t / T
    noise_seed: int = 1234  # the same noise for every generation
    rmsd_threshold: float = 1.25  # Angstrom (GeoDiff: 1.25 on Drugs, 0.5 on QM9)
    samples_per_reference: int = 2  # generated = 2 x references, as GeoDiff
    max_molecules: int | None = None  # COV/MAT on the first N test molecules (None = all)
    seed: int = 0  # sampling seed for COV/MAT
    bond_tolerance: float = 0.1  # Angstrom beyond the real range of a bond type (bond_valid)
    max_bond_length: float = 2.5  # Angstrom: a longer bond breaks the molecule (mol_intact)
    batch_size: int = 64
    accelerator: str = "auto"
    num_threads: int | None = None  # torch CPU threads (1 is fastest for small molecules)

    def __post_init__(self) -> None:
        if not self.noise_levels or not all(isinstance(v, (int, float)) and 0 < v <= 1
                                            for v in self.noise_levels):
            raise ParamsError(f"EvalParams.noise_levels must be fractions in (0, 1], got {self.noise_levels!r}")
        if not (isinstance(self.rmsd_threshold, (int, float)) and self.rmsd_threshold > 0):
            raise ParamsError(f"EvalParams.rmsd_threshold must be > 0, got {self.rmsd_threshold!r}")
        require_positive_int(self, "samples_per_reference", "batch_size")
        for name in ("bond_tolerance", "max_bond_length"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0):
                raise ParamsError(f"EvalParams.{name} must be > 0, got {value!r}")
        if self.max_molecules is not None:
            require_positive_int(self, "max_molecules")
        if self.accelerator not in ACCELERATORS:
            raise ParamsError(f"EvalParams.accelerator must be one of {ACCELERATORS}, got {self.accelerator!r}")


def device_for(accelerator: str) -> str:
    """``"cuda"`` or ``"cpu"`` for an ``accelerator`` setting (auto | cpu | gpu)."""
    import torch

    if accelerator == "gpu" and not torch.cuda.is_available():
        raise RuntimeError("accelerator is 'gpu' but no CUDA device is visible")
    return "cuda" if accelerator in ("gpu", "auto") and torch.cuda.is_available() else "cpu"


def rmsd_matrix(template, refs: np.ndarray, gens: np.ndarray, max_matches: int = 10000) -> np.ndarray:
    """Symmetry-aware best-alignment RMSD [len(refs), len(gens)] in Angstrom.

    The atom-order symmetries are enumerated once per molecule (at most ``max_matches``)
    and passed to ``GetBestRMS`` as its ``map``.
    """
    from rdkit.Chem import rdMolAlign

    from dlrepro.conformers.dataset import with_conformers

    ref_mol, gen_mol = with_conformers(template, refs), with_conformers(template, gens)
    matches = ref_mol.GetSubstructMatches(ref_mol, uniquify=False, useChirality=False, maxMatches=max_matches)
    atom_map = [list(enumerate(match)) for match in matches] or None
    out = np.empty((len(refs), len(gens)))
    for r in range(len(refs)):
        for g in range(len(gens)):
            out[r, g] = rdMolAlign.GetBestRMS(gen_mol, ref_mol, prbId=g, refId=r, map=atom_map)
    return out


def coverage_matching(rmsd: np.ndarray, threshold: float) -> tuple[float, float]:
    """``(COV-R, MAT-R)`` of one molecule from its ``[refs, gens]`` RMSD matrix."""
    if rmsd.ndim != 2 or 0 in rmsd.shape:
        raise ValueError(f"need a non-empty [refs, gens] RMSD matrix, got shape {rmsd.shape}")
    best = rmsd.min(axis=1)
    return float((best <= threshold).mean()), float(best.mean())


def coverage_matching_precision(rmsd: np.ndarray, threshold: float) -> tuple[float, float]:
    """``(COV-P, MAT-P)`` of one molecule from its ``[refs, gens]`` RMSD matrix."""
    return coverage_matching(np.asarray(rmsd).T, threshold)


def bond_keys(atoms: np.ndarray, bonds: np.ndarray) -> list[tuple[int, int, int]]:
    """Bond types ``(smaller atomic number, larger atomic number, bond code)`` of a molecule."""
    z = atoms[:, 0].astype(int)
    return [(min(z[i], z[j]), max(z[i], z[j]), int(c)) for i, j, c in bonds]


def bond_lengths(coords: np.ndarray, bonds: np.ndarray) -> np.ndarray:
    """Bond lengths [..., n_bonds] of coordinates [..., n_atoms, 3]."""
    coords = np.asarray(coords, dtype=np.float64)
    return np.linalg.norm(coords[..., bonds[:, 0], :] - coords[..., bonds[:, 1], :], axis=-1)


def bond_ranges(conformer_set) -> dict:
    """``{bond type: (shortest, longest)}`` over every conformer of a (real) set, plus a
    ``("code", c)`` entry per bond code for types the set has not seen."""
    seen: dict = {}
    for m in range(conformer_set.n_molecules):
        bonds = conformer_set.molecule_bonds(m)
        if not len(bonds):
            continue
        lengths = bond_lengths(conformer_set.molecule_coords(m), bonds)  # [K, n_bonds]
        for b, key in enumerate(bond_keys(conformer_set.molecule_atoms(m), bonds)):
            for k in (key, ("code", key[2])):
                lo, hi = seen.get(k, (np.inf, -np.inf))
                seen[k] = (min(lo, float(lengths[:, b].min())), max(hi, float(lengths[:, b].max())))
    return seen


def validity(atoms: np.ndarray, bonds: np.ndarray, coords: np.ndarray, ranges: dict,
             tolerance: float, max_bond_length: float) -> dict:
    """Validity counts of conformers [K, n_atoms, 3] of one molecule (module docstring):
    ``n_bonds``, ``bond_valid``, ``bond_in_range`` (counts over K x n_bonds) and
    ``n_conformers``, ``mol_intact`` (counts over K)."""
    coords = np.asarray(coords)
    k = len(coords)
    if not len(bonds):
        return {"n_bonds": 0, "bond_valid": 0, "bond_in_range": 0, "n_conformers": k, "mol_intact": k}
    lengths = bond_lengths(coords, bonds)  # [K, n_bonds]
    lo, hi = np.array([ranges.get(key, ranges.get(("code", key[2]), (1.0, 2.0)))
                       for key in bond_keys(atoms, bonds)]).T
    valid = (lengths >= lo - tolerance) & (lengths <= hi + tolerance)
    return {
        "n_bonds": int(lengths.size),
        "bond_valid": int(valid.sum()),
        "bond_in_range": int(((lengths >= 1.0) & (lengths <= 2.0)).sum()),
        "n_conformers": k,
        "mol_intact": int((lengths.max(axis=1) <= max_bond_length).sum()),
    }


def validity_fractions(counts: list[dict]) -> dict:
    """Pooled fractions ``bond_valid``, ``bond_in_range``, ``mol_intact`` of :func:`validity` counts."""
    total = {key: sum(c[key] for c in counts) for key in ("n_bonds", "bond_valid", "bond_in_range",
                                                          "n_conformers", "mol_intact")}
    nb, nc = max(1, total["n_bonds"]), max(1, total["n_conformers"])
    return {"bond_valid": total["bond_valid"] / nb, "bond_in_range": total["bond_in_range"] / nb,
            "mol_intact": total["mol_intact"] / nc}


def fixed_noise_loss(net, diffusion, test, levels: list[float], noise_seed: int,
                     batch_size: int = 64) -> dict[str, float]:
    """Mean denoising loss of the conformers of ``test`` at each noise level ``t/T``."""
    import torch

    from dlrepro.conformers.dataset import Batch, collate
    from dlrepro.conformers.egnn import remove_mean

    device = next(net.parameters()).device
    t_idx = [max(1, round(v * diffusion.steps)) - 1 for v in levels]
    sums = np.zeros(len(levels))
    for start in range(0, test.n_conformers, batch_size):
        confs = range(start, min(start + batch_size, test.n_conformers))
        graphs = [test.graph(test.molecule_of(c)) for c in confs]
        batch = Batch(*(t.to(device) for t in collate(graphs, [test.conformer_coords(c) for c in confs])))
        for li, ti in enumerate(t_idx):
            eps = np.zeros((len(confs), batch.mask.shape[1], 3), np.float32)
            for j, c in enumerate(confs):
                k = len(graphs[j].atoms)
                eps[j, :k] = np.random.default_rng([noise_seed, c, li]).standard_normal((k, 3))
            eps = remove_mean(torch.from_numpy(eps).to(device), batch.mask)
            t = torch.full((len(confs),), ti, dtype=torch.long, device=device)
            with torch.no_grad():
                sums[li] += float(diffusion.loss(net, batch, t, eps).sum())
    return {f"{v:g}": float(s / test.n_conformers) for v, s in zip(levels, sums)}


def generated_counts(test, params: EvalParams) -> np.ndarray:
    """Conformers to generate per evaluated test molecule: ``samples_per_reference`` x refs."""
    n_mols = test.n_molecules if params.max_molecules is None else min(params.max_molecules, test.n_molecules)
    return test.molecules["n_conformers"].to_numpy()[:n_mols] * params.samples_per_reference


def score(params: EvalParams, test, generated: list[np.ndarray], ranges: dict, log=None) -> dict:
    """COV/MAT (recall and precision) and validity of ``generated[m]`` [n_gen, n_atoms, 3],
    the conformers generated for test molecule ``m`` (the first ``len(generated)``)."""
    templates = test.templates()
    per_molecule, counts = [], []
    for m, gens in enumerate(generated):
        refs = test.molecule_coords(m)
        rmsd = rmsd_matrix(templates[m], refs, gens)
        cov, mat = coverage_matching(rmsd, params.rmsd_threshold)
        cov_p, mat_p = coverage_matching_precision(rmsd, params.rmsd_threshold)
        atoms, bonds = test.molecule_atoms(m), test.molecule_bonds(m)
        counts.append(validity(atoms, bonds, gens, ranges, params.bond_tolerance, params.max_bond_length))
        per_molecule.append({"mol_id": m, "smiles": str(test.molecules.smiles[m]), "n_refs": len(refs),
                             "n_generated": len(gens), "cov_r": cov, "mat_r": mat, "cov_p": cov_p,
                             "mat_p": mat_p, "n_bonds": counts[-1]["n_bonds"],
                             "n_bonds_valid": counts[-1]["bond_valid"],
                             "n_bonds_in_range": counts[-1]["bond_in_range"],
                             "n_intact": counts[-1]["mol_intact"]})
    col = lambda key: np.array([r[key] for r in per_molecule])  # noqa: E731
    out = {
        "cov_r": float(col("cov_r").mean()), "mat_r": float(col("mat_r").mean()),
        "cov_p": float(col("cov_p").mean()), "mat_p": float(col("mat_p").mean()),
        "cov_r_median": float(np.median(col("cov_r"))), "mat_r_median": float(np.median(col("mat_r"))),
        **validity_fractions(counts),
        "rmsd_threshold": params.rmsd_threshold,
        "n_eval_molecules": len(generated), "n_test_conformers": test.n_conformers,
        "per_molecule": per_molecule,
    }
    if log is not None:
        log.info("COV-R %.3f MAT-R %.3f A, COV-P %.3f MAT-P %.3f A (threshold %.2f A); bonds valid %.3f, "
                 "in 1-2 A %.3f; molecules intact %.3f", out["cov_r"], out["mat_r"], out["cov_p"],
                 out["mat_p"], params.rmsd_threshold, out["bond_valid"], out["bond_in_range"],
                 out["mol_intact"])
    return out


def evaluate(params: EvalParams, net, diffusion, test, ranges: dict, log) -> dict:
    """Fixed-noise test loss, COV/MAT and validity of one model on a held-out conformer set;
    ``ranges``: the real bond-length ranges (:func:`bond_ranges` of the real training set)."""
    from dlrepro.conformers.diffusion import generate

    net.eval()
    by_level = fixed_noise_loss(net, diffusion, test, [float(v) for v in params.noise_levels],
                                params.noise_seed, params.batch_size)
    test_loss = float(np.mean(list(by_level.values())))
    log.info("test loss %.4f (%s)", test_loss, " ".join(f"t/T={k}: {v:.4f}" for k, v in by_level.items()))

    counts = generated_counts(test, params)
    graphs = [test.graph(m) for m in range(len(counts)) for _ in range(counts[m])]
    log.info("sampling %d conformers for COV/MAT on %d molecules", len(graphs), len(counts))
    device = next(net.parameters()).device
    coords = generate(net, diffusion, graphs, params.seed, params.batch_size, device)
    starts = np.concatenate([[0], np.cumsum(counts)])
    generated = [np.stack(coords[starts[m]:starts[m + 1]]) for m in range(len(counts))]
    return {"test_loss": test_loss, "test_loss_by_level": by_level,
            **score(params, test, generated, ranges, log)}
