"""The training-overhead benchmark at tiny sizes: both sides run the same computation."""

import importlib.util
import sys
from pathlib import Path

import pytest


def _load():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "training_overhead.py"
    spec = importlib.util.spec_from_file_location("training_overhead", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_quick_run_compares_the_same_computation():
    bench = _load()
    result = bench.benchmark(bench.QUICK)
    # the plain loop is a faithful baseline: same weights, batches, optimizer and schedule
    assert result["final_loss"]["plain"] == pytest.approx(result["final_loss"]["lightning"], rel=1e-5)
    assert result["plain_tokens_per_s"] > 0 and result["lightning_tokens_per_s"] > 0
    assert result["ratio"] == pytest.approx(result["lightning_tokens_per_s"] / result["plain_tokens_per_s"],
                                            rel=0.5)  # a median of ratios, not a ratio of medians
    assert result["lightning_startup_s"] >= 0
