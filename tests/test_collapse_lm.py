"""The collapse stage's LM side: training windows, evaluation protocol, optimiser, and a smoke
run of real-spec -> train -> sample -> mix -> train -> evaluate -> summarize -> plot."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch.nn import functional as F

from dlrepro.collapse import cli, corpus
from dlrepro.collapse.lm import TokenStream, evaluate_tokens, load_model
from dlrepro.collapse.module import LanguageModel
from dlrepro.io import read_json, save_npy
from dlrepro.models.transformer import Transformer, TransformerConfig
from test_collapse_corpus import EOT, VOCAB, make_dataset

TINY = {"arch": "gpt2", "n_layer": 1, "n_head": 2, "d_model": 16, "block_size": 8}


def two_file_stream(tmp_path, block_size=5):
    a = np.arange(1, 24, dtype=np.uint16)
    b = np.arange(100, 117, dtype=np.uint16)
    save_npy(tmp_path / "a.npy", a)
    save_npy(tmp_path / "b.npy", b)
    files = [corpus.TokenFile(tmp_path / "a.npy"), corpus.TokenFile(tmp_path / "b.npy")]
    runs = np.array([[0, 2, 6], [1, 0, 17], [0, 15, 8]])  # a[2:8], b, a[15:23]
    expected = np.concatenate([a[2:8], b, a[15:23]]).astype(np.int64)
    return TokenStream(files, runs, block_size), expected


def test_windows_cover_the_stream_across_runs_and_files(tmp_path):
    stream, expected = two_file_stream(tmp_path, block_size=5)
    assert stream.n_tokens == 31 and stream.n_windows == 6  # (31 - 1) // 5
    for w in range(stream.n_windows):
        assert stream.window(w).tolist() == expected[5 * w:5 * w + 6].tolist()
    x, y = stream.collate(np.array([4, 1]))
    assert x.shape == (2, 5) and x.dtype == torch.long
    assert x[0].tolist() == expected[20:25].tolist() and y[0].tolist() == expected[21:26].tolist()
    assert torch.equal(x[1, 1:], y[1, :-1])
    with pytest.raises(IndexError):
        stream.collate(np.array([6]))


def test_evaluation_scores_every_token_once_and_matches_cross_entropy(tmp_path):
    stream, expected = two_file_stream(tmp_path, block_size=5)
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(vocab_size=130, block_size=5, n_layer=1, n_head=1, d_model=8))
    result = evaluate_tokens(model, stream, batch_size=4)
    assert result["n_predicted"] == stream.n_tokens - 1
    # 30 targets = 6 full windows of 5; compare with a direct computation
    tokens = torch.from_numpy(expected)
    total = 0.0
    for start in range(0, 30, 5):
        x, y = tokens[start:start + 5][None], tokens[start + 1:start + 6][None]
        total += float(F.cross_entropy(model(x)[0][0], y[0], reduction="sum"))
    assert result["loss"] == pytest.approx(total / 30, rel=1e-5)

    # a tail window is scored with its shorter context
    tail_stream = TokenStream(stream.files, stream.runs[:2], block_size=5)  # 23 tokens: 4 windows + 2
    r = evaluate_tokens(model, tail_stream, batch_size=3)
    assert r["n_predicted"] == 22
    t = tokens[:23]
    manual = sum(float(F.cross_entropy(model(t[s:s + 5][None])[0][0], t[s + 1:s + 6], reduction="sum"))
                 for s in range(0, 20, 5))
    manual += float(F.cross_entropy(model(t[20:22][None])[0][0], t[21:23], reduction="sum"))
    assert r["loss_sum"] == pytest.approx(manual, rel=1e-5)
    # validation estimate: evenly spaced full windows only
    assert evaluate_tokens(model, stream, max_windows=2)["n_predicted"] == 10


def test_reading_windows_does_not_keep_the_corpus_resident(tmp_path):
    n = 24_000_000  # 48 MB of uint16 tokens
    save_npy(tmp_path / "big.npy", np.arange(n, dtype=np.uint64).astype(np.uint16))
    stream = TokenStream.of_file(corpus.TokenFile(tmp_path / "big.npy"), block_size=256)

    def rss_mb():
        with open("/proc/self/status") as fh:
            return next(int(l.split()[1]) for l in fh if l.startswith("VmRSS")) / 1024

    before = rss_mb()
    windows = np.linspace(0, stream.n_windows - 1, 4000).astype(np.int64)  # spread over the file
    for i in range(0, len(windows), 500):
        x, _ = stream.collate(windows[i:i + 500])
    assert x[0, 0].item() == (windows[3500] * 256) % 65536
    assert rss_mb() - before < 20  # a memory map would have made ~48 MB resident


def test_optimiser_groups_and_schedule():
    params = cli.LMParams.from_json(json.dumps({"optim": {"lr": 0.01, "warmup_steps": 4, "min_lr_ratio": 0.1}}))
    module = LanguageModel(TransformerConfig(vocab_size=VOCAB, **TINY), params.optim, total_steps=20)
    conf = module.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() < 2 for p in no_decay["params"])
    n_unique = len({id(p) for p in module.parameters()})
    assert len(decay["params"]) + len(no_decay["params"]) == n_unique  # tied weights once
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.0025) and lrs[3] == pytest.approx(0.01)
    assert all(a >= b for a, b in zip(lrs[3:], lrs[4:])) and lrs[-1] >= 0.001


@pytest.mark.slow
def test_smoke_train_sample_mix_train_evaluate(tmp_path):
    manifest = make_dataset(tmp_path / "data", n_train=60)
    data = manifest.parent
    params = json.dumps({
        "name": "tiny",
        "model": TINY,
        "optim": {"lr": 0.02, "warmup_steps": 2, "batch_size": 4, "epochs": 2},
        "compute": {"accelerator": "cpu", "log_every_n_steps": 10, "checkpoint_every_n_steps": 20,
                    "val_every_n_steps": 10},
        "sampling": {"temperature": 1.0, "batch_size": 16, "device": "cpu"},
        "eval": {"batch_size": 8, "device": "cpu"},
    })
    run = tmp_path / "run"

    def train(spec, name):
        assert cli.main(["train", "--params", params, "--data", str(spec), "--val-tokens", str(data / "val.npy"),
                         "--ckpt-dir", str(run / f"ckpt_{name}"), "--out-model", str(run / f"{name}.pt"),
                         "--out-metrics", str(run / f"{name}_metrics.json")]) == 0
        assert not (run / f"ckpt_{name}").exists()  # removed once the outputs are written
        return run / f"{name}.pt"

    def evaluate(model):
        out = run / f"eval_{model.stem}.json"
        assert cli.main(["evaluate", "--model", str(model), "--tokens", str(data / "test.npy"),
                         "--manifest", str(manifest), "--out", str(out), "--params", params]) == 0
        return out

    assert cli.main(["real-spec", "--real", str(manifest), "--seed", "0", "--out", str(run / "real.json")]) == 0
    m0 = train(run / "real.json", "m0")
    metrics = read_json(run / "m0_metrics.json")
    assert metrics["val_loss"] < np.log(VOCAB) - 0.5  # learnt something about the toy language
    assert metrics["steps"] == 2 * (metrics["windows"] // 4)
    assert [r["step"] for r in metrics["history"] if "val_loss" in r] == [10, 20]  # periodic validation

    assert cli.main(["sample", "--params", params, "--model", str(m0), "--real-manifest", str(manifest),
                     "--seed", "5", "--out-dir", str(run / "syn1")]) == 0
    syn = read_json(run / "syn1" / "manifest.json")
    assert syn["n_documents"] == 60 and syn["generation"] == 1 and syn["source_model"]["policy"] == "real"
    tokens = np.load(run / "syn1" / "tokens.npy")
    assert tokens.dtype == np.uint16 and (tokens == EOT).sum() == 60 and tokens[-1] == EOT
    assert syn["n_tokens"] == tokens.size and syn["diversity"]["n_documents"] == 60
    assert syn["sampling"]["max_new_tokens"] == TINY["block_size"] - 1

    evals, mixes = [evaluate(m0)], [run / "real.json"]
    for policy in ("replace", "accumulate"):
        spec = run / f"{policy}_g1.json"
        assert cli.main(["mix", "--policy", policy, "--generation", "1", "--seed", "0", "--real", str(manifest),
                         "--synthetic", str(run / "syn1"), "--out", str(spec)]) == 0
        mixes.append(spec)
        evals.append(evaluate(train(spec, f"{policy}_g1")))
    ev = read_json(evals[0])
    assert ev["n_predicted"] == read_json(manifest)["splits"]["test"]["n_tokens"] - 1
    assert ev["test_nats_per_char"] == pytest.approx(ev["loss_sum_nats"] / ev["n_chars"])

    out = run / "summary.csv"
    assert cli.main(["summarize", "--evals", *map(str, evals), "--mixes", *map(str, mixes), "--out", str(out)]) == 0
    table = pd.read_csv(out)
    assert list(table.columns) == cli.SUMMARY_COLUMNS
    assert sorted(zip(table.policy, table.generation)) == [("accumulate", 0), ("accumulate", 1),
                                                          ("replace", 0), ("replace", 1)]
    g0 = table[table.generation == 0]
    assert g0.test_loss.nunique() == 1 and g0.synthetic_tokens.eq(0).all()  # one shared model
    rep = table[(table.policy == "replace") & (table.generation == 1)].iloc[0]
    acc = table[(table.policy == "accumulate") & (table.generation == 1)].iloc[0]
    assert rep.real_tokens == 0 and rep.synthetic_tokens == syn["n_tokens"]
    assert acc.train_tokens == g0.train_tokens.iloc[0] + syn["n_tokens"]
    assert acc.tokens_seen > rep.tokens_seen  # the same epochs over more data
    assert table.n_params.iloc[0] == load_model(m0)[0].num_params(non_embedding=False)

    # deterministic: a second gen-0 run gives the same weights and the same table bytes
    m0b = train(run / "real.json", "m0b")
    a, b = load_model(m0)[0].state_dict(), load_model(m0b)[0].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    out2 = run / "summary2.csv"
    cli.main(["summarize", "--evals", *map(str, evals), "--mixes", *map(str, mixes), "--out", str(out2)])
    assert out.read_bytes() == out2.read_bytes()

    fig = run / "fig"
    assert cli.main(["plot", "--csv", str(out), "--out", str(fig)]) == 0
    assert (run / "fig.png").stat().st_size > 0 and (run / "fig.pdf").stat().st_size > 0

    with pytest.raises(ValueError, match="no --mixes file matches"):
        cli.summary_table([read_json(evals[1])], {})
