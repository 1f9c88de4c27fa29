"""Molecule conformer sets: RDKit conformer generation, the GEOM-Drugs loader, storage.

Geometry
    Conformers of the real data are **force-field conformers**: RDKit ETKDGv3 embedding
    (Wang et al. 2020) with explicit hydrogens, then MMFF94 optimisation, ``K`` per
    molecule; they are *not* GEOM's CREST/GFN2-xTB ensembles (only the ``paper`` preset
    reads GEOM-Drugs, with :func:`load_geom`). Every molecule is embedded with its own
    seed ``(seed * 1000003 + crc32(smiles)) mod 2^31``, so its conformers do not depend on
    which other molecules were selected, and one thread, so they are identical across runs.
    Hydrogens are removed after optimisation: the model and the metrics work on heavy
    atoms, as GeoDiff's evaluation does.

Selection and split
    SMILES are visited in a seeded random order; a molecule is kept if RDKit parses it,
    its heavy-atom count is within ``[min_heavy_atoms, max_heavy_atoms]``, all its
    elements are in :data:`ELEMENTS`, and it embeds and MMFF-optimises ``K`` conformers.
    Anything else is skipped and counted in the manifest under its reason. The first
    ``n_test_molecules`` kept molecules form the test set and the next
    ``n_train_molecules`` the training set: the split is by molecule, never by conformer.

Storage format (one directory per conformer set, e.g. ``real/train``, ``real/test`` or a
synthetic set; all files written atomically, ``manifest.json`` last)

    molecules.csv   one row per molecule: mol_id, smiles, n_atoms, n_bonds, n_conformers,
                    atom_start, bond_start, conf_start
    atoms.npy       int16 [sum n_atoms, 4]: atomic_num, formal_charge, is_aromatic, num_hs
    bonds.npy       int32 [sum n_bonds, 3]: i, j (0-based within the molecule), bond code
                    (1 single, 2 double, 3 triple, 4 aromatic)
    conformers.npy  int64 [n_conformers, 2]: mol_id, first row of the conformer in coords.npy
    coords.npy      float32 [sum over conformers of n_atoms, 3], Angstrom, heavy atoms in
                    the molecule's atom order
    molecules.sdf   one heavy-atom RDKit template per molecule (its first conformer), the
                    molecule's graph for RMSD alignment and drawing
    manifest.json   counts, filters, skip reasons, RDKit version, sha256 of every file

A conformer set is read back memory-mapped by :class:`ConformerSet`; the network's input
(atom features, pair features, padded batches) is built here too (:func:`collate`).
"""

from __future__ import annotations

import os
import pickle
import re
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from dlrepro.conformers import require_positive_int
from dlrepro.errors import InputFileError, ParamsError
from dlrepro.io import atomic_open, load_npy, read_json, save_npy, sha256_file, write_csv, write_json
from dlrepro.log import get_logger

# Elements with their own one-hot slot; any other element shares the last slot ("other").
# Real sets are filtered to these (MOSES has only C N O F S Cl Br); GEOM-Drugs is filtered
# the same way.
ELEMENTS: tuple[int, ...] = (6, 7, 8, 9, 15, 16, 17, 35, 53)  # C N O F P S Cl Br I
BOND_CODES = {"SINGLE": 1, "DOUBLE": 2, "TRIPLE": 3, "AROMATIC": 4}
MAX_TOPO_DISTANCE = 4  # graph distances 1, 2, 3 and ">= 4 or disconnected" are features

ATOM_FEATURES = len(ELEMENTS) + 1 + 1 + 3 + 5  # element, aromatic, charge -1/0/+1, H count 0..4
EDGE_FEATURES = 5 + MAX_TOPO_DISTANCE  # bond code 0..4, topological distance 1..4+

SET_FILES = ("molecules.csv", "atoms.npy", "bonds.npy", "conformers.npy", "coords.npy", "molecules.sdf")


# ----------------------------------------------------------------------------- params


