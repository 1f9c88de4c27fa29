"""SP / NTK / muP: the abc-table, applying it to the MLP and the transformer, the
optimiser's parameter groups, and the coordinate check at test scale."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from dlrepro import parametrization as P
from dlrepro.models.cnn import CNN
from dlrepro.models.mlp import MLP
from dlrepro.models.transformer import Transformer, TransformerConfig

IN_DIM, OUT_DIM, DEPTH = 8, 5, 3


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small matmuls on a shared 2-core machine run faster (and no slower) on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def mlp(width: int, bias: bool = False) -> MLP:
    return MLP(IN_DIM, width, OUT_DIM, DEPTH, bias=bias)


def gpt(d_model: int, tie: bool = False, n_layer: int = 1) -> Transformer:
    return Transformer(TransformerConfig(vocab_size=40, block_size=12, n_layer=n_layer, n_head=4,
                                         d_model=d_model, tie_embeddings=tie))


# --------------------------------------------------------------------------- abc-table

# (parametrization, role, m_in, m_out) -> (init std mult, SGD lr mult, Adam lr mult, output mult)
EXPECTED = {
    ("sp", "input", 1, 4): (1, 1, 1, 1),
    ("sp", "hidden", 4, 4): (0.5, 1, 1, 1),
    ("sp", "output", 4, 1): (0.5, 1, 1, 1),
    ("sp", "vector", 1, 4): (1, 1, 1, 1),
    ("ntk", "input", 1, 4): (1, 1, 1, 1),
    ("ntk", "hidden", 4, 4): (0.5, 0.25, 0.5, 1),
    ("ntk", "output", 4, 1): (0.5, 0.25, 0.5, 1),
    ("ntk", "vector", 1, 4): (1, 1, 1, 1),
    ("mup", "input", 1, 4): (1, 4, 1, 1),
    ("mup", "hidden", 4, 4): (0.5, 1, 0.25, 1),
    ("mup", "hidden", 2, 8): (2 ** -0.5, 4, 0.5, 1),  # non-square: SGD lr ~ fan_out / fan_in
    ("mup", "output", 4, 1): (1, 4, 1, 0.25),
    ("mup", "vector", 1, 4): (1, 4, 1, 1),
    ("mup", "fixed", 1, 1): (1, 1, 1, 1),
}


@pytest.mark.parametrize("key", list(EXPECTED), ids=lambda k: "-".join(map(str, k)))
def test_abc_table_entries(key):
    name, role, m_in, m_out = key
    init, sgd, adam, mult = EXPECTED[key]
    s_sgd = P.layer_scaling(name, role, "sgd", m_in, m_out)
    s_adam = P.layer_scaling(name, role, "adamw", m_in, m_out)
    assert s_sgd.init_std_mult == pytest.approx(init)
    assert s_sgd.lr_mult == pytest.approx(sgd)
    assert s_adam.lr_mult == pytest.approx(adam)
    assert P.layer_scaling(name, role, "adam", m_in, m_out).lr_mult == pytest.approx(adam)
    assert s_sgd.output_mult == s_adam.output_mult == pytest.approx(mult)


def test_every_parametrization_has_every_role():
    assert set(P.ROLE_TABLE) == set(P.PARAMETRIZATIONS)
    for table in P.ROLE_TABLE.values():
        assert set(table) == set(P.ROLES)


@pytest.mark.parametrize("args, bad", [
    (("mu", "hidden", "sgd"), "parametrization"),
    (("mup", "readout", "sgd"), "role"),
    (("mup", "hidden", "lion"), "optimizer"),
    (("mup", "hidden", "sgd", 0.0), "fan_in_mult"),
])
def test_layer_scaling_rejects_bad_input(args, bad):
    with pytest.raises(ValueError, match=bad):
        P.layer_scaling(*args)


# --------------------------------------------------------------------------- roles and apply


def test_roles_of_the_mlp_with_and_without_delta():
    with torch.device("meta"):
        base, delta = mlp(16, bias=True), mlp(32, bias=True)
    roles = {n: i.role for n, i in P.infer_roles(mlp(64, bias=True), base).items()}
    assert roles == {
        "layers.0.weight": "input", "layers.0.bias": "vector",
        "layers.1.weight": "hidden", "layers.1.bias": "vector",
        "layers.2.weight": "hidden", "layers.2.bias": "vector",
        "readout.weight": "output", "readout.bias": "fixed",
    }
    # At the base width the roles come from the delta model; without it, all are fixed.
    at_base = P.infer_roles(mlp(16, bias=True), base, delta)
    assert {n: i.role for n, i in at_base.items()} == roles
    assert all(i.fan_in_mult == i.fan_out_mult == 1 for i in at_base.values())
    assert {i.role for i in P.infer_roles(mlp(16), base).values()} == {"fixed"}


@pytest.mark.parametrize("name", P.PARAMETRIZATIONS)
@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_apply_sets_init_std_lr_and_output_mult(name, optimizer):
    width, base_width = 1024, 64
    r = width / base_width
    base = mlp(base_width)
    model = mlp(width)
    plan = P.apply_parametrization(model, name, base, seed=3, optimizer=optimizer)
    table = plan.to_frame().set_index("name")
    assert list(table["role"]) == ["input", "hidden", "hidden", "output"]
    # Init std: fan-in for SP/NTK everywhere; muP keeps the readout at its base-width std.
    hidden_std, readout_std = 1 / math.sqrt(width), 1 / math.sqrt(width if name != "mup" else base_width)
    expected_std = [1 / math.sqrt(IN_DIM), hidden_std, hidden_std, readout_std]
    assert list(table["init_std"]) == pytest.approx(expected_std)
    params = dict(model.named_parameters())
    for pname, std in zip(table.index, expected_std):
        assert params[pname].std().item() == pytest.approx(std, rel=0.05), pname
    # Learning-rate multipliers of input, hidden, readout.
    lr = {
        ("sp", "sgd"): [1, 1, 1], ("sp", "adamw"): [1, 1, 1],
        ("ntk", "sgd"): [1, 1 / r, 1 / r], ("ntk", "adamw"): [1, r ** -0.5, r ** -0.5],
        ("mup", "sgd"): [r, 1, r], ("mup", "adamw"): [1, 1 / r, 1],
    }[name, optimizer]
    assert list(table["lr_mult"]) == pytest.approx([lr[0], lr[1], lr[1], lr[2]])
    assert model.output_mult == plan.output_mult == pytest.approx(1 / r if name == "mup" else 1.0)


def test_parametrizations_coincide_at_the_base_width():
    base, delta = mlp(32, bias=True), mlp(64, bias=True)
    models, plans = [], []
    for name in P.PARAMETRIZATIONS:
        for optimizer in ("sgd", "adamw"):
            model = mlp(32, bias=True)
            plans.append(P.apply_parametrization(model, name, base, seed=0, optimizer=optimizer,
                                                 delta_model=delta))
            models.append(model)
    x = torch.randn(4, IN_DIM, generator=torch.Generator().manual_seed(0))
    for model, plan in zip(models, plans):
        assert set(plan.lr_mults().values()) == {1.0}
        assert model.output_mult == 1.0
        assert torch.equal(model(x), models[0](x))
        assert torch.count_nonzero(model.layers[1].bias) == 0  # biases are zeroed


def test_apply_is_seeded():
    base = mlp(16)
    a, b, c = mlp(64), mlp(64), mlp(64)
    P.apply_parametrization(a, "mup", base, seed=1)
    P.apply_parametrization(b, "mup", base, seed=1)
    P.apply_parametrization(c, "mup", base, seed=2)
    assert torch.equal(a.layers[1].weight, b.layers[1].weight)
    assert not torch.equal(a.layers[1].weight, c.layers[1].weight)


def test_init_std_sets_the_base_width_std():
    base = mlp(64)
    plan = P.apply_parametrization(mlp(256), "mup", base, seed=0, init_std=0.02)
    stds = plan.to_frame().set_index("name")["init_std"]
    assert stds["layers.0.weight"] == pytest.approx(0.02)
    assert stds["layers.1.weight"] == pytest.approx(0.01)  # 0.02 / sqrt(256 / 64)
    assert stds["readout.weight"] == pytest.approx(0.02)


@pytest.mark.parametrize("kwargs, bad", [
    (dict(name="mu"), "parametrization"),
    (dict(optimizer="lion"), "optimizer"),
    (dict(init_std=-1.0), "init_std"),
    (dict(output_mult=0.0), "output_mult"),
    (dict(seed=1.5), "seed"),
])
def test_apply_rejects_bad_arguments(kwargs, bad):
    base = mlp(16)
    args = dict(name="mup", seed=0) | kwargs
    with pytest.raises(ValueError, match=bad):
        P.apply_parametrization(mlp(32), args.pop("name"), base, **args)


def test_apply_rejects_models_it_cannot_parametrize():
    base = mlp(16)
    with pytest.raises(ValueError, match="missing from the base model"):
        P.apply_parametrization(MLP(IN_DIM, 32, OUT_DIM, DEPTH + 1), "mup", base, seed=0)
    # a kernel dimension that grows with width is neither fan_in nor fan_out
    with pytest.raises(ValueError, match="'0.weight'.*dimension 2"):
        P.apply_parametrization(nn.Sequential(nn.Conv1d(8, 8, 5)), "sp", nn.Sequential(nn.Conv1d(8, 8, 3)), seed=0)
    readout_only = nn.Sequential(nn.Linear(32, 3))  # no output_mult attribute
    with pytest.raises(ValueError, match="'0.weight'.*output_mult"):
        P.apply_parametrization(readout_only, "mup", nn.Sequential(nn.Linear(16, 3)), seed=0)
    with pytest.raises(ValueError, match="meta device"):
        with torch.device("meta"):
            meta_base = mlp(16)
        P.apply_parametrization(mlp(32), "mup", meta_base, init="model")
    with pytest.raises(ValueError, match="init_std applies"):
        P.apply_parametrization(mlp(32), "mup", base, init="model", init_std=0.02)
    with pytest.raises(ValueError, match="seed"):
        P.apply_parametrization(mlp(32), "mup", base)  # init="table" needs a seed


class TwoHeads(nn.Module):
    """An MLP with a second width -> finite head; ``readout_modules`` as given."""

    def __init__(self, width: int, readout_modules=None, aux_readout: bool = False):
        super().__init__()
        self.body = nn.Linear(IN_DIM, width)
        self.head = nn.Linear(width, OUT_DIM)
        self.aux = (P.Readout if aux_readout else nn.Linear)(width, 3)
        self.output_mult = 1.0
        if readout_modules is not None:
            self.readout_modules = readout_modules

    def forward(self, x):
        h = torch.relu(self.body(x))
        return self.head(h * self.output_mult), self.aux(h)


def test_a_readout_nothing_multiplies_is_refused_by_name():
    base = TwoHeads(16, ("head",))
    with pytest.raises(ValueError, match="'aux.weight'.*readout_modules"):
        P.apply_parametrization(TwoHeads(64, ("head",)), "mup", base, seed=0)
    # without readout_modules the model's output_mult cannot tell which head it multiplies
    with pytest.raises(ValueError, match="'head.weight'.*cannot tell"):
        P.apply_parametrization(TwoHeads(64), "mup", TwoHeads(16), seed=0)
    # SP needs no output multiplier: accepted
    P.apply_parametrization(TwoHeads(64, ("head",)), "sp", base, seed=0)
    # a head with its own output_mult (Readout, mup's MuReadout) is multiplied by itself
    model = TwoHeads(64, ("head",), aux_readout=True)
    plan = P.apply_parametrization(model, "mup", TwoHeads(16, ("head",), aux_readout=True), seed=0)
    assert model.aux.output_mult == model.output_mult == plan.output_mult == 0.25
    x = torch.randn(2, IN_DIM)
    h = torch.relu(model.body(x))
    assert torch.allclose(model(x)[1], F.linear(h * 0.25, model.aux.weight, model.aux.bias))


# --------------------------------------------------------------------------- init="model"


def test_model_init_is_rescaled_relative_to_the_base_model():
    """The MLP keeps PyTorch's uniform init; muP moves only the readout (x sqrt(m)), as mup."""
    torch.manual_seed(0)
    base, model = mlp(64, bias=True), mlp(1024, bias=True)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    plan = P.apply_parametrization(model, "mup", base, init="model")
    scale = plan.to_frame().set_index("name")["init_scale"]
    assert plan.init == "model" and plan.to_frame()["init_std"].isna().all()
    assert scale["layers.0.weight"] == 1.0  # same shape as the base: untouched
    assert scale["layers.1.weight"] == pytest.approx(1.0, rel=0.03)  # fan-in init is muP's already
    assert scale["readout.weight"] == pytest.approx(4.0, rel=0.03)  # sqrt(1024 / 64)
    assert scale["layers.1.bias"] == pytest.approx(4.0, rel=0.3)  # bias ~ 1/sqrt(fan_in) -> constant
    for name, p in model.named_parameters():
        assert torch.equal(p, before[name] * scale[name]), name  # rescaled, not redrawn
    # the uniform distribution survives: |w| <= sqrt(m) / sqrt(base fan_in)
    assert model.readout.weight.abs().max() <= 4.0 / math.sqrt(1024) * 1.03
    assert model.readout.weight.abs().max() > 0.9 / math.sqrt(64)


