"""The VAE collapse stage: loss, sampling, metrics, mixes and a 2-generation loop via the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from dlrepro.io import save_npy
from dlrepro.vae import metrics
from dlrepro.vae.cli import SUMMARY_COLUMNS, TrainParams, expand_shared_generation0, main, parse_params
from dlrepro.vae.model import ClassifierConfig, ConvVAE, SmallCNN, VAEConfig, load_model
from dlrepro.vae.data import ImageMix, build_mix, write_mix

TINY = VAEConfig(latent_dim=4, channels=4, hidden=16)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread; on a shared 2-core machine more threads spin idle."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Toy "digits": class c is a bright horizontal bar at row 2c + 4, plus noise, in [0, 1]."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=n).astype(np.int64)
    x = rng.uniform(0, 0.2, size=(n, 1, 28, 28)).astype(np.float32)
    for i, c in enumerate(labels):
        x[i, 0, 2 * c + 4 : 2 * c + 6, 4:24] = 0.95
    return x, labels


def test_neg_elbo_matches_its_definition_and_training_lowers_it():
    torch.manual_seed(0)
    model = ConvVAE(TINY)
    x = torch.from_numpy(images(8, 0)[0])
    rec, kl = model.neg_elbo(x, generator=torch.Generator().manual_seed(3))
    assert rec.shape == kl.shape == (8,)

    # the same numbers from the definition, with the same reparametrisation noise
    mu, logvar = model.encode(x)
    eps = torch.randn(mu.shape, generator=torch.Generator().manual_seed(3))
    p = torch.sigmoid(model.decode(mu + torch.exp(0.5 * logvar) * eps))
    expected_rec = -(x * torch.log(p) + (1 - x) * torch.log1p(-p)).flatten(1).sum(1)
    expected_kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(1)
    torch.testing.assert_close(rec, expected_rec, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(kl, expected_kl, rtol=1e-4, atol=1e-5)
    assert (kl >= 0).all() and (rec > 0).all()

    # a few Adam steps on the tiny batch lower the loss
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(30):
        torch.manual_seed(1)
        loss = sum(model.neg_elbo(x)).mean()
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.8 * first


def test_sampling_shapes_ranges_and_seeding():
    torch.manual_seed(0)
    model = ConvVAE(TINY)
    means = model.sample(7, torch.Generator().manual_seed(5), mode="mean")
    assert means.shape == (7, 1, 28, 28) and means.dtype == torch.float32
    assert means.min() >= 0 and means.max() <= 1 and means.std() > 0
    again = model.sample(7, torch.Generator().manual_seed(5), mode="mean")
    assert torch.equal(means, again)
    binary = model.sample(7, torch.Generator().manual_seed(5), mode="bernoulli")
    assert set(binary.unique().tolist()) <= {0.0, 1.0}
    with pytest.raises(ValueError, match="sample mode.*'gauss'"):
        model.sample(2, mode="gauss")


def test_class_measures_and_kid():
    eye = np.eye(10)
    assert metrics.class_entropy(eye) == pytest.approx(0.0, abs=1e-9)
    assert metrics.class_entropy(np.full((4, 10), 0.1)) == pytest.approx(math.log(10))
    one_class = metrics.coverage(np.tile(eye[3], (50, 1)))
    assert one_class == {"coverage_entropy": 0.0, "classes_covered": 1}
    spread = metrics.coverage(np.tile(eye, (5, 1)))
    assert spread["classes_covered"] == 10
    assert spread["coverage_entropy"] == pytest.approx(math.log(10))
    # 96% in class 0, 4% in class 1: only class 0 reaches 5% of the mass
    skewed = np.concatenate([np.tile(eye[0], (96, 1)), np.tile(eye[1], (4, 1))])
    assert metrics.coverage(skewed)["classes_covered"] == 1

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(300, 8)), rng.normal(size=(300, 8))
    same = metrics.kid(a, b, n_subsets=5, subset_size=200, seed=1)
    shifted = metrics.kid(a, b + 1.0, n_subsets=5, subset_size=200, seed=1)
    assert abs(same) < 0.05 < shifted
    assert metrics.kid(a, b, 5, 200, seed=1) == same  # seeded subsets

    x = images(20, 1)[0]
    assert metrics.pixel_std(x, chunk=7) == pytest.approx(x.reshape(20, -1).std(axis=0).mean(), rel=1e-5)


def test_classifier_features_and_neg_elbo_are_deterministic():
    torch.manual_seed(0)
    clf = SmallCNN(ClassifierConfig(channels=2, feature_dim=6))
    x = images(10, 2)[0]
    probs, feats = metrics.classify(clf, x, batch_size=4)
    assert probs.shape == (10, 10) and feats.shape == (10, 6)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    torch.manual_seed(0)
    vae = ConvVAE(TINY)
    a = metrics.neg_elbo(vae, x, noise_seed=0, batch_size=4)
    assert a == metrics.neg_elbo(vae, x, noise_seed=0, batch_size=4)
    assert a != metrics.neg_elbo(vae, x, noise_seed=1, batch_size=4)
    assert a["neg_elbo"] == pytest.approx(a["rec_nll"] + a["kl"])


def _pools(tmp_path, sizes):
    """A real data dir and synthetic dirs whose images are constant 0.0, 0.1, 0.2, ... (pool k: k / 10)"""
    real = tmp_path / "real"
    save_npy(real / "train_images.npy", np.zeros((sizes[0], 1, 28, 28), np.float32))
    synthetic = []
    for k, n in enumerate(sizes[1:], start=1):
        d = tmp_path / f"syn{k}"
        save_npy(d / "images.npy", np.full((n, 1, 28, 28), k / 10, np.float32))
        synthetic.append(d)
    return real, synthetic


@pytest.mark.parametrize(
    "policy, expected",
    [
        ("replace", {2: 30}),
        ("accumulate", {0: 20, 1: 25, 2: 30}),
        ("accumulate-subsample", None),  # 20 images drawn from all three pools
    ],
)
def test_mix_sizes_and_provenance(tmp_path, policy, expected):
    real, synthetic = _pools(tmp_path, [20, 25, 30])
    spec, indices = build_mix(policy, 2, seed=4, real_dir=real, synthetic_dirs=synthetic)
    write_mix(tmp_path / "mix.json", spec, indices)
    on_disk = json.loads((tmp_path / "mix.json").read_text())
    assert on_disk["indices_file"] == "mix.indices.npy"
    assert (tmp_path / "mix.indices.npy").exists()
    mix = ImageMix.from_mix(tmp_path / "mix.json")
    pool_ids = np.rint(mix.collate(np.arange(len(mix)))[:, 0, 0, 0].numpy() * 10).astype(int)
    values, counts = np.unique(pool_ids, return_counts=True)
    found = dict(zip(values.tolist(), counts.tolist()))
    for share in on_disk["shares"]:
        assert len(np.unique(indices[share["offset"] : share["offset"] + share["count"]])) == share["count"]
    if expected is None:
        assert len(mix) == 20 and len(found) == 3
    else:
        assert found == expected
    assert mix.composition()["n_real"] == found.get(0, 0)
    with pytest.raises(ValueError, match="2 synthetic pools, got 1"):
        build_mix(policy, 2, 4, real, synthetic[:1])


def test_params_are_checked():
    with pytest.raises(ValueError, match="unknown key 'latent'"):
        parse_params(TrainParams, '{"latent": 3}')
    with pytest.raises(ValueError, match="exactly one of epochs and max_steps"):
        parse_params(TrainParams, '{"epochs": 2, "max_steps": 5}')
    with pytest.raises(ValueError, match="batch_size must be > 0, got 0"):
        parse_params(TrainParams, '{"batch_size": 0}')
    with pytest.raises(ValueError, match="unknown policy 'keep-all'"):
        main(["mix", "--policy", "keep-all", "--generation", "1", "--seed", "0", "--real", "r", "--out", "m.json"])
    assert parse_params(TrainParams, '{"max_steps": 5}').epochs is None
    assert parse_params(TrainParams, "{}").epochs == TrainParams.default_epochs


def test_shared_generation0_is_repeated_per_policy():
    rows = [
        {"policy": None, "generation": 0},
        {"policy": "replace", "generation": 1},
        {"policy": "accumulate", "generation": 1},
    ]
    out = expand_shared_generation0(rows)
    assert sorted((r["policy"], r["generation"]) for r in out) == [
        ("accumulate", 0), ("accumulate", 1), ("replace", 0), ("replace", 1)
    ]
    with pytest.raises(ValueError, match="generation 1 result has no policy"):
        expand_shared_generation0([{"policy": None, "generation": 1}])


def test_two_generation_loop_through_the_cli(tmp_path):
    data = tmp_path / "data"
    x, y = images(96, 10)
    xt, yt = images(48, 11)
    save_npy(data / "train_images.npy", x)
    save_npy(data / "train_labels.npy", y)
    save_npy(data / "test_images.npy", xt)
    save_npy(data / "test_labels.npy", yt)
    compute = {"accelerator": "cpu", "checkpoint_every_n_steps": 2, "log_every_n_steps": 2, "num_threads": 1}
    vae = json.dumps({"latent_dim": 4, "channels": 4, "hidden": 16, "batch_size": 32,
                      "lr": 3e-3, "epochs": 2, "compute": compute})
    clf = json.dumps({"channels": 2, "feature_dim": 8, "batch_size": 32, "epochs": 2, "compute": compute})
    ev = json.dumps({"kid_subsets": 3, "kid_subset_size": 40, "num_threads": 1})
    r = tmp_path / "run"

    def train(gen, spec, out, policy=None):
        args = ["train", "--params", vae, "--data-spec", spec, "--generation", str(gen), "--seed", "0",
                "--ckpt-dir", str(r / f"ckpt_{out}"), "--out-model", str(r / f"{out}.pt"),
                "--out-metrics", str(r / f"{out}.json")]
        args += ["--data-dir", str(data)] if spec == "real" else []
        args += ["--policy", policy] if policy else []
        assert main(args) == 0
        assert not (r / f"ckpt_{out}").exists()  # checkpoints removed after the outputs are written

    def sample_and_evaluate(out):
        assert main(["sample", "--model", str(r / f"{out}.pt"), "--n", "96", "--seed", "0",
                     "--out-dir", str(r / f"{out}_samples")]) == 0
        assert main(["evaluate", "--model", str(r / f"{out}.pt"), "--classifier", str(r / "clf.pt"),
                     "--data-dir", str(data), "--samples", str(r / f"{out}_samples"), "--params", ev,
                     "--out", str(r / f"{out}_eval.json")]) == 0

    assert main(["train-classifier", "--params", clf, "--data-dir", str(data), "--ckpt-dir", str(r / "ck"),
                 "--out-model", str(r / "clf.pt"), "--out-metrics", str(r / "clf.json")]) == 0
    assert 0 <= json.loads((r / "clf.json").read_text())["test_accuracy"] <= 1

    train(0, "real", "g0")
    train(0, "real", "g0_again")  # same arguments, same weights
    a, _ = load_model(r / "g0.pt", "conv_vae")
    b, meta = load_model(r / "g0_again.pt", "conv_vae")
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    assert meta["n_real"] == 96 and meta["policy"] is None
    sample_and_evaluate("g0")
    samples = np.load(r / "g0_samples" / "images.npy")
    assert samples.shape == (96, 1, 28, 28) and samples.dtype == np.float32
    assert 0 <= samples.min() and samples.max() <= 1

    for policy in ("replace", "accumulate"):
        mix = r / f"mix_{policy}.json"
        assert main(["mix", "--policy", policy, "--generation", "1", "--seed", "0", "--real", str(data),
                     "--synthetic", str(r / "g0_samples"), "--out", str(mix)]) == 0
        train(1, str(mix), f"g1_{policy}", policy)
        sample_and_evaluate(f"g1_{policy}")
    assert load_model(r / "g1_accumulate.pt", "conv_vae")[1]["n_train"] == 192
    with pytest.raises(ValueError, match="mixes generation 1 by 'replace'.*--generation 2"):
        train(2, str(r / "mix_replace.json"), "wrong", "replace")
    assert load_model(r / "g1_replace.pt", "conv_vae")[1]["n_synthetic"] == 96

    evals = [str(r / f"{o}_eval.json") for o in ("g0", "g1_replace", "g1_accumulate")]
    assert main(["summarize", "--evals", *evals, "--out", str(r / "summary.csv")]) == 0
    table = pd.read_csv(r / "summary.csv")
    assert list(table.columns) == SUMMARY_COLUMNS
    assert sorted(zip(table.policy, table.generation)) == [
        ("accumulate", 0), ("accumulate", 1), ("replace", 0), ("replace", 1)
    ]
    assert np.isfinite(table[["test_neg_elbo", "sample_kid", "sample_class_entropy"]]).all().all()
    assert (table.test_neg_elbo > 0).all()

    # evaluation and summary are byte-reproducible
    first = (r / "summary.csv").read_bytes()
    sample_and_evaluate("g1_replace")
    assert main(["summarize", "--evals", *evals, "--out", str(r / "summary.csv")]) == 0
    assert (r / "summary.csv").read_bytes() == first

    assert main(["plot", "--csv", str(r / "summary.csv"), "--out", str(r / "fig" / "loss")]) == 0
    assert main(["grid", "--samples", str(r / "g0_samples"), str(r / "g1_replace_samples"),
                 str(r / "g1_accumulate_samples"), "--per-cell", "9", "--out", str(r / "fig" / "grid.png")]) == 0
    for name in ("loss.png", "loss.pdf", "grid.png", "grid.pdf"):
        assert (r / "fig" / name).stat().st_size > 1000

    # samples must come from the model they are evaluated with
    with pytest.raises(ValueError, match="not from --model"):
        main(["evaluate", "--model", str(r / "g0.pt"), "--classifier", str(r / "clf.pt"), "--data-dir",
              str(data), "--samples", str(r / "g1_replace_samples"), "--out", str(r / "bad.json")])
