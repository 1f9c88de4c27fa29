"""Data-mixing policies for the model-collapse loop, independent of modality.

A policy decides, for generation ``g >= 1``, which items of which pools the model of
generation ``g`` trains on. Pools are named ``real`` (the real training set) and
``synthetic_1 .. synthetic_g`` (the corpus sampled from the model of generation
``k - 1``). A policy sees only pool names and sizes, never the items, so the same
policies serve text documents, images and molecule conformations.

Adding a policy is one function plus its name in config::

    @register("my-policy")
    def my_policy(pools: dict[str, int], generation: int, rng: np.random.Generator) -> list[Share]:
        ...
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class Share:
    """The items ``indices`` (0-based, sorted) of pool ``source`` go into the mix."""

    source: str
    indices: np.ndarray

    @property
    def size(self) -> int:
        return int(len(self.indices))


Policy = Callable[[dict, int, np.random.Generator], list]
POLICIES: dict[str, Policy] = {}


def register(name: str) -> Callable[[Policy], Policy]:
    def deco(fn: Policy) -> Policy:
        if name in POLICIES:
            raise ValueError(f"policy {name!r} registered twice")
        POLICIES[name] = fn
        return fn

    return deco


def pool_name(generation: int) -> str:
    """Name of the synthetic pool sampled from the model of ``generation - 1``."""
    return "real" if generation == 0 else f"synthetic_{generation}"


def _check(pools: dict[str, int], generation: int) -> None:
    if generation < 1:
        raise ValueError(f"policies mix for generation >= 1, got {generation}")
    expected = ["real"] + [pool_name(k) for k in range(1, generation + 1)]
    missing = [p for p in expected if p not in pools]
    if missing:
        raise ValueError(f"generation {generation} needs pools {expected}; missing {missing}")
    for name, size in pools.items():
        if int(size) < 0:
            raise ValueError(f"pool {name!r} has negative size {size}")


def _all(name: str, size: int) -> Share:
    return Share(name, np.arange(int(size), dtype=np.int64))


@register("replace")
def replace(pools: dict[str, int], generation: int, rng: np.random.Generator) -> list[Share]:
    """Only the newest synthetic corpus (the classic model-collapse setting)."""
    _check(pools, generation)
    newest = pool_name(generation)
    return [_all(newest, pools[newest])]


@register("accumulate")
def accumulate(pools: dict[str, int], generation: int, rng: np.random.Generator) -> list[Share]:
    """Real data plus every synthetic corpus so far: the training set grows each generation."""
    _check(pools, generation)
    names = ["real"] + [pool_name(k) for k in range(1, generation + 1)]
    return [_all(n, pools[n]) for n in names]


@register("accumulate-subsample")
def accumulate_subsample(
    pools: dict[str, int], generation: int, rng: np.random.Generator
) -> list[Share]:
    """The accumulated pool, subsampled uniformly without replacement to the real set's size.

    A fixed training budget per generation, as in "Collapse or Thrive?" (Kazdan et al.).
    """
    _check(pools, generation)
    names = ["real"] + [pool_name(k) for k in range(1, generation + 1)]
    sizes = np.array([int(pools[n]) for n in names], dtype=np.int64)
    total = int(sizes.sum())
    budget = min(int(pools["real"]), total)
    chosen = np.sort(rng.choice(total, size=budget, replace=False))
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    shares = []
    for name, start, size in zip(names, starts, sizes):
        sel = chosen[(chosen >= start) & (chosen < start + size)] - start
        shares.append(Share(name, sel.astype(np.int64)))
    return shares


def mix(
    policy: str, pools: dict[str, int], generation: int, seed: int
) -> list[Share]:
    """Apply the policy called ``policy``; the RNG is seeded from ``(seed, generation)``."""
    if policy not in POLICIES:
        raise KeyError(f"unknown mixing policy {policy!r}; known: {sorted(POLICIES)}")
    rng = np.random.default_rng([int(seed), int(generation)])
    return POLICIES[policy](dict(pools), int(generation), rng)


def manifest(shares: list[Share]) -> dict:
    """A JSON-ready description of a mix: which pool each share came from and how much."""
    return {
        "total": int(sum(s.size for s in shares)),
        "shares": [{"source": s.source, "count": s.size} for s in shares],
    }
