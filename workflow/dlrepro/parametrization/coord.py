"""Width parametrizations: standard (SP), NTK and maximal update (muP), and the coordinate check.

A parametrization says how the initialisation, an output multiplier and the learning
rate of every parameter scale with width. Following microsoft/mup (Yang et al. 2022,
"Tensor Programs V", arXiv:2203.03466), it is *applied to a model* rather than written
into it: :func:`apply_parametrization` compares each parameter's shape with the same
parameter of a base-width model, and the dimensions that differ are the "infinite" ones.
That gives every parameter a role:

========  ==================================  ===========================================
role      infinite dimensions                 examples
========  ==================================  ===========================================
input     fan_out only                        first Linear of the MLP, token/position embeddings
hidden    fan_in and fan_out                  Linear width -> width, attention, MLP blocks
output    fan_in only                         MLP readout, ``lm_head``
vector    its one dimension                   biases, LayerNorm/RMSNorm gains
fixed     none                                everything at the base width; finite-size biases
========  ==================================  ===========================================

For ``nn.Embedding`` the layout is (fan_in, fan_out) = (num_embeddings, embedding_dim);
every other matrix is laid out like ``nn.Linear.weight``, (fan_out, fan_in). Parameters
with more than two dimensions are rejected.

The abc-table
-------------
With ``m_in = fan_in / base_fan_in`` and ``m_out = fan_out / base_fan_out`` (1 for finite
dimensions), base init std ``s`` and base learning rate ``eta``, the three parametrizations
are, written in "SP form" (all weights used as they are, one output multiplier):

=======  ===========  ============  ==============  ========================
role     quantity     SP            NTK             muP
=======  ===========  ============  ==============  ========================
input    init std     s             s               s
         SGD lr       eta           eta             eta * m_out
         Adam lr      eta           eta             eta
hidden   init std     s / √m_in     s / √m_in       s / √m_in
         SGD lr       eta           eta / m_in      eta * m_out / m_in
         Adam lr      eta           eta / √m_in     eta / m_in
output   init std     s / √m_in     s / √m_in       s, output multiplier 1 / m_in
         SGD lr       eta           eta / m_in      eta * m_in
         Adam lr      eta           eta / √m_in     eta
vector   init         bias 0, gain unchanged (all three)
         SGD lr       eta           eta             eta * m_out
         Adam lr      eta           eta             eta
=======  ===========  ============  ==============  ========================

(For input weights ``m_in = 1``, so "s / √m_in" and "s" coincide; the table states the
rule every weight of SP and NTK follows.) Attention logits are scaled by
``attn_mult / sqrt(head_dim)`` under SP and NTK and by ``attn_mult / head_dim`` under muP
(TP V, Definition 4.1); with ``attn_mult = sqrt(base head_dim)`` muP coincides with SP at
the base width. Everything else is relative to the base width, so at the base width all
three parametrizations are the same model with the same optimiser.

Sources. muP: TP V Table 3 (SGD and Adam columns); the multiplier form used here, with a
width-independent readout init and an output multiplier ``1 / m_in``, is TP V's
equivalent formulation (App. J / Table 8) as implemented by microsoft/mup
(``MuReadout``, ``MuSGD``, ``MuAdam``). SP: TP V Table 3 (grey entries): fan-in init, one
global learning rate. NTK (Jacot et al. 2018): the layer computes ``(w / sqrt(fan_in)) x``
with ``w ~ N(0, 1)`` (times the base gain) and one global learning rate. We use the
abc-symmetry of Yang & Hu 2021 ("Tensor Programs IV", arXiv:2011.14522, §3): a weight
``W = n^-a w`` with ``w ~ N(0, n^-2b)`` trained with lr ``eta n^-c`` gives the same
function and the same training trajectory after ``(a, b, c) -> (a + t, b - t, c - 2t)``
for SGD and ``(a, b, c) -> (a + t, b - t, c - t)`` for Adam (exact up to Adam's epsilon,
which would have to scale like the gradient). Moving the NTK multiplier ``n^-1/2`` into
the weight therefore gives SP's init with lr ``eta / m_in`` (SGD) or ``eta / √m_in``
(Adam). We implement NTK in this SP form because it needs no forward hooks or
``torch.nn.utils.parametrize`` wrappers: the forward pass is identical under all three
parametrizations and only the initialisation, one multiplier and the optimiser's
parameter groups differ, which is also what makes the MLP and the transformer accept it
unchanged.

Weight decay: :func:`make_optimizer` keeps ``lr * weight_decay`` of every group at its
base value (microsoft/mup's default), so the per-step shrink factor does not depend on
width; 1-D parameters (biases, gains) are not decayed (nanoGPT's convention).

Requirements on the model: under muP and NTK no parameter may be shared between an
embedding and a linear layer (muP needs *untied* input and output embeddings, e.g.
``TransformerConfig(tie_embeddings=False)``); a model with output-role weights needs a
float attribute ``output_mult`` that multiplies the readout's matmul (``W x``, not its
bias); attention modules expose ``attn_scale`` and ``head_dim``.

Coordinate check
----------------
:func:`coord_check` trains a model for a few steps at several widths and records, after
every step, the RMS of each layer's output on a fixed probe batch, and the RMS of its
change since initialisation. Layers are the outputs of every ``nn.Linear`` and
``nn.Embedding`` (pre-activations) except the readout, plus ``logits`` (the model's
output, after the output multiplier). Under muP the curves are flat in width; under SP
(Adam or SGD with a width-independent lr) the hidden layers and logits grow with width.

Table ``coord_check.csv`` (one row per parametrization, width, seed, step and layer):

- ``parametrization``: ``sp`` | ``ntk`` | ``mup``
- ``width``: the model's width (int)
- ``seed``: the seed of the initialisation and data (int)
- ``step``: number of optimiser steps taken (0 = at initialisation)
- ``layer``: module name (``layers.0``, ``transformer.h.0.attn.c_attn``, ...) or ``logits``
- ``rms``: ``sqrt(mean(h^2))`` of that layer's output on the probe batch
- ``delta_rms``: ``sqrt(mean((h - h_0)^2))``, ``h_0`` the output at step 0

Command line (``main``)::

    coord-check --params '<json>' --out coord_check.csv
    plot --table coord_check.csv --out coord_check.png [--step N]

``--params`` holds the keys of :class:`CoordCheckParams`; the figure (PNG and PDF) has
one column per parametrization, the RMS (top) and its change (bottom) against width,
one line per layer, at the last step (or ``--step``).
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import pandas as pd

from dlrepro.io import write_csv
from dlrepro.log import get_logger

if TYPE_CHECKING:  # torch is imported inside the functions that need it
    import torch
    from torch import nn

PARAMETRIZATIONS = ("sp", "ntk", "mup")
OPTIMIZERS = ("sgd", "adam", "adamw")
ROLES = ("input", "hidden", "output", "vector", "fixed")
TABLE_COLUMNS = ["parametrization", "width", "seed", "step", "layer", "rms", "delta_rms"]


# --------------------------------------------------------------------------- abc-table


@dataclass(frozen=True)
class Rule:
    """One cell of the abc-table, as exponents of the width multipliers.

    ``init std = s * m_in**init``, ``SGD lr = eta * m_in**sgd[0] * m_out**sgd[1]``,
    ``Adam lr = eta * m_in**adam[0] * m_out**adam[1]`` and, for output weights, the
    output multiplier is ``m_in**mult``.
    """

    init: float
    sgd: tuple[float, float]
    adam: tuple[float, float]
    mult: float = 0.0


_FAN_IN = -0.5  # init std proportional to 1/sqrt(fan_in)
_GLOBAL = Rule(init=_FAN_IN, sgd=(0, 0), adam=(0, 0))  # SP: fan-in init, one learning rate
_NTK = Rule(init=_FAN_IN, sgd=(-1, 0), adam=(-0.5, 0))  # NTK in SP form (abc-symmetry)
_VECTOR_SGD = Rule(init=0, sgd=(0, 1), adam=(0, 0))  # muP biases/gains and input weights
_UNCHANGED = Rule(init=0, sgd=(0, 0), adam=(0, 0))

ROLE_TABLE: dict[str, dict[str, Rule]] = {
    "sp": {"input": _GLOBAL, "hidden": _GLOBAL, "output": _GLOBAL,
           "vector": _UNCHANGED, "fixed": _UNCHANGED},
    "ntk": {"input": _NTK, "hidden": _NTK, "output": _NTK,
            "vector": _UNCHANGED, "fixed": _UNCHANGED},
    "mup": {
        "input": _VECTOR_SGD,
        "hidden": Rule(init=_FAN_IN, sgd=(-1, 1), adam=(-1, 0)),
        "output": Rule(init=0, sgd=(1, 0), adam=(0, 0), mult=-1),
        "vector": _VECTOR_SGD,
        "fixed": _UNCHANGED,
    },
}


@dataclass(frozen=True)
class Scaling:
    """What the abc-table prescribes for one parameter at given width multipliers."""

    init_std_mult: float  # multiplies the base init std
    lr_mult: float  # multiplies the base learning rate
    output_mult: float  # multiplies the readout (1 except muP output weights)


def layer_scaling(parametrization: str, role: str, optimizer: str,
                  fan_in_mult: float = 1.0, fan_out_mult: float = 1.0) -> Scaling:
    """Look up :data:`ROLE_TABLE` for a parameter with the given width multipliers."""
    _check_choice("parametrization", parametrization, PARAMETRIZATIONS)
    _check_choice("role", role, ROLES)
    _check_choice("optimizer", optimizer, OPTIMIZERS)
    for name, value in (("fan_in_mult", fan_in_mult), ("fan_out_mult", fan_out_mult)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive number, got {value!r}")
    rule = ROLE_TABLE[parametrization][role]
    e_in, e_out = rule.sgd if optimizer == "sgd" else rule.adam
    return Scaling(
        init_std_mult=fan_in_mult ** rule.init,
        lr_mult=fan_in_mult ** e_in * fan_out_mult ** e_out,
        output_mult=fan_in_mult ** rule.mult,
    )


# --------------------------------------------------------------------------- roles


@dataclass(frozen=True)
class ParamInfo:
    """A parameter's role, as read off its shape and the base (and delta) model's."""

    role: str
    kind: str  # "linear" (fan_out, fan_in), "embedding" (fan_in, fan_out), "vector", "scalar"
    base_fan_in: int  # fan_in at the base width (1 for embeddings: one-hot inputs)
    fan_in_mult: float
    fan_out_mult: float
    tied: bool  # registered in more than one module (e.g. tied input/output embeddings)


def infer_roles(model: nn.Module, base_model: nn.Module,
                delta_model: nn.Module | None = None) -> dict[str, ParamInfo]:
    """Role and width multipliers of every parameter of ``model`` (named_parameters order).

    A dimension is infinite where ``base_model`` and ``delta_model`` (a model at another
    width) differ; without ``delta_model``, where ``model`` and ``base_model`` differ, so
    that at the base width every parameter is ``fixed``. Only the base and delta models'
    shapes are read, so they may live on the ``meta`` device.
    """
    import torch.nn as nn

    owners: dict[int, list[nn.Module]] = {}
    for module in model.modules():
        for p in module.parameters(recurse=False):
            owners.setdefault(id(p), []).append(module)
    base = dict(base_model.named_parameters())
    delta = dict(delta_model.named_parameters()) if delta_model is not None else None

    infos: dict[str, ParamInfo] = {}
    for name, p in model.named_parameters():
        if name not in base:
            raise ValueError(f"parameter {name!r} of the model is missing from the base model")
        if delta is not None and name not in delta:
            raise ValueError(f"parameter {name!r} of the model is missing from the delta model")
        shape, base_shape = tuple(p.shape), tuple(base[name].shape)
        ref_shape = tuple(delta[name].shape) if delta is not None else shape
        if len(shape) != len(base_shape) or len(ref_shape) != len(base_shape):
            raise ValueError(f"parameter {name!r} has shape {shape} but {base_shape} in the base model")
        infinite = [b != r for b, r in zip(base_shape, ref_shape)]
        for dim, (n, b, inf) in enumerate(zip(shape, base_shape, infinite)):
            if n != b and not inf:
                raise ValueError(
                    f"parameter {name!r} differs from the base model in dimension {dim} "
                    f"({n} vs {b}), which the delta model marks as finite"
                )
        mults = [n / b for n, b in zip(shape, base_shape)]
        modules = owners[id(p)]
        if p.ndim > 2:
            raise ValueError(f"parameter {name!r} has {p.ndim} dimensions; only vectors and matrices are supported")
        if p.ndim == 2:
            is_embedding = isinstance(modules[0], nn.Embedding)
            kind = "embedding" if is_embedding else "linear"
            i_in, i_out = (0, 1) if is_embedding else (1, 0)
            inf_in, inf_out = infinite[i_in], infinite[i_out]
            role = {(False, True): "input", (True, True): "hidden",
                    (True, False): "output", (False, False): "fixed"}[(inf_in, inf_out)]
            infos[name] = ParamInfo(role, kind, 1 if is_embedding else base_shape[i_in],
                                    mults[i_in], mults[i_out], len(modules) > 1)
        elif p.ndim == 1:
            infos[name] = ParamInfo("vector" if infinite[0] else "fixed", "vector", 1,
                                    1.0, mults[0], len(modules) > 1)
        else:
            infos[name] = ParamInfo("fixed", "scalar", 1, 1.0, 1.0, len(modules) > 1)
    return infos


# --------------------------------------------------------------------------- applying


@dataclass(frozen=True)
class ParamPlan:
    """What :func:`apply_parametrization` did to one parameter."""

    role: str
    fan_in_mult: float
    fan_out_mult: float
    init_std: float | None  # std it was drawn with; 0.0 = zeroed bias; None = left as it was
    lr_mult: float


@dataclass(frozen=True)
class Plan:
    """A parametrization applied to one model: per-parameter learning-rate multipliers,
    the output multiplier and attention scales it set. Pass it to :func:`make_optimizer`."""

    parametrization: str
    optimizer: str
    params: dict[str, ParamPlan]
    output_mult: float
    attn_scales: dict[str, float] = field(default_factory=dict)

    def lr_mults(self) -> dict[str, float]:
        return {name: pp.lr_mult for name, pp in self.params.items()}

    def to_frame(self) -> pd.DataFrame:
        """One row per parameter: name, role, fan_in_mult, fan_out_mult, init_std, lr_mult."""
        return pd.DataFrame([{"name": name, **asdict(pp)} for name, pp in self.params.items()])


def apply_parametrization(
    model: nn.Module,
    name: str,
    base_model: nn.Module,
    *,
    seed: int,
    optimizer: str = "adamw",
    delta_model: nn.Module | None = None,
    init_std: float | None = None,
    output_mult: float = 1.0,
    attn_mult: float = 1.0,
) -> Plan:
    """Put ``model`` into parametrization ``name`` (``sp``, ``ntk`` or ``mup``), in place.

    Re-initialises every weight matrix and embedding from ``N(0, std^2)`` with the std of
    the abc-table (module docstring), drawn from a CPU generator seeded with ``seed`` in
    ``named_parameters`` order (so the same on every device); zeroes biases; leaves norm
    gains as they are; sets ``model.output_mult`` and every attention module's
    ``attn_scale``. Returns the :class:`Plan` with the learning-rate multipliers for
    ``optimizer`` (``sgd``; ``adam`` and ``adamw`` scale alike).

    ``init_std`` is the std of every weight at the base width (GPT-2 uses 0.02); ``None``
    means ``1 / sqrt(base fan_in)`` (LeCun), with fan_in 1 for embeddings.
    ``output_mult`` and ``attn_mult`` are the base-width multipliers (tunable, as in TP V).
    """
    import torch

    _check_choice("parametrization", name, PARAMETRIZATIONS)
    _check_choice("optimizer", optimizer, OPTIMIZERS)
    _check_positive("output_mult", output_mult)
    _check_positive("attn_mult", attn_mult)
    if init_std is not None:
        _check_positive("init_std", init_std)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"seed must be an int, got {seed!r}")

    infos = infer_roles(model, base_model, delta_model)
    tied = [n for n, info in infos.items() if info.tied]
    if tied and name != "sp":
        raise ValueError(
            f"{name} needs untied input and output embeddings, but {tied} is shared between "
            "modules (for the transformer set tie_embeddings=False)"
        )

    generator = torch.Generator().manual_seed(seed)
    params = dict(model.named_parameters())
    plans: dict[str, ParamPlan] = {}
    readout_mults: set[float] = set()
    with torch.no_grad():
        for pname, info in infos.items():
            p = params[pname]
            s = layer_scaling(name, info.role, optimizer, info.fan_in_mult, info.fan_out_mult)
            std: float | None = None
            if info.kind in ("linear", "embedding"):
                base_std = init_std if init_std is not None else 1.0 / math.sqrt(info.base_fan_in)
                std = base_std * s.init_std_mult
                p.copy_(torch.randn(p.shape, generator=generator) * std)
            elif pname.endswith("bias"):
                std = 0.0
                p.zero_()
            if info.role == "output":
                readout_mults.add(s.output_mult)
            plans[pname] = ParamPlan(info.role, info.fan_in_mult, info.fan_out_mult, std, s.lr_mult)

    if len(readout_mults) > 1:
        raise ValueError(f"output weights have different fan_in multipliers ({sorted(readout_mults)}); "
                         "one output multiplier cannot serve them all")
    out_mult = output_mult * (readout_mults.pop() if readout_mults else 1.0)
    if hasattr(model, "output_mult"):
        model.output_mult = out_mult
    elif out_mult != 1.0:
        raise ValueError(f"{name} needs output multiplier {out_mult:g} but the model has no "
                         "'output_mult' attribute")

    attn_scales: dict[str, float] = {}
    for mname, module in model.named_modules():
        if not hasattr(module, "attn_scale"):
            continue
        head_dim = getattr(module, "head_dim", None)
        if not isinstance(head_dim, int) or head_dim < 1:
            raise ValueError(f"attention module {mname!r} has attn_scale but no int head_dim ({head_dim!r})")
        module.attn_scale = attn_mult / (head_dim if name == "mup" else math.sqrt(head_dim))
        attn_scales[mname] = module.attn_scale
    return Plan(name, optimizer, plans, out_mult, attn_scales)


def make_optimizer(
    model: nn.Module,
    plan: Plan,
    lr: float,
    *,
    weight_decay: float = 0.0,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    momentum: float = 0.0,
) -> torch.optim.Optimizer:
    """The optimiser ``plan.optimizer`` (SGD, Adam or AdamW) with one parameter group per
    learning-rate multiplier: group lr ``lr * lr_mult``, weight decay ``weight_decay / lr_mult``
    on matrices (so ``lr * weight_decay`` is width-independent) and none on vectors.

    Each group also carries its ``lr_mult``; learning-rate schedulers scale every group's
    initial lr, so they keep the ratios.
    """
    import torch

    _check_positive("lr", lr)
    if not (math.isfinite(weight_decay) and weight_decay >= 0):
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
    params = dict(model.named_parameters())
    if set(params) != set(plan.params):
        diff = sorted(set(params) ^ set(plan.params))
        raise ValueError(f"the plan does not match the model's parameters: {diff}")

    groups: dict[tuple[float, bool], list] = {}
    for pname, p in params.items():
        if p.requires_grad:
            groups.setdefault((plan.params[pname].lr_mult, p.ndim >= 2), []).append(p)
    param_groups = [
        {"params": ps, "lr": lr * mult, "weight_decay": weight_decay / mult if decays else 0.0,
         "lr_mult": mult}
        for (mult, decays), ps in groups.items()
    ]
    if plan.optimizer == "sgd":
        return torch.optim.SGD(param_groups, lr=lr, momentum=momentum)
    adam = torch.optim.Adam if plan.optimizer == "adam" else torch.optim.AdamW
    return adam(param_groups, lr=lr, betas=betas, eps=eps)


# --------------------------------------------------------------------------- coordinate check


def coord_check(
    model_factory: Callable[[int], nn.Module],
    widths: Sequence[int],
    parametrization: str,
    steps: int,
    data: tuple[torch.Tensor, torch.Tensor],
    *,
    base_width: int,
    optimizer: str = "adamw",
    lr: float = 1e-2,
    seed: int = 0,
    init_std: float | None = None,
    output_mult: float = 1.0,
    attn_mult: float = 1.0,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> pd.DataFrame:
    """Train ``model_factory(width)`` for ``steps`` full-batch steps on ``data = (x, y)`` at
    every width and tabulate each layer's output RMS and its change (columns
    :data:`TABLE_COLUMNS`, see the module docstring).

    The probe batch is ``x`` itself, evaluated in eval mode after every step. The model
    may return its logits or a tuple whose first element is the logits (the transformer).
    ``loss_fn(logits, y)`` defaults to cross-entropy for integer ``y`` and mean squared
    error for float ``y``. The base and delta models are ``model_factory(base_width)`` and
    ``model_factory(2 * base_width)``.
    """
    import torch

    _check_choice("parametrization", parametrization, PARAMETRIZATIONS)
    _check_positive_int("base_width", base_width)
    _check_positive_int("steps", steps)
    if not widths:
        raise ValueError("widths must not be empty")
    for width in widths:
        _check_positive_int("width", width)
    x, y = data
    loss_fn = loss_fn or _default_loss
    base, delta = model_factory(base_width), model_factory(2 * base_width)

    rows = []
    for width in widths:
        log = get_logger("coordcheck", parametrization=parametrization, width=width, seed=seed)
        torch.manual_seed(seed)
        model = model_factory(width)
        plan = apply_parametrization(model, parametrization, base, seed=seed, optimizer=optimizer,
                                     delta_model=delta, init_std=init_std,
                                     output_mult=output_mult, attn_mult=attn_mult)
        opt = make_optimizer(model, plan, lr)
        probes = _probe_modules(model, plan)
        h0 = _probe(model, probes, x)
        outputs = h0
        for step in range(steps + 1):
            if step > 0:
                model.train()
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(_logits(model(x)), y)
                loss.backward()
                opt.step()
                outputs = _probe(model, probes, x)
                log.info("step %d/%d loss %.4g", step, steps, loss.item())
                if not math.isfinite(loss.item()):
                    log.warning("loss is not finite; the table will hold inf/nan for this width")
            for layer, h in outputs.items():
                rows.append({
                    "parametrization": parametrization, "width": int(width), "seed": int(seed),
                    "step": step, "layer": layer, "rms": _rms(h), "delta_rms": _rms(h - h0[layer]),
                })
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def _probe_modules(model: nn.Module, plan: Plan) -> list[tuple[str, nn.Module]]:
    """Linear and Embedding modules that own their weight and are not the readout."""
    import torch.nn as nn

    return [
        (mname, m) for mname, m in model.named_modules()
        if isinstance(m, (nn.Linear, nn.Embedding))
        and f"{mname}.weight" in plan.params
        and plan.params[f"{mname}.weight"].role != "output"
    ]


def _probe(model: nn.Module, modules: list[tuple[str, nn.Module]], x: torch.Tensor) -> dict:
    """Outputs of ``modules`` and the logits on ``x`` (eval mode, no gradients)."""
    import torch

    outputs: dict[str, torch.Tensor] = {}

    def hook(name):
        return lambda module, args, out: outputs.__setitem__(name, out.detach().float().clone())

    handles = [m.register_forward_hook(hook(name)) for name, m in modules]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            outputs["logits"] = _logits(model(x)).detach().float().clone()
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return outputs


def _logits(out):
    return out[0] if isinstance(out, tuple) else out


def _default_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    from torch.nn import functional as F

    if y.is_floating_point():
        return F.mse_loss(logits, y)
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))


def _rms(h: torch.Tensor) -> float:
    return float(h.double().pow(2).mean().sqrt())


def teacher_data(n: int, in_dim: int, out_dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` Gaussian inputs and the classes a random linear teacher assigns them
    (``argmax(x @ T)``, ``T ~ N(0, 1)``): a small learnable task for the coordinate check."""
    import torch

    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, in_dim, generator=g)
    teacher = torch.randn(in_dim, out_dim, generator=g)
    return x, (x @ teacher).argmax(dim=1)