def test_gpt2_residual_scaling_survives_every_parametrization():
    n_layer = 2
    torch.manual_seed(0)
    base, delta = gpt(32, n_layer=n_layer), gpt(64, n_layer=n_layer)
    residual = 0.02 / math.sqrt(2 * n_layer)
    stds = {}
    for name in P.PARAMETRIZATIONS:
        model = gpt(128, n_layer=n_layer)
        P.apply_parametrization(model, name, base, delta_model=delta, init="model")
        stds[name] = {n: p.std().item() for n, p in model.named_parameters() if p.ndim == 2}
        at_base = gpt(32, n_layer=n_layer)
        before = {n: p.detach().clone() for n, p in at_base.named_parameters()}
        P.apply_parametrization(at_base, name, base, delta_model=delta, init="model")
        assert all(torch.equal(p, before[n]) for n, p in at_base.named_parameters())  # base width: as built
    m = 128 / 32
    for name, s in stds.items():
        hidden = 1 / math.sqrt(m)  # fan-in rule of hidden weights, relative to the base model
        assert s["transformer.h.1.attn.c_proj.weight"] == pytest.approx(residual * hidden, rel=0.05), name
        assert s["transformer.h.1.mlp.c_proj.weight"] == pytest.approx(residual * hidden, rel=0.05), name
        assert s["transformer.h.1.mlp.c_fc.weight"] == pytest.approx(0.02 * hidden, rel=0.05), name
        assert s["transformer.wte.weight"] == pytest.approx(0.02, rel=0.05), name
        readout = 0.02 if name == "mup" else 0.02 * hidden
        assert s["lm_head.weight"] == pytest.approx(readout, rel=0.05), name
    # init="table" redraws: the residual scaling is gone
    model = gpt(128, n_layer=n_layer)
    P.apply_parametrization(model, "mup", base, seed=0, init_std=0.02)
    assert model.transformer.h[1].mlp.c_proj.weight.std().item() == pytest.approx(0.02 / math.sqrt(m), rel=0.05)


