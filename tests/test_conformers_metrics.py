"""Conformer metrics and the RDKit baseline against hand computations; the model learns."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlrepro.conformers import dataset as ds
from dlrepro.conformers.baseline import etkdg_conformers
from dlrepro.conformers.metrics import (
    EvalParams,
    bond_lengths,
    bond_ranges,
    coverage_matching_precision,
    rmsd_matrix,
    score,
    validity,
    validity_fractions,
)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def kabsch_rmsd(a: np.ndarray, b: np.ndarray) -> float:
    """RMSD of ``b`` onto ``a`` after the best proper rotation and translation (by hand)."""
    a, b = a - a.mean(0), b - b.mean(0)
    u, _, vt = np.linalg.svd(b.T @ a)
    d = np.sign(np.linalg.det(u @ vt))
    rot = u @ np.diag([1.0, 1.0, d]) @ vt
    return float(np.sqrt(((b @ rot - a) ** 2).sum(1).mean()))


def write_set(path, smiles: str, coords: np.ndarray):
    mol = ds.embed_conformers(smiles, 1, seed=0, mmff_max_iters=50)
    ds.write_set(path, [ds.Molecule(smiles, mol.mol, coords.astype(np.float32))], {"split": "test"})
    return ds.ConformerSet(path)


def test_metrics_match_a_hand_computed_rmsd_on_two_conformers(tmp_path):
    # 2-aminobutan-1-ol's heavy atoms have no symmetry: the RMSD is plain Kabsch
    smiles = "CCC(N)CO"
    refs = ds.embed_conformers(smiles, 2, seed=1, mmff_max_iters=50).coords.astype(np.float64)
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    q *= np.sign(np.linalg.det(q))
    gens = np.stack([refs[0] @ q + 3.0 + rng.normal(0, 0.1, refs[0].shape),  # near ref 0
                     refs[1] + rng.normal(0, 1.2, refs[1].shape)])  # far from both
    hand = np.array([[kabsch_rmsd(r, g) for g in gens] for r in refs])
    test = write_set(tmp_path / "test", smiles, refs)
    np.testing.assert_allclose(rmsd_matrix(test.templates()[0], refs, gens), hand, atol=1e-4)

    params = EvalParams(rmsd_threshold=0.5)
    out = score(params, test, [gens], bond_ranges(test))
    best_r, best_p = hand.min(1), hand.min(0)
    assert out["mat_r"] == pytest.approx(best_r.mean(), abs=1e-4)
    assert out["cov_r"] == pytest.approx((best_r <= 0.5).mean())
    assert out["mat_p"] == pytest.approx(best_p.mean(), abs=1e-4)
    assert out["cov_p"] == pytest.approx((best_p <= 0.5).mean())
    assert 0 < out["cov_r"] < 1  # the example exercises both sides of the threshold
    assert coverage_matching_precision(hand, 0.5) == pytest.approx(((best_p <= 0.5).mean(), best_p.mean()))

    # the RDKit baseline: its conformers in the template's atom order, scored by the same code
    base, failed = etkdg_conformers(test.templates()[0], 4, seed=0, smiles=smiles)
    assert base.shape == (4, 6, 3) and failed == 0 and np.isfinite(base).all()
    again, _ = etkdg_conformers(test.templates()[0], 4, seed=0, smiles=smiles)
    np.testing.assert_array_equal(base, again)  # seeded
    by_hand = np.array([[kabsch_rmsd(r, g) for g in base.astype(np.float64)] for r in refs])
    out = score(params, test, [base], bond_ranges(test))
    assert out["mat_r"] == pytest.approx(by_hand.min(1).mean(), abs=1e-4)
    assert out["bond_valid"] == 1.0 and out["bond_in_range"] == 1.0 and out["mol_intact"] == 1.0


def test_validity_counts_bonds_by_type_and_broken_molecules():
    atoms = np.array([[6, 0, 0, 3], [6, 0, 0, 2], [8, 0, 0, 1]], np.int16)  # C-C-O
    bonds = np.array([[0, 1, 1], [1, 2, 1]], np.int32)
    good = np.array([[0.0, 0, 0], [1.52, 0, 0], [1.52, 1.43, 0]])
    ranges = {(6, 6, 1): (1.50, 1.54), (6, 8, 1): (1.41, 1.45)}
    stretched = good.copy()
    stretched[2, 1] = 1.43 + 0.3  # C-O 1.73 A: outside C-O's range + 0.1, inside 1-2 A
    broken = good.copy()
    broken[2, 1] = 4.0  # the O atom drifted away
    counts = validity(atoms, bonds, np.stack([good, stretched, broken]), ranges, 0.1, 2.5)
    assert counts == {"n_bonds": 6, "bond_valid": 4, "bond_in_range": 5, "n_conformers": 3, "mol_intact": 2}
    assert validity_fractions([counts]) == pytest.approx({"bond_valid": 4 / 6, "bond_in_range": 5 / 6,
                                                          "mol_intact": 2 / 3})
    np.testing.assert_allclose(bond_lengths(good, bonds), [1.52, 1.43])


def test_model_learns_benzene_bond_lengths_in_a_few_hundred_steps(tmp_path):
    """A rigid molecule: 300 steps of the stage's loss and sampler give C-C bonds of 1.39 A."""
    from dlrepro.conformers.diffusion import Diffusion, DiffusionConfig, generate
    from dlrepro.conformers.egnn import EGNN, EGNNConfig

    mol = ds.embed_conformers("c1ccccc1", 4, seed=0, mmff_max_iters=200)
    real = write_set(tmp_path / "benzene", "c1ccccc1", mol.coords)
    pool = ds.ConformerPool.whole(real)
    torch.manual_seed(0)
    net = EGNN(EGNNConfig(hidden=32, layers=3))
    diffusion = Diffusion(DiffusionConfig(steps=50, schedule="cosine", coord_scale=1.4))
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    rng = np.random.default_rng(0)
    for _ in range(300):
        loss = diffusion.loss(net, pool.collate(rng.integers(0, len(pool), 16))).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    samples = np.stack(generate(net, diffusion, [real.graph(0)] * 16, seed=0, batch_size=16))
    assert np.isfinite(samples).all()
    np.testing.assert_allclose(samples.mean(1), 0, atol=1e-4)  # centred
    lengths = bond_lengths(samples, real.molecule_bonds(0))
    real_length = float(bond_lengths(mol.coords, real.molecule_bonds(0)).mean())
    assert real_length == pytest.approx(1.39, abs=0.01)
    assert np.abs(lengths - real_length).mean() < 0.1  # every bond, on average, within 0.1 A
    assert abs(np.median(lengths) - real_length) < 0.05
    assert ((lengths > 1.0) & (lengths < 2.0)).all()
