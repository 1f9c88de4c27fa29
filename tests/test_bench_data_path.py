"""The data-path benchmark at tiny sizes: peak RSS of real training jobs, token files, tokenisation."""

import dataclasses
import hashlib
import json

import numpy as np
import pytest

from benchmarks import data_path as bench


def test_token_file_is_a_valid_npy_written_in_chunks(tmp_path):
    path = tmp_path / "tokens.npy"
    info = bench.write_token_file(path, 10_001, 300, seed=3, chunk=4096)  # several chunks, a partial last one
    tokens = np.load(path)
    assert tokens.dtype == np.uint16 and tokens.shape == (10_001,)
    assert info["bytes"] == path.stat().st_size
    assert info["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()  # streamed while writing
    assert tokens.max() < 300 and tokens[-1] == bench.EOT_ID
    assert info["n_documents"] == int(np.count_nonzero(tokens == bench.EOT_ID))
    # the reader the workflow trains from sees the same tokens and documents
    from dlrepro.collapse.corpus import TokenFile

    tf = TokenFile(path)
    assert np.array_equal(tf.read(0, len(tf)), tokens)
    assert tf.document_bounds(bench.EOT_ID)[0].size == info["n_documents"]


@pytest.mark.slow  # runs jobs of the data stage: ~15 s
def test_quick_run_measures_the_jobs_and_the_tokenisers(tmp_path):
    setup = dataclasses.replace(bench.QUICK, workdir=str(tmp_path))
    result = bench.benchmark(setup)
    json.dumps(result)  # JSON-able
    assert result["benchmark"] == bench.NAME == "data_path"
    assert result["setup"] == dataclasses.asdict(setup)
    assert list(tmp_path.iterdir()) == []  # the token files are deleted

    big, base = result["big"], result["baseline"]
    # the jobs ran the configured number of steps on their files, in processes of their own
    assert big["steps"] == base["steps"] == setup.steps
    assert big["n_tokens"] == setup.n_tokens and base["n_tokens"] == setup.baseline_tokens
    assert np.isfinite(big["final_train_loss"]) and np.isfinite(big["val_loss"])
    # torch + Lightning alone are hundreds of MB; the file is 8 MB and is never loaded
    assert big["peak_rss_mb"] > 100 and base["peak_rss_mb"] > 100 and big["real_spec_peak_rss_mb"] > 0
    assert abs(result["rss_growth_mb"]) < 40, result["rss_growth_mb"]
    assert result["rss_growth_mb"] == big["peak_rss_mb"] - base["peak_rss_mb"]
    # the batches come from all over the file (the epoch's permutation of every window)
    assert result["windows"]["read"] == setup.steps * setup.batch_size
    assert result["windows"]["span"] > 0.5 and result["windows"]["parts_of_16"] >= 8
    # the data path alone: serving batches from the big file costs its epoch permutation, no more
    data = result["data_path_only"]
    assert data["big_pread"]["checksum"] == data["big_memmap"]["checksum"]  # the same batches
    assert 0 < data["tiny_pread"]["peak_rss_mb"] and 0 < data["big_pread"]["peak_rss_mb"]
    assert result["permutation_mb"] == big["n_windows"] * bench.PERMUTATION_BYTES / 1e6
    assert abs(result["data_path_growth_beyond_permutation_mb"]) < 5, data
    # np.memmap keeps the pages it touched: most of the 8 MB file
    assert result["memmap_growth_mb"] > result["data_path_growth_mb"] + 2, data

    tok = result["tokenisation"]
    assert tok["identical_ids"] is True
    assert tok["batch_mb_per_s"] > 0 and tok["single_mb_per_s"] > 0 and tok["tokens"] > 0
    assert tok["speedup"] == tok["batch_mb_per_s"] / tok["single_mb_per_s"]

    checks = {c["metric"]: c for c in result["checks"]}
    assert len(checks) == len(result["checks"]) >= 8
    peak = next(c for m, c in checks.items() if m.startswith("peak RSS, training job"))
    assert peak["target"] == 1000 and peak["higher_is_better"] is False and peak["unit"] == "MB"
    assert peak["value"] == big["peak_rss_mb"] and peak["ok"] is True
    assert any(c["unit"] == "MB/s" and c["value"] == tok["batch_mb_per_s"] for c in result["checks"])
    for c in result["checks"]:
        assert set(c) >= {"metric", "value", "unit", "target", "higher_is_better", "ok", "note"}
        if c["target"] is None:
            assert c["ok"] is None


def test_text_without_a_mirror_is_generated_deterministically(monkeypatch):
    monkeypatch.setattr(bench, "data_mirror", lambda: None)
    docs, origin = bench.load_documents(20_000)
    assert origin == "generated" and len(docs) > 10 and all(docs)
    assert docs == bench.load_documents(20_000)[0]
    assert sum(len(d) for d in docs) >= 19_000