# --------------------------------------------------------------------------- convolutions


def cnn(width: int, bias: bool = False) -> CNN:
    return CNN(in_channels=3, width=width, n_classes=OUT_DIM, depth=3, kernel_size=3, bias=bias)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_conv_roles_init_and_learning_rates(optimizer):
    base, delta = cnn(8, bias=True), cnn(16, bias=True)
    infos = P.infer_roles(cnn(32, bias=True), base, delta)
    assert {n: i.role for n, i in infos.items()} == {
        "convs.0.weight": "input", "convs.0.bias": "vector",
        "convs.1.weight": "hidden", "convs.1.bias": "vector",
        "convs.2.weight": "hidden", "convs.2.bias": "vector",
        "readout.weight": "output", "readout.bias": "fixed",
    }
    assert infos["convs.1.weight"].kind == "conv"
    assert infos["convs.1.weight"].base_fan_in == 8 * 9 and infos["convs.0.weight"].base_fan_in == 3 * 9
    model = cnn(32)
    plan = P.apply_parametrization(model, "mup", cnn(8), seed=0, optimizer=optimizer, delta_model=cnn(16))
    table = plan.to_frame().set_index("name")
    m = 32 / 8
    assert table.loc["convs.0.weight", "init_std"] == pytest.approx(1 / math.sqrt(27))
    assert table.loc["convs.1.weight", "init_std"] == pytest.approx(1 / math.sqrt(32 * 9))  # fan-in incl. kernel
    assert table.loc["readout.weight", "init_std"] == pytest.approx(1 / math.sqrt(8))
    assert model.convs[1].weight.std().item() == pytest.approx(1 / math.sqrt(32 * 9), rel=0.05)
    expected = {"sgd": [m, 1, 1, m], "adamw": [1, 1 / m, 1 / m, 1]}[optimizer]
    assert list(table["lr_mult"]) == pytest.approx(expected)
    assert model.output_mult == pytest.approx(1 / m)
    assert model(torch.randn(2, 3, 12, 12)).shape == (2, OUT_DIM)


