"""Token corpora, documents, data specs and mixing (dlrepro.collapse.corpus, `collapse mix`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dlrepro.collapse import cli, corpus
from dlrepro.io import read_json, save_npy, sha256_file, write_json

EOT = 0
VOCAB = 29


def make_docs(n: int, seed: int, min_len: int = 0, max_len: int = 12) -> list[np.ndarray]:
    """Documents of a learnable toy language: runs of consecutive token ids (never EOT)."""
    rng = np.random.default_rng(seed)
    docs = []
    for _ in range(n):
        length = int(rng.integers(min_len, max_len + 1))
        start = int(rng.integers(1, VOCAB))
        docs.append(((start - 1 + np.arange(length)) % (VOCAB - 1) + 1).astype(np.int64))
    return docs


def make_dataset(root: Path, n_train: int = 40, n_val: int = 10, n_test: int = 10) -> Path:
    """A data-stage style directory (train/val/test.npy + manifest.json); returns the manifest path."""
    splits = {}
    for k, (name, n) in enumerate((("train", n_train), ("val", n_val), ("test", n_test))):
        docs = make_docs(n, seed=k)
        tokens = corpus.concatenate_documents(docs, EOT, np.uint16)
        save_npy(root / f"{name}.npy", tokens)
        splits[name] = {
            "n_documents": n,
            "n_tokens": int(tokens.size),
            "n_chars": int(sum(2 * len(d) + 1 for d in docs)),
            "sha256": sha256_file(root / f"{name}.npy"),
        }
    manifest = {"dataset": "toy", "vocab_size": VOCAB, "eot_id": EOT, "token_dtype": "uint16", "splits": splits}
    write_json(root / "manifest.json", manifest)
    return root / "manifest.json"


def make_synthetic(root: Path, manifest: Path, k: int, policy: str, seed: int = 0, n_docs: int = 25,
                   name: str = "toy-lm") -> Path:
    """A synthetic corpus directory as `collapse sample` writes it, for pool synthetic_k."""
    docs = make_docs(n_docs, seed=100 + k)
    meta = {"name": name, "policy": "real" if k == 1 else policy, "seed": seed, "generation": k - 1}
    out = root / f"{policy}_syn{k}"
    corpus.write_synthetic_corpus(out, docs, real=corpus.real_pool(manifest), generation=k,
                                  manifest={"source_model": meta, "seed": 7})
    return out


def stream_of(spec_path: Path) -> np.ndarray:
    files, runs = corpus.spec_runs(spec_path, read_json(spec_path))
    return np.concatenate([files[f].read(s, n) for f, s, n in runs]).astype(np.int64)


def expected_stream(spec_path: Path) -> np.ndarray:
    """The stream built the slow way: selected documents of each share, each followed by EOT."""
    spec = read_json(spec_path)
    sidecar = np.load(spec_path.parent / spec["indices_file"])
    out = []
    for share in spec["shares"]:
        tf = corpus.TokenFile(share["path"])
        starts, lengths = tf.document_bounds(EOT)
        if share["selection"] == "all":
            idx = np.arange(len(starts))
        else:
            idx = sidecar[share["indices_offset"]:share["indices_offset"] + share["documents"]]
        for i in idx:
            out.extend(tf.read(int(starts[i]), int(lengths[i])).tolist() + [EOT])
    return np.array(out, dtype=np.int64)


# --------------------------------------------------------------------------- token files


def test_token_file_reads_ranges_and_documents(tmp_path):
    docs = [np.array([3, 4, 5]), np.array([], dtype=np.int64), np.array([7]), np.array([1, 2])]
    arr = corpus.concatenate_documents(docs, EOT, np.uint32)
    assert arr.tolist() == [3, 4, 5, 0, 0, 7, 0, 1, 2, 0]
    save_npy(tmp_path / "t.npy", arr)
    tf = corpus.TokenFile(tmp_path / "t.npy")
    assert tf.dtype == np.uint32 and len(tf) == 10
    assert tf.read(4, 3).tolist() == [0, 7, 0]
    starts, lengths = tf.document_bounds(EOT)
    assert starts.tolist() == [0, 4, 5, 7] and lengths.tolist() == [3, 0, 1, 2]
    assert [d.tolist() for d in tf.documents(starts, lengths)] == [d.tolist() for d in docs]
    with pytest.raises(IndexError):
        tf.read(8, 3)


def test_document_bounds_scan_in_chunks(tmp_path, monkeypatch):
    docs = make_docs(50, seed=3, max_len=9)
    save_npy(tmp_path / "t.npy", corpus.concatenate_documents(docs, EOT, np.uint16))
    monkeypatch.setattr(corpus, "SCAN_CHUNK", 7)  # boundaries fall across chunk edges
    starts, lengths = corpus.TokenFile(tmp_path / "t.npy").document_bounds(EOT)
    assert lengths.tolist() == [len(d) for d in docs]


def test_corpus_format_errors(tmp_path):
    save_npy(tmp_path / "bad.npy", np.array([1, 2, 0, 3], dtype=np.uint16))
    with pytest.raises(ValueError, match="last token is not the end-of-text"):
        corpus.TokenFile(tmp_path / "bad.npy").document_bounds(EOT)
    save_npy(tmp_path / "f.npy", np.zeros(3, dtype=np.float32))
    with pytest.raises(ValueError, match="uint16 or uint32"):
        corpus.TokenFile(tmp_path / "f.npy")
    with pytest.raises(ValueError, match="contains the end-of-text"):
        corpus.concatenate_documents([np.array([1, EOT, 2])], EOT, np.uint16)
    with pytest.raises(ValueError, match="outside the range"):
        corpus.concatenate_documents([np.array([70000])], EOT, np.uint16)


def test_stats_sample_is_seeded_and_capped():
    assert corpus.sample_for_stats(5, None, 0).tolist() == [0, 1, 2, 3, 4]
    a, b = corpus.sample_for_stats(100, 10, 1), corpus.sample_for_stats(100, 10, 1)
    assert a.tolist() == b.tolist() and len(set(a.tolist())) == 10 and np.all(np.diff(a) > 0)
    assert a.tolist() != corpus.sample_for_stats(100, 10, 2).tolist()


# --------------------------------------------------------------------------- mixing


def run_mix(tmp_path, manifest, policy, generation, seed=0, extra=()):
    dirs = [make_synthetic(tmp_path, manifest, k, policy, seed) for k in range(1, generation + 1)]
    out = tmp_path / f"{policy}_g{generation}.json"
    argv = ["mix", "--policy", policy, "--generation", str(generation), "--seed", str(seed),
            "--real", str(manifest), "--synthetic", *map(str, dirs), "--out", str(out), *extra]
    assert cli.main(argv) == 0
    return out, dirs


def pool_tokens(path: str) -> int:
    return len(corpus.TokenFile(path))


@pytest.mark.parametrize("policy", ["replace", "accumulate", "accumulate-subsample"])
def test_mix_sizes_and_provenance(tmp_path, policy):
    manifest = make_dataset(tmp_path)
    out, dirs = run_mix(tmp_path, manifest, policy, generation=2)
    spec = corpus.read_spec(out)  # verifies every sha256
    real = read_json(manifest)["splits"]["train"]
    shares = {s["source"]: s for s in spec["shares"]}
    assert spec["policy"] == policy and spec["generation"] == 2 and spec["model"] == "toy-lm"
    paths = {"real": str(manifest.parent / "train.npy"), "synthetic_1": str(dirs[0] / "tokens.npy"),
             "synthetic_2": str(dirs[1] / "tokens.npy")}
    for name, share in shares.items():
        assert share["path"] == paths[name] and share["sha256"] == sha256_file(share["path"])

    if policy == "replace":
        assert list(shares) == ["synthetic_2"]
        assert shares["synthetic_2"]["selection"] == "all" and shares["synthetic_2"]["documents"] == 25
        assert spec["totals"]["real_tokens"] == 0
        assert spec["totals"]["train_tokens"] == pool_tokens(paths["synthetic_2"])
    elif policy == "accumulate":
        assert list(shares) == ["real", "synthetic_1", "synthetic_2"]
        assert all(s["selection"] == "all" for s in shares.values())
        assert spec["totals"]["documents"] == 40 + 25 + 25
        assert spec["totals"]["real_tokens"] == real["n_tokens"]
        assert spec["totals"]["train_tokens"] == sum(pool_tokens(p) for p in paths.values())
    else:
        assert spec["totals"]["documents"] == real["n_documents"]  # subsampled to the real size
        sidecar = np.load(out.parent / spec["indices_file"])
        assert sidecar.size == 40
        for s in shares.values():
            idx = sidecar[s["indices_offset"]:s["indices_offset"] + s["documents"]]
            assert np.all(np.diff(idx) > 0) and idx.max() < s["pool_documents"]
            _, lengths = corpus.TokenFile(s["path"]).document_bounds(EOT)
            assert s["tokens"] == int(lengths[idx].sum() + idx.size)  # documents + their EOTs
    totals = spec["totals"]
    assert totals["train_tokens"] == totals["real_tokens"] + totals["synthetic_tokens"]
    assert totals["train_tokens"] == sum(s["tokens"] for s in spec["shares"])
    assert spec["policy_manifest"]["total"] == totals["documents"]
    assert spec["diversity"]["n_documents"] == totals["documents"]
    # the training stream is exactly the selected documents with their separators
    stream = stream_of(out)
    assert stream.size == totals["train_tokens"]
    assert np.array_equal(stream, expected_stream(out))


def test_subsample_is_seeded(tmp_path):
    manifest = make_dataset(tmp_path)
    a, _ = run_mix(tmp_path, manifest, "accumulate-subsample", 2, seed=0)
    first = np.load(corpus.indices_path(a)).tolist()
    a2, _ = run_mix(tmp_path, manifest, "accumulate-subsample", 2, seed=0)
    assert np.load(corpus.indices_path(a2)).tolist() == first
    b, _ = run_mix(tmp_path / ".", manifest, "accumulate-subsample", 2, seed=0,
                   extra=["--stats-max-documents", "5"])
    assert read_json(b)["diversity"]["n_documents"] == 5 and read_json(b)["stats_documents"] == 5


def test_real_spec_is_the_whole_training_split(tmp_path):
    manifest = make_dataset(tmp_path)
    out = tmp_path / "real.json"
    assert cli.main(["real-spec", "--real", str(manifest), "--seed", "3", "--out", str(out)]) == 0
    spec = corpus.read_spec(out)
    assert spec["policy"] == "real" and spec["generation"] == 0 and spec["seed"] == 3
    assert spec["totals"]["train_tokens"] == read_json(manifest)["splits"]["train"]["n_tokens"]
    assert np.array_equal(stream_of(out), corpus.TokenFile(manifest.parent / "train.npy").read(0, spec["totals"]["train_tokens"]))


def test_mix_rejects_miswired_inputs(tmp_path):
    manifest = make_dataset(tmp_path)
    s1 = make_synthetic(tmp_path, manifest, 1, "replace")
    s2 = make_synthetic(tmp_path, manifest, 2, "replace")
    base = ["--seed", "0", "--real", str(manifest), "--out", str(tmp_path / "m.json")]
    with pytest.raises(ValueError, match="expected synthetic_1"):
        cli.main(["mix", "--policy", "replace", "--generation", "2", "--synthetic", str(s2), str(s1), *base])
    with pytest.raises(ValueError, match="give 2 --synthetic"):
        cli.main(["mix", "--policy", "replace", "--generation", "2", "--synthetic", str(s1), *base])
    with pytest.raises(ValueError, match="policy 'replace'"):  # synthetic_2 of another policy's chain
        cli.main(["mix", "--policy", "accumulate", "--generation", "2", "--synthetic", str(s1), str(s2), *base])
    with pytest.raises(ValueError, match="not a known policy"):
        cli.main(["mix", "--policy", "nope", "--generation", "1", "--synthetic", str(s1), *base])


def test_spec_detects_changed_source(tmp_path):
    manifest = make_dataset(tmp_path)
    out, dirs = run_mix(tmp_path, manifest, "replace", 1)
    tokens = np.load(dirs[0] / "tokens.npy")
    tokens[0] = 5 if tokens[0] != 5 else 6
    save_npy(dirs[0] / "tokens.npy", tokens)
    with pytest.raises(ValueError, match="sha256"):
        corpus.read_spec(out)


def test_params_reject_unknown_keys():
    with pytest.raises(ValueError, match=r"params\.model\.'n_layers'"):
        cli.LMParams.from_json(json.dumps({"model": {"n_layers": 2}}))
    with pytest.raises(ValueError, match=r"params\.'optimizer'"):
        cli.LMParams.from_json(json.dumps({"optimizer": {}}))
    with pytest.raises(ValueError, match="compute.seed"):
        cli.LMParams.from_json(json.dumps({"compute": {"seed": 1}}))
    with pytest.raises(ValueError, match="optim.lr"):
        cli.LMParams.from_json(json.dumps({"optim": {"lr": -1}}))
    p = cli.LMParams.from_json(json.dumps({"name": "x", "optim": {"betas": [0.9, 0.99]}}))
    assert p.optim.betas == (0.9, 0.99) and p.model.arch == "gpt2"


def test_a_corpus_of_mostly_empty_documents_is_an_error_and_writes_nothing(tmp_path):
    manifest = make_dataset(tmp_path / "data")
    real = corpus.real_pool(manifest)
    docs = [np.zeros(0, dtype=np.int64)] * 6 + [np.array([3, 4], dtype=np.int64)] * 4
    out = tmp_path / "synthetic1"
    with pytest.raises(ValueError, match=r"6 empty documents out of 10.*nothing was written"):
        corpus.write_synthetic_corpus(out, docs, real=real, generation=1, manifest={})
    assert not out.exists() or not any(out.iterdir())
    # a few empty documents are fine: a model may end a document at once
    docs = [np.zeros(0, dtype=np.int64)] * 2 + [np.array([3, 4], dtype=np.int64)] * 8
    man = corpus.write_synthetic_corpus(out, docs, real=real, generation=1, manifest={})
    assert man["n_documents"] == 10 and man["n_document_tokens"] == 16
