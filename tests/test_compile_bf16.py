"""The GPU-only settings of the paper preset, run on CPU before a GPU does.

- ``compute.compile: true``: the collapse LM trained through ``dlrepro.training.fit``
  compiled by TorchInductor's CPU backend (C++ code built with the system's C compiler;
  ``.ci/run`` installs gcc from Debian when it is missing);
- ``compute.precision: bf16-mixed``: Lightning's bf16 autocast on CPU;
- sampling with a compiled model through :func:`dlrepro.sampling.generate`.

Each runs a few steps of a tiny model; the loss must be finite and close to fp32 eager's
with the same initial weights and batches.
"""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch

from dlrepro.collapse.params import OptimConfig
from dlrepro.collapse.module import LanguageModel
from dlrepro.models.transformer import TransformerConfig
from dlrepro.training import StepBatches, TrainSettings, fit

needs_cc = pytest.mark.skipif(not any(shutil.which(c) for c in ("g++", "c++", "clang++")),
                              reason="TorchInductor's CPU backend needs a C/C++ compiler (.ci/run installs gcc)")

CONFIG = TransformerConfig(vocab_size=64, block_size=16, n_layer=1, n_head=2, d_model=32, arch="llama")
STEPS = 6
# a learnable stream: each window counts up from a random start (next token = this one + 1)
TOKENS = (np.random.default_rng(0).integers(0, 64, size=(64, 1)) + np.arange(17)) % 64


def _batches():
    def collate(idx):
        t = torch.from_numpy(TOKENS[idx])
        return t[:, :-1].contiguous(), t[:, 1:].contiguous()

    return StepBatches(len(TOKENS), 8, STEPS, seed=0, collate=collate)


def train(tmp_path, name, **settings):
    """Per-step training losses of the LM under ``settings`` (same init and batches)."""
    torch.manual_seed(0)
    module = LanguageModel(CONFIG, OptimConfig(lr=3e-3, warmup_steps=0), total_steps=STEPS)
    s = TrainSettings(seed=0, max_steps=STEPS, accelerator="cpu", log_every_n_steps=1,
                      checkpoint_every_n_steps=1000, num_threads=1, **settings)
    history = fit(module, _batches(), s, tmp_path / name, stage="test")
    losses = [r["train_loss"] for r in history.rows if "train_loss" in r]
    assert len(losses) == STEPS
    return losses, module


@pytest.fixture(scope="module")
def eager(tmp_path_factory):
    losses = train(tmp_path_factory.mktemp("eager"), "eager")[0]
    assert losses[-1] < losses[0]  # it learns
    return losses


@pytest.mark.slow  # TorchInductor compiles C++: ~25 s
@needs_cc
def test_compile_through_inductor_on_cpu(tmp_path, eager):
    losses, _ = train(tmp_path, "compiled", compile=True)
    assert all(math.isfinite(x) for x in losses)
    # same computation, fused: float rounding only
    np.testing.assert_allclose(losses, eager, rtol=2e-3)


def test_bf16_mixed_on_cpu(tmp_path, eager):
    losses, _ = train(tmp_path, "bf16", precision="bf16-mixed")
    assert all(math.isfinite(x) for x in losses)
    # bf16 matmuls (8 bits of mantissa): close to fp32, not equal
    np.testing.assert_allclose(losses, eager, rtol=3e-2)
    assert losses != eager


@pytest.mark.slow
@needs_cc
def test_sampling_with_a_compiled_model(tmp_path):
    from dlrepro.sampling import SamplingConfig, generate

    _, module = train(tmp_path, "for-sampling")
    model = module.model.eval()
    compiled = torch.compile(model)
    prompts = torch.zeros(4, 1, dtype=torch.long)
    cfg = SamplingConfig(temperature=0.0, max_new_tokens=5, batch_size=4)
    want = generate(model, prompts, cfg, torch.Generator().manual_seed(0))
    got = generate(compiled, prompts, cfg, torch.Generator().manual_seed(0))
    assert torch.equal(got, want)
    cfg = SamplingConfig(temperature=1.0, max_new_tokens=5, batch_size=4)
    a = generate(model, prompts, cfg, torch.Generator().manual_seed(1))
    b = generate(compiled, prompts, cfg, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
