"""A small convolutional network for the width (muP) stage; its channel count is the width.

One readable file in the spirit of nanoGPT's ``model.py``::

    x [N, C, H, W] -> convs[0] -> act -> pool -> convs[1] -> act -> pool -> ... -> convs[depth-1] -> act
      -> mean over H, W -> readout -> logits [N, n_classes]

``convs[0]`` maps ``in_channels -> width`` (an input weight: its fan_in, ``C * k * k``, is
finite), ``convs[1:]`` map ``width -> width`` (hidden), all ``k x k`` with "same" padding;
``pool`` is a 2 x 2 average pool between convolutions; ``readout`` maps the ``width``
global-average-pooled channels to the classes (the output weight).

As the MLP, the model does not know its parametrization: it exposes ``output_mult``, which
multiplies the readout's input (``readout_modules`` names the module it covers), and
:func:`dlrepro.parametrization.apply_parametrization` sets it. Until then the weights keep
PyTorch's default initialisation (uniform, variance ``1 / (3 fan_in)``, fan_in = input
channels x kernel).
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.nn import functional as F

from dlrepro.models.mlp import ACTIVATIONS


class CNN(nn.Module):
    readout_modules = ("readout",)  # the modules output_mult multiplies (for the parametrization)

    def __init__(self, in_channels: int, width: int, n_classes: int, depth: int = 2,
                 kernel_size: int = 3, activation: str = "relu", bias: bool = False):
        super().__init__()
        for name, value in (("in_channels", in_channels), ("width", width), ("n_classes", n_classes),
                            ("depth", depth), ("kernel_size", kernel_size)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"CNN {name} must be a positive int, got {value!r}")
        if kernel_size % 2 == 0:
            raise ValueError(f"CNN kernel_size must be odd ('same' padding), got {kernel_size}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"CNN activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.activation = activation
        pad = kernel_size // 2
        self.convs = nn.ModuleList(
            [nn.Conv2d(in_channels, width, kernel_size, padding=pad, bias=bias)]
            + [nn.Conv2d(width, width, kernel_size, padding=pad, bias=bias) for _ in range(depth - 1)]
        )
        self.readout = nn.Linear(width, n_classes, bias=bias)
        self.output_mult = 1.0  # set by the parametrization (muP: 1 / width multiplier)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = ACTIVATIONS[self.activation]
        for i, conv in enumerate(self.convs):
            x = act(conv(x))
            if i < len(self.convs) - 1 and min(x.shape[-2:]) >= 2:
                x = F.avg_pool2d(x, 2)
        return self.readout(x.mean(dim=(-2, -1)) * self.output_mult)
