"""Conformer-quality metrics as in GeoDiff (Xu et al. 2022) / ConfGF (Shi et al. 2021).

For one molecule with reference conformers ``C_r`` and generated conformers ``C_g``
(GeoDiff generates twice as many as there are references), ``RMSD(R, G)`` is the heavy-atom
RMSD after optimal rigid alignment over all symmetry-equivalent atom orders
(``rdkit.Chem.rdMolAlign.GetBestRMS``):

* ``COV-R(delta) = |{R in C_r : min_G RMSD(R, G) <= delta}| / |C_r|`` (recall coverage)
* ``MAT-R = mean_{R in C_r} min_G RMSD(R, G)`` (recall matching, Angstrom)

Both are computed per molecule and then averaged (mean and median) over molecules.

:func:`evaluate` also measures the **fixed-noise test loss**: the diffusion loss of every
held-out conformer at fixed noise levels ``t/T`` with noise drawn from
``default_rng([noise_seed, conformer, level])``, so that the numbers of different
generations (models) are computed on exactly the same noisy inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dlrepro.conformers import require_positive_int

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
    batch_size: int = 64
    accelerator: str = "auto"
    num_threads: int | None = None  # torch CPU threads (1 is fastest for small molecules)

    def __post_init__(self) -> None:
        if not self.noise_levels or not all(isinstance(v, (int, float)) and 0 < v <= 1
                                            for v in self.noise_levels):
            raise ValueError(f"EvalParams.noise_levels must be fractions in (0, 1], got {self.noise_levels!r}")
        if not (isinstance(self.rmsd_threshold, (int, float)) and self.rmsd_threshold > 0):
            raise ValueError(f"EvalParams.rmsd_threshold must be > 0, got {self.rmsd_threshold!r}")
        require_positive_int(self, "samples_per_reference", "batch_size")
        if self.max_molecules is not None:
            require_positive_int(self, "max_molecules")
        if self.accelerator not in ACCELERATORS:
            raise ValueError(f"EvalParams.accelerator must be one of {ACCELERATORS}, got {self.accelerator!r}")


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


def evaluate(params: EvalParams, net, diffusion, test, log) -> dict:
    """Fixed-noise test loss and COV-R / MAT-R of one model on a held-out conformer set."""
    from dlrepro.conformers.diffusion import generate

    net.eval()
    by_level = fixed_noise_loss(net, diffusion, test, [float(v) for v in params.noise_levels],
                                params.noise_seed, params.batch_size)
    test_loss = float(np.mean(list(by_level.values())))
    log.info("test loss %.4f (%s)", test_loss, " ".join(f"t/T={k}: {v:.4f}" for k, v in by_level.items()))

    n_mols = test.n_molecules if params.max_molecules is None else min(params.max_molecules, test.n_molecules)
    counts = test.molecules["n_conformers"].to_numpy()[:n_mols] * params.samples_per_reference
    graphs = [test.graph(m) for m in range(n_mols) for _ in range(counts[m])]
    log.info("sampling %d conformers for COV/MAT on %d molecules", len(graphs), n_mols)
    device = next(net.parameters()).device
    coords = generate(net, diffusion, graphs, params.seed, params.batch_size, device)
    templates = test.templates()
    starts = np.concatenate([[0], np.cumsum(counts)])
    per_molecule = []
    for m in range(n_mols):
        refs = test.molecule_coords(m)
        rmsd = rmsd_matrix(templates[m], refs, np.stack(coords[starts[m]:starts[m + 1]]))
        cov, mat = coverage_matching(rmsd, params.rmsd_threshold)
        per_molecule.append({"mol_id": m, "smiles": str(test.molecules.smiles[m]), "n_refs": len(refs),
                             "cov_r": cov, "mat_r": mat})
    cov = np.array([r["cov_r"] for r in per_molecule])
    mat = np.array([r["mat_r"] for r in per_molecule])
    log.info("COV-R %.3f MAT-R %.3f A (threshold %.2f A)", cov.mean(), mat.mean(), params.rmsd_threshold)
    return {
        "test_loss": test_loss,
        "test_loss_by_level": by_level,
        "cov_r": float(cov.mean()), "mat_r": float(mat.mean()),
        "cov_r_median": float(np.median(cov)), "mat_r_median": float(np.median(mat)),
        "rmsd_threshold": params.rmsd_threshold,
        "n_eval_molecules": n_mols, "n_test_conformers": test.n_conformers,
        "per_molecule": per_molecule,
    }
