"""The coordinate check of the width stage, and the stage config it reads.

:class:`StageParams` is the whole ``width`` block of the config: the parametrizations, each
model's :class:`ModelSection` (widths, ``train`` block, arms, the CNN's data set) and the
``coord_check`` block (:class:`CoordCheckSection`), validated together (also by
:mod:`dlrepro.config`). :func:`run_coord_check` trains every model of
``coord_check.models`` for a few full-batch AdamW steps at every width of its config and
returns the per-layer activation scales (:func:`dlrepro.parametrization.coord_check`),
columns :data:`COORD_COLUMNS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import pandas as pd

from dlrepro.errors import ParamsError, UserError
from dlrepro.parametrization import PARAMETRIZATIONS
from dlrepro.width.params import ARMS, CNN_DATASETS, MODELS, is_int, require, check_width, train_params
from dlrepro.width.tasks import make_task


# --------------------------------------------------------------------------- coordinate check


@dataclass
class ModelSection:
    """One model's block of the stage config: its widths, ``train`` block and arms.

    ``arms`` maps each arm to run to its parametrizations (``null``: the stage's list), e.g.
    ``{"online": null, "offline": ["mup"]}``.
    """

    widths: list
    train: dict = field(default_factory=dict)
    arms: dict = field(default_factory=lambda: {"online": None, "offline": None})
    dataset: str | None = None  # cnn only: the image folder (one of CNN_DATASETS; null: mnist)


@dataclass
class CoordCheckSection:
    """The ``coord_check`` block: a few full-batch AdamW steps on a fixed training batch."""

    models: list = field(default_factory=lambda: ["mlp", "lm"])
    steps: int = 5
    seeds: list = field(default_factory=lambda: [0])
    batch_size: int = 32
    # multiplies each parametrization's base lr (params.lr): 1/16, a rate at which no width's
    # loss rises above its initial loss (microsoft/mup's check uses about 1e-3 for Adam); at
    # the training rate the SP networks diverge within the check and their ReLUs die
    lr_mult: float = 0.0625


@dataclass
class StageParams:
    """The whole ``width`` block of the config (what ``coord-check`` reads)."""

    parametrizations: list = field(default_factory=lambda: list(PARAMETRIZATIONS))
    mlp: ModelSection | None = None
    lm: ModelSection | None = None
    cnn: ModelSection | None = None
    coord_check: CoordCheckSection = field(default_factory=CoordCheckSection)

    @classmethod
    def from_dict(cls, raw: dict, where: str = "--params") -> "StageParams":
        def check_keys(d, klass, w):
            if not isinstance(d, dict):
                raise ParamsError(f"{w} must be a JSON object, got {d!r}")
            known = [f.name for f in fields(klass)]
            for key in d:
                if key not in known:
                    raise ParamsError(f"unknown key {w}.{key!r}; known keys: {known}")

        check_keys(raw, cls, where)
        kwargs = dict(raw)
        for model in MODELS:
            if raw.get(model) is not None:
                check_keys(raw[model], ModelSection, f"{where}.{model}")
                if "widths" not in raw[model]:
                    raise ParamsError(f"{where}.{model}.widths is required")
                kwargs[model] = ModelSection(**raw[model])
        if "coord_check" in raw:
            check_keys(raw["coord_check"], CoordCheckSection, f"{where}.coord_check")
            kwargs["coord_check"] = CoordCheckSection(**raw["coord_check"])
        stage = cls(**kwargs)
        stage.validate(where)
        return stage

    def validate(self, where: str) -> None:
        for p in self.parametrizations:
            require(p in PARAMETRIZATIONS, f"{where}.parametrizations entry (one of {list(PARAMETRIZATIONS)})", p)
        for model in MODELS:
            section = self.section(model)
            if section is None:
                continue
            w = f"{where}.{model}"
            if model == "cnn":
                require(section.dataset is None or section.dataset in CNN_DATASETS,
                         f"{w}.dataset (one of {list(CNN_DATASETS)} or null)", section.dataset)
            else:
                require(section.dataset is None, f"{w}.dataset (only the cnn block has one)", section.dataset)
            params = train_params(model, section.train, f"{w}.train")
            require(isinstance(section.widths, list) and len(section.widths) > 0, f"{w}.widths", section.widths)
            for width in section.widths:
                check_width(model, params, width)
            require(isinstance(section.arms, dict) and section.arms, f"{w}.arms (an object arm -> parametrizations)", section.arms)
            for arm, names in section.arms.items():
                require(arm in ARMS, f"{w}.arms key (one of {list(ARMS)})", arm)
                require(names is None or isinstance(names, list), f"{w}.arms.{arm} (a list or null)", names)
                for p in self.parametrizations_of(model, arm):
                    require(p in PARAMETRIZATIONS, f"{w}.arms.{arm} entry (one of {list(PARAMETRIZATIONS)})", p)
                    params.lr_for(p)
        cc = self.coord_check
        for model in cc.models:
            require(model in MODELS and self.section(model) is not None,
                     f"{where}.coord_check.models entry (a model with a config block)", model)
        for name in ("steps", "batch_size"):
            require(is_int(getattr(cc, name)) and getattr(cc, name) >= 1,
                     f"{where}.coord_check.{name} (a positive int)", getattr(cc, name))
        require(isinstance(cc.seeds, list) and cc.seeds and all(is_int(s) and s >= 0 for s in cc.seeds),
                 f"{where}.coord_check.seeds", cc.seeds)
        require(isinstance(cc.lr_mult, (int, float)) and cc.lr_mult > 0, f"{where}.coord_check.lr_mult", cc.lr_mult)

    def section(self, model: str) -> ModelSection | None:
        return getattr(self, model)

    def parametrizations_of(self, model: str, arm: str | None = None) -> list[str]:
        """The parametrizations of ``model`` in ``arm`` (all its arms' when ``arm`` is None)."""
        section = self.section(model)
        if section is None:
            return []
        arms = [arm] if arm is not None else list(section.arms)
        names = [p for a in arms for p in (section.arms.get(a) or self.parametrizations)]
        return sorted(set(names), key=list(PARAMETRIZATIONS).index)

    def cells(self) -> list[tuple[str, str, int, str]]:
        """Every (model, parametrization, width, arm) the stage trains."""
        return [(model, p, width, arm) for model in MODELS if self.section(model)
                for arm in self.section(model).arms for p in self.parametrizations_of(model, arm)
                for width in self.section(model).widths]


COORD_COLUMNS = ["model", "parametrization", "width", "seed", "lr", "step", "layer", "rms", "delta_rms",
                 "loss", "valid"]


def run_coord_check(stage: StageParams, data_dirs: dict[str, str | Path]) -> pd.DataFrame:
    """The coordinate-check table (:func:`dlrepro.parametrization.coord_check`) of every model
    in ``stage.coord_check.models``: the model at every width of its config, trained for
    ``steps`` full-batch AdamW steps on the first ``batch_size`` training items of the online
    arm at ``lr_mult`` times each parametrization's base lr. Columns :data:`COORD_COLUMNS`:
    ``lr`` the rate, ``loss`` the training loss on the batch at that step (before the step's
    update: step 0 is the initial loss), ``valid`` 1 when that (width, seed)'s loss never
    rose above its initial loss during the check (else the check ran where the network
    diverges, and its slopes are no coordinate check)."""
    import torch

    cc = stage.coord_check
    frames = []
    for model in cc.models:
        if model not in data_dirs or data_dirs[model] is None:
            raise UserError(f"coord-check of model {model!r} needs its data folder")
        section = stage.section(model)
        params = train_params(model, section.train, f"params.{model}.train")
        task = make_task(model, params, data_dirs[model], "online")
        x, y = task.train_eval
        if cc.batch_size > len(x):
            raise ParamsError(f"coord_check.batch_size={cc.batch_size} exceeds n_train_eval={len(x)} of {model}")
        from dlrepro.cpu import configure

        configure(int(params.compute.get("num_threads") or 1))
        for seed in cc.seeds:
            for p in stage.parametrizations_of(model):
                frame = checked_coords(task, params, sorted(section.widths), p, cc.steps,
                                       (x[: cc.batch_size], y[: cc.batch_size]),
                                       lr=params.lr_for(p) * cc.lr_mult, seed=seed)
                frames.append(frame.assign(model=model))
    return pd.concat(frames, ignore_index=True)[COORD_COLUMNS]


def checked_coords(task, params, widths: list[int], parametrization: str, steps: int, data, *, lr: float,
                   seed: int) -> pd.DataFrame:
    """:func:`dlrepro.parametrization.coord_check` of ``task.build`` with the training loss of
    every step and the check's validity (columns ``lr``, ``loss``, ``valid``).

    The loss at step ``s`` is the loss the ``s + 1``-th update is computed from (the network
    after ``s`` updates); the check runs one step more than ``steps`` to see the loss after
    the last recorded update, and that step's rows are dropped."""
    from torch.nn import functional as F

    from dlrepro.parametrization import coord_check

    losses: list[float] = []

    def loss_fn(logits, target):
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), target.reshape(-1))
        losses.append(float(loss))
        return loss

    frame = coord_check(task.build, widths, parametrization, steps + 1, data, base_width=params.base_width,
                        optimizer="adamw", lr=lr, seed=seed, init=params.init, init_std=params.init_std,
                        output_mult=params.output_mult, attn_mult=task.attn_mult(parametrization),
                        loss_fn=loss_fn)
    by_width = np.asarray(losses, float).reshape(len(widths), steps + 1)
    loss = {(w, s): by_width[i, s] for i, w in enumerate(widths) for s in range(steps + 1)}
    valid = {w: bool(np.isfinite(by_width[i]).all() and (by_width[i] <= by_width[i, 0]).all())
             for i, w in enumerate(widths)}
    frame = frame[frame["step"] <= steps].copy()
    frame["lr"] = lr
    frame["loss"] = [loss[(int(w), int(s))] for w, s in zip(frame["width"], frame["step"])]
    frame["valid"] = [int(valid[int(w)]) for w in frame["width"]]
    return frame
