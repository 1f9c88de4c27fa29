"""Glue the Snakefile calls before any rule runs (kept here so it is testable and so the
Snakefile stays declarative)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from dlrepro.data.download import MIRROR_ENV, resolve_mirror

SLURM_ENV = ("DLREPRO_SLURM_ACCOUNT", "DLREPRO_SLURM_PARTITION")


def prepare_environment(package_dir: str | os.PathLike, config: dict) -> None:
    """Make the package importable by every job and pass the data mirror on.

    * ``PYTHONPATH`` gains the package folder, so jobs import it without installation
      (e.g. under ``--sdm conda``);
    * ``PATH`` starts with the folder of the Python running Snakemake, so ``python -m
      dlrepro`` in a job is this environment's Python unless a conda env is activated;
    * ``DLREPRO_DATA_MIRROR`` is set from ``data.mirror`` when that is given. The mirror is
      passed through the environment, not as a rule parameter: it only changes where
      checksum-verified, identical bytes come from, so changing it must not rerun anything.
    """
    package_dir = str(Path(package_dir).resolve())
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if package_dir not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([package_dir, *paths])
    exe_dir = os.path.dirname(sys.executable)
    if os.environ.get("PATH", "").split(os.pathsep)[0] != exe_dir:
        os.environ["PATH"] = os.pathsep.join([exe_dir, os.environ.get("PATH", "")])
    mirror = resolve_mirror(config["data"].get("mirror"))
    if mirror is not None:
        os.environ[MIRROR_ENV] = str(mirror)


def missing_slurm_env() -> list[str]:
    """The variables profiles/slurm needs that are unset."""
    return [v for v in SLURM_ENV if not os.environ.get(v)]
