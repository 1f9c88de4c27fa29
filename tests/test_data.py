"""The data stage: verified downloads, the mirror, deterministic text and image preparation."""

from __future__ import annotations

import gzip
import hashlib
import io
import shutil
import struct
import tarfile
import urllib.error
from pathlib import Path

import numpy as np
import pytest

from dlrepro.data import registry
from dlrepro.data.download import DownloadError, fetch_file, lfs_pointer_sha256
from dlrepro.data.images import ImageSettings, prepare_images, read_cifar10, read_idx
from dlrepro.data.text import DataError, TextSettings, assign_splits, prepare_text, split_documents


def test_registry_entries_have_urls_and_checksums():
    for ds in registry.DATASETS.values():
        assert ds.files, ds.name
        for f in ds.files:
            assert f.urls and all(u.startswith(("https://", "http://")) for u in f.urls)
            assert f.sha256 or f.md5 or f.lfs_pointer_url


# ---- downloads ----------------------------------------------------------------------

def test_mirror_file_is_verified_and_placed(mirror, tmp_path):
    out = tmp_path / "raw" / "input.txt"
    got = fetch_file("tinyshakespeare", "input.txt", out, mirror=mirror, allow_network=False)
    assert out.read_bytes() == (mirror / "tinyshakespeare" / "input.txt").read_bytes()
    assert got.sha256 == registry.get("tinyshakespeare").file("input.txt").sha256
    assert [p.name for p in out.parent.iterdir()] == ["input.txt"]  # no temporary left


def test_corrupt_mirror_file_fails_checksum_and_leaves_nothing(mirror, tmp_path):
    bad = tmp_path / "mirror" / "tinyshakespeare"
    bad.mkdir(parents=True)
    data = bytearray((mirror / "tinyshakespeare" / "input.txt").read_bytes())
    data[1000] ^= 0xFF
    (bad / "input.txt").write_bytes(bytes(data))
    results = tmp_path / "results" / "data" / "raw" / "tinyshakespeare"
    with pytest.raises(DownloadError, match=r"checksum mismatch.*sha256 .* != expected 86c4e6aa"):
        fetch_file("tinyshakespeare", "input.txt", results / "input.txt",
                   mirror=tmp_path / "mirror", allow_network=False)
    assert list(results.iterdir()) == []


def test_missing_mirror_file_without_network_says_what_to_put_where(tmp_path):
    (tmp_path / "mirror").mkdir()
    with pytest.raises(DownloadError) as err:
        fetch_file("mnist", "train-images-idx3-ubyte.gz", tmp_path / "out" / "x.gz",
                   mirror=tmp_path / "mirror", allow_network=False)
    msg = str(err.value)
    assert "train-images-idx3-ubyte.gz" in msg and str(tmp_path / "mirror" / "mnist") in msg
    assert "https://" in msg  # the URL to download from


class FakeNet:
    """An opener that fails ``fail`` times with a transient error, then serves ``payload``."""

    def __init__(self, payload: bytes, fail: int = 0):
        self.payload, self.fail, self.calls = payload, fail, []

    def __call__(self, url, timeout):
        self.calls.append(url)
        if len(self.calls) <= self.fail:
            raise urllib.error.URLError("connection reset")
        return io.BytesIO(self.payload)


def test_network_download_retries_transient_errors(tmp_path, monkeypatch, mirror):
    monkeypatch.setattr("time.sleep", lambda s: None)
    monkeypatch.delenv("DLREPRO_DATA_MIRROR", raising=False)
    payload = (mirror / "tinyshakespeare" / "input.txt").read_bytes()
    net = FakeNet(payload, fail=2)
    out = tmp_path / "input.txt"
    fetch_file("tinyshakespeare", "input.txt", out, mirror=None, allow_network=True,
               retries=3, opener=net)
    assert len(net.calls) == 3 and out.read_bytes() == payload


def test_network_checksum_mismatch_names_url_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr("time.sleep", lambda s: None)
    monkeypatch.delenv("DLREPRO_DATA_MIRROR", raising=False)
    net = FakeNet(b"not shakespeare")
    with pytest.raises(DownloadError, match=r"raw\.githubusercontent\.com.*sha256 .* != expected"):
        fetch_file("tinyshakespeare", "input.txt", tmp_path / "input.txt", opener=net)
    assert list(tmp_path.iterdir()) == []
    assert len(net.calls) == 1  # a wrong file is not retried


def test_lfs_pointer_checksum():
    pointer = b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"ab" * 32 + b"\nsize 12\n"
    assert lfs_pointer_sha256("u", opener=lambda u, t: io.BytesIO(pointer)) == "ab" * 32
    with pytest.raises(DownloadError, match="not a Git LFS pointer"):
        lfs_pointer_sha256("u", opener=lambda u, t: io.BytesIO(b"<html>"))


# ---- text -----------------------------------------------------------------------------

def test_documents_and_splits_are_disjoint_and_complete():
    assert split_documents("a b\n\n\n\nc\n\n  \n\nd", "\n\n") == ["a b", "c", "d"]
    parts = assign_splits(1000, 0.05, 0.1, seed=3)
    allidx = np.concatenate(list(parts.values()))
    assert sorted(allidx) == list(range(1000))
    assert len(parts["test"]) == 100 and len(parts["val"]) == 50
    assert all(np.all(np.diff(v) > 0) for v in parts.values())  # corpus order kept
    assert not np.array_equal(parts["test"], assign_splits(1000, 0.05, 0.1, seed=4)["test"])


