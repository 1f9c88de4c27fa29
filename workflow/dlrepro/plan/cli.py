"""``python -m dlrepro plan``: what a configuration costs, before it is submitted.

    python -m dlrepro plan [--configfile PRESET.yaml ...] [--config KEY=VALUE ...]
                           [--accelerator NAME] [--mfu X] [--results DIR] [--out plan.csv]
                           [--strict] [--measure-cpu] [--jobs] [--brief]

The configuration is built as the workflow builds it: ``config.yaml``, then each
``--configfile`` merged over it (nested keys merged, lists replaced, as Snakemake does),
then ``--config`` overrides in Snakemake's own form (top-level keys, nested values as YAML
flow mappings: ``--config 'compute={train_resources: {runtime: 60}}'``; the form of
``snakemake``, ``make run ARGS=...`` and ``check-config``), validated against the schema with
its defaults filled in. ``--config-json`` takes an already merged configuration (the
Snakemake rule ``plan`` passes its own).

Prints one row per stage and job kind, the totals, and every job whose estimate exceeds
its ``runtime`` or ``mem_mb`` request (or the device's memory); ``--strict`` then exits
with status 1. ``--out`` writes the table as CSV (columns: README "Planning a paper-scale
run"). ``--measure-cpu`` times ``torch.mm`` here and uses it as the CPU's peak (the only
option that imports torch).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dlrepro.config import CONFIG_FORM_HELP
from dlrepro.plan.costs import ACCELERATORS, Accelerator
from dlrepro.plan.jobs import Job
from dlrepro.plan.stages import plan_jobs
from dlrepro.plan.summary import summarize, totals

ROOT = Path(__file__).resolve().parents[3]

COLUMNS = [
    "stage", "kind", "rule", "n_jobs", "unit", "work", "flops", "seconds_total", "seconds_max",
    "device_hours", "host_mb_max", "device_mb_max", "disk_bytes", "runtime_request_min",
    "mem_mb_request", "gpu_request", "n_over_request", "accelerator", "mfu",
]


def load_config(configfiles: list[str], overrides: list[str], config_json: str | None = None) -> dict:
    """The validated configuration of ``--configfile``/``--config`` as Snakemake builds it
    (:func:`dlrepro.config.merged_config`: the same form as ``snakemake`` and
    ``check-config``), or of an already merged ``config_json``."""
    from dlrepro.config import ConfigError, merged_config, validate_config

    if config_json is not None:
        try:
            cfg = json.loads(config_json)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--config-json is not valid JSON: {exc}") from None
        return validate_config(cfg)
    return validate_config(merged_config(configfiles, overrides))


def measure_cpu_peak(threads: int, n: int = 1024, repeats: int = 5) -> float:
    """Best fp32 ``torch.mm`` FLOP/s per thread over ``repeats`` products of n x n matrices."""
    import time

    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n ** 3 / best / threads


def _fmt(x, unit: str = "", digits: int = 1) -> str:
    if x is None:
        return "-"
    if unit == "flops":
        return f"{x:.2e}"
    if unit == "h":
        return f"{x / 3600:,.{digits}f}"
    if unit == "gb":
        return f"{x / 1e3:,.1f}"
    if unit == "work":
        for div, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
            if x >= div:
                return f"{x / div:,.1f}{suffix}"
        return f"{x:,.0f}"
    return str(x)


def render(rows: list[dict], jobs: list[Job], ctx, brief: bool = False) -> str:
    hidden = [r for r in rows if brief and r["flops"] is None and r["seconds_max"] is None]
    rows = [r for r in rows if r not in hidden]
    head = ["stage", "kind", "jobs", "work", "unit", "FLOPs", "h/job max", "device-h",
            "host GB", "device GB", "disk GB", "over"]
    table = [head]
    for r in rows:
        table.append([
            r["stage"], r["kind"], str(r["n_jobs"]), _fmt(r["work"], "work") if r["work"] else "-", r["unit"] or "-",
            _fmt(r["flops"], "flops"), _fmt(r["seconds_max"], "h", 2), _fmt(r["device_hours"] * 3600 if r["device_hours"] is not None else None, "h"),
            _fmt(r["host_mb_max"], "gb"), _fmt(r["device_mb_max"], "gb"), f"{r['disk_bytes'] / 1e9:,.2f}",
            str(r["n_over_request"]) if r["n_over_request"] else "",
        ])
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    lines = []
    for k, row in enumerate(table):
        lines.append("  ".join(c.ljust(w) if i < 2 or i == 4 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    if hidden:
        lines.append(f"(not shown: {sum(r['n_jobs'] for r in hidden):,} bookkeeping jobs of "
                     f"{len(hidden)} kinds without an estimate: mixing, tables, figures, downloads)")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dlrepro plan", description="What a configuration costs before it is submitted: jobs, FLOPs, GPU-hours, "
                                "memory and disk per stage and job kind, and every job whose estimate exceeds its "
                                "runtime or memory request. Reads only the config (and prepared data manifests where "
                                "there are any); imports no torch.")
    p.add_argument("--configfile", "--configfiles", nargs="+", action="extend", default=[], metavar="FILE",
                   help="presets merged over config.yaml, in order (e.g. workflow/presets/paper.yaml)")
    p.add_argument("--config", "-C", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help=CONFIG_FORM_HELP)
    p.add_argument("--config-json", default=None, help=argparse.SUPPRESS)
    p.add_argument("--accelerator", choices=sorted(ACCELERATORS), default=None,
                   help="the device to estimate for (default: compute.plan.accelerator)")
    p.add_argument("--mfu", type=float, default=None, help="utilisation (default: compute.plan.mfu)")
    p.add_argument("--results", default="results", help="where prepared data manifests are looked for")
    p.add_argument("--out", default=None, help="write the table as CSV")
    p.add_argument("--strict", action="store_true", help="exit 1 if any job's estimate exceeds its request")
    p.add_argument("--measure-cpu", action="store_true", help="measure this machine's fp32 matmul peak (imports torch)")
    p.add_argument("--jobs", action="store_true", help="also list every job with its estimate")
    p.add_argument("--brief", action="store_true", help="leave out the rows without an estimate (bookkeeping)")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from dlrepro.config import ConfigError

    try:
        cfg = load_config(args.configfile, args.config, args.config_json)
    except ConfigError as exc:
        print(f"plan: invalid configuration: {exc}", file=sys.stderr)
        return 2
    if args.mfu is not None:
        if not 0 < args.mfu <= 1:
            print(f"plan: --mfu must be in (0, 1], got {args.mfu}", file=sys.stderr)
            return 2
        cfg["compute"]["plan"]["mfu"] = args.mfu
    device = ACCELERATORS[args.accelerator] if args.accelerator else None
    if args.measure_cpu:
        threads = int(cfg["compute"].get("num_threads") or cfg["compute"]["train_resources"]["threads"] or 1)
        per_thread = measure_cpu_peak(threads)
        device = Accelerator("cpu (measured)", per_thread / 1e12, 0.0, ACCELERATORS["cpu"].bandwidth_gbs, True)
        print(f"measured fp32 matmul peak: {per_thread / 1e9:.1f} GFLOP/s a thread x {threads} threads")
    ctx, jobs = plan_jobs(cfg, args.results, device)
    rows = summarize(jobs, ctx)
    t = totals(rows, jobs, ctx)
    dev = ctx.device
    where = (f"{dev.name}: {dev.peak_tflops * (ctx.threads if dev.per_thread else 1):,.3g} TFLOP/s peak"
             + (f" ({ctx.threads} threads)" if dev.per_thread else f", {dev.memory_gb:g} GB")
             + f", at {ctx.mfu:.0%} utilisation; precision {'bf16-mixed' if ctx.mixed else 'fp32'}"
             + (", torch.compile" if ctx.compile else ""))
    print(f"plan of {len(jobs):,} jobs on {where}")
    print(render(rows, jobs, ctx, brief=args.brief))
    print()
    print(f"total: {t['jobs']:,} jobs, {t['flops']:.3e} FLOPs, {t['gpu_hours']:,.1f} GPU-hours"
          f" + {t['cpu_job_hours']:,.1f} hours of CPU jobs, longest job {t['longest_job_h']:,.2f} h,"
          f" {t['disk_tb']:.3f} TB written")
    sources = sorted({n for j in jobs for n in j.notes if n.startswith(("manifest", "figures"))})
    for s in sources:
        print(f"data: {s}")
    dev_mem = ctx.device_memory_mb()
    over = [(j, j.over_request(dev_mem)) for j in jobs]
    over = sorted([(j, why) for j, why in over if why], key=lambda jw: -jw[0].overrun(dev_mem))  # worst first
    if args.jobs:
        for j in jobs:
            print(f"  {j.name}: {j.work:,.0f} {j.unit}, {(j.seconds or 0) / 60:,.1f} min, "
                  f"host {j.host_mb or 0:,.0f} MB, device {j.device_mb or 0:,.0f} MB; {'; '.join(j.notes)}")
    if over:
        print(f"\n{len(over)} job(s) exceed their request (worst first):")
        for j, why in over[:25]:
            print(f"  {j.name}: {'; '.join(why)}")
        if len(over) > 25:
            print(f"  ... and {len(over) - 25} more (--jobs lists every job)")
    if args.out:
        import pandas as pd

        from dlrepro.io import write_csv

        write_csv(args.out, pd.DataFrame(rows, columns=COLUMNS))
        print(f"wrote {args.out}")
    if args.strict and over:
        j, why = over[0]
        print(f"plan: --strict: {len(over)} job(s) exceed their request, e.g. {j.name}: {why[0]}",
              file=sys.stderr)
        return 1
    return 0
