"""Conformer diffusion: data set, equivariant network, diffusion, metrics, GEOM loader."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pandas as pd
import pytest
import torch

from dlrepro.conformers import dataset as ds
from dlrepro.conformers.dataset import (
    ConformerPool,
    ConformerSet,
    GeomParams,
    PrepareParams,
    collate,
    load_geom,
    prepare_real,
)
from dlrepro.conformers.diffusion import Diffusion, DiffusionConfig, betas_for, generate
from dlrepro.conformers.egnn import EGNN, RBF_CENTRES, RBF_MAX, RBF_MIN_EXPONENT, EGNNConfig, rbf, remove_mean
from dlrepro.conformers.metrics import coverage_matching, fixed_noise_loss, rmsd_matrix

SMILES = [
    "CCO", "CC(=O)Nc1ccccc1", "OC(=O)c1ccccc1", "CCN(CC)CC", "CC1CCCCC1N", "c1ccc2[nH]ccc2c1",
    "COc1ccc(Cl)cc1", "CC(C)Cc1ccc(O)cc1", "O=C1CCCN1C", "NC(=O)c1cccnc1",
    "not a smiles",  # parse failure
    "C[Si](C)(C)C",  # element outside the vocabulary
    "CCCCCCCCCCCCCCCCCCCCCCCC",  # too many heavy atoms
]
PARAMS = PrepareParams(seed=3, n_train_molecules=5, n_test_molecules=3, conformers_per_molecule=2,
                       min_heavy_atoms=3, max_heavy_atoms=14, mmff_max_iters=50)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors: one thread is faster, and fair to other tests on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def smiles_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("smiles") / "test.csv"
    pd.DataFrame({"SMILES": SMILES, "SPLIT": "test"}).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def real_dir(tmp_path_factory, smiles_csv):
    out = tmp_path_factory.mktemp("real")
    prepare_real(PARAMS, smiles_csv, out)
    return out


def random_rotation(seed: int, reflect: bool = False) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    if torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    if reflect:
        q = q @ torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64))
    return q.float()


def small_batch(real_dir, n=4):
    train = ConformerSet(real_dir / "train")
    return ConformerPool.whole(train).collate(np.arange(n))


# ----------------------------------------------------------------------------- data set


def test_prepare_is_deterministic_split_by_molecule_and_counts_skips(real_dir, smiles_csv, tmp_path):
    again = tmp_path / "again"
    manifest = prepare_real(PARAMS, smiles_csv, again)
    for split in ("train", "test"):
        for name in ("coords.npy", "atoms.npy", "bonds.npy", "conformers.npy", "molecules.csv"):
            assert (real_dir / split / name).read_bytes() == (again / split / name).read_bytes(), name
    train, test = ConformerSet(real_dir / "train"), ConformerSet(real_dir / "test")
    assert (train.n_molecules, test.n_molecules) == (5, 3)
    assert (train.n_conformers, test.n_conformers) == (10, 6)
    assert not set(train.molecules.smiles) & set(test.molecules.smiles)  # split by molecule
    skipped = manifest["skipped"]
    assert skipped.get("parse") == 1 and skipped.get("element") == 1 and skipped.get("size", 0) >= 1
    assert train.manifest["rdkit_version"] and set(train.manifest["sha256"]) == set(ds.SET_FILES)
    # a different seed gives different conformers of the same molecule
    other = ds.embed_conformers("CC(C)Cc1ccc(O)cc1", 2, seed=4, mmff_max_iters=50)
    same = ds.embed_conformers("CC(C)Cc1ccc(O)cc1", 2, seed=3, mmff_max_iters=50)
    if "CC(C)Cc1ccc(O)cc1" in set(train.molecules.smiles):
        m = int(np.flatnonzero(train.molecules.smiles == "CC(C)Cc1ccc(O)cc1")[0])
        np.testing.assert_array_equal(train.molecule_coords(m), same.coords)
    assert not np.allclose(other.coords, same.coords)


def test_smiles_size_prefilter_counts_heavy_atoms_like_rdkit():
    from rdkit import Chem

    for smiles in SMILES[:10] + ["[H]C([2H])Cl", "[Hg]CC", "C[C@@H](N)C(=O)O", "[NH4+]", "[H][H]",
                                 "O=[N+]([O-])c1ccc(Br)cc1", "Clc1ccccc1I", "CC(=O)[O-].[Na+]"]:
        assert ds.smiles_heavy_atoms(smiles) == Chem.MolFromSmiles(smiles).GetNumHeavyAtoms(), smiles


def test_stored_set_round_trips_graph_and_coordinates(real_dir):
    train = ConformerSet(real_dir / "train")
    templates = train.templates()
    for m, mol in enumerate(templates):
        atoms = train.molecule_atoms(m)
        assert [a.GetAtomicNum() for a in mol.GetAtoms()] == atoms[:, 0].tolist()
        assert len(train.molecule_bonds(m)) == mol.GetNumBonds()
        coords = train.molecule_coords(m)
        assert coords.shape == (2, mol.GetNumAtoms(), 3) and np.isfinite(coords).all()
        np.testing.assert_allclose(mol.GetConformer().GetPositions(), coords[0], atol=1e-4)
        # MMFF geometry: bonded heavy atoms 1.1-1.9 A apart
        i, j = train.molecule_bonds(m)[:, 0], train.molecule_bonds(m)[:, 1]
        lengths = np.linalg.norm(coords[:, i] - coords[:, j], axis=-1)
        assert lengths.min() > 1.1 and lengths.max() < 1.9


def test_unembeddable_molecule_is_skipped_not_fatal(smiles_csv, tmp_path, monkeypatch):
    from rdkit.Chem import AllChem

    real_embed = AllChem.EmbedMultipleConfs

    def flaky(mol, numConfs, params):  # noqa: N803 - RDKit's keyword names
        return [] if mol.GetNumHeavyAtoms() == 9 else real_embed(mol, numConfs=numConfs, params=params)

    monkeypatch.setattr(AllChem, "EmbedMultipleConfs", flaky)
    params = PrepareParams(**{**vars(PARAMS), "n_train_molecules": 3, "n_test_molecules": 1})
    manifest = prepare_real(params, smiles_csv, tmp_path)
    assert manifest["skipped"]["embed"] >= 1
    for split in ("train", "test"):
        assert all(ConformerSet(tmp_path / split).molecules.n_atoms != 9)


def test_bad_params_fail_early_with_the_name():
    with pytest.raises(ValueError, match="conformers_per_molecule"):
        PrepareParams(conformers_per_molecule=0)
    with pytest.raises(ValueError, match="min_heavy_atoms"):
        PrepareParams(min_heavy_atoms=30, max_heavy_atoms=20)
    with pytest.raises(ValueError, match="schedule"):
        DiffusionConfig(schedule="sqrt")
    with pytest.raises(ValueError, match="hidden"):
        EGNNConfig(hidden=0)


def test_not_enough_molecules_is_a_clear_error(smiles_csv, tmp_path):
    params = PrepareParams(**{**vars(PARAMS), "n_train_molecules": 50})
    with pytest.raises(ValueError, match="only .* passed the filters"):
        prepare_real(params, smiles_csv, tmp_path)


# ----------------------------------------------------------------------------- network


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    model = EGNN(EGNNConfig(hidden=32, layers=3))
    # make the coordinate branch large enough that a broken equivariance would show
    for layer in model.layers:
        torch.nn.init.normal_(layer.coord_mlp[-1].weight, std=0.3)
    return model.eval()


def test_network_is_e3_equivariant_and_translation_invariant(net, real_dir):
    batch = small_batch(real_dir)
    x = remove_mean(batch.coords, batch.mask)
    t = torch.tensor([0.1, 0.4, 0.7, 1.0])
    out = net(x, t, batch.atoms, batch.pairs, batch.mask)
    assert out.abs().max() > 1e-2  # not trivially zero
    for reflect in (False, True):
        rot = random_rotation(1, reflect)
        shift = torch.tensor([3.0, -1.0, 2.0])
        moved = (x @ rot + shift) * batch.mask.unsqueeze(-1)
        out_moved = net(moved, t, batch.atoms, batch.pairs, batch.mask)
        torch.testing.assert_close(out_moved, out @ rot, atol=2e-5, rtol=1e-4)


def test_radial_basis_clamp_changes_only_numbers_below_float32s_normal_range():
    # exp underflows (a slow path of the CPU exp) below about -87.3; the clamp stops at -80
    assert -87.0 < RBF_MIN_EXPONENT <= -60.0
    dist = torch.linspace(0.0, 3 * RBF_MAX, 500).reshape(-1, 1).requires_grad_(True)
    features = rbf(dist)
    centres = torch.linspace(0.0, RBF_MAX, RBF_CENTRES)
    exponent = -(((dist.detach() - centres) / (RBF_MAX / (RBF_CENTRES - 1))) ** 2)
    assert features.shape == (500, RBF_CENTRES + 1)
    gaussians = features[:, :RBF_CENTRES].detach()
    inside = exponent >= RBF_MIN_EXPONENT
    assert torch.equal(gaussians[inside], torch.exp(exponent[inside]))  # bit for bit where not clamped
    assert gaussians[~inside].max().item() < 1e-34  # elsewhere exp(-80) = 1.8e-35, not 0 or a denormal ...
    assert (~inside).float().mean() > 0.5  # ... and that is where most distance-centre pairs lie
    assert torch.allclose(features[:, RBF_CENTRES], torch.log1p(dist[:, 0]))
    features[:, :RBF_CENTRES].sum().backward()
    assert torch.isfinite(dist.grad).all()


def test_network_is_permutation_equivariant_and_ignores_padding(net, real_dir):
    batch = small_batch(real_dir)
    t = torch.full((4,), 0.5)
    out = net(batch.coords, t, batch.atoms, batch.pairs, batch.mask)
    i = int(batch.mask.sum(1).argmin())  # the smallest molecule is padded
    n = int(batch.mask[i].sum())
    assert n < batch.mask.shape[1]
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    single = lambda a: a[i : i + 1, :n]  # noqa: E731 - the molecule alone, unpadded
    pairs = batch.pairs[i : i + 1, :n, :n]
    out_alone = net(single(batch.coords), t[:1], single(batch.atoms), pairs, single(batch.mask))
    torch.testing.assert_close(out_alone[0], out[i, :n], atol=1e-5, rtol=1e-4)
    assert (out[i, n:] == 0).all()
    out_perm = net(single(batch.coords)[:, perm], t[:1], single(batch.atoms)[:, perm],
                   pairs[:, perm][:, :, perm], single(batch.mask))
    torch.testing.assert_close(out_perm[0], out_alone[0][perm], atol=1e-5, rtol=1e-4)


# ----------------------------------------------------------------------------- diffusion


def test_noise_and_noisy_coordinates_stay_centred(real_dir):
    batch = small_batch(real_dir)
    diffusion = Diffusion(DiffusionConfig(steps=20))
    eps = diffusion.noise(batch.mask, torch.Generator().manual_seed(0))
    x0 = diffusion.to_model(batch.coords, batch.mask)
    x_t = diffusion.q_sample(x0, torch.tensor([0, 5, 10, 19]), eps)
    for a in (eps, x0, x_t):
        torch.testing.assert_close(a.sum(1), torch.zeros(4, 3), atol=1e-5, rtol=0)
        assert (a[batch.mask == 0] == 0).all()
    for schedule in ("linear", "cosine"):
        betas = betas_for(DiffusionConfig(steps=50, schedule=schedule))
        alpha_bar = np.cumprod(1 - betas)
        assert np.all(np.diff(alpha_bar) < 0) and alpha_bar[-1] < 2e-3 and betas.max() <= 0.5


def test_loss_on_a_tiny_batch_decreases(real_dir):
    torch.manual_seed(0)
    batch = small_batch(real_dir)
    diffusion = Diffusion(DiffusionConfig(steps=20))
    model = EGNN(EGNNConfig(hidden=32, layers=2))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    t = torch.tensor([2, 6, 10, 14])
    eps = diffusion.noise(batch.mask, torch.Generator().manual_seed(1))
    losses = []
    for _ in range(60):
        loss = diffusion.loss(model, batch, t, eps).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_sampling_is_finite_centred_shaped_and_seeded(real_dir):
    torch.manual_seed(0)
    net = EGNN(EGNNConfig(hidden=16, layers=2)).eval()
    train = ConformerSet(real_dir / "train")
    graphs = [train.graph(m) for m in range(train.n_molecules)]
    diffusion = Diffusion(DiffusionConfig(steps=10, coord_scale=2.0))
    a = generate(net, diffusion, graphs, seed=5, batch_size=3)
    b = generate(net, diffusion, graphs, seed=5, batch_size=3)
    c = generate(net, diffusion, graphs, seed=6, batch_size=3)
    for g, x in zip(graphs, a):
        assert x.shape == (len(g.atoms), 3) and np.isfinite(x).all()
        np.testing.assert_allclose(x.mean(0), 0, atol=1e-4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.allclose(a[0], c[0])


def test_fixed_noise_test_loss_is_reproducible_and_batch_independent(net, real_dir):
    test = ConformerSet(real_dir / "test")
    diffusion = Diffusion(DiffusionConfig(steps=20))
    a = fixed_noise_loss(net, diffusion, test, [0.2, 0.8], noise_seed=7, batch_size=2)
    b = fixed_noise_loss(net, diffusion, test, [0.2, 0.8], noise_seed=7, batch_size=5)
    c = fixed_noise_loss(net, diffusion, test, [0.2, 0.8], noise_seed=8, batch_size=5)
    assert list(a) == ["0.2", "0.8"]
    assert a == pytest.approx(b, rel=1e-5)
    assert a != pytest.approx(c, rel=1e-6)


# ----------------------------------------------------------------------------- metrics


def test_rmsd_is_alignment_and_symmetry_aware():
    mol = ds.embed_conformers("CC(C)(C)c1ccccc1", 2, seed=0, mmff_max_iters=50)
    ref = mol.coords[:1].astype(np.float64)
    rot = random_rotation(3).double().numpy()
    moved = ref[0] @ rot + np.array([5.0, -2.0, 1.0])
    swapped = ref[0].copy()
    swapped[[0, 2]] = swapped[[2, 0]]  # two equivalent methyls of the tert-butyl group
    gens = np.stack([moved, swapped, mol.coords[1]])
    rmsd = rmsd_matrix(mol.mol, ref, gens)
    assert rmsd.shape == (1, 3)
    assert rmsd[0, 0] < 1e-3 and rmsd[0, 1] < 1e-3
    assert rmsd[0, 2] >= 0
    cov, mat = coverage_matching(np.array([[0.3, 2.0], [1.5, 1.4], [0.9, 3.0]]), threshold=1.0)
    assert cov == pytest.approx(2 / 3) and mat == pytest.approx((0.3 + 1.4 + 0.9) / 3)


# ----------------------------------------------------------------------------- GEOM


def write_geom_fixture(root, smiles_weights):
    """A miniature of GEOM's rdkit_folder: summary_drugs.json + drugs/<name>.pickle."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    (root / "drugs").mkdir(parents=True)
    summary = {}
    for k, (smiles, weights) in enumerate(smiles_weights.items()):
        mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
        ids = AllChem.EmbedMultipleConfs(mol, len(weights), randomSeed=k)
        confs = []
        for cid, w in zip(ids, weights):
            one = Chem.Mol(mol, confId=cid)
            confs.append({"rd_mol": one, "boltzmannweight": w, "totalenergy": -10.0 - w, "geom_id": 100 * k + cid})
        path = f"drugs/mol{k}.pickle"
        with open(root / path, "wb") as fh:
            pickle.dump({"smiles": smiles, "conformers": confs, "charge": 0, "uniqueconfs": len(confs)}, fh)
        summary[smiles] = {"pickle_path": path, "uniqueconfs": len(confs), "charge": 0}
    summary["CCCC"] = {"uniqueconfs": 0}  # an entry without a pickle, as in the release
    (root / "summary_drugs.json").write_text(json.dumps(summary))


