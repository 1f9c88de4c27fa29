"""Tests of dlrepro.textstats.diversity_stats on hand-built corpora with hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dlrepro.textstats import diversity_stats


def test_periodic_document_with_short_and_empty_ones():
    docs = [np.array([1, 2, 3, 1, 2, 3, 1, 2, 3]), np.array([4, 4]), np.array([], dtype=np.int64)]
    s = diversity_stats(docs)
    assert s["n_documents"] == 3 and s["n_tokens"] == 11
    assert s["mean_length"] == pytest.approx(11 / 3)
    # token counts 1:3, 2:3, 3:3, 4:2
    assert s["unigram_entropy"] == pytest.approx(-(3 * (3 / 11) * math.log2(3 / 11) + (2 / 11) * math.log2(2 / 11)))
    # bigrams: doc 1 has 8 of kinds {12, 23, 31}, doc 2 has {44}; the cross-document 3->4 does not count
    assert s["distinct_2"] == pytest.approx(4 / 9)
    # trigrams: 7 in doc 1, of kinds {123, 231, 312}
    assert s["distinct_3"] == pytest.approx(3 / 7)
    # 4-grams of doc 1: 1231 2312 3123 1231 2312 3123 -> the last three tokens repeat
    assert s["repetition_rate"] == pytest.approx(3 / 11)


def test_repetition_is_within_a_document_only():
    s = diversity_stats([np.array([5, 6, 7, 8]), np.array([5, 6, 7, 8])])
    assert s["repetition_rate"] == 0.0
    assert s["distinct_2"] == pytest.approx(3 / 6)
    assert s["distinct_3"] == pytest.approx(2 / 4)
    assert s["unigram_entropy"] == pytest.approx(2.0)  # four equally frequent tokens


def test_overlapping_repeats_and_all_distinct_tokens():
    # 0 0 0 0 0 0: 4-grams at 0, 1, 2 are all "0000" -> tokens 4 and 5 are repetitions
    s = diversity_stats([np.zeros(6, dtype=np.int32)])
    assert s["repetition_rate"] == pytest.approx(2 / 6)
    assert s["unigram_entropy"] == 0.0
    assert s["distinct_2"] == pytest.approx(1 / 5) and s["distinct_3"] == pytest.approx(1 / 4)
    s = diversity_stats([np.arange(10), np.arange(10, 15)])
    assert s["distinct_2"] == 1.0 and s["distinct_3"] == 1.0 and s["repetition_rate"] == 0.0
    assert s["unigram_entropy"] == pytest.approx(math.log2(15))


def test_degenerate_corpora():
    s = diversity_stats([np.array([], dtype=np.int64), np.array([], dtype=np.int64)])
    assert s["n_tokens"] == 0 and s["mean_length"] == 0.0
    assert all(math.isnan(s[k]) for k in ("unigram_entropy", "distinct_2", "distinct_3", "repetition_rate"))
    s = diversity_stats([np.array([7]), np.array([8, 9])])  # bigrams exist, trigrams do not
    assert s["distinct_2"] == 1.0 and math.isnan(s["distinct_3"]) and s["repetition_rate"] == 0.0
    with pytest.raises(ValueError, match="empty list"):
        diversity_stats([])
    with pytest.raises(ValueError, match="document 1"):
        diversity_stats([np.array([1, 2]), np.array([0.5, 1.0])])
