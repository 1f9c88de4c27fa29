"""Token corpora of the model-collapse stage: files, documents, pools and mixes.

Corpus format (the same for the real splits written by the data stage and for the synthetic
corpora written by ``collapse sample``): a 1-D ``.npy`` token array (``uint16`` or
``uint32``, the dtype is read from the file) holding the documents in order, **each
followed by the end-of-text token** ``eot_id``. A synthetic corpus is a directory with
``tokens.npy`` and ``manifest.json`` (see :func:`write_synthetic_corpus`).

Token files are read through :class:`TokenFile`, with ``os.pread`` of the byte range that is
needed: nothing is loaded whole and, unlike a memory map whose touched pages stay in the
process's resident set, the memory of a training job does not grow with the corpus.

Mixes. A *pool* is one corpus whose items are its documents: ``real`` (the real training
split) or ``synthetic_k`` (sampled from the model of generation ``k - 1``). A mixing policy
(:mod:`dlrepro.policies`) picks document indices of each pool; the *data spec* (written by
``collapse mix``, or by ``collapse real-spec`` for generation 0) records, per share, the
source file with its sha256, how many documents and tokens were taken, and where its
document indices are (a sidecar ``<spec stem>.indices.npy``; shares that take every
document of their pool are marked ``"selection": "all"`` and store no indices).

Token counts in a spec are *stream tokens*: document tokens plus one end-of-text per
document, i.e. exactly what the model is trained on. ``train_tokens = real_tokens +
synthetic_tokens``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlrepro import policies
from dlrepro.errors import InputFileError, ParamsError, UserError
from dlrepro.io import read_json, save_npy, sha256_file, write_json

SPEC_FORMAT = "dlrepro.collapse.data-spec/1"
CORPUS_FORMAT = "dlrepro.collapse.synthetic-corpus/1"
DTYPES = {"uint16": np.uint16, "uint32": np.uint32}
SCAN_CHUNK = 1 << 22  # tokens per read when scanning a file for document boundaries


class TokenFile:
    """A 1-D ``.npy`` token array on disk, read by byte range (``os.pread``)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._fd: int | None = None
        with open(self.path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
            else:
                raise InputFileError(f"{self.path}: unsupported .npy format version {version}")
            self.offset = fh.tell()
        if len(shape) != 1 or fortran:
            raise InputFileError(f"{self.path}: token arrays must be 1-D, got shape {shape}")
        if dtype not in (np.dtype(np.uint16), np.dtype(np.uint32)):
            raise InputFileError(f"{self.path}: token dtype must be uint16 or uint32, got {dtype}")
        self.dtype = np.dtype(dtype)
        self.n_tokens = int(shape[0])

    def __len__(self) -> int:
        return self.n_tokens

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_fd": None}  # a file descriptor does not travel

    def _descriptor(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        return self._fd

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        self.close()

    def read(self, start: int, count: int) -> np.ndarray:
        """Tokens ``[start, start + count)`` as a fresh array of the file's dtype."""
        if start < 0 or count < 0 or start + count > self.n_tokens:
            raise IndexError(f"{self.path}: range [{start}, {start + count}) outside [0, {self.n_tokens})")
        size = self.dtype.itemsize
        data = os.pread(self._descriptor(), count * size, self.offset + start * size)
        if len(data) != count * size:
            raise OSError(f"{self.path}: short read at token {start}")
        return np.frombuffer(data, dtype=self.dtype).copy()

    def document_bounds(self, eot_id: int) -> tuple[np.ndarray, np.ndarray]:
        """``(starts, lengths)`` of every document (the end-of-text after each one excluded).

        The file is scanned in chunks, so memory holds the boundaries, never the corpus.
        """
        ends = []
        for start in range(0, self.n_tokens, SCAN_CHUNK):
            chunk = self.read(start, min(SCAN_CHUNK, self.n_tokens - start))
            ends.append(np.flatnonzero(chunk == eot_id) + start)
        ends = np.concatenate(ends) if ends else np.zeros(0, dtype=np.int64)
        if self.n_tokens and (ends.size == 0 or ends[-1] != self.n_tokens - 1):
            raise InputFileError(
                f"{self.path}: the last token is not the end-of-text token {eot_id}; "
                "every document must be followed by it"
            )
        starts = np.concatenate([[0], ends[:-1] + 1]).astype(np.int64) if ends.size else ends
        return starts, (ends - starts).astype(np.int64)

    def documents(self, starts: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
        """The documents at ``starts`` with ``lengths`` (as int64 arrays)."""
        return [self.read(int(s), int(n)).astype(np.int64) for s, n in zip(starts, lengths)]


def concatenate_documents(docs: list[np.ndarray], eot_id: int, dtype: np.dtype) -> np.ndarray:
    """The corpus array: every document followed by ``eot_id``, in ``dtype``."""
    info = np.iinfo(dtype)
    out = np.empty(sum(len(d) + 1 for d in docs), dtype=dtype)
    pos = 0
    for i, doc in enumerate(docs):
        doc = np.asarray(doc)
        if doc.size and (doc.min() < 0 or doc.max() > info.max):
            raise InputFileError(f"document {i} has token ids outside the range of {np.dtype(dtype).name}")
        if doc.size and np.any(doc == eot_id):
            raise InputFileError(f"document {i} contains the end-of-text token {eot_id}")
        out[pos:pos + doc.size] = doc
        out[pos + doc.size] = eot_id
        pos += doc.size + 1
    return out


def sample_for_stats(n_documents: int, max_documents: int | None, seed: int) -> np.ndarray:
    """Sorted indices of the documents diversity statistics are computed on.

    All documents when ``max_documents`` is None or not smaller than ``n_documents``;
    otherwise a uniform sample without replacement (seeded), so that statistics of a
    paper-scale corpus stay cheap.
    """
    if max_documents is None or max_documents >= n_documents:
        return np.arange(n_documents, dtype=np.int64)
    if max_documents < 1:
        raise ParamsError(f"stats_max_documents must be >= 1 or None, got {max_documents}")
    rng = np.random.default_rng([int(seed), 0x57A7])
    return np.sort(rng.choice(n_documents, size=max_documents, replace=False)).astype(np.int64)


# --------------------------------------------------------------------------- pools


@dataclass(frozen=True)
class Pool:
    """One corpus the mixing policies choose documents from."""

    name: str  # "real" or "synthetic_<k>"
    path: Path  # the token file
    n_documents: int
    n_tokens: int
    sha256: str
    eot_id: int
    vocab_size: int
    token_dtype: str
    meta: dict  # the manifest it was described by


def real_pool(manifest_path: str | os.PathLike, split: str = "train") -> Pool:
    """The ``split`` of a real data set, from the data stage's ``manifest.json``."""
    manifest_path = Path(manifest_path)
    manifest = read_json(manifest_path)
    for key in ("dataset", "vocab_size", "eot_id", "token_dtype", "splits"):
        if key not in manifest:
            raise InputFileError(f"{manifest_path}: not a data manifest, key {key!r} is missing")
    if split not in manifest["splits"]:
        raise InputFileError(f"{manifest_path}: no split {split!r}; has {sorted(manifest['splits'])}")
    info = manifest["splits"][split]
    path = manifest_path.parent / f"{split}.npy"
    return Pool(
        name="real",
        path=path,
        n_documents=int(info["n_documents"]),
        n_tokens=int(info["n_tokens"]),
        sha256=str(info["sha256"]),
        eot_id=int(manifest["eot_id"]),
        vocab_size=int(manifest["vocab_size"]),
        token_dtype=str(manifest["token_dtype"]),
        meta=manifest,
    )


def synthetic_pool(corpus_dir: str | os.PathLike) -> Pool:
    """A synthetic corpus written by ``collapse sample`` (see :func:`write_synthetic_corpus`)."""
    corpus_dir = Path(corpus_dir)
    manifest = read_json(corpus_dir / "manifest.json")
    if manifest.get("format") != CORPUS_FORMAT:
        raise InputFileError(f"{corpus_dir}: not a synthetic corpus (format {manifest.get('format')!r})")
    return Pool(
        name=policies.pool_name(int(manifest["generation"])),
        path=corpus_dir / "tokens.npy",
        n_documents=int(manifest["n_documents"]),
        n_tokens=int(manifest["n_tokens"]),
        sha256=str(manifest["tokens_sha256"]),
        eot_id=int(manifest["eot_id"]),
        vocab_size=int(manifest["vocab_size"]),
        token_dtype=str(manifest["token_dtype"]),
        meta=manifest,
    )


# a sampled corpus with more empty documents than this is an error, not a training set
MAX_EMPTY_FRACTION = 0.5


def write_synthetic_corpus(
    out_dir: str | os.PathLike, docs: list[np.ndarray], *, real: Pool, generation: int, manifest: dict
) -> dict:
    """Write ``tokens.npy`` (real data's format and dtype) and ``manifest.json`` into ``out_dir``.

    ``generation`` is the pool index ``k`` (the corpus was sampled from the model of
    generation ``k - 1``). ``manifest`` adds the caller's provenance (sampling settings,
    seed, source model, diversity statistics) to the size and format fields set here.
    """
    out_dir = Path(out_dir)
    n_empty = sum(1 for d in docs if len(d) == 0)
    if not docs or n_empty > MAX_EMPTY_FRACTION * len(docs):
        raise UserError(
            f"the sampled corpus for generation {generation} has {n_empty} empty documents out of "
            f"{len(docs)} (more than {MAX_EMPTY_FRACTION:.0%}): the model emits end-of-text at "
            "once; nothing was written (check the model, or the sampling temperature / top-k / top-p)"
        )
    tokens = concatenate_documents(docs, real.eot_id, DTYPES[real.token_dtype])
    tokens_path = out_dir / "tokens.npy"
    save_npy(tokens_path, tokens)
    full = {
        **manifest,
        "format": CORPUS_FORMAT,
        "dataset": real.meta["dataset"],
        "generation": int(generation),
        "pool": policies.pool_name(int(generation)),
        "vocab_size": real.vocab_size,
        "eot_id": real.eot_id,
        "token_dtype": real.token_dtype,
        "n_documents": len(docs),
        "n_tokens": int(tokens.size),  # stream tokens: documents plus one end-of-text each
        "n_document_tokens": int(tokens.size - len(docs)),
        "tokens_sha256": sha256_file(tokens_path),
    }
    write_json(out_dir / "manifest.json", full)
    return full


def check_compatible(pools: list[Pool]) -> None:
    """All pools must share the data set, vocabulary, end-of-text token and dtype."""
    ref = pools[0]
    for p in pools[1:]:
        for key in ("eot_id", "vocab_size", "token_dtype"):
            if getattr(p, key) != getattr(ref, key):
                raise InputFileError(
                    f"pool {p.name} ({p.path}) has {key}={getattr(p, key)!r} but "
                    f"{ref.name} ({ref.path}) has {getattr(ref, key)!r}"
                )
        if p.meta.get("dataset") != ref.meta.get("dataset"):
            raise InputFileError(
                f"pool {p.name} is from data set {p.meta.get('dataset')!r}, "
                f"{ref.name} from {ref.meta.get('dataset')!r}"
            )


# --------------------------------------------------------------------------- data specs


def indices_path(spec_path: str | os.PathLike) -> Path:
    """The sidecar holding a spec's document indices: ``mix.json`` -> ``mix.indices.npy``."""
    spec_path = Path(spec_path)
    return spec_path.with_name(spec_path.stem + ".indices.npy")


def build_spec(
    pools: list[Pool],
    shares: list[policies.Share],
    *,
    policy: str,
    generation: int,
    seed: int,
    stats_max_documents: int | None,
) -> tuple[dict, np.ndarray, list[np.ndarray]]:
    """The data spec of ``shares`` of ``pools``: ``(spec, indices, stats_docs)``.

    ``indices`` is the concatenation of the document indices of the shares that do not take
    their whole pool (for the sidecar file); ``stats_docs`` are the documents the diversity
    statistics are to be computed on (a seeded uniform sample of the mix, see
    :func:`sample_for_stats`).
    """
    check_compatible(pools)
    by_name = {p.name: p for p in pools}
    rows, stored, per_share_docs = [], [], []
    offset = 0
    for share in shares:
        pool = by_name[share.source]
        idx = np.asarray(share.indices, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= pool.n_documents):
            raise InputFileError(f"share of {pool.name} selects documents outside [0, {pool.n_documents})")
        everything = idx.size == pool.n_documents and np.array_equal(idx, np.arange(pool.n_documents))
        tf = TokenFile(pool.path)
        if len(tf) != pool.n_tokens:
            raise InputFileError(f"{pool.path} has {len(tf)} tokens, its manifest says {pool.n_tokens}")
        starts, lengths = tf.document_bounds(pool.eot_id)
        if starts.size != pool.n_documents:
            raise InputFileError(
                f"{pool.path} has {starts.size} documents, its manifest says {pool.n_documents}"
            )
        row = {
            "source": pool.name,
            "path": str(pool.path),
            "sha256": pool.sha256,
            "pool_documents": pool.n_documents,
            "documents": int(idx.size),
            "tokens": int(lengths[idx].sum() + idx.size),
            "selection": "all" if everything else "indices",
        }
        if not everything:
            row["indices_offset"] = offset
            stored.append(idx)
            offset += idx.size
        rows.append(row)
        per_share_docs.append((tf, starts[idx], lengths[idx]))

    total_docs = sum(r["documents"] for r in rows)
    pick = sample_for_stats(total_docs, stats_max_documents, seed * 1_000_003 + generation)
    bounds = np.cumsum([0] + [r["documents"] for r in rows])
    stats_docs = []
    for k, (tf, starts, lengths) in enumerate(per_share_docs):
        local = pick[(pick >= bounds[k]) & (pick < bounds[k + 1])] - bounds[k]
        stats_docs.extend(tf.documents(starts[local], lengths[local]))

    real_tokens = sum(r["tokens"] for r in rows if r["source"] == "real")
    train_tokens = sum(r["tokens"] for r in rows)
    spec = {
        "format": SPEC_FORMAT,
        "dataset": pools[0].meta.get("dataset"),
        "policy": policy,
        "generation": int(generation),
        "seed": int(seed),
        "vocab_size": pools[0].vocab_size,
        "eot_id": pools[0].eot_id,
        "token_dtype": pools[0].token_dtype,
        "shares": rows,
        "policy_manifest": policies.manifest(shares),
        "totals": {
            "documents": int(total_docs),
            "train_tokens": int(train_tokens),
            "real_tokens": int(real_tokens),
            "synthetic_tokens": int(train_tokens - real_tokens),
        },
        "stats_documents": int(pick.size),
    }
    indices = np.concatenate(stored) if stored else np.zeros(0, dtype=np.int64)
    return spec, indices, stats_docs


def write_spec(path: str | os.PathLike, spec: dict, indices: np.ndarray) -> None:
    """Write the spec JSON and its indices sidecar (always, possibly empty), atomically."""
    path = Path(path)
    sidecar = indices_path(path)
    save_npy(sidecar, indices.astype(np.int64))
    write_json(path, {**spec, "indices_file": sidecar.name, "indices_sha256": sha256_file(sidecar)})


def read_spec(path: str | os.PathLike, verify: bool = True) -> dict:
    """Read a data spec; with ``verify``, check every source file's and the sidecar's sha256."""
    path = Path(path)
    spec = read_json(path)
    if spec.get("format") != SPEC_FORMAT:
        raise InputFileError(
            f"{path}: not a data spec (format {spec.get('format')!r}); write one with "
            "`collapse real-spec` or `collapse mix`"
        )
    if verify:
        files = [(Path(s["path"]), s["sha256"]) for s in spec["shares"]]
        files.append((path.parent / spec["indices_file"], spec["indices_sha256"]))
        for file, digest in files:
            actual = sha256_file(file)
            if actual != digest:
                raise InputFileError(f"{file}: sha256 {actual} differs from {digest} recorded in {path}")
    return spec


def spec_runs(spec_path: str | os.PathLike, spec: dict) -> tuple[list[TokenFile], np.ndarray]:
    """The training stream of a spec as contiguous runs of its source files.

    Returns ``(files, runs)`` with ``runs`` an int64 array ``[n_runs, 3]`` of ``(file index,
    start token, length)``. The stream is the shares in spec order; within a share the
    selected documents in corpus order, each with its end-of-text. A share that takes its
    whole pool is one run; otherwise runs of consecutive selected documents are merged.
    """
    spec_path = Path(spec_path)
    sidecar = np.load(spec_path.parent / spec["indices_file"], allow_pickle=False)
    files, runs = [], []
    for k, share in enumerate(spec["shares"]):
        tf = TokenFile(share["path"])
        files.append(tf)
        if share["selection"] == "all":
            runs.append(np.array([[k, 0, len(tf)]], dtype=np.int64))
            continue
        starts, lengths = tf.document_bounds(int(spec["eot_id"]))
        off = int(share["indices_offset"])
        idx = sidecar[off:off + int(share["documents"])]
        if idx.size == 0:
            continue
        s, n = starts[idx], lengths[idx] + 1  # documents with their end-of-text
        new_run = np.concatenate([[True], s[1:] != s[:-1] + n[:-1]])
        first = np.flatnonzero(new_run)
        run_len = np.add.reduceat(n, first)
        runs.append(np.column_stack([np.full(first.size, k), s[first], run_len]).astype(np.int64))
    runs = np.concatenate(runs) if runs else np.zeros((0, 3), dtype=np.int64)
    return files, runs
