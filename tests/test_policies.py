"""Mixing policies: sizes and provenance, independent of modality."""

from __future__ import annotations

import numpy as np
import pytest

from dlrepro.policies import POLICIES, manifest, mix, pool_name, register

POOLS = {"real": 100, "synthetic_1": 100, "synthetic_2": 90, "synthetic_3": 110}


def test_replace_uses_only_the_newest_corpus():
    shares = mix("replace", POOLS, generation=3, seed=0)
    assert [(s.source, s.size) for s in shares] == [("synthetic_3", 110)]
    assert np.array_equal(shares[0].indices, np.arange(110))


def test_accumulate_uses_everything_so_far():
    shares = mix("accumulate", POOLS, generation=2, seed=0)
    assert [(s.source, s.size) for s in shares] == [("real", 100), ("synthetic_1", 100), ("synthetic_2", 90)]
    assert manifest(shares)["total"] == 290


def test_accumulate_subsample_keeps_the_real_budget_and_is_seeded():
    shares = mix("accumulate-subsample", POOLS, generation=3, seed=7)
    assert sum(s.size for s in shares) == POOLS["real"]
    for s in shares:
        assert np.all(np.diff(s.indices) > 0)  # sorted, no duplicates
        assert s.indices.min(initial=0) >= 0 and s.indices.max(initial=-1) < POOLS[s.source]
    # every pool contributes roughly in proportion to its size (400 items, 100 drawn)
    assert all(10 <= s.size <= 45 for s in shares)
    again = mix("accumulate-subsample", POOLS, generation=3, seed=7)
    assert all(np.array_equal(a.indices, b.indices) for a, b in zip(shares, again))
    other = mix("accumulate-subsample", POOLS, generation=3, seed=8)
    assert any(not np.array_equal(a.indices, b.indices) for a, b in zip(shares, other))


def test_missing_pool_and_bad_generation_are_errors():
    with pytest.raises(ValueError, match=r"missing \['synthetic_2'\]"):
        mix("accumulate", {"real": 5, "synthetic_1": 5}, generation=2, seed=0)
    with pytest.raises(ValueError, match="generation >= 1"):
        mix("replace", POOLS, generation=0, seed=0)
    with pytest.raises(KeyError, match="unknown mixing policy 'keep'"):
        mix("keep", POOLS, generation=1, seed=0)


def test_a_new_policy_is_one_function_and_a_name():
    @register("real-only-test")
    def real_only(pools, generation, rng):
        return [mix("accumulate", pools, generation, 0)[0]]

    try:
        shares = mix("real-only-test", POOLS, generation=1, seed=0)
        assert [s.source for s in shares] == ["real"]
    finally:
        POLICIES.pop("real-only-test")


def test_pool_names():
    assert pool_name(0) == "real" and pool_name(4) == "synthetic_4"
