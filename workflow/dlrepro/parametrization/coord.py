"""The coordinate check (Tensor Programs V, App. D.1): every layer's output scale against
width after a few training steps; its table, figure and command line.

See :mod:`dlrepro.parametrization` for the table's columns and the command line.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import pandas as pd

from dlrepro.io import write_csv
from dlrepro.log import get_logger
from dlrepro.parametrization.apply import Plan, apply_parametrization
from dlrepro.parametrization.optim import make_optimizer
from dlrepro.parametrization.table import OPTIMIZERS, PARAMETRIZATIONS
from dlrepro.parametrization.table import check_choice as _check_choice
from dlrepro.parametrization.table import check_positive as _check_positive
from dlrepro.parametrization.table import check_positive_int as _check_positive_int

if TYPE_CHECKING:  # torch is imported inside the functions that need it
    import torch
    from torch import nn

TABLE_COLUMNS = ["parametrization", "width", "seed", "step", "layer", "rms", "delta_rms"]

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
    init: str = "table",
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
    torch.manual_seed(seed + 1_000_003)  # init="model" reads the base model's weights
    base, delta = model_factory(base_width), model_factory(2 * base_width)

    rows = []
    for width in widths:
        log = get_logger("coordcheck", parametrization=parametrization, width=width, seed=seed)
        torch.manual_seed(seed)
        model = model_factory(width)
        plan = apply_parametrization(model, parametrization, base, seed=seed, optimizer=optimizer,
                                     delta_model=delta, init_std=init_std,
                                     output_mult=output_mult, attn_mult=attn_mult, init=init)
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
    """Linear, convolution and Embedding modules that own their weight and are not the readout."""
    import torch.nn as nn
    from torch.nn.modules.conv import _ConvNd

    return [
        (mname, m) for mname, m in model.named_modules()
        if isinstance(m, (nn.Linear, nn.Embedding, _ConvNd))
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