@dataclass
class PrepareParams:
    """``conformers.data``: real conformers from SMILES (the ``smoke``/``default`` presets)."""

    seed: int = 0
    n_train_molecules: int = 60
    n_test_molecules: int = 20
    conformers_per_molecule: int = 2  # K
    min_heavy_atoms: int = 4
    max_heavy_atoms: int = 18
    mmff_max_iters: int = 200
    num_threads: int = 1  # RDKit threads; results do not depend on it

    def __post_init__(self) -> None:
        require_positive_int(self, "n_train_molecules", "n_test_molecules", "conformers_per_molecule",
                        "min_heavy_atoms", "max_heavy_atoms", "mmff_max_iters")
        if self.min_heavy_atoms > self.max_heavy_atoms:
            raise ParamsError(
                f"min_heavy_atoms ({self.min_heavy_atoms}) > max_heavy_atoms ({self.max_heavy_atoms})"
            )
        if self.num_threads < 0:
            raise ParamsError(f"num_threads must be >= 0 (0 = all cores), got {self.num_threads}")


@dataclass
class GeomParams:
    """``conformers.geom``: GEOM-Drugs from the raw release, selected as GeoDiff/ConfGF did:
    random molecules, the ``conformers_per_molecule`` most Boltzmann-weighted conformers of
    each training molecule, up to ``max_test_conformers`` conformers per test molecule."""

    seed: int = 0
    n_train_molecules: int = 40000
    n_test_molecules: int = 200
    conformers_per_molecule: int = 5
    max_test_conformers: int = 100
    min_heavy_atoms: int = 4
    max_heavy_atoms: int = 100
    partition: str = "drugs"  # summary_<partition>.json in rdkit_folder (drugs | qm9)

    def __post_init__(self) -> None:
        require_positive_int(self, "n_train_molecules", "n_test_molecules", "conformers_per_molecule",
                        "max_test_conformers", "min_heavy_atoms", "max_heavy_atoms")
        if self.partition not in {"drugs", "qm9"}:
            raise ParamsError(f"partition must be 'drugs' or 'qm9', got {self.partition!r}")


# ----------------------------------------------------------------------------- RDKit side


class SkipMolecule(Exception):
    """A molecule that is skipped (and counted under ``reason``), never a crash."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Molecule:
    """One molecule of a set: its heavy-atom graph and ``K`` conformers [K, n_atoms, 3]."""

    smiles: str
    mol: object  # rdkit.Chem.Mol, heavy atoms only
    coords: np.ndarray


def rdkit_version() -> str:
    import rdkit

    return rdkit.__version__


def molecule_seed(seed: int, smiles: str) -> int:
    """The embedding seed of one molecule: a function of the run's seed and the SMILES only."""
    return int((int(seed) * 1_000_003 + zlib.crc32(smiles.encode())) % (2**31 - 1))


# One SMILES atom: a bracket atom (isotope, symbol, ...) or an organic-subset symbol.
_SMILES_ATOM = re.compile(r"\[(\d*)([A-Za-z][a-z]?)[^\]]*\]|Br|Cl|[BCNOSPFI]|[bcnops]|\*")


def smiles_heavy_atoms(smiles: str) -> int:
    """The number of heavy atoms written in ``smiles`` (bracket hydrogens ``[H]``, ``[2H]``
    are not counted), without parsing it: RDKit's ``GetNumHeavyAtoms`` of the parsed
    molecule for every valid SMILES (tested on MOSES), about 20x faster. The size filter
    runs on it first, so that most of MOSES is never parsed."""
    return sum(1 for m in _SMILES_ATOM.finditer(smiles) if m.group(2) != "H")


def check_graph(mol, min_heavy: int, max_heavy: int) -> None:
    """Raise :class:`SkipMolecule` if ``mol`` (heavy atoms) is outside the set's filters."""
    n = mol.GetNumHeavyAtoms()
    if not min_heavy <= n <= max_heavy:
        raise SkipMolecule("size")
    if any(a.GetAtomicNum() not in ELEMENTS for a in mol.GetAtoms() if a.GetAtomicNum() > 1):
        raise SkipMolecule("element")
    if mol.GetNumBonds() == 0 and n > 1:
        raise SkipMolecule("disconnected")


