"""``python -m dlrepro conformers``: params parsing, mixing, and a tiny two-generation loop."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from dlrepro.conformers.cli import SampleParams, main, parse_params
from dlrepro.conformers.dataset import ConformerSet, PrepareParams
from dlrepro.conformers.metrics import EvalParams
from dlrepro.conformers.module import TrainParams

SMILES = ["CCO", "CC(=O)Nc1ccccc1", "OC(=O)c1ccccc1", "CCN(CC)CC", "CC1CCCCC1N", "COc1ccc(Cl)cc1",
          "O=C1CCCN1C", "NC(=O)c1cccnc1", "CC(C)Cc1ccc(O)cc1"]
PREPARE = {"seed": 0, "n_train_molecules": 6, "n_test_molecules": 2, "conformers_per_molecule": 2,
           "min_heavy_atoms": 3, "max_heavy_atoms": 14, "mmff_max_iters": 50}
TRAIN = {"epochs": 2, "batch_size": 4, "lr": 1e-3, "warmup_steps": 1, "model": {"hidden": 16, "layers": 2},
         "diffusion": {"steps": 8}, "compute": {"accelerator": "cpu", "num_threads": 1,
                                                "checkpoint_every_n_steps": 2, "log_every_n_steps": 2}}
SAMPLE = {"batch_size": 8, "accelerator": "cpu", "num_threads": 1}
EVAL = {"noise_levels": [0.25, 0.75], "max_molecules": 2, "batch_size": 8, "accelerator": "cpu",
        "num_threads": 1}


@pytest.fixture(scope="module", autouse=True)
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    root = tmp_path_factory.mktemp("cf")
    pd.DataFrame({"SMILES": SMILES, "SPLIT": "test"}).to_csv(root / "test.csv", index=False)
    assert main(["prepare", "--params", json.dumps(PREPARE), "--smiles-csv", str(root / "test.csv"),
                 "--out-dir", str(root / "real")]) == 0
    return root / "real"


def test_params_reject_unknown_keys_by_name():
    with pytest.raises(ValueError, match=r"unknown key TrainParams\.model\.width"):
        parse_params(TrainParams, '{"model": {"width": 3}}')
    with pytest.raises(ValueError, match=r"unknown key EvalParams\.threshold"):
        parse_params(EvalParams, '{"threshold": 1.0}')
    with pytest.raises(ValueError, match=r"unknown key PrepareParams\.k"):
        parse_params(PrepareParams, '{"k": 3}')
    with pytest.raises(ValueError, match="compute.epochs"):
        parse_params(TrainParams, '{"compute": {"epochs": 3}}')
    with pytest.raises(ValueError, match="accelerator"):
        parse_params(SampleParams, '{"accelerator": "tpu"}')
    with pytest.raises(ValueError, match="max_steps"):
        parse_params(TrainParams, '{"max_steps": 0}')
    assert parse_params(TrainParams, '{"max_steps": 7}').max_steps == 7
    params = parse_params(TrainParams, json.dumps(TRAIN))
    assert params.model.hidden == 16 and params.diffusion.steps == 8 and params.epochs == 2


def test_mix_follows_the_policies_on_conformer_pools(real, tmp_path):
    train = ConformerSet(real / "train")
    syn = [str(real / "train")] * 2  # stand-ins with the real set's graphs and size
    for policy, expected in [("replace", {"synthetic_2": 12}),
                             ("accumulate", {"real": 12, "synthetic_1": 12, "synthetic_2": 12})]:
        out = tmp_path / f"{policy}.json"
        assert main(["mix", "--policy", policy, "--generation", "2", "--seed", "0", "--real", str(real),
                     "--synthetic", *syn, "--out", str(out)]) == 0
        spec = json.loads(out.read_text())
        assert {s["source"]: s["count"] for s in spec["shares"]} == expected
        assert all(len(s["indices"]) == s["count"] <= train.n_conformers for s in spec["shares"])
    with pytest.raises(ValueError, match="needs 2 synthetic sets"):
        main(["mix", "--policy", "replace", "--generation", "2", "--seed", "0", "--real", str(real),
              "--synthetic", syn[0], "--out", str(tmp_path / "x.json")])


@pytest.mark.slow
def test_two_generation_loop_end_to_end(real, tmp_path):
    t = tmp_path

    def train(spec, name, generation, policy):
        assert main(["train", "--params", json.dumps(TRAIN), "--data-spec", str(spec), "--ckpt-dir",
                     str(t / f"ckpt_{name}"), "--out-model", str(t / f"{name}.pt"), "--out-metrics",
                     str(t / f"{name}.json"), "--seed", "0", "--policy", policy,
                     "--generation", str(generation)]) == 0
        assert not (t / f"ckpt_{name}").exists()  # removed once the outputs are written
        return t / f"{name}.pt"

    def evaluate(model, name, policy, generation):
        assert main(["evaluate", "--params", json.dumps(EVAL), "--model", str(model), "--real-dir", str(real),
                     "--out", str(t / f"eval_{name}.json"), "--policy", policy, "--generation",
                     str(generation), "--seed", "0"]) == 0
        return t / f"eval_{name}.json"

    m0 = train(real / "train", "gen0", 0, "real")
    evals = [evaluate(m0, "gen0", "real", 0)]
    for seed_dir in ("syn1", "syn1_again"):
        assert main(["sample", "--params", json.dumps(SAMPLE), "--model", str(m0), "--real-dir", str(real),
                     "--seed", "1", "--out-dir", str(t / seed_dir), "--policy", "replace",
                     "--generation", "1"]) == 0
    real_train, syn = ConformerSet(real / "train"), ConformerSet(t / "syn1")
    # same graphs and size as the real training set; sampling is deterministic per seed
    assert syn.n_conformers == real_train.n_conformers
    assert np.array_equal(syn.atoms, real_train.atoms) and np.array_equal(syn.bonds, real_train.bonds)
    assert (t / "syn1/coords.npy").read_bytes() == (t / "syn1_again/coords.npy").read_bytes()
    assert np.isfinite(syn.coords).all() and not np.allclose(syn.coords, real_train.coords)
    for policy in ("replace", "accumulate"):
        mix = t / f"mix_{policy}.json"
        assert main(["mix", "--policy", policy, "--generation", "1", "--seed", "0", "--real", str(real),
                     "--synthetic", str(t / "syn1"), "--out", str(mix)]) == 0
        m1 = train(mix, f"{policy}1", 1, policy)
        metrics = json.loads((t / f"{policy}1.json").read_text())
        assert metrics["n_train_conformers"] == (12 if policy == "replace" else 24)
        evals.append(evaluate(m1, f"{policy}1", policy, 1))
    again = evaluate(m0, "gen0_again", "real", 0)
    assert json.loads(again.read_text())["test_loss"] == json.loads(evals[0].read_text())["test_loss"]

    base = t / "eval_rdkit.json"
    assert main(["baseline", "--params", json.dumps(EVAL), "--real-dir", str(real), "--out", str(base),
                 "--seed", "0"]) == 0
    assert main(["summarize", "--evals", *map(str, evals), str(base), "--out", str(t / "summary.csv")]) == 0
    summary = pd.read_csv(t / "summary.csv")
    assert list(summary.columns) == ["policy", "generation", "seed", "n_train_conformers", "test_loss",
                                     "cov_r", "mat_r", "method", "cov_p", "mat_p", "bond_valid",
                                     "bond_in_range", "mol_intact"]
    assert sorted(summary.policy) == ["accumulate", "rdkit-etkdg", "real", "replace"]
    model = summary[summary.method == "egnn-diffusion"]
    rdkit = summary[summary.method == "rdkit-etkdgv3"]
    assert len(model) == 3 and list(rdkit.policy) == ["rdkit-etkdg"] and rdkit.test_loss.isna().all()
    assert (model.test_loss > 0).all()
    for col in ("cov_r", "cov_p", "bond_valid", "bond_in_range", "mol_intact"):
        assert summary[col].between(0, 1).all(), col
    assert (summary.mat_r >= 0).all() and (summary.mat_p >= 0).all()
    # ETKDGv3 geometries: nearly every bond within the (narrow: 6 molecules) MMFF ranges + 0.1 A
    assert float(rdkit.bond_valid.iloc[0]) > 0.9 and float(rdkit.bond_in_range.iloc[0]) == 1.0
    assert float(rdkit.mol_intact.iloc[0]) == 1.0
    assert json.loads(base.read_text())["n_eval_molecules"] == json.loads(evals[0].read_text())["n_eval_molecules"]
    syn_manifest = json.loads((t / "syn1/manifest.json").read_text())
    assert set(syn_manifest["validity"]) >= {"bond_valid", "bond_in_range", "mol_intact"}

    assert main(["plot", "--csv", str(t / "summary.csv"), "--out", str(t / "fig/metrics")]) == 0
    assert main(["draw", "--samples", str(real / "train"), str(t / "syn1"), "--out", str(t / "fig/draw"),
                 "--molecules", "3"]) == 0
    for name in ("metrics", "draw"):
        assert (t / f"fig/{name}.png").stat().st_size > 1000 and (t / f"fig/{name}.pdf").exists()
