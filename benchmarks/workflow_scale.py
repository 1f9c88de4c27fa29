"""Workflow scale: how long Snakemake takes to plan the biggest preset, and whole-preset wall times.

* **Dry run of the ``paper`` preset**: ``snakemake -n`` (parse the Snakefile, validate the
  config, build the DAG of thousands of jobs) in a fresh, empty working directory; reported:
  the number of jobs and the wall seconds (target < 15 s). Its baseline in the same command
  is the dry run of the ``smoke`` preset, so the table also shows what the extra jobs cost
  over the fixed start-up of Snakemake and the Snakefile.
* **End to end**: ``snakemake --profile profiles/cpu`` on each preset of ``end_to_end`` from
  an empty working directory, with the offline data mirror when one is found
  (``$DLREPRO_DATA_MIRROR`` or ``../shared/data``, as ``.ci/run`` does), on all cores;
  reported: jobs run and wall seconds (targets: smoke <= 3 min, default <= 25 min on 2 cores).
* **Machine speed**: the best single-thread float32 ``torch.mm`` FLOP/s
  (:func:`benchmarks.mfu.peak_matmul_flops`), measured in the same command, so that wall
  times from different machines can be set side by side: an absolute budget holds on the
  machine that measured it, and machines of the same size differ; this row says how fast
  that machine was.

The default preset takes up to half an hour on 2 cores, depending on the machine
(docs/performance.md has the last measurement), and so does a full run of this
benchmark; ``QUICK`` does only the dry runs of the small presets.

    .venv/bin/python -m benchmarks workflow_scale [--quick]

Two environment variables narrow or keep a full run: ``WORKFLOW_SCALE_PRESETS``
(comma-separated, default ``smoke,default``) chooses the presets run end to end, and
``WORKFLOW_SCALE_KEEP=<folder>`` runs each in ``<folder>/<preset>`` and keeps it, so that
the measured run's results can be read afterwards (``make docs RESULTS=<folder>/default/results``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from benchmarks import check, data_mirror

NAME = "workflow_scale"
ROOT = Path(__file__).resolve().parents[1]
PRESETS = {"smoke": ROOT / "workflow" / "presets" / "smoke.yaml", "default": None,
           "paper": ROOT / "workflow" / "presets" / "paper.yaml"}
TARGETS_S = {"dry:paper": 15.0, "run:smoke": 180.0, "run:default": 1500.0}


def _presets_from_env() -> tuple[str, ...]:
    names = tuple(p.strip() for p in os.environ.get("WORKFLOW_SCALE_PRESETS", "smoke,default").split(",") if p.strip())
    unknown = [p for p in names if p not in PRESETS]
    if unknown:
        raise SystemExit(f"WORKFLOW_SCALE_PRESETS: unknown preset(s) {unknown}; known: {list(PRESETS)}")
    return names


@dataclass
class Setup:
    dry_runs: tuple[str, ...] = ("smoke", "paper")
    end_to_end: tuple[str, ...] = field(default_factory=_presets_from_env)
    repeats: int = 2  # of each dry run (the best is reported)
    keep: str | None = field(default_factory=lambda: os.environ.get("WORKFLOW_SCALE_KEEP") or None)


QUICK = Setup(dry_runs=("smoke",), end_to_end=(), repeats=1, keep=None)


def _snakemake() -> str:
    exe = Path(sys.executable).with_name("snakemake")
    return str(exe) if exe.exists() else "snakemake"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    mirror = data_mirror()
    if mirror is not None:
        env["DLREPRO_DATA_MIRROR"] = str(mirror)
    return env


def _cmd(preset: str, workdir: Path, *args: str) -> list[str]:
    cmd = [_snakemake(), "-s", str(ROOT / "Snakefile"), "-d", str(workdir),
           "--profile", str(ROOT / "profiles" / "cpu"), *args]
    if PRESETS[preset] is not None:
        cmd += ["--configfile", str(PRESETS[preset])]
    return cmd


def count_jobs(output: str) -> int:
    """The ``total`` row of Snakemake's job stats table."""
    totals = re.findall(r"^total\s+(\d+)", output, flags=re.M)
    if not totals:
        raise RuntimeError(f"no job count in Snakemake's output:\n{output[-2000:]}")
    return int(totals[0])


def _timed(cmd: list[str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env())
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return wall, proc.stdout + proc.stderr


def dry_run(preset: str, repeats: int) -> dict:
    walls, jobs = [], None
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            wall, out = _timed(_cmd(preset, Path(tmp), "-n"))
        walls.append(wall)
        jobs = count_jobs(out)
    return {"preset": preset, "jobs": jobs, "wall_s": min(walls), "walls_s": walls}


def end_to_end(preset: str, keep: str | None = None) -> dict:
    if keep is not None:
        work = Path(keep) / preset
        if work.exists():
            shutil.rmtree(work)  # from empty, as every measured run
        work.mkdir(parents=True)
    else:
        work = Path(tempfile.mkdtemp(prefix=f"dlrepro-bench-{preset}-"))
    try:
        print(f"[workflow_scale] running the {preset} preset end to end in {work}", file=sys.stderr, flush=True)
        t0 = os.times()
        wall, out = _timed(_cmd(preset, work))
        t1 = os.times()
        cpu = (t1.children_user - t0.children_user) + (t1.children_system - t0.children_system)
        return {"preset": preset, "jobs": count_jobs(out), "wall_s": wall, "cpu_s": cpu, "cores": os.cpu_count()}
    finally:
        if keep is None:
            shutil.rmtree(work, ignore_errors=True)


def machine_speed(n: int = 256, repeats: int = 200) -> float:
    """Single-thread float32 matmul GFLOP/s (:func:`benchmarks.mfu.peak_matmul_flops`), with
    torch on one thread, as every job of the CPU profile runs."""
    import torch

    from benchmarks.mfu import peak_matmul_flops

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return peak_matmul_flops(n, repeats, "cpu", torch.float32) / 1e9
    finally:
        torch.set_num_threads(threads)


def benchmark(setup: Setup) -> dict:
    speed = machine_speed()
    dry = [dry_run(p, setup.repeats) for p in setup.dry_runs]
    runs = [end_to_end(p, setup.keep) for p in setup.end_to_end]
    checks = [check("machine speed: float32 matmul on one thread", speed, "GFLOP/s", target=None,
                    note="sets wall times of different machines side by side")]
    for d in dry:
        checks.append(check(f"snakemake -n, {d['preset']} preset ({d['jobs']:,} jobs)", d["wall_s"], "s",
                            target=TARGETS_S.get(f"dry:{d['preset']}"), higher_is_better=False))
    for r in runs:
        checks.append(check(f"end to end, {r['preset']} preset ({r['jobs']} jobs, {r['cores']} cores)",
                            r["wall_s"], "s", target=TARGETS_S.get(f"run:{r['preset']}"),
                            higher_is_better=False))
        checks.append(check(f"end to end, {r['preset']} preset: CPU time of all jobs", r["cpu_s"], "s",
                            target=None, higher_is_better=False))
    return {"benchmark": NAME, "setup": asdict(setup), "dry_runs": dry, "end_to_end": runs, "checks": checks}