# --------------------------------------------------------------------------- command line


@dataclass(frozen=True)
class CoordCheckParams:
    """The ``--params`` of ``coord-check``: an MLP on a random teacher task."""

    parametrizations: tuple[str, ...] = PARAMETRIZATIONS
    widths: tuple[int, ...] = (64, 128, 256, 512, 1024)
    base_width: int = 64
    depth: int = 3  # hidden (nonlinear) layers of the MLP
    in_dim: int = 16
    out_dim: int = 10
    activation: str = "relu"
    batch_size: int = 64
    steps: int = 3
    optimizer: str = "adamw"
    lr: float = 0.01
    init_std: float | None = None  # None: 1/sqrt(base fan_in)
    output_mult: float = 1.0
    seeds: tuple[int, ...] = (0,)

    @classmethod
    def from_json(cls, text: str) -> CoordCheckParams:
        raw = json.loads(text)
        if not isinstance(raw, dict):
            raise ValueError(f"--params must be a JSON object, got {type(raw).__name__}")
        known = {f.name for f in fields(cls)}
        for key in raw:
            if key not in known:
                raise ValueError(f"unknown coord-check parameter {key!r}; known: {sorted(known)}")
        for key in ("parametrizations", "widths", "seeds"):
            if key in raw:
                if not isinstance(raw[key], list) or not raw[key]:
                    raise ValueError(f"coord-check parameter {key!r} must be a non-empty list, got {raw[key]!r}")
                raw[key] = tuple(raw[key])
        params = cls(**raw)
        params.validate()
        return params

    def validate(self) -> None:
        for p in self.parametrizations:
            _check_choice("parametrizations", p, PARAMETRIZATIONS)
        for w in self.widths:
            _check_positive_int("widths", w)
        for key in ("base_width", "depth", "in_dim", "out_dim", "batch_size", "steps"):
            _check_positive_int(key, getattr(self, key))
        for s in self.seeds:
            if not isinstance(s, int) or isinstance(s, bool) or s < 0:
                raise ValueError(f"seeds must be non-negative ints, got {s!r}")
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_positive("lr", self.lr)
        _check_positive("output_mult", self.output_mult)
        if self.init_std is not None:
            _check_positive("init_std", self.init_std)
        from dlrepro.models import ACTIVATION_NAMES as ACTIVATIONS

        _check_choice("activation", self.activation, tuple(ACTIVATIONS))