def embed_conformers(
    smiles: str, k: int, seed: int, mmff_max_iters: int = 200, num_threads: int = 1,
    min_heavy: int = 1, max_heavy: int = 10**6,
) -> Molecule:
    """ETKDGv3 + MMFF94 conformers of ``smiles``; raises :class:`SkipMolecule` on failure."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise SkipMolecule("parse")
    check_graph(mol, min_heavy, max_heavy)
    mol_h = Chem.AddHs(mol)
    params = AllChem.ETKDGv3()
    params.randomSeed = molecule_seed(seed, smiles)
    params.numThreads = num_threads
    conf_ids = list(AllChem.EmbedMultipleConfs(mol_h, numConfs=k, params=params))
    if len(conf_ids) < k:
        raise SkipMolecule("embed")
    if not AllChem.MMFFHasAllMoleculeParams(mol_h):
        raise SkipMolecule("mmff")
    AllChem.MMFFOptimizeMoleculeConfs(mol_h, numThreads=num_threads, maxIters=mmff_max_iters)
    heavy = Chem.RemoveHs(mol_h)
    coords = np.stack([heavy.GetConformer(c).GetPositions() for c in conf_ids]).astype(np.float32)
    if not np.isfinite(coords).all():
        raise SkipMolecule("embed")
    return Molecule(smiles=smiles, mol=with_conformers(heavy, coords[:1]), coords=coords)


def with_conformers(mol, coords: np.ndarray):
    """A copy of ``mol`` whose conformers are exactly ``coords`` [K, n_atoms, 3] (Angstrom)."""
    from rdkit import Chem
    from rdkit.Geometry import Point3D

    out = Chem.Mol(mol)
    out.RemoveAllConformers()
    coords = np.asarray(coords, dtype=np.float64)
    if coords.ndim != 3 or coords.shape[1] != out.GetNumAtoms():
        raise ValueError(f"coordinates of shape {coords.shape} for a molecule of {out.GetNumAtoms()} atoms")
    for xyz in coords:
        conf = Chem.Conformer(out.GetNumAtoms())
        for i, (x, y, z) in enumerate(xyz):
            conf.SetAtomPosition(i, Point3D(x, y, z))
        out.AddConformer(conf, assignId=True)
    return out


def molecule_arrays(mol) -> tuple[np.ndarray, np.ndarray]:
    """The stored graph of a heavy-atom mol: atoms [n, 4] and bonds [b, 3] (module docstring)."""
    atoms = np.array(
        [
            (a.GetAtomicNum(), a.GetFormalCharge(), int(a.GetIsAromatic()), a.GetTotalNumHs())
            for a in mol.GetAtoms()
        ],
        dtype=np.int16,
    ).reshape(-1, 4)
    bonds = []
    for b in mol.GetBonds():
        code = BOND_CODES.get(str(b.GetBondType()))
        if code is None:
            raise SkipMolecule("bond_type")
        bonds.append((b.GetBeginAtomIdx(), b.GetEndAtomIdx(), code))
    return atoms, np.array(bonds, dtype=np.int32).reshape(-1, 3)


# ----------------------------------------------------------------------------- writing


def write_set(out_dir: str | os.PathLike, molecules: list[Molecule], manifest: dict) -> dict:
    """Write ``molecules`` as a conformer set directory (format in the module docstring)."""
    from rdkit import Chem

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, atoms, bonds, confs, coords = [], [], [], [], []
    n_atom = n_bond = n_conf = n_coord = 0
    for mol_id, m in enumerate(molecules):
        a, b = molecule_arrays(m.mol)
        k, n = m.coords.shape[:2]
        if n != len(a):
            raise ValueError(f"molecule {mol_id} ({m.smiles}): {n} coordinates for {len(a)} atoms")
        rows.append(dict(mol_id=mol_id, smiles=m.smiles, n_atoms=n, n_bonds=len(b), n_conformers=k,
                         atom_start=n_atom, bond_start=n_bond, conf_start=n_conf))
        atoms.append(a)
        bonds.append(b)
        confs.extend((mol_id, n_coord + i * n) for i in range(k))
        coords.append(m.coords.reshape(-1, 3))
        n_atom, n_bond, n_conf, n_coord = n_atom + n, n_bond + len(b), n_conf + k, n_coord + k * n
    columns = ["mol_id", "smiles", "n_atoms", "n_bonds", "n_conformers", "atom_start", "bond_start", "conf_start"]
    write_csv(out_dir / "molecules.csv", pd.DataFrame(rows, columns=columns))
    save_npy(out_dir / "atoms.npy", np.concatenate(atoms) if atoms else np.zeros((0, 4), np.int16))
    save_npy(out_dir / "bonds.npy", np.concatenate(bonds) if bonds else np.zeros((0, 3), np.int32))
    save_npy(out_dir / "conformers.npy", np.array(confs, dtype=np.int64).reshape(-1, 2))
    save_npy(out_dir / "coords.npy", np.concatenate(coords).astype(np.float32) if coords
             else np.zeros((0, 3), np.float32))
    with atomic_open(out_dir / "molecules.sdf", "w", encoding="utf-8") as fh:
        for m in molecules:
            tmpl = with_conformers(m.mol, m.coords[:1])
            tmpl.SetProp("_Name", m.smiles)
            fh.write(Chem.MolToMolBlock(tmpl))
            fh.write("$$$$\n")
    manifest = {
        **manifest,
        "n_molecules": len(molecules),
        "n_conformers": n_conf,
        "n_atoms": n_atom,
        "rdkit_version": rdkit_version(),
        "sha256": {f: sha256_file(out_dir / f) for f in SET_FILES},
    }
    write_json(out_dir / "manifest.json", manifest)
    return manifest


def prepare_real(params: PrepareParams, smiles_csv: str | os.PathLike, out_dir: str | os.PathLike) -> dict:
    """Embed conformers for MOSES-style SMILES and write ``out_dir/{train,test}`` + manifest."""
    log = get_logger("conformers.prepare", seed=params.seed)
    smiles = pd.read_csv(smiles_csv, usecols=["SMILES"])["SMILES"].astype(str).to_numpy()
    order = np.random.default_rng(params.seed).permutation(len(smiles))
    wanted = params.n_test_molecules + params.n_train_molecules
    log.info("embedding %d molecules x %d conformers (heavy atoms %d..%d) from %d SMILES",
             wanted, params.conformers_per_molecule, params.min_heavy_atoms,
             params.max_heavy_atoms, len(smiles))
    kept: list[Molecule] = []
    skipped: dict[str, int] = {}
    visited = 0
    for i in order:
        if len(kept) == wanted:
            break
        visited += 1
        try:
            if not params.min_heavy_atoms <= smiles_heavy_atoms(smiles[i]) <= params.max_heavy_atoms:
                raise SkipMolecule("size")  # the same verdict as check_graph, without parsing
            kept.append(embed_conformers(
                smiles[i], params.conformers_per_molecule, params.seed, params.mmff_max_iters,
                params.num_threads, params.min_heavy_atoms, params.max_heavy_atoms))
        except SkipMolecule as skip:
            skipped[skip.reason] = skipped.get(skip.reason, 0) + 1
            continue
        if len(kept) % 50 == 0:
            log.info("%d/%d molecules embedded (%d SMILES visited)", len(kept), wanted, visited)
    if len(kept) < wanted:
        raise InputFileError(
            f"only {len(kept)} of {wanted} molecules passed the filters in {smiles_csv} "
            f"(skipped: {skipped}); relax min/max_heavy_atoms or ask for fewer molecules"
        )
    common = {
        "source": {"smiles_csv": str(smiles_csv), "sha256": sha256_file(smiles_csv), "n_smiles": len(smiles)},
        "method": "RDKit ETKDGv3 + MMFF94, hydrogens removed after optimisation",
        "params": vars(params),
        "visited_smiles": visited,
        "skipped": dict(sorted(skipped.items())),
    }
    test = write_set(Path(out_dir) / "test", kept[: params.n_test_molecules], {**common, "split": "test"})
    train = write_set(Path(out_dir) / "train", kept[params.n_test_molecules:], {**common, "split": "train"})
    manifest = {**common, "train": _counts(train), "test": _counts(test)}
    write_json(Path(out_dir) / "manifest.json", manifest)
    log.info("wrote %d train / %d test molecules; skipped %s", train["n_molecules"],
             test["n_molecules"], common["skipped"])
    return manifest


def _counts(m: dict) -> dict:
    return {k: m[k] for k in ("n_molecules", "n_conformers", "n_atoms")}


# ----------------------------------------------------------------------------- GEOM-Drugs

GEOM_URL = "https://dataverse.harvard.edu/api/access/datafile/4327252"  # rdkit_folder.tar.gz
GEOM_DOI = "10.7910/DVN/JNGTDF"  # Axelrod & Gomez-Bombarelli, Sci. Data 9, 185 (2022)


def load_geom(params: GeomParams, src: str | os.PathLike, out_dir: str | os.PathLike) -> dict:
    """Read GEOM's raw RDKit release (``rdkit_folder`` extracted from ``rdkit_folder.tar.gz``).

    Layout: ``<src>/summary_drugs.json`` maps each SMILES to a dict with ``pickle_path``
    (relative to ``src``, e.g. ``drugs/<name>.pickle``); each pickle is a dict with
    ``smiles`` and ``conformers``, a list of dicts with ``rd_mol`` (an RDKit Mol with
    hydrogens and one conformer) and ``boltzmannweight``. Writes the same
    ``out_dir/{train,test}`` format as :func:`prepare_real`.
    """
    from rdkit import Chem

    log = get_logger("conformers.load-geom", seed=params.seed)
    src = Path(src)
    summary_path = src / f"summary_{params.partition}.json"
    if not summary_path.is_file():
        raise InputFileError(f"GEOM source {src} has no {summary_path.name}: pass the extracted rdkit_folder")
    summary = read_json(summary_path)
    keys = sorted(summary)
    order = np.random.default_rng(params.seed).permutation(len(keys))
    test: list[Molecule] = []
    train: list[Molecule] = []
    skipped: dict[str, int] = {}
    for i in order:
        if len(test) == params.n_test_molecules and len(train) == params.n_train_molecules:
            break
        entry = summary[keys[i]]
        is_test = len(test) < params.n_test_molecules
        try:
            if "pickle_path" not in entry:
                raise SkipMolecule("no_pickle")
            with open(src / entry["pickle_path"], "rb") as fh:
                record = pickle.load(fh)
            confs = list(record.get("conformers", []))
            if not is_test:  # the most probable conformers, as GeoDiff/ConfGF
                confs.sort(key=lambda c: -float(c.get("boltzmannweight", 0.0)))
            confs = confs[: params.max_test_conformers if is_test else params.conformers_per_molecule]
            if not confs:
                raise SkipMolecule("no_conformers")
            heavy = [Chem.RemoveHs(c["rd_mol"]) for c in confs]
            check_graph(heavy[0], params.min_heavy_atoms, params.max_heavy_atoms)
            symbols = [a.GetAtomicNum() for a in heavy[0].GetAtoms()]
            if any([a.GetAtomicNum() for a in h.GetAtoms()] != symbols for h in heavy[1:]):
                raise SkipMolecule("inconsistent_conformers")
            coords = np.stack([h.GetConformer().GetPositions() for h in heavy]).astype(np.float32)
            molecule_arrays(heavy[0])  # raises on unsupported bond types
            smiles = str(record.get("smiles", keys[i]))
            (test if is_test else train).append(Molecule(smiles, with_conformers(heavy[0], coords[:1]), coords))
        except SkipMolecule as skip:
            skipped[skip.reason] = skipped.get(skip.reason, 0) + 1
        n = len(test) + len(train)
        if n and n % 1000 == 0:
            log.info("%d molecules read", n)
    if len(test) < params.n_test_molecules or len(train) < params.n_train_molecules:
        raise InputFileError(f"GEOM {params.partition}: only {len(train)} train / {len(test)} test "
                         f"molecules passed the filters (skipped: {skipped})")
    common = {
        "source": {"url": GEOM_URL, "doi": GEOM_DOI, "summary": summary_path.name,
                   "summary_sha256": sha256_file(summary_path), "n_molecules": len(keys)},
        "method": "GEOM CREST/GFN2-xTB conformers, hydrogens removed",
        "params": vars(params),
        "skipped": dict(sorted(skipped.items())),
    }
    test_m = write_set(Path(out_dir) / "test", test, {**common, "split": "test"})
    train_m = write_set(Path(out_dir) / "train", train, {**common, "split": "train"})
    manifest = {**common, "train": _counts(train_m), "test": _counts(test_m)}
    write_json(Path(out_dir) / "manifest.json", manifest)
    log.info("wrote %d train / %d test molecules", len(train), len(test))
    return manifest


# ----------------------------------------------------------------------------- reading


class Graph(NamedTuple):
    """Network input of one molecule: atom features [n, ATOM_FEATURES], pair features [n, n, EDGE_FEATURES]."""

    atoms: np.ndarray
    pairs: np.ndarray


def atom_features(atoms: np.ndarray) -> np.ndarray:
    """One-hot element (+other), aromatic flag, charge -1/0/+1, attached H count 0..4."""
    n = len(atoms)
    out = np.zeros((n, ATOM_FEATURES), np.float32)
    slot = {z: i for i, z in enumerate(ELEMENTS)}
    col = np.array([slot.get(int(z), len(ELEMENTS)) for z in atoms[:, 0]], dtype=np.int64)
    out[np.arange(n), col] = 1
    base = len(ELEMENTS) + 1
    out[:, base] = atoms[:, 2]
    out[np.arange(n), base + 1 + np.clip(atoms[:, 1], -1, 1) + 1] = 1
    out[np.arange(n), base + 4 + np.clip(atoms[:, 3], 0, 4)] = 1
    return out


def pair_features(n: int, bonds: np.ndarray) -> np.ndarray:
    """One-hot bond code (0 = no bond) and topological distance (1, 2, 3, >= 4) per atom pair."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import shortest_path

    out = np.zeros((n, n, EDGE_FEATURES), np.float32)
    code = np.zeros((n, n), np.int64)
    code[bonds[:, 0], bonds[:, 1]] = bonds[:, 2]
    code[bonds[:, 1], bonds[:, 0]] = bonds[:, 2]
    adj = csr_matrix((np.ones(len(bonds)), (bonds[:, 0], bonds[:, 1])), shape=(n, n))
    dist = shortest_path(adj, directed=False, unweighted=True)
    dist = np.where(np.isfinite(dist), dist, MAX_TOPO_DISTANCE).astype(np.int64)
    dist = np.clip(dist, 1, MAX_TOPO_DISTANCE)  # the diagonal (0) is masked by the network
    out[..., :5] = np.eye(5, dtype=np.float32)[code]
    out[..., 5:] = np.eye(MAX_TOPO_DISTANCE, dtype=np.float32)[dist - 1]
    return out