def _prepare_shakespeare(mirror, out, **kw):
    raw = {"input.txt": mirror / "tinyshakespeare" / "input.txt"}
    settings = TextSettings(vocab_size=512, max_documents=800, seed=0, **kw)
    return prepare_text("tinyshakespeare", raw, settings, out, separator="\n\n")


def test_text_preparation_is_byte_identical_across_runs(mirror, tmp_path):
    m1 = _prepare_shakespeare(mirror, tmp_path / "a")
    m2 = _prepare_shakespeare(mirror, tmp_path / "b")
    for name in ("train.npy", "val.npy", "test.npy", "tokenizer.json", "manifest.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert m1 == m2


def test_token_arrays_round_trip_to_the_documents(mirror, tmp_path):
    from tokenizers import Tokenizer

    man = _prepare_shakespeare(mirror, tmp_path)
    tok = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    train = np.load(tmp_path / "train.npy", mmap_mode="r")
    assert train.dtype == np.uint16 and train[-1] == man["eot_id"]
    assert int((train == man["eot_id"]).sum()) == man["splits"]["train"]["n_documents"]
    first = np.asarray(train[: int(np.argmax(train == man["eot_id"]))]).tolist()
    text = (mirror / "tinyshakespeare" / "input.txt").read_text()
    decoded = tok.decode(first)
    assert decoded and decoded in text
    # the tokenizer saw the training split only: splits are disjoint by document
    assert man["splits"]["test"]["n_documents"] == 80 and man["splits"]["val"]["n_documents"] == 40


def test_vocab_too_large_for_dtype_is_rejected_before_work(tmp_path):
    with pytest.raises(DataError, match=r"vocab_size: 70000 token ids do not fit in uint16"):
        prepare_text("x", {}, TextSettings(vocab_size=70000), tmp_path, separator="\n")
    assert not any(tmp_path.iterdir())


def test_empty_corpus_is_an_error(tmp_path):
    src = tmp_path / "empty.txt"
    src.write_text("\n\n\n\n")
    with pytest.raises(DataError, match="no documents"):
        prepare_text("x", {"empty.txt": src}, TextSettings(), tmp_path / "out", separator="\n\n")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


# ---- images ---------------------------------------------------------------------------

def test_mnist_test_file_split(mirror, tmp_path):
    src = {f: mirror / "mnist" / f for f in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
    man = prepare_images("mnist", src, ImageSettings(source="test-file", test_fraction=0.2), tmp_path)
    xtr = np.load(tmp_path / "train_images.npy")
    ytr = np.load(tmp_path / "train_labels.npy")
    xte = np.load(tmp_path / "test_images.npy")
    assert xtr.shape == (8000, 1, 28, 28) and xte.shape == (2000, 1, 28, 28)
    assert xtr.dtype == np.float32 and 0.0 <= xtr.min() and xtr.max() <= 1.0 and xtr.max() > 0.99
    assert ytr.dtype == np.int64 and set(np.unique(ytr)) == set(range(10))
    assert man["splits"]["train"]["n_images"] == 8000
    # train and test are disjoint parts of the same file
    raw = read_idx(src["t10k-images-idx3-ubyte.gz"]).reshape(10000, -1)
    rows = {r.tobytes() for r in raw}
    assert len(rows) > 9900
    tr = {np.round(r * 255).astype(np.uint8).tobytes() for r in xtr.reshape(8000, -1)}
    te = {np.round(r * 255).astype(np.uint8).tobytes() for r in xte.reshape(2000, -1)}
    assert tr <= rows and te <= rows and len(tr & te) < 5  # (a handful of duplicate digits exist)


def test_idx_rejects_garbage(tmp_path):
    p = tmp_path / "x.gz"
    with gzip.open(p, "wb") as fh:
        fh.write(b"\x00\x00\x09\x01" + struct.pack(">I", 3) + b"abc")
    with pytest.raises(DataError, match="not an unsigned-byte IDX"):
        read_idx(p)


def test_cifar10_binary_reader(tmp_path):
    rng = np.random.default_rng(0)

    def batch(n):
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        pixels = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        return np.concatenate([labels[:, None], pixels], axis=1), labels, pixels

    path = tmp_path / "cifar-10-binary.tar.gz"
    expected = {}
    with tarfile.open(path, "w:gz") as tar:
        for name, n in [("data_batch_1.bin", 4), ("data_batch_2.bin", 3), ("test_batch.bin", 2), ("readme.html", 0)]:
            rec, labels, pixels = batch(n) if n else (np.zeros((0,), np.uint8), None, None)
            payload = rec.tobytes() if n else b"<html>"
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
            expected[name] = (labels, pixels)
    parts = read_cifar10(path)
    x, y = parts["train"]
    assert x.shape == (7, 3, 32, 32) and y.tolist() == list(expected["data_batch_1.bin"][0]) + list(expected["data_batch_2.bin"][0])
    assert np.array_equal(x[0].reshape(-1), expected["data_batch_1.bin"][1][0])
    assert parts["test"][0].shape == (2, 3, 32, 32)
