"""Diversity statistics of a corpus of token documents (for the model-collapse stage).

``diversity_stats(docs)`` returns a dict with these keys (exact definitions; n-grams never
cross document boundaries):

- ``n_documents``: number of documents (empty ones included).
- ``n_tokens``: total number of tokens.
- ``mean_length``: ``n_tokens / n_documents``.
- ``unigram_entropy``: Shannon entropy, in bits, of the corpus-wide token frequency
  distribution (``-sum_w p_w log2 p_w`` with ``p_w`` = count of token w / n_tokens).
- ``distinct_2``, ``distinct_3``: distinct-n (Li et al. 2016): number of distinct n-grams in
  the corpus divided by the total number of n-gram occurrences (a document of length L has
  ``max(L - n + 1, 0)`` of them).
- ``repetition_rate``: token ``t`` (0-based position in its document, ``t >= 3``) is a
  repetition if the 4-gram ending at ``t`` also ends at an earlier position of the same
  document (overlaps allowed). The rate is the number of repetitions summed over documents
  divided by ``n_tokens`` (token-weighted, so short or empty documents need no special case).
  Equivalently, per document: (#4-grams - #distinct 4-grams); summed, over ``n_tokens``.

Ratios with a zero denominator (no tokens, or no n-grams) are NaN.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.stats import entropy

REPETITION_N = 4


def _ngrams(tokens: np.ndarray, doc_id: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """All n-grams that lie inside one document: rows [count, n] and their document ids."""
    if tokens.size < n:
        return np.empty((0, n), dtype=tokens.dtype), np.empty(0, dtype=doc_id.dtype)
    windows = sliding_window_view(tokens, n)
    inside = doc_id[: tokens.size - n + 1] == doc_id[n - 1:]
    return windows[inside], doc_id[: tokens.size - n + 1][inside]


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else float("nan")


def diversity_stats(docs: list[np.ndarray]) -> dict:
    """Corpus diversity statistics; see the module docstring for the exact definitions."""
    if len(docs) == 0:
        raise ValueError("diversity_stats needs at least one document, got an empty list")
    arrays = [np.asarray(d).ravel() for d in docs]
    for i, a in enumerate(arrays):
        if a.size and not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"document {i} must hold integer token ids, got dtype {a.dtype}")
    lengths = np.array([a.size for a in arrays])
    tokens = np.concatenate(arrays).astype(np.int64) if lengths.sum() else np.empty(0, dtype=np.int64)
    doc_id = np.repeat(np.arange(len(arrays)), lengths)
    n_tokens = int(tokens.size)

    stats = {"n_documents": len(arrays), "n_tokens": n_tokens, "mean_length": n_tokens / len(arrays)}
    if n_tokens:
        _, counts = np.unique(tokens, return_counts=True)
        stats["unigram_entropy"] = float(entropy(counts, base=2))
    else:
        stats["unigram_entropy"] = float("nan")
    for n in (2, 3):
        grams, _ = _ngrams(tokens, doc_id, n)
        stats[f"distinct_{n}"] = _ratio(len(np.unique(grams, axis=0)), len(grams))
    grams, ids = _ngrams(tokens, doc_id, REPETITION_N)
    distinct_per_doc = len(np.unique(np.column_stack([ids, grams]), axis=0))
    stats["repetition_rate"] = _ratio(len(grams) - distinct_per_doc, n_tokens)
    return stats
