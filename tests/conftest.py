"""Shared fixtures: the offline data mirror and a way to run the workflow itself."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
PRESETS = ROOT / "workflow" / "presets"


def _mirror() -> Path | None:
    env = os.environ.get("DLREPRO_DATA_MIRROR")
    for cand in ([Path(env)] if env else []) + [ROOT.parent / "shared" / "data"]:
        if cand.is_dir():
            return cand.resolve()
    return None


@pytest.fixture(scope="session")
def mirror() -> Path:
    m = _mirror()
    if m is None:
        pytest.skip("no offline data mirror (set DLREPRO_DATA_MIRROR or provide ../shared/data)")
    return m


def snakemake(*args: str, workdir: Path, env: dict | None = None, check: bool = True,
              timeout: float = 900) -> subprocess.CompletedProcess:
    """Run this repository's workflow with results under ``workdir``."""
    full_env = {**os.environ, **(env or {})}
    cmd = [SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "-d", str(workdir), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake failed ({proc.returncode}): {' '.join(cmd)}\n"
            f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-6000:]}"
        )
    return proc
