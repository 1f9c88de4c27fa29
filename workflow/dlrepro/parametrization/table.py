"""The abc-table: how init std, learning rate and output multiplier scale with width.

See the package docstring (:mod:`dlrepro.parametrization`) for the table and its sources.
No torch here: config validation imports the names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

PARAMETRIZATIONS = ("sp", "ntk", "mup")
OPTIMIZERS = ("sgd", "adam", "adamw")
ROLES = ("input", "hidden", "output", "vector", "fixed")


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
    check_choice("parametrization", parametrization, PARAMETRIZATIONS)
    check_choice("role", role, ROLES)
    check_choice("optimizer", optimizer, OPTIMIZERS)
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


def needs_output_mult(parametrization: str) -> bool:
    """Whether the parametrization multiplies readouts by a width-dependent factor."""
    return ROLE_TABLE[parametrization]["output"].mult != 0


# --------------------------------------------------------------------------- checks


def check_choice(name: str, value, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")


def check_positive(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive number, got {value!r}")


def check_positive_int(name: str, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
