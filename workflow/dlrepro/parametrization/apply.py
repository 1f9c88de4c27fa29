"""Putting a model into a parametrization: initialisation, output multipliers, attention
scales, and the per-parameter learning-rate multipliers (the :class:`Plan`)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import pandas as pd

from dlrepro.parametrization.roles import ParamInfo, infer_roles
from dlrepro.parametrization.table import (
    OPTIMIZERS,
    PARAMETRIZATIONS,
    check_choice,
    check_positive,
    layer_scaling,
    needs_output_mult,
)

if TYPE_CHECKING:
    from torch import nn

INITS = ("table", "model")


@dataclass(frozen=True)
class ParamPlan:
    """What :func:`apply_parametrization` did to one parameter."""

    role: str
    fan_in_mult: float
    fan_out_mult: float
    # init="table": the std it was drawn with (0.0 = zeroed); init="model": None
    init_std: float | None
    lr_mult: float
    # init="model": the factor its own initialisation was multiplied by (0.0 = zeroed)
    init_scale: float | None = None


@dataclass(frozen=True)
class Plan:
    """A parametrization applied to one model: per-parameter learning-rate multipliers,
    the output multiplier and attention scales it set. Pass it to :func:`make_optimizer`."""

    parametrization: str
    optimizer: str
    params: dict[str, ParamPlan]
    output_mult: float
    attn_scales: dict[str, float] = field(default_factory=dict)
    init: str = "table"

    def lr_mults(self) -> dict[str, float]:
        return {name: pp.lr_mult for name, pp in self.params.items()}

    def to_frame(self) -> pd.DataFrame:
        """One row per parameter: name, role, fan_in_mult, fan_out_mult, init_std, lr_mult, init_scale."""
        return pd.DataFrame([{"name": name, **asdict(pp)} for name, pp in self.params.items()])


def apply_parametrization(
    model: nn.Module,
    name: str,
    base_model: nn.Module,
    *,
    seed: int | None = None,
    optimizer: str = "adamw",
    delta_model: nn.Module | None = None,
    init: str = "table",
    init_std: float | None = None,
    output_mult: float = 1.0,
    attn_mult: float = 1.0,
    zero_init_readout: bool = False,
    zero_init_query: bool = False,
) -> Plan:
    """Put ``model`` into parametrization ``name`` (``sp``, ``ntk`` or ``mup``), in place.

    ``init`` says what happens to the weights:

    - ``"table"``: every weight matrix, convolution kernel and embedding is redrawn from
      ``N(0, std^2)`` with the std of the abc-table, from a CPU generator seeded with
      ``seed`` in ``named_parameters`` order (so the same on every device); biases are
      zeroed and norm gains left as they are. ``init_std`` is the std of every weight at
      the base width (GPT-2 uses 0.02); ``None`` means ``1 / sqrt(base fan_in)`` (LeCun;
      fan_in counts the kernel, 1 for embeddings).
    - ``"model"``: the model keeps its own initialisation (its distribution, any
      per-layer choices such as GPT-2's residual scaling) and each parameter whose fan_in
      differs from the base model's (for a bias: its module's weight's fan_in) is
      multiplied by ``base RMS * table init multiplier / its RMS``: its scale becomes the
      base model's scale of that parameter, moved by the abc-table. This assumes the
      model's own init depends on width only through fan_in (PyTorch's defaults,
      LeCun/He ``fan_in``, constant-std inits such as GPT-2's): every other parameter is
      left exactly as it is. ``base_model`` must hold its initial weights (not the meta
      device). This is what mup's
      ``set_base_shapes(rescale_params=True)`` does for models initialised with
      PyTorch's defaults, and what mutransformers does for GPT-2's constant-std init. The
      RMS of a base tensor of ``n`` entries is known to about ``1/sqrt(2n)``: build the
      base model wide enough that no scaled tensor is tiny.

    Either way the function sets the output multiplier of every readout (a weight whose
    fan_in is infinite and fan_out finite, and an embedding tied to one) and every
    attention module's ``attn_scale``. A readout module with a float attribute
    ``output_mult`` multiplies its own input (:class:`~dlrepro.parametrization.layers.Readout`,
    mup's ``MuReadout``); otherwise the model's ``output_mult`` covers it if the model
    names it in ``readout_modules`` or it is the model's only readout. A readout nothing
    multiplies is an error (naming it) whenever the multiplier is not 1 or the
    parametrization is muP, as mup's ``set_base_shapes`` refuses such a model.

    ``output_mult`` and ``attn_mult`` are the base-width multipliers (tunable, as in TP V).
    ``zero_init_readout`` zeroes every readout's weight and bias (TP V §D.2; not for a
    readout tied to an embedding); ``zero_init_query`` zeroes the query projection of every
    attention module: its ``q_proj`` (weight and bias), or the first ``n_head * head_dim``
    output rows of its fused ``c_attn``. Returns the :class:`Plan` with the learning-rate
    multipliers for ``optimizer`` (``sgd``; ``adam`` and ``adamw`` scale alike).
    """
    import torch

    check_choice("parametrization", name, PARAMETRIZATIONS)
    check_choice("optimizer", optimizer, OPTIMIZERS)
    check_choice("init", init, INITS)
    check_positive("output_mult", output_mult)
    check_positive("attn_mult", attn_mult)
    if init_std is not None:
        check_positive("init_std", init_std)
        if init == "model":
            raise ValueError("init_std applies to init='table'; with init='model' the model's own "
                             "initialisation sets the base-width scale")
    if init == "table" and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise ValueError(f"seed must be an int (init='table' redraws the weights), got {seed!r}")
    for flag, value in (("zero_init_readout", zero_init_readout), ("zero_init_query", zero_init_query)):
        if not isinstance(value, bool):
            raise ValueError(f"{flag} must be true or false, got {value!r}")

    infos = infer_roles(model, base_model, delta_model)
    if name == "ntk":
        tied = [n for n, info in infos.items() if info.tied and info.readout_module is not None]
        if tied:
            raise ValueError(
                f"ntk cannot share {tied} between an embedding and a readout: in SP form the two "
                "need different init and learning rates (use sp or mup, or untie them)"
            )
    readouts = _readout_multipliers(model, name, infos, output_mult)
    base_params = dict(base_model.named_parameters())
    if init == "model":
        meta = [n for n, p in base_params.items() if p.is_meta]
        if meta:
            raise ValueError(f"init='model' reads the base model's initial weights, but {meta[0]!r} is on "
                             "the meta device; build the base model on a real device")

    generator = torch.Generator().manual_seed(seed) if init == "table" else None
    params = dict(model.named_parameters())
    plans: dict[str, ParamPlan] = {}
    with torch.no_grad():
        for pname, info in infos.items():
            p = params[pname]
            s = layer_scaling(name, info.role, optimizer, info.fan_in_mult, info.fan_out_mult)
            std = scale = None
            if init == "table":
                if info.kind in ("linear", "embedding", "conv"):
                    base_std = init_std if init_std is not None else 1.0 / math.sqrt(info.base_fan_in)
                    std = base_std * s.init_std_mult
                    p.copy_(torch.randn(p.shape, generator=generator) * std)
                elif pname.endswith("bias"):
                    std = 0.0
                    p.zero_()
            elif _fan_in_changed(pname, info, infos):
                own = _rms(p)
                scale = _rms(base_params[pname]) * s.init_std_mult / own if own > 0 else 1.0
                p.mul_(scale)
            else:
                scale = 1.0  # the table moves only what depends on fan_in
            plans[pname] = ParamPlan(info.role, info.fan_in_mult, info.fan_out_mult, std, s.lr_mult, scale)

        modules = dict(model.named_modules())
        if zero_init_readout:
            for pname, info in infos.items():
                if info.readout_module is None:
                    continue
                if info.tied:
                    raise ValueError(f"zero_init_readout would zero {pname!r}, which is tied to an embedding")
                readout = modules[info.readout_module]
                for q in (readout.weight, getattr(readout, "bias", None)):
                    if q is not None:
                        q.zero_()
            plans = _mark_zeroed(model, plans)
        if zero_init_query:
            for mname, module in modules.items():
                if hasattr(module, "attn_scale"):
                    _zero_query(mname, module)
            plans = _mark_zeroed(model, plans)

    for module, mult in readouts["modules"].items():
        module.output_mult = mult
    out_mult = readouts["model"]
    if hasattr(model, "output_mult"):
        model.output_mult = out_mult if out_mult is not None else output_mult

    attn_scales: dict[str, float] = {}
    for mname, module in model.named_modules():
        if not hasattr(module, "attn_scale"):
            continue
        head_dim = getattr(module, "head_dim", None)
        if not isinstance(head_dim, int) or head_dim < 1:
            raise ValueError(f"attention module {mname!r} has attn_scale but no int head_dim ({head_dim!r})")
        module.attn_scale = attn_mult / (head_dim if name == "mup" else math.sqrt(head_dim))
        attn_scales[mname] = module.attn_scale
    overall = out_mult if out_mult is not None else next(iter(readouts["modules"].values()), output_mult)
    return Plan(name, optimizer, plans, overall, attn_scales, init)


def _readout_multipliers(model: nn.Module, name: str, infos: dict[str, ParamInfo],
                         output_mult: float) -> dict:
    """``{"modules": {readout module with its own output_mult: multiplier}, "model": the
    model's output_mult (None if no readout uses it)}``; refuses readouts nothing multiplies."""
    modules = dict(model.named_modules())
    readouts: dict[str, tuple[str, float]] = {}  # readout module -> (a parameter, its multiplier)
    for pname, info in infos.items():
        if info.readout_module is None:
            continue
        mult = output_mult * layer_scaling(name, "output", "adam", info.readout_fan_in_mult).output_mult
        if info.readout_module in readouts and readouts[info.readout_module][1] != mult:
            raise ValueError(f"readout {info.readout_module!r} has parameters with different fan_in multipliers")
        readouts.setdefault(info.readout_module, (pname, mult))

    own = {m: pm for m, pm in readouts.items() if hasattr(modules[m], "output_mult")}
    rest = {m: pm for m, pm in readouts.items() if m not in own}
    declared = getattr(model, "readout_modules", None)
    covered: dict[str, tuple[str, float]] = {}
    if hasattr(model, "output_mult") and rest:
        if declared is not None:
            covered = {m: pm for m, pm in rest.items() if m in tuple(declared)}
        elif len(rest) == 1:
            covered = rest
    uncovered = {m: pm for m, pm in rest.items() if m not in covered}
    needed = [pm[0] for pm in uncovered.values() if pm[1] != 1.0 or needs_output_mult(name)]
    if needed:
        if not hasattr(model, "output_mult"):
            how = "the model has no 'output_mult' attribute"
        elif declared is not None:
            how = f"the model's readout_modules {list(declared)} do not name its module"
        else:
            how = f"the model's output_mult cannot tell which of {sorted(rest)} it multiplies"
        raise ValueError(
            f"parameter {needed[0]!r} maps the width to a finite output (a readout) that nothing "
            f"multiplies by the output multiplier {name} needs: {how}. Give its module a float "
            "attribute output_mult that multiplies its input (dlrepro.parametrization.Readout) or "
            "name the module in the model's readout_modules"
        )
    mults = {pm[1] for pm in covered.values()}
    if len(mults) > 1:
        raise ValueError(f"readouts {sorted(covered)} have different fan_in multipliers ({sorted(mults)}); "
                         "one output multiplier cannot serve them all")
    return {"modules": {modules[m]: pm[1] for m, pm in own.items()},
            "model": mults.pop() if mults else None}


def _zero_query(mname: str, module: nn.Module) -> None:
    q_proj = getattr(module, "q_proj", None)
    if q_proj is not None:
        q_proj.weight.zero_()
        if getattr(q_proj, "bias", None) is not None:
            q_proj.bias.zero_()
        return
    c_attn, n_head, head_dim = (getattr(module, k, None) for k in ("c_attn", "n_head", "head_dim"))
    if c_attn is None or not isinstance(n_head, int) or not isinstance(head_dim, int):
        raise ValueError(f"zero_init_query: attention module {mname!r} has neither a q_proj nor a fused "
                         "c_attn with int n_head and head_dim")
    c_attn.weight[: n_head * head_dim].zero_()
    if getattr(c_attn, "bias", None) is not None:
        c_attn.bias[: n_head * head_dim].zero_()


def _mark_zeroed(model: nn.Module, plans: dict[str, ParamPlan]) -> dict[str, ParamPlan]:
    """Record parameters that are all zero now (init_std / init_scale 0.0)."""
    from dataclasses import replace

    out = {}
    for pname, p in model.named_parameters():
        pp = plans[pname]
        if p.ndim >= 1 and not p.any() and (pp.init_std or pp.init_scale):
            pp = replace(pp, init_std=0.0 if pp.init_std is not None else None,
                         init_scale=0.0 if pp.init_scale is not None else None)
        out[pname] = pp
    return out


def _fan_in_changed(pname: str, info: ParamInfo, infos: dict[str, ParamInfo]) -> bool:
    """Whether the fan_in feeding ``pname`` differs from the base model's: its own for a
    weight, its module's weight's for a bias."""
    if info.kind in ("linear", "conv", "embedding"):
        return info.fan_in_mult != 1.0
    if info.kind == "vector":
        prefix = pname.rsplit(".", 1)[0] + "." if "." in pname else ""
        weight = infos.get(prefix + "weight")
        return weight is not None and weight.kind != "vector" and weight.fan_in_mult != 1.0
    return False


def _rms(p) -> float:
    return float(p.detach().double().pow(2).mean().sqrt())