def test_conv_transpose_layout():
    base = nn.Sequential(nn.ConvTranspose2d(8, 4, 3))
    model = nn.Sequential(nn.ConvTranspose2d(32, 4, 3))  # (in, out, k, k): fan_in grows
    model.output_mult = 1.0
    info = P.infer_roles(model, base)["0.weight"]
    assert (info.role, info.fan_in_mult, info.base_fan_in) == ("output", 4.0, 8 * 9)


# --------------------------------------------------------------------------- zero init


def test_zero_init_readout_and_query():
    base = gpt(32)
    model = gpt(64)
    plan = P.apply_parametrization(model, "mup", base, seed=0, init_std=0.02,
                                   zero_init_readout=True, zero_init_query=True)
    assert torch.count_nonzero(model.lm_head.weight) == 0
    assert plan.params["lm_head.weight"].init_std == 0.0
    c_attn = model.transformer.h[0].attn.c_attn.weight
    assert torch.count_nonzero(c_attn[:64]) == 0 and torch.count_nonzero(c_attn[64:]) == c_attn[64:].numel()
    assert torch.count_nonzero(model.transformer.h[0].attn.c_attn.bias[:64]) == 0
    # with a zero query every key gets the same attention weight: the output does not depend on attn_scale
    idx = torch.randint(0, 40, (2, 12), generator=torch.Generator().manual_seed(0))
    before = model(idx)[0]
    model.transformer.h[0].attn.attn_scale *= 10
    assert torch.allclose(model(idx)[0], before, atol=1e-6)
    mlp_model = mlp(64, bias=True)
    P.apply_parametrization(mlp_model, "mup", mlp(16, bias=True), init="model", zero_init_readout=True)
    assert not mlp_model.readout.weight.any() and not mlp_model.readout.bias.any()
    assert mlp_model.layers[1].weight.any()
    with pytest.raises(ValueError, match="tied to an embedding"):
        P.apply_parametrization(gpt(64, tie=True), "mup", gpt(32, tie=True), seed=0, zero_init_readout=True)
    with pytest.raises(ValueError, match="zero_init_query"):
        P.apply_parametrization(mlp(64), "mup", mlp(16), seed=0, zero_init_query="yes")


