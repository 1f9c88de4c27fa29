"""Text corpora: documents, a deterministic split, a byte-level BPE tokenizer, token arrays.

Output format (``results/data/<data set>/``):

``train.npy``, ``val.npy``, ``test.npy``
    1-D token arrays (``uint16``, or ``uint32`` where configured): the split's documents
    in corpus order, each followed by the end-of-text token ``eot_id`` (the document
    separator, also the start token of sampled documents). Read them memory-mapped.
``tokenizer.json``
    The Hugging Face ``tokenizers`` byte-level BPE, trained on the training split only.
``manifest.json``
    Data set, source files and their sha256, split unit and fractions, tokenizer settings,
    ``eot_id``, ``vocab_size``, ``token_dtype`` and per split ``n_documents``, ``n_tokens``,
    ``n_chars`` (characters of the documents plus one per document for its end-of-text,
    so nats/char is comparable across tokenizers) and the array's sha256.

The split unit is the **document** (a speech of a play for tinyshakespeare, a story for
TinyStories): documents are assigned to test/val/train by a permutation seeded from the
config, and each split keeps corpus order. Where upstream ships its own held-out file
(TinyStories' ``valid``), that file is the test split.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlrepro.errors import InputFileError
from dlrepro.io import save_npy, sha256_file, write_json, write_text
from dlrepro.log import get_logger

EOT = "<|endoftext|>"
DTYPES = {"uint16": np.uint16, "uint32": np.uint32}


class DataError(InputFileError):
    """The data cannot be prepared as configured."""


@dataclass
class TextSettings:
    vocab_size: int = 2048
    token_dtype: str = "uint16"
    val_fraction: float = 0.05
    test_fraction: float = 0.1
    max_documents: int | None = None
    seed: int = 0

    def check(self) -> None:
        if self.token_dtype not in DTYPES:
            raise DataError(f"data.text.token_dtype: {self.token_dtype!r} is not one of {list(DTYPES)}")
        cap = np.iinfo(DTYPES[self.token_dtype]).max + 1
        if self.vocab_size > cap:
            raise DataError(
                f"data.text.vocab_size: {self.vocab_size} token ids do not fit in "
                f"{self.token_dtype} (at most {cap}); use token_dtype uint32 or a smaller vocab"
            )
        if self.vocab_size < 257:
            raise DataError(f"data.text.vocab_size: {self.vocab_size} is below the 256 bytes + {EOT}")
        if not 0 <= self.val_fraction < 1 or not 0 < self.test_fraction < 1:
            raise DataError("data.text: val_fraction must be in [0, 1) and test_fraction in (0, 1)")
        if self.val_fraction + self.test_fraction >= 1:
            raise DataError("data.text: val_fraction + test_fraction must leave a training split")


def split_documents(text: str, separator: str) -> list[str]:
    """Cut ``text`` at ``separator``; strip each piece; drop empty pieces."""
    return [d.strip() for d in text.split(separator) if d.strip()]


def assign_splits(
    n_docs: int, val_fraction: float, test_fraction: float, seed: int
) -> dict[str, np.ndarray]:
    """Document indices of each split (sorted, so each split keeps corpus order)."""
    perm = np.random.default_rng([seed, 0x5EED]).permutation(n_docs)
    n_test = int(round(test_fraction * n_docs)) if test_fraction else 0
    n_val = int(round(val_fraction * n_docs)) if val_fraction else 0
    parts = {
        "test": perm[:n_test],
        "val": perm[n_test : n_test + n_val],
        "train": perm[n_test + n_val :],
    }
    return {k: np.sort(v) for k, v in parts.items()}


def train_tokenizer(docs: list[str], vocab_size: int):
    """A byte-level BPE tokenizer (``tokenizers``) with ``<|endoftext|>`` as id 0."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(docs, trainer=trainer, length=len(docs))
    return tok