def test_geom_loader_reads_the_raw_release_format(tmp_path):
    from rdkit import Chem

    molecules = {"CCOc1ccccc1": [0.1, 0.6, 0.3], "CC(=O)NC1CC1": [0.5, 0.2, 0.3],
                 "OCc1ccncc1": [0.2, 0.2, 0.6], "CC(C)N": [0.3, 0.3, 0.4]}
    src = tmp_path / "rdkit_folder"
    write_geom_fixture(src, molecules)
    params = GeomParams(n_train_molecules=2, n_test_molecules=1, conformers_per_molecule=2,
                        max_test_conformers=10, min_heavy_atoms=4)
    manifest = load_geom(params, src, tmp_path / "out")
    train, test = ConformerSet(tmp_path / "out/train"), ConformerSet(tmp_path / "out/test")
    assert (train.n_molecules, test.n_molecules) == (2, 1)
    assert (train.n_conformers, test.n_conformers) == (4, 3)  # top-2 for train, all for test
    assert sum(manifest["skipped"].values()) >= 1  # CCCC: no pickle (or too small)
    assert manifest["source"]["url"].startswith("https://dataverse.harvard.edu/")
    for m, smiles in enumerate(train.molecules.smiles):
        k = list(molecules).index(smiles)
        with open(src / f"drugs/mol{k}.pickle", "rb") as fh:
            confs = pickle.load(fh)["conformers"]
        best = sorted(confs, key=lambda c: -c["boltzmannweight"])[:2]
        expected = np.stack([Chem.RemoveHs(c["rd_mol"]).GetConformer().GetPositions() for c in best])
        np.testing.assert_allclose(train.molecule_coords(m), expected, atol=1e-5)
    with pytest.raises(ValueError, match="summary_drugs.json"):
        load_geom(params, tmp_path, tmp_path / "nope")


def test_collate_pads_with_masks(real_dir):
    train = ConformerSet(real_dir / "train")
    graphs = [train.graph(m) for m in range(train.n_molecules)]
    batch = collate(graphs)
    sizes = [len(g.atoms) for g in graphs]
    assert batch.atoms.shape == (len(graphs), max(sizes), ds.ATOM_FEATURES)
    assert batch.pairs.shape == (len(graphs), max(sizes), max(sizes), ds.EDGE_FEATURES)
    assert batch.mask.sum(1).tolist() == sizes
    # every real atom has exactly one element slot; every real pair one bond and one distance slot
    assert (batch.atoms[..., : len(ds.ELEMENTS) + 1].sum(-1) == batch.mask).all()
    m = batch.mask.unsqueeze(1) * batch.mask.unsqueeze(2)
    assert (batch.pairs[..., :5].sum(-1) == m).all() and (batch.pairs[..., 5:].sum(-1) == m).all()