# --------------------------------------------------------------------------- transformer


def test_transformer_accepts_every_parametrization():
    base = gpt(32)
    head_dim = 128 // 4
    for name in P.PARAMETRIZATIONS:
        model = gpt(128)
        plan = P.apply_parametrization(model, name, base, seed=0, init_std=0.02)
        roles = plan.to_frame().set_index("name")["role"]
        assert roles["transformer.wte.weight"] == roles["transformer.wpe.weight"] == "input"
        assert roles["transformer.h.0.attn.c_attn.weight"] == "hidden"
        assert roles["transformer.h.0.mlp.c_proj.weight"] == "hidden"
        assert roles["transformer.h.0.ln_1.weight"] == "vector"
        assert roles["lm_head.weight"] == "output"
        scale = 1 / head_dim if name == "mup" else 1 / math.sqrt(head_dim)
        assert model.transformer.h[0].attn.attn_scale == pytest.approx(scale)
        assert plan.attn_scales == {"transformer.h.0.attn": pytest.approx(scale)}
        assert model.output_mult == pytest.approx(0.25 if name == "mup" else 1.0)
        logits, loss = model(torch.zeros(2, 12, dtype=torch.long), torch.zeros(2, 12, dtype=torch.long))
        assert torch.isfinite(loss)


def test_tied_embeddings():
    """muP takes a tied embedding as mup's MuSharedReadout: an input weight (constant init,
    Adam lr unchanged, SGD lr x m) whose readout gets the 1/m multiplier. NTK refuses it."""
    base, delta = gpt(32, tie=True), gpt(64, tie=True)
    for optimizer, lr in (("adamw", 1.0), ("sgd", 4.0)):
        model = gpt(128, tie=True)
        plan = P.apply_parametrization(model, "mup", base, delta_model=delta, optimizer=optimizer, init="model")
        assert model.lm_head.weight is model.transformer.wte.weight
        info = plan.params["transformer.wte.weight"]
        assert info.role == "input" and info.lr_mult == pytest.approx(lr)
        assert model.output_mult == plan.output_mult == pytest.approx(0.25)
        assert model.transformer.wte.weight.std().item() == pytest.approx(0.02, rel=0.05)
    with pytest.raises(ValueError, match="ntk cannot share.*wte"):
        P.apply_parametrization(gpt(64, tie=True), "ntk", base, seed=0)
    model = gpt(64, tie=True)
    P.apply_parametrization(model, "sp", base, seed=0)
    assert model.lm_head.weight is model.transformer.wte.weight

    class Shared(nn.Module):  # a model whose shared readout carries its own multiplier
        def __init__(self, d):
            super().__init__()
            self.wte = nn.Embedding(40, d)
            self.head = P.SharedReadout(self.wte)

        def forward(self, idx):
            return self.head(self.wte(idx))

    model = Shared(128)
    P.apply_parametrization(model, "mup", Shared(32), seed=0)
    assert model.head.output_mult == 0.25 and model.head.weight is model.wte.weight
    x = model.wte(torch.tensor([[1, 2]]))
    assert torch.allclose(model(torch.tensor([[1, 2]])), x @ model.wte.weight.T * 0.25)


