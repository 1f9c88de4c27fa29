"""Our muP against microsoft/mup 1.0.0 (PyPI ``mup``), the reference implementation.

For the MLP, both transformer styles (GPT-2 with tied embeddings, i.e. mup's
``MuSharedReadout``; Llama untied) and the CNN, each at two widths against the same base
(and delta) model:

- per-parameter initial RMS over draws (ratio 1 +/- 5%): ours with ``init="model"``
  against mup's ``set_base_shapes(rescale_params=True)`` (MLP, CNN: PyTorch's default
  init) or ``mup.init.normal_`` re-initialisation as mutransformers does it (transformers:
  GPT-2's std 0.02, ``0.02 / sqrt(2 n_layer)`` on ``c_proj``);
- per-parameter learning rate (Adam and SGD) and weight decay (``decay_vectors=True``
  against ``MuAdamW``), and the output multiplier: equal;
- a few optimiser steps from identical weights: identical outputs (bitwise; every width
  multiplier is a power of two);
- a readout that nothing multiplies: both refuse the model.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from benchmarks import use_bench_packages
from dlrepro import parametrization as P
from dlrepro.models.cnn import CNN

use_bench_packages()  # where `make test` installs mup (.venv/bench, see the Makefile)
import mup  # noqa: E402
from dlrepro.models.mlp import MLP
from dlrepro.models.transformer import Transformer, TransformerConfig

# draws per model: the smallest tensors (biases of 16-40 entries) have an RMS known to ~10%
# per draw, so the small models take many; the transformers' smallest tensors are large
DRAWS = {"mlp": 64, "cnn": 64, "gpt2": 4, "llama": 4}
LR, WD = 0.01, 0.1


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --------------------------------------------------------------------------- the four models


def mlp(width: int) -> MLP:
    return MLP(8, width, 40, depth=3, bias=True)


def cnn(width: int) -> CNN:
    return CNN(3, width, 40, depth=3, bias=True)


def gpt2(width: int) -> Transformer:
    return Transformer(TransformerConfig(vocab_size=40, block_size=12, n_layer=2, n_head=4, d_model=width,
                                         arch="gpt2", tie_embeddings=True))


def llama(width: int) -> Transformer:
    return Transformer(TransformerConfig(vocab_size=40, block_size=12, n_layer=2, n_head=4, d_model=width,
                                         arch="llama", tie_embeddings=False))


def batch(kind: str):
    g = torch.Generator().manual_seed(0)
    if kind == "mlp":
        return torch.randn(16, 8, generator=g), torch.randint(0, 40, (16,), generator=g)
    if kind == "cnn":
        return torch.randn(8, 3, 12, 12, generator=g), torch.randint(0, 40, (8,), generator=g)
    idx = torch.randint(0, 40, (4, 13), generator=g)
    return idx[:, :-1], idx[:, 1:]


MODELS = {"mlp": (mlp, 32), "cnn": (cnn, 16), "gpt2": (gpt2, 32), "llama": (llama, 32)}
WIDTHS = {"mlp": [64, 256], "cnn": [32, 128], "gpt2": [64, 128], "llama": [64, 128]}
CASES = [(kind, w) for kind in MODELS for w in WIDTHS[kind]]


def logits(model, x):
    out = model(x)
    return out[0] if isinstance(out, tuple) else out


def loss_of(model, x, y):
    out = logits(model, x)
    return F.cross_entropy(out.reshape(-1, out.size(-1)), y.reshape(-1))


def to_mup(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with mup's readout (same weights), the model multiplier off."""
    m = copy.deepcopy(model)
    if isinstance(m, Transformer):
        if m.config.tie_embeddings:
            m.lm_head = mup.MuSharedReadout(m.transformer.wte.weight, bias=False)
        else:
            old = m.lm_head
            m.lm_head = mup.MuReadout(old.in_features, old.out_features, bias=False)
            m.lm_head.weight = old.weight
    else:
        old = m.readout
        m.readout = mup.MuReadout(old.in_features, old.out_features, bias=old.bias is not None)
        m.readout.load_state_dict(old.state_dict())
    m.output_mult = 1.0
    return m


def mup_init_transformer(m: Transformer) -> None:
    """mutransformers' GPT-2 init on a model with base shapes set."""
    residual = 0.02 / math.sqrt(2 * m.config.n_layer)
    with torch.no_grad():
        for mname, module in m.named_modules():
            if isinstance(module, nn.Linear):
                mup.init.normal_(module.weight, std=residual if mname.endswith("c_proj") else 0.02)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.Embedding):
                mup.init.normal_(module.weight, std=0.02)


def ours_and_mup(kind: str, width: int, *, seed: int):
    """(our model with muP applied, mup's model), both from the same construction draw."""
    build, base_width = MODELS[kind]
    torch.manual_seed(1000 + seed)
    base, delta = build(base_width), build(2 * base_width)
    torch.manual_seed(seed)
    model = build(width)
    ref = to_mup(model)
    mup.set_base_shapes(ref, to_mup(base), delta=to_mup(delta))
    if isinstance(model, Transformer):
        mup_init_transformer(ref)
    plan = P.apply_parametrization(model, "mup", base, delta_model=delta, optimizer="adamw", init="model")
    return model, plan, ref, (base, delta)


