"""A plain multilayer perceptron for the width (muP) stage.

One readable file in the spirit of nanoGPT's ``model.py``::

    x -> layers[0] -> act -> layers[1] -> act -> ... -> layers[depth-1] -> act -> readout -> y

``layers[0]`` maps ``in_dim -> width`` (the input layer), ``layers[1:]`` map
``width -> width`` (hidden layers) and ``readout`` maps ``width -> out_dim``.

The model does not know which parametrization (SP, NTK, muP) it is in: it exposes the
same hook as :mod:`dlrepro.models.transformer`, a float attribute ``output_mult`` that
multiplies the readout (1.0 = standard), and :func:`dlrepro.parametrization.apply_parametrization`
re-initialises its weights and sets that multiplier. The multiplier scales the readout's
*input* (as microsoft/mup's ``MuReadout`` does), so that with ``bias=False`` it multiplies
the logits and with ``bias=True`` the readout bias stays an ordinary, width-independent
parameter.

Until a parametrization is applied the weights keep PyTorch's default ``nn.Linear``
initialisation (uniform, variance ``1 / (3 fan_in)``).
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.nn import functional as F

from dlrepro.models import ACTIVATION_NAMES

ACTIVATIONS = {
    "relu": F.relu,
    "gelu": F.gelu,
    "tanh": torch.tanh,
}
assert tuple(ACTIVATIONS) == ACTIVATION_NAMES  # the names config validation checks against


class MLP(nn.Module):
    readout_modules = ("readout",)  # the modules output_mult multiplies (for the parametrization)

    def __init__(self, in_dim: int, width: int, out_dim: int, depth: int,
                 activation: str = "relu", bias: bool = False):
        super().__init__()
        for name, value in (("in_dim", in_dim), ("width", width), ("out_dim", out_dim), ("depth", depth)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"MLP {name} must be a positive int, got {value!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"MLP activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.activation = activation
        self.layers = nn.ModuleList(
            [nn.Linear(in_dim, width, bias=bias)]
            + [nn.Linear(width, width, bias=bias) for _ in range(depth - 1)]
        )
        self.readout = nn.Linear(width, out_dim, bias=bias)
        self.output_mult = 1.0  # set by the parametrization (muP: 1 / width multiplier)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = ACTIVATIONS[self.activation]
        for layer in self.layers:
            x = act(layer(x))
        return self.readout(x * self.output_mult)