# --------------------------------------------------------------------------- optimiser


@pytest.mark.parametrize("optimizer, cls", [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam),
                                            ("adamw", torch.optim.AdamW)])
def test_make_optimizer_groups(optimizer, cls):
    base = mlp(16, bias=True)
    model = mlp(64, bias=True)
    plan = P.apply_parametrization(model, "mup", base, seed=0, optimizer=optimizer)
    opt = P.make_optimizer(model, plan, lr=0.1, weight_decay=0.01)
    assert type(opt) is cls
    group_of = {id(p): g for g in opt.param_groups for p in g["params"]}
    for name, p in model.named_parameters():
        g = group_of[id(p)]
        assert g["lr"] == pytest.approx(0.1 * plan.params[name].lr_mult), name
        if p.ndim == 2:
            assert g["lr"] * g["weight_decay"] == pytest.approx(0.1 * 0.01), name
        else:
            assert g["weight_decay"] == 0.0, name
    assert len({g["lr"] for g in opt.param_groups}) > 1  # muP really splits the groups


def test_decay_vectors_decays_biases_and_gains_like_mup_adamw():
    base = mlp(16, bias=True)
    model = mlp(64, bias=True)
    plan = P.apply_parametrization(model, "mup", base, seed=0)
    opt = P.make_optimizer(model, plan, lr=0.1, weight_decay=0.01, decay_vectors=True)
    group_of = {id(p): g for g in opt.param_groups for p in g["params"]}
    for name, p in model.named_parameters():
        assert group_of[id(p)]["lr"] * group_of[id(p)]["weight_decay"] == pytest.approx(0.1 * 0.01), name
    with pytest.raises(ValueError, match="decay_vectors"):
        P.make_optimizer(model, plan, lr=0.1, decay_vectors=1)


def test_make_optimizer_rejects_a_foreign_plan():
    base = mlp(16)
    plan = P.apply_parametrization(mlp(32), "mup", base, seed=0)
    with pytest.raises(ValueError, match="does not match"):
        P.make_optimizer(mlp(32, bias=True), plan, lr=0.1)
    with pytest.raises(ValueError, match="lr"):
        P.make_optimizer(mlp(32), plan, lr=0.0)


# --------------------------------------------------------------------------- coordinate check

WIDTHS = [64, 256, 1024]


@pytest.fixture(scope="module")
def coords():
    """Coordinate-check tables of the MLP, computed once: {(parametrization, optimizer): frame}."""
    data = P.teacher_data(32, IN_DIM, OUT_DIM, seed=0)
    runs = {("sp", "adamw"): 0.01, ("mup", "adamw"): 0.01, ("ntk", "sgd"): 0.1, ("mup", "sgd"): 0.1}
    return {
        (name, opt): P.coord_check(mlp, WIDTHS, name, 2, data, base_width=64, optimizer=opt, lr=lr, seed=0)
        for (name, opt), lr in runs.items()
    }


def growth(frame: pd.DataFrame, quantity: str, step: int) -> pd.Series:
    """Per layer: the log-log slope of ``quantity`` against width at ``step``."""
    at = frame[frame["step"] == step]
    return at.groupby("layer").apply(
        lambda g: np.polyfit(np.log(g["width"]), np.log(g[quantity]), 1)[0], include_groups=False)


