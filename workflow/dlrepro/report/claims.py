"""The claims registry: which stages contribute claims, and how they are gathered.

Each stage in :data:`STAGES` has a module (:data:`MODULES`, by default
``dlrepro.<stage>.claims``) with ``claims(results_dir: Path, config: dict) -> list[Claim]``
that reads only that stage's result tables. The module is imported only when its claims
are collected, so importing this registry (the Snakefile does, to know the stages) costs
nothing. A new stage with claims is one entry in :data:`STAGES` (and its tables in
``workflow/rules/report.smk``).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from dlrepro.errors import UserError

#: the stages that contribute claims, in the order of ``claims.csv``
STAGES = ("linreg", "collapse", "vae", "conformers", "width", "init", "scaling")

#: stages whose claims module is not ``dlrepro.<stage>.claims``
MODULES = {"linreg": "dlrepro.linreg_claims"}


def module_name(stage: str) -> str:
    if stage not in STAGES:
        raise UserError(f"stage {stage!r} has no claims; stages with claims: {', '.join(STAGES)}")
    return MODULES.get(stage, f"dlrepro.{stage}.claims")


def stage_claims(stage: str, results_dir: str | Path, config: dict):
    """The claims of one stage (its module imported now)."""
    module = importlib.import_module(module_name(stage))
    return module.claims(Path(results_dir), config)


def collect(stages, results_dir: str | Path, config: dict):
    """The claims of ``stages`` (each must be in :data:`STAGES`), in registry order; claim ids
    must be unique."""
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise UserError(f"stage(s) {unknown} have no claims; stages with claims: {', '.join(STAGES)}")
    out = []
    for stage in [s for s in STAGES if s in stages]:
        out += stage_claims(stage, results_dir, config)
    ids = [c.claim for c in out]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ValueError(f"duplicate claim ids: {dup}")
    return out