class ConformerSet:
    """A conformer set directory, read back memory-mapped (format in the module docstring)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if not (self.path / "manifest.json").is_file():
            raise InputFileError(f"{self.path} is not a conformer set (no manifest.json)")
        self.manifest = read_json(self.path / "manifest.json")
        self.molecules = pd.read_csv(self.path / "molecules.csv", keep_default_na=False)
        self.atoms = load_npy(self.path / "atoms.npy")
        self.bonds = load_npy(self.path / "bonds.npy")
        self.conformers = load_npy(self.path / "conformers.npy")
        self.coords = load_npy(self.path / "coords.npy")
        self._n_atoms = self.molecules["n_atoms"].to_numpy()
        self._atom_start = self.molecules["atom_start"].to_numpy()
        self._bond_start = self.molecules["bond_start"].to_numpy()
        self._n_bonds = self.molecules["n_bonds"].to_numpy()
        self.graph = lru_cache(maxsize=None)(self._graph)

    @property
    def n_molecules(self) -> int:
        return len(self.molecules)

    @property
    def n_conformers(self) -> int:
        return len(self.conformers)

    def molecule_of(self, conf: int) -> int:
        return int(self.conformers[conf, 0])

    def conformer_coords(self, conf: int) -> np.ndarray:
        mol_id, start = self.conformers[conf]
        return np.asarray(self.coords[start : start + self._n_atoms[mol_id]])

    def molecule_coords(self, mol_id: int) -> np.ndarray:
        """All conformers of one molecule, [K, n_atoms, 3]."""
        row = self.molecules.iloc[mol_id]
        confs = range(int(row.conf_start), int(row.conf_start + row.n_conformers))
        return np.stack([self.conformer_coords(c) for c in confs]) if len(confs) else \
            np.zeros((0, int(row.n_atoms), 3), np.float32)

    def molecule_atoms(self, mol_id: int) -> np.ndarray:
        s = self._atom_start[mol_id]
        return np.asarray(self.atoms[s : s + self._n_atoms[mol_id]])

    def molecule_bonds(self, mol_id: int) -> np.ndarray:
        s = self._bond_start[mol_id]
        return np.asarray(self.bonds[s : s + self._n_bonds[mol_id]])

    def _graph(self, mol_id: int) -> Graph:
        atoms = self.molecule_atoms(mol_id)
        return Graph(atom_features(atoms), pair_features(len(atoms), self.molecule_bonds(mol_id)))

    def templates(self) -> list:
        """Heavy-atom RDKit molecules, one per molecule, in mol_id order."""
        from rdkit import Chem

        mols = list(Chem.SDMolSupplier(str(self.path / "molecules.sdf"), removeHs=False))
        if len(mols) != self.n_molecules or any(m is None for m in mols):
            raise InputFileError(f"{self.path}/molecules.sdf does not hold {self.n_molecules} readable molecules")
        return mols


# ----------------------------------------------------------------------------- batches


class Batch(NamedTuple):
    """Padded batch of B conformers of at most N atoms."""

    atoms: torch.Tensor  # [B, N, ATOM_FEATURES]
    pairs: torch.Tensor  # [B, N, N, EDGE_FEATURES]
    coords: torch.Tensor  # [B, N, 3] (zeros where there is no conformer, e.g. when sampling)
    mask: torch.Tensor  # [B, N] float, 1 for real atoms


def collate(graphs: list[Graph], coords: list[np.ndarray] | None = None) -> Batch:
    """Pad graphs (and coordinates) to the largest molecule of the batch."""
    import torch

    b, n = len(graphs), max(len(g.atoms) for g in graphs)
    atoms = np.zeros((b, n, ATOM_FEATURES), np.float32)
    pairs = np.zeros((b, n, n, EDGE_FEATURES), np.float32)
    xyz = np.zeros((b, n, 3), np.float32)
    mask = np.zeros((b, n), np.float32)
    for i, g in enumerate(graphs):
        k = len(g.atoms)
        atoms[i, :k], pairs[i, :k, :k], mask[i, :k] = g.atoms, g.pairs, 1
        if coords is not None:
            xyz[i, :k] = coords[i]
    return Batch(*(torch.from_numpy(a) for a in (atoms, pairs, xyz, mask)))


@dataclass
class ConformerPool:
    """The items a model trains on: conformers ``indices[i]`` of ``sets[which[i]]``."""

    sets: list[ConformerSet]
    which: np.ndarray
    indices: np.ndarray
    sources: list[str] = field(default_factory=list)

    @classmethod
    def whole(cls, conformer_set: ConformerSet, source: str = "real") -> "ConformerPool":
        n = conformer_set.n_conformers
        return cls([conformer_set], np.zeros(n, np.int64), np.arange(n, dtype=np.int64), [source])

    def __len__(self) -> int:
        return len(self.indices)

    def collate(self, items: np.ndarray) -> Batch:
        graphs, coords = [], []
        for i in np.asarray(items):
            s, c = self.sets[self.which[i]], int(self.indices[i])
            graphs.append(s.graph(s.molecule_of(c)))
            coords.append(s.conformer_coords(c))
        return collate(graphs, coords)


def read_mix(path: str | os.PathLike) -> ConformerPool:
    """A pool from a mix file written by ``conformers mix`` (``shares`` with set dirs and indices)."""
    spec = read_json(path)
    sets, which, indices, sources = [], [], [], []
    for share in spec["shares"]:
        idx = np.asarray(share["indices"], dtype=np.int64)
        if len(idx) == 0:
            continue
        sets.append(ConformerSet(share["dir"]))
        which.append(np.full(len(idx), len(sets) - 1, np.int64))
        indices.append(idx)
        sources.append(share["source"])
        if idx.max() >= sets[-1].n_conformers:
            raise InputFileError(f"mix {path}: index {idx.max()} out of range for {share['dir']}")
    if not sets:
        raise InputFileError(f"mix {path} selects no conformers")
    return ConformerPool(sets, np.concatenate(which), np.concatenate(indices), sources)