def test_coord_check_table_shape(coords):
    frame = coords["mup", "adamw"]
    assert list(frame.columns) == P.TABLE_COLUMNS
    assert set(frame["layer"]) == {"layers.0", "layers.1", "layers.2", "logits"}
    assert len(frame) == len(WIDTHS) * 3 * 4  # widths x steps 0..2 x layers
    assert (frame.loc[frame["step"] == 0, "delta_rms"] == 0).all()
    assert (frame.loc[frame["step"] > 0, "delta_rms"] > 0).all()


@pytest.mark.parametrize("step", [1, 2])
def test_mup_layer_updates_are_width_independent_and_sp_are_not(coords, step):
    mup = growth(coords["mup", "adamw"], "delta_rms", step)
    sp = growth(coords["sp", "adamw"], "delta_rms", step)
    # muP: a 16x wider network changes every pre-activation by the same amount (within ~30%).
    assert (mup.abs() < 0.12).all(), mup
    # SP with Adam: hidden pre-activations change ~ width, the logits even faster.
    for layer in ("layers.1", "layers.2", "logits"):
        assert sp[layer] > 0.6, sp
    # The input layer has a finite fan_in: width-independent in both.
    assert abs(sp["layers.0"]) < 0.12


def test_logit_scale(coords):
    mup, sp = coords["mup", "adamw"], coords["sp", "adamw"]
    init = lambda f: f[(f["step"] == 0) & (f["layer"] == "logits")].set_index("width")["rms"]  # noqa: E731
    # At init muP's logits vanish like 1/sqrt(width) (readout std ~ 1/width); SP's stay O(1).
    assert np.polyfit(np.log(WIDTHS), np.log(init(mup).loc[WIDTHS]), 1)[0] == pytest.approx(-0.5, abs=0.15)
    assert abs(np.polyfit(np.log(WIDTHS), np.log(init(sp).loc[WIDTHS]), 1)[0]) < 0.15
    # After training the logits are O(1) under muP and blow up with width under SP.
    final = lambda f: f[(f["step"] == 2) & (f["layer"] == "logits")].set_index("width")["rms"]  # noqa: E731
    assert 0.2 < final(mup).min() and final(mup).max() < 2.0
    assert final(sp)[1024] > 10 * final(sp)[64]


def test_sgd_mup_is_width_independent_and_ntk_freezes_features(coords):
    mup = growth(coords["mup", "sgd"], "delta_rms", 2)
    ntk = growth(coords["ntk", "sgd"], "delta_rms", 2)
    for layer in ("layers.0", "layers.1", "layers.2"):
        assert abs(mup[layer]) < 0.2, mup
        assert ntk[layer] < -0.3, ntk  # kernel regime: features move ~ 1/sqrt(width)
    assert abs(ntk["logits"]) < 0.2  # while the function still learns at rate O(1)


def test_transformer_coord_check():
    data = torch.randint(0, 40, (4, 12), generator=torch.Generator().manual_seed(0))
    frames = {name: P.coord_check(gpt, [64, 256], name, 2, (data[:, :-1], data[:, 1:]), base_width=32,
                                  lr=0.01, init_std=0.02)
              for name in ("sp", "mup")}
    hidden = ["transformer.h.0.attn.c_attn", "transformer.h.0.attn.c_proj",
              "transformer.h.0.mlp.c_fc", "transformer.h.0.mlp.c_proj"]
    # change of each layer's output after 2 Adam steps, width 256 over width 64
    ratio = {name: f[f["step"] == 2].pivot(index="layer", columns="width", values="delta_rms")
             .eval("`256` / `64`") for name, f in frames.items()}
    assert (ratio["mup"][hidden + ["logits"]].between(0.67, 1.5)).all(), ratio["mup"]
    assert (ratio["sp"][hidden + ["logits"]] > 2.0).all(), ratio["sp"]


def test_coord_check_rejects_bad_input():
    data = P.teacher_data(4, IN_DIM, OUT_DIM, seed=0)
    with pytest.raises(ValueError, match="width"):
        P.coord_check(mlp, [64, 0], "mup", 1, data, base_width=64)
    with pytest.raises(ValueError, match="steps"):
        P.coord_check(mlp, [64], "mup", 0, data, base_width=64)


