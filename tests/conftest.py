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


# Under pytest-xdist (make test: --dist loadfile), the files that take longest start first:
# the SLURM tests (one long chain of cluster jobs, mostly waiting), then the reliability
# tests (the shared smoke run is built there), then the other files with slow tests.
FIRST_FILES = ("test_slurm.py", "test_reliability.py")


def pytest_collection_modifyitems(config, items):
    """Order the files for pytest-xdist's workers (every worker sorts alike); a file's
    tests keep their order and run on one worker, one after another."""
    if not hasattr(config, "workerinput"):  # not an xdist worker: the usual order
        return
    slow_files = {item.path.name for item in items if item.get_closest_marker("slow")}

    def rank(item):
        name = item.path.name
        return FIRST_FILES.index(name) if name in FIRST_FILES else 2 if name in slow_files else 3

    items.sort(key=rank)


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


SMOKE = ["--profile", str(ROOT / "profiles" / "cpu"), "--configfile", str(PRESETS / "smoke.yaml")]


def write_override(tmp_path: Path, override: dict) -> str:
    """A config file holding ``override``, for ``--configfile`` (a YAML file: ``--config``
    would turn nested values into strings)."""
    import yaml

    path = tmp_path / f"override-{len(list(tmp_path.glob('override-*')))}.yaml"
    path.write_text(yaml.safe_dump(override))
    return str(path)


def smoke_with(tmp_path: Path, override: dict) -> list[str]:
    """Snakemake arguments for the smoke preset updated by ``override``."""
    return [*SMOKE, write_override(tmp_path, override)]


def shared_tmp(tmp_path_factory) -> Path:
    """A scratch folder of this test run that every pytest-xdist worker sees (each worker
    has a base temp of its own, beside the others'); without xdist, the base temp."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory, mirror) -> Path:
    """One complete run of the smoke preset (every stage), shared by the tests that read
    its results or dry-run edits against it. Tests must not modify it (copy_workdir makes
    a copy to change).

    Built once per test run, also under pytest-xdist, whose workers each build their own
    session fixtures: the first worker to need it runs the preset while holding a lock,
    and the others wait for it and use its folder (or fail with its error)."""
    import fcntl

    root = shared_tmp(tmp_path_factory)
    work, done, failed = root / "smoke", root / "smoke.done", root / "smoke.failed"
    with open(root / "smoke.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
        if failed.exists():
            raise AssertionError(f"the shared smoke run failed in another worker:\n{failed.read_text()}")
        if not done.exists():
            work.mkdir()
            try:
                snakemake(*SMOKE, workdir=work, env={"DLREPRO_DATA_MIRROR": str(mirror)}, timeout=1800)
            except BaseException as err:
                failed.write_text(str(err) or repr(err))
                raise
            done.touch()
    return work


def copy_workdir(src: Path, dst: Path) -> Path:
    """A copy of a finished run: its results and Snakemake's metadata (which records the
    params each output was made with, so that config edits are seen), modification times
    kept; no checkpoints, locks or logs of SLURM jobs."""
    import shutil

    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".checkpoints", "locks", "incomplete",
                                                             "slurm_logs"))
    return dst


def result_files(work: Path) -> set[str]:
    """Every file under ``work/results`` but the logs and checkpoints, relative to it."""
    res = work / "results"
    return {p.relative_to(res).as_posix() for p in res.rglob("*")
            if p.is_file() and p.relative_to(res).parts[0] not in ("logs", ".checkpoints")}


def dry_run_jobs(workdir: Path, *args: str, env: dict | None = None) -> dict[str, int]:
    """Rule name -> number of jobs a dry run would execute (``all`` excluded); ``args``
    default to the smoke preset."""
    proc = snakemake("-n", *(args or SMOKE), workdir=workdir, env=env)
    out = proc.stdout + proc.stderr
    if "Nothing to be done" in out:
        return {}
    jobs: dict[str, int] = {}
    in_table = False
    for line in out.splitlines():
        if line.startswith("Job stats:"):
            in_table, jobs = True, {}
            continue
        if in_table:
            parts = line.split()
            if len(parts) == 2 and parts[1].isdigit() and parts[0] not in {"total", "job"}:
                jobs[parts[0]] = int(parts[1])
            elif parts and parts[0] == "total":
                break
    jobs.pop("all", None)
    return jobs
