"""The RDKit baseline: ETKDGv3 conformers of the test molecules, scored like the model.

What a chemist would use first (Wang et al. 2020; Zhou et al. 2023 found ETKDG with or
without clustering as good as most deep models on GEOM benchmarks). For every evaluated
test molecule it embeds as many conformers as the model generates (``samples_per_reference``
x references), with explicit hydrogens, **no force-field optimisation**, one thread and a
seed of its own, ``molecule_seed(seed, "etkdg:" + smiles)``, so that it never replays the
embeddings that (after MMFF) became the references of the default presets. Hydrogens are
removed afterwards; atoms keep the order of the stored template, so :func:`metrics.score`
applies unchanged. A molecule whose embedding falls short is retried once from random
coordinates (``useRandomCoords``); what is still missing is counted in ``n_embed_failed``
and filled with copies of the last embedded conformer (a failed sample is not dropped:
dropping would flatter COV-P/MAT-P).

Note for reading the numbers: on ``moses`` the references are ETKDGv3 + MMFF94 conformers,
the baseline's own method plus a force-field relaxation, so the baseline is close to its
best case there; on GEOM-Drugs (CREST ensembles) it meets references it was not built from.
"""

from __future__ import annotations

import numpy as np

from dlrepro.conformers.dataset import molecule_seed


def etkdg_conformers(template, n: int, seed: int, smiles: str) -> tuple[np.ndarray, int]:
    """``(coords [n, n_atoms, 3], n_failed)``: ETKDGv3 conformers of ``template`` (heavy atoms)."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(Chem.Mol(template), addCoords=False)
    mol.RemoveAllConformers()
    heavy = [a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() > 1]
    if heavy != list(range(template.GetNumAtoms())):
        raise ValueError(f"{smiles}: hydrogens were not appended after the heavy atoms")
    params = AllChem.ETKDGv3()
    params.randomSeed = molecule_seed(seed, "etkdg:" + smiles)
    params.numThreads = 1
    ids = list(AllChem.EmbedMultipleConfs(mol, numConfs=n, params=params))
    if len(ids) < n:
        params.useRandomCoords = True
        mol.RemoveAllConformers()
        ids = list(AllChem.EmbedMultipleConfs(mol, numConfs=n, params=params))
    if not ids:
        raise ValueError(f"RDKit could not embed {smiles} at all")
    coords = np.stack([mol.GetConformer(c).GetPositions()[: len(heavy)] for c in ids])
    failed = n - len(coords)
    if failed:
        coords = np.concatenate([coords, np.repeat(coords[-1:], failed, axis=0)])
    return coords.astype(np.float32), failed


def baseline_generated(test, counts: np.ndarray, seed: int, log=None) -> tuple[list[np.ndarray], int]:
    """ETKDGv3 conformers ``counts[m]`` per test molecule ``m``, and the number that failed."""
    templates = test.templates()
    generated, failed = [], 0
    for m, n in enumerate(counts):
        coords, f = etkdg_conformers(templates[m], int(n), seed, str(test.molecules.smiles[m]))
        generated.append(coords)
        failed += f
    if log is not None:
        log.info("ETKDGv3: %d conformers of %d molecules (%d embeddings failed)", int(np.sum(counts)),
                 len(counts), failed)
    return generated, failed