def run_coord_check(params: CoordCheckParams) -> pd.DataFrame:
    """The coordinate-check table of the MLP for every parametrization and seed."""
    from dlrepro.models.mlp import MLP

    def factory(width: int):
        return MLP(params.in_dim, width, params.out_dim, params.depth, params.activation)

    frames = []
    for seed in params.seeds:
        data = teacher_data(params.batch_size, params.in_dim, params.out_dim, seed)
        for name in params.parametrizations:
            frames.append(coord_check(
                factory, params.widths, name, params.steps, data, base_width=params.base_width,
                optimizer=params.optimizer, lr=params.lr, seed=seed, init_std=params.init_std,
                output_mult=params.output_mult,
            ))
    return pd.concat(frames, ignore_index=True)


def plot_coord_check(table: pd.DataFrame, path: str | Path, step: int | None = None) -> list[Path]:
    """Figure from a coordinate-check table: one column per parametrization; RMS (top) and
    its change since init (bottom) against width at ``step`` (default: the last), one line
    per layer (mean over seeds), log-log axes shared along each row."""
    import seaborn as sns

    from dlrepro import style

    missing = [c for c in TABLE_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"coordinate-check table lacks columns {missing}")
    step = int(table["step"].max()) if step is None else step
    at = table[table["step"] == step]
    if at.empty:
        raise ValueError(f"no rows with step={step}; the table has steps {sorted(table['step'].unique())}")
    names = [p for p in PARAMETRIZATIONS if p in set(at["parametrization"])]
    layers = list(dict.fromkeys(at["layer"]))  # order of appearance: input -> logits
    colours = dict(zip(layers, sns.color_palette("viridis", len(layers))))
    mean = (at.groupby(["parametrization", "layer", "width"])[["rms", "delta_rms"]].mean()
            .reset_index())  # sorted by width within each line

    # shared axes per row: a flat line and a growing one look flat and growing
    fig, axes = style.subplots(2 * len(names), ncols=len(names), sharex=True, sharey="row")
    labels = {"sp": "SP", "ntk": "NTK", "mup": "μP"}
    for col, name in enumerate(names):
        for row, (quantity, ylabel) in enumerate((("rms", "RMS of layer output"),
                                                  ("delta_rms", "RMS change since init"))):
            ax = axes[row * len(names) + col]
            for layer in layers:
                line = mean[(mean["parametrization"] == name) & (mean["layer"] == layer)]
                if not line.empty:
                    ax.plot(line["width"], line[quantity], marker="o", color=colours[layer], label=layer)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_title(f"{labels[name]}, step {step}" if row == 0 else labels[name])
            if row == 1:
                ax.set_xlabel("width")
            if col == 0:
                ax.set_ylabel(ylabel)
    axes[len(names) - 1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize="small")
    return style.save_figure(fig, path)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dlrepro parametrization", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("coord-check", help="coordinate-check table of the MLP (CSV)")
    run.add_argument("--params", required=True, help="JSON object with CoordCheckParams keys")
    run.add_argument("--out", required=True, help="CSV table to write")
    plot = sub.add_parser("plot", help="coordinate-check figure from the table (PNG and PDF)")
    plot.add_argument("--table", required=True, help="CSV written by coord-check")
    plot.add_argument("--out", required=True, help="figure path (.png; a .pdf is written beside it)")
    plot.add_argument("--step", type=int, default=None, help="step to show (default: the last)")
    args = parser.parse_args(argv)

    if args.command == "coord-check":
        params = CoordCheckParams.from_json(args.params)
        get_logger("coordcheck").info("running %s", json.dumps(asdict(params)))
        write_csv(args.out, run_coord_check(params))
    else:
        plot_coord_check(pd.read_csv(args.table), args.out, args.step)
    return 0


# --------------------------------------------------------------------------- checks


def _check_choice(name: str, value, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")


def _check_positive(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive number, got {value!r}")


def _check_positive_int(name: str, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