def encode_documents(tok, docs: list[str], dtype: np.dtype, eot_id: int) -> np.ndarray:
    """Token ids of ``docs`` (Rust batch API, multi-threaded), ``eot_id`` after each document."""
    pieces = []
    for start in range(0, len(docs), 4096):
        for enc in tok.encode_batch(docs[start : start + 4096], add_special_tokens=False):
            pieces.append(np.asarray(enc.ids, dtype=dtype))
            pieces.append(np.asarray([eot_id], dtype=dtype))
    if not pieces:
        return np.zeros(0, dtype=dtype)
    return np.concatenate(pieces)


def prepare_text(
    dataset: str,
    sources: dict[str, Path],
    settings: TextSettings,
    out_dir: Path,
    *,
    separator: str,
    test_source: str | None = None,
) -> dict:
    """Prepare ``dataset`` from its raw ``sources`` (upstream file name -> path) into ``out_dir``.

    ``test_source`` names the upstream file that is the held-out test split, if upstream has
    one; otherwise all files are pooled and split by document.
    """
    settings.check()
    log = get_logger("data", dataset=dataset)
    out_dir = Path(out_dir)

    def read_docs(path: Path) -> list[str]:
        text = Path(path).read_text(encoding="utf-8")
        return split_documents(text, separator)

    pooled = [d for name, p in sorted(sources.items()) if name != test_source for d in read_docs(p)]
    test_docs = read_docs(sources[test_source]) if test_source else None
    if settings.max_documents is not None and len(pooled) > settings.max_documents:
        keep = np.sort(
            np.random.default_rng([settings.seed, 0xD0C5]).choice(
                len(pooled), settings.max_documents, replace=False
            )
        )
        pooled = [pooled[i] for i in keep]
    if not pooled:
        raise DataError(f"{dataset}: the corpus has no documents (separator {separator!r})")

    if test_docs is None:
        idx = assign_splits(len(pooled), settings.val_fraction, settings.test_fraction, settings.seed)
        splits = {k: [pooled[i] for i in v] for k, v in idx.items()}
    else:
        val_share = settings.val_fraction / max(1e-12, 1 - settings.test_fraction)
        idx = assign_splits(len(pooled), val_share, 0.0, settings.seed)
        splits = {"train": [pooled[i] for i in idx["train"]], "val": [pooled[i] for i in idx["val"]]}
        splits["test"] = test_docs
    for name, docs in splits.items():
        if not docs:
            raise DataError(
                f"{dataset}: the {name} split is empty ({len(pooled)} documents; "
                f"val_fraction={settings.val_fraction}, test_fraction={settings.test_fraction})"
            )
    log.info(
        "documents: %s", ", ".join(f"{k}={len(v):,}" for k, v in splits.items())
    )

    log.info("training byte-level BPE, vocab %d, on the training split", settings.vocab_size)
    tok = train_tokenizer(splits["train"], settings.vocab_size)
    eot_id = tok.token_to_id(EOT)
    vocab = tok.get_vocab_size()
    dtype = DTYPES[settings.token_dtype]

    manifest_splits = {}
    for name in ("train", "val", "test"):
        docs = splits[name]
        tokens = encode_documents(tok, docs, dtype, eot_id)
        path = out_dir / f"{name}.npy"
        save_npy(path, tokens)
        manifest_splits[name] = {
            "n_documents": len(docs),
            "n_tokens": int(tokens.size),
            "n_chars": int(sum(len(d) + 1 for d in docs)),
            "sha256": sha256_file(path),
        }
        log.info("%s: %d documents, %d tokens", name, len(docs), tokens.size)
    tok_path = out_dir / "tokenizer.json"
    write_text(tok_path, tok.to_str())
    manifest = {
        "dataset": dataset,
        "kind": "text",
        "sources": {n: {"sha256": sha256_file(p)} for n, p in sorted(sources.items())},
        "split_unit": "document",
        "document_separator": separator,
        "test_source": test_source,
        "settings": settings.__dict__,
        "tokenizer": {"type": "byte-level BPE (tokenizers)", "sha256": sha256_file(tok_path)},
        "vocab_size": vocab,
        "eot_id": eot_id,
        "eot_token": EOT,
        "token_dtype": settings.token_dtype,
        "splits": manifest_splits,
    }
    write_json(out_dir / "manifest.json", manifest)
    return manifest