def _rms(p: torch.Tensor) -> float:
    return float(p.detach().double().pow(2).mean().sqrt())


@pytest.mark.parametrize("kind, width", CASES)
def test_init_scale_matches_mup(kind, width):
    ours, ref = {}, {}
    for seed in range(DRAWS[kind]):
        model, _, mup_model, _ = ours_and_mup(kind, width, seed=seed)
        for name, p in model.named_parameters():
            ours[name] = ours.get(name, 0.0) + _rms(p)
        for name, p in mup_model.named_parameters():
            ref[name] = ref.get(name, 0.0) + _rms(p)
    assert set(ours) == set(ref)
    for name in ours:
        if ref[name] == 0:
            assert ours[name] == 0, name
        else:
            assert ours[name] / ref[name] == pytest.approx(1.0, abs=0.05), (name, ours[name], ref[name])


def lrs_and_decays(opt: torch.optim.Optimizer) -> dict[int, tuple[float, float]]:
    return {id(p): (g["lr"], g["weight_decay"]) for g in opt.param_groups for p in g["params"]}


@pytest.mark.parametrize("kind, width", CASES)
def test_learning_rates_weight_decay_and_output_multiplier_match_mup(kind, width):
    model, plan, ref, (base, delta) = ours_and_mup(kind, width, seed=0)
    names = [n for n, _ in model.named_parameters()]
    ref_params = dict(ref.named_parameters())
    ours = lrs_and_decays(P.make_optimizer(model, plan, LR, weight_decay=WD, decay_vectors=True))
    theirs = lrs_and_decays(mup.MuAdamW(ref.parameters(), lr=LR, weight_decay=WD))
    params = dict(model.named_parameters())
    for name in names:
        assert ours[id(params[name])] == pytest.approx(theirs[id(ref_params[name])], rel=1e-12), name
    # SGD: a second plan for the same model
    sgd_plan = P.apply_parametrization(copy.deepcopy(model), "mup", base, delta_model=delta, optimizer="sgd",
                                       init="model")
    ours_sgd = {n: LR * pp.lr_mult for n, pp in sgd_plan.params.items()}
    theirs_sgd = lrs_and_decays(mup.MuSGD(ref.parameters(), lr=LR))
    for name in names:
        assert ours_sgd[name] == pytest.approx(theirs_sgd[id(ref_params[name])][0], rel=1e-12), name
    readout = ref.lm_head if isinstance(ref, Transformer) else ref.readout
    assert plan.output_mult == pytest.approx(readout.output_mult / readout.width_mult(), rel=1e-12)


@pytest.mark.parametrize("kind, width", CASES)
@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_training_from_identical_weights_is_identical(kind, width, optimizer):
    build, base_width = MODELS[kind]
    torch.manual_seed(0)
    base, delta = build(base_width), build(2 * base_width)
    model = build(width)
    plan = P.apply_parametrization(model, "mup", base, delta_model=delta, optimizer=optimizer, init="model")
    ref = to_mup(model)  # the parametrized weights, copied
    mup.set_base_shapes(ref, to_mup(base), delta=to_mup(delta), rescale_params=False)
    if optimizer == "adamw":
        opts = (P.make_optimizer(model, plan, LR, weight_decay=WD, decay_vectors=True),
                mup.MuAdamW(ref.parameters(), lr=LR, weight_decay=WD))
    else:
        opts = (P.make_optimizer(model, plan, LR, momentum=0.9),
                mup.MuSGD(ref.parameters(), lr=LR, momentum=0.9))
    x, y = batch(kind)
    before = logits(model, x).detach()
    assert torch.equal(before, logits(ref, x))
    for _ in range(3):
        for net, opt in zip((model, ref), opts):
            opt.zero_grad()
            loss_of(net, x, y).backward()
            opt.step()
    after = logits(model, x)
    assert torch.equal(after, logits(ref, x))
    assert (after - before).abs().max() > 1e-3  # it did train


class TwoHeads(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.body = nn.Linear(8, width)
        self.readout = mup.MuReadout(width, 5)
        self.aux = nn.Linear(width, 3)  # a second width -> finite head, never multiplied
        self.output_mult = 1.0
        self.readout_modules = ("readout",)

    def forward(self, x):
        h = torch.relu(self.body(x))
        return self.readout(h), self.aux(h)


def test_both_refuse_a_readout_nothing_multiplies():
    with pytest.raises(AssertionError, match="aux"):
        mup.set_base_shapes(TwoHeads(64), TwoHeads(16))
    with pytest.raises(ValueError, match="'aux.weight'"):
        P.apply_parametrization(TwoHeads(64), "mup", TwoHeads(16), init="model")
