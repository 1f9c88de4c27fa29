"""Readout layers that carry their own output multiplier (as mup's ``MuReadout`` and
``MuSharedReadout``), for models with more than one width -> finite head.

:func:`dlrepro.parametrization.apply_parametrization` sets ``output_mult`` of every such
module to what the parametrization needs (muP: ``output_mult / m_in``).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class Readout(nn.Linear):
    """``nn.Linear`` whose input is multiplied by ``output_mult`` (the bias is not)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, **kwargs):
        super().__init__(in_features, out_features, bias=bias, **kwargs)
        self.output_mult = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x * self.output_mult)


class SharedReadout(nn.Module):
    """A readout whose weight is an embedding's (tied input/output embeddings):
    ``F.linear(x * output_mult, embedding.weight, bias)``."""

    def __init__(self, embedding: nn.Embedding, bias: bool = False):
        super().__init__()
        self.weight = embedding.weight
        self.bias = nn.Parameter(torch.zeros(embedding.num_embeddings)) if bias else None
        self.output_mult = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x * self.output_mult, self.weight, self.bias)
