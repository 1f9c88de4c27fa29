"""Base shapes: each parameter's role and width multipliers, read off its shape and the
base (and delta) model's, as microsoft/mup's ``set_base_shapes`` does."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

_ROLE_OF = {(False, True): "input", (True, True): "hidden", (True, False): "output", (False, False): "fixed"}


@dataclass(frozen=True)
class ParamInfo:
    """A parameter's role, as read off its shape and the base (and delta) model's."""

    role: str
    kind: str  # "linear" (fan_out, fan_in), "embedding" (fan_in, fan_out), "conv" (fan_out, fan_in, *kernel), "vector", "scalar"
    base_fan_in: int  # fan_in at the base width, kernel included (1 for embeddings: one-hot inputs)
    fan_in_mult: float
    fan_out_mult: float
    tied: bool  # registered in more than one module (e.g. tied input/output embeddings)
    modules: tuple[str, ...] = ()  # the modules that register it
    # fan_in multiplier of the readout that uses it (an output weight, or an embedding tied to
    # a readout, as mup's MuSharedReadout); None if no readout uses it
    readout_fan_in_mult: float | None = None
    readout_module: str | None = None  # the module whose output that readout is


def _layout(module: nn.Module, ndim: int) -> tuple[str, int, int]:
    """(kind, fan_in axis, fan_out axis) of a weight with ``ndim`` >= 2 dimensions."""
    import torch.nn as nn
    from torch.nn.modules.conv import _ConvTransposeNd

    if isinstance(module, nn.Embedding):
        return "embedding", 0, 1
    kind = "linear" if ndim == 2 else "conv"
    if isinstance(module, _ConvTransposeNd):  # weight (in, out / groups, *kernel)
        return kind, 0, 1
    return kind, 1, 0  # nn.Linear, nn.ConvNd and torch.nn.init's convention: (out, in, *kernel)


def infer_roles(model: nn.Module, base_model: nn.Module,
                delta_model: nn.Module | None = None) -> dict[str, ParamInfo]:
    """Role and width multipliers of every parameter of ``model`` (named_parameters order).

    A dimension is infinite where ``base_model`` and ``delta_model`` (a model at another
    width) differ; without ``delta_model``, where ``model`` and ``base_model`` differ, so
    that at the base width every parameter is ``fixed``. Only the base and delta models'
    shapes are read, so they may live on the ``meta`` device.

    Weights with more than two dimensions (convolutions) are laid out as
    ``(fan_out, fan_in, *kernel)`` (transposed convolutions ``(fan_in, fan_out, *kernel)``);
    the kernel dimensions must be finite and count into ``base_fan_in``. A weight shared
    by several modules must play the same role in each, except an embedding tied to a
    readout (``nn.Linear``): it is an input weight whose readout needs the output
    multiplier (mup's ``MuSharedReadout``).
    """
    owners: dict[int, list[tuple[str, nn.Module]]] = {}
    for mname, module in model.named_modules(remove_duplicate=False):
        for p in module.parameters(recurse=False):
            owners.setdefault(id(p), []).append((mname, module))
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
        mods = owners[id(p)]
        names = tuple(m for m, _ in mods)
        tied = len(mods) > 1
        if p.ndim == 0:
            infos[name] = ParamInfo("fixed", "scalar", 1, 1.0, 1.0, tied, names)
            continue
        if p.ndim == 1:
            infos[name] = ParamInfo("vector" if infinite[0] else "fixed", "vector", 1, 1.0, mults[0], tied, names)
            continue

        views = []  # (role, kind, i_in, i_out, module name) per owning module
        for mname, module in mods:
            kind, i_in, i_out = _layout(module, p.ndim)
            extra = [d for d in range(p.ndim) if d not in (i_in, i_out) and infinite[d]]
            if extra:
                raise ValueError(
                    f"parameter {name!r} (shape {shape}) changes with width in dimension {extra[0]}, "
                    "which is neither its fan_in nor its fan_out (a kernel dimension); only fan_in "
                    "and fan_out may be infinite"
                )
            views.append((_ROLE_OF[infinite[i_in], infinite[i_out]], kind, i_in, i_out, mname))
        roles = {v[0] for v in views}
        readout_mult = readout_module = None
        if len(roles) == 1:
            role, kind, i_in, i_out, _ = views[0]
            outputs = [v for v in views if v[0] == "output"]
            if outputs:
                readout_mult, readout_module = mults[i_in], outputs[0][4]
        elif roles == {"input", "output"} and all((v[0] == "input") == (v[1] == "embedding") for v in views):
            role, kind, i_in, i_out, _ = next(v for v in views if v[0] == "input")
            out = next(v for v in views if v[0] == "output")
            readout_mult, readout_module = mults[out[2]], out[4]
        else:
            raise ValueError(
                f"parameter {name!r} is shared by modules {list(names)} in different roles "
                f"{sorted(roles)}; only an embedding tied to its readout is supported"
            )
        receptive = math.prod(base_shape[d] for d in range(p.ndim) if d not in (i_in, i_out))
        base_fan_in = 1 if kind == "embedding" else base_shape[i_in] * receptive
        infos[name] = ParamInfo(role, kind, base_fan_in, mults[i_in], mults[i_out], tied, names,
                                readout_mult, readout_module)
    return infos
