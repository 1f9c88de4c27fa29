"""The optimiser of a :class:`~dlrepro.parametrization.apply.Plan`: one parameter group
per learning-rate multiplier (as microsoft/mup's ``MuSGD``, ``MuAdam``, ``MuAdamW``)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from dlrepro.parametrization.table import check_positive

if TYPE_CHECKING:
    import torch
    from torch import nn

    from dlrepro.parametrization.apply import Plan


def make_optimizer(
    model: nn.Module,
    plan: Plan,
    lr: float,
    *,
    weight_decay: float = 0.0,
    decay_vectors: bool = False,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    momentum: float = 0.0,
) -> torch.optim.Optimizer:
    """The optimiser ``plan.optimizer`` (SGD, Adam or AdamW) with one parameter group per
    learning-rate multiplier: group lr ``lr * lr_mult`` and weight decay
    ``weight_decay / lr_mult`` (so ``lr * weight_decay``, the per-step shrink of AdamW, is
    width-independent, as in mup).

    ``decay_vectors=False`` (nanoGPT's convention) exempts parameters with fewer than two
    dimensions (biases, norm gains) from weight decay; ``True`` decays them too, which is
    what ``mup.MuAdamW`` / ``MuSGD`` do.

    Each group also carries its ``lr_mult``; learning-rate schedulers scale every group's
    initial lr, so they keep the ratios.
    """
    import torch

    check_positive("lr", lr)
    if not (math.isfinite(weight_decay) and weight_decay >= 0):
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
    if not isinstance(decay_vectors, bool):
        raise ValueError(f"decay_vectors must be true or false, got {decay_vectors!r}")
    params = dict(model.named_parameters())
    if set(params) != set(plan.params):
        diff = sorted(set(params) ^ set(plan.params))
        raise ValueError(f"the plan does not match the model's parameters: {diff}")

    groups: dict[tuple[float, bool], list] = {}
    for pname, p in params.items():
        if p.requires_grad:
            decays = decay_vectors or p.ndim >= 2
            groups.setdefault((plan.params[pname].lr_mult, decays), []).append(p)
    param_groups = [
        {"params": ps, "lr": lr * mult, "weight_decay": weight_decay / mult if decays else 0.0,
         "lr_mult": mult}
        for (mult, decays), ps in groups.items()
    ]
    if plan.optimizer == "sgd":
        return torch.optim.SGD(param_groups, lr=lr, momentum=momentum)
    adam = torch.optim.Adam if plan.optimizer == "adam" else torch.optim.AdamW
    return adam(param_groups, lr=lr, betas=betas, eps=eps)