# --------------------------------------------------------------------------- command line

SMALL = {"widths": [32, 64], "base_width": 32, "depth": 2, "in_dim": 4, "out_dim": 3, "batch_size": 8,
         "steps": 1, "parametrizations": ["sp", "mup"]}


def test_cli_table_is_deterministic(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    for out in (a, b):
        assert P.main(["coord-check", "--params", json.dumps(SMALL), "--out", str(out)]) == 0
    assert a.read_bytes() == b.read_bytes()
    table = pd.read_csv(a)
    assert list(table.columns) == P.TABLE_COLUMNS
    assert set(table["parametrization"]) == {"sp", "mup"} and set(table["width"]) == {32, 64}
    assert len(table) == 2 * 2 * 2 * 3  # parametrizations x widths x steps 0..1 x layers
    other = tmp_path / "c.csv"
    P.main(["coord-check", "--params", json.dumps(SMALL | {"seeds": [1]}), "--out", str(other)])
    assert other.read_bytes() != a.read_bytes()


@pytest.mark.slow  # matplotlib + seaborn import and two renders: ~5-25 s on 2 busy cores
def test_cli_plot(tmp_path):
    a = tmp_path / "a.csv"
    P.main(["coord-check", "--params", json.dumps(SMALL | {"seeds": [0, 1]}), "--out", str(a)])
    assert P.main(["plot", "--table", str(a), "--out", str(tmp_path / "fig.png")]) == 0
    assert (tmp_path / "fig.png").stat().st_size > 0 and (tmp_path / "fig.pdf").stat().st_size > 0
    with pytest.raises(ValueError, match="step=7"):
        P.main(["plot", "--table", str(a), "--out", str(tmp_path / "x.png"), "--step", "7"])


@pytest.mark.parametrize("params, bad", [
    ({"widht": [32]}, "widht"),
    ({"widths": []}, "widths"),
    ({"widths": [32, -1]}, "widths"),
    ({"parametrizations": ["mup", "abc"]}, "parametrizations"),
    ({"lr": 0}, "lr"),
    ({"activation": "swish"}, "activation"),
])
def test_cli_rejects_bad_params(params, bad):
    with pytest.raises(ValueError, match=bad):
        P.CoordCheckParams.from_json(json.dumps(params))


# --------------------------------------------------------------------------- MLP


def test_mlp_layout_and_output_mult():
    model = MLP(3, 16, 2, depth=3, activation="tanh", bias=True)
    assert [tuple(layer.weight.shape) for layer in model.layers] == [(16, 3), (16, 16), (16, 16)]
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    y1 = model(x)
    model.output_mult = 0.5
    y2 = model(x)
    # The multiplier scales the readout's matmul, not its bias.
    assert torch.allclose(y2 - model.readout.bias, 0.5 * (y1 - model.readout.bias), atol=1e-6)


@pytest.mark.parametrize("kwargs, bad", [(dict(depth=0), "depth"), (dict(width=2.5), "width"),
                                         (dict(activation="swish"), "activation")])
def test_mlp_rejects_bad_arguments(kwargs, bad):
    args = dict(in_dim=3, width=8, out_dim=2, depth=2) | kwargs
    with pytest.raises(ValueError, match=bad):
        MLP(**args)


# --------------------------------------------------------------------------- README


def test_readme_example_runs(capsys):
    """The "Applying it to a model of your own" block of docs/parametrization.md, executed as written."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "docs" / "parametrization.md").read_text()
    section = readme[readme.index("Applying it to a model of your own"):]
    code = section[section.index("```python\n") + len("```python\n"):]
    code = code[:code.index("```")]
    namespace: dict = {}
    exec(compile(code, "docs/parametrization.md", "exec"), namespace)
    model, plan = namespace["model"], namespace["plan"]
    assert model.output_mult == 1 / 16
    table = plan.to_frame().set_index("name")
    assert table.loc["head.weight", "role"] == "output"
    assert table.loc["head.weight", "init_scale"] == pytest.approx(4.0, rel=0.1)
    assert table.loc["body.weight", "lr_mult"] == 1 / 16 and table.loc["embed.weight", "init_scale"] == 1.0
    groups = namespace["opt"].param_groups
    assert all(g["weight_decay"] * g["lr"] == pytest.approx(0.1 * 3e-3) for g in groups)
    assert "head.weight" in capsys.readouterr().out
