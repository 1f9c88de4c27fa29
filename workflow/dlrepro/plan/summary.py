"""The plan's tables: one row per (stage, job kind) of the planned jobs, and the totals.

Used by ``python -m dlrepro plan`` (:mod:`dlrepro.plan.cli`) and by ``report docs``, which
prices the scale that would resolve an open claim (:func:`plan_totals`).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from dlrepro.plan.jobs import Job


def summarize(jobs: list[Job], ctx) -> list[dict]:
    """One row per (stage, kind), in the order the jobs were planned."""
    groups: dict[tuple[str, str], list[Job]] = defaultdict(list)
    for j in jobs:
        groups[(j.stage, j.kind)].append(j)
    dev_mem = ctx.device_memory_mb()
    rows = []
    for (stage, kind), js in groups.items():
        first = js[0]

        def total(attr):
            vals = [getattr(j, attr) for j in js if getattr(j, attr) is not None]
            return float(sum(vals)) if vals else None

        def peak(attr):
            vals = [getattr(j, attr) for j in js if getattr(j, attr) is not None]
            return float(max(vals)) if vals else None

        seconds = total("seconds")
        gpus = first.request.get("gpu") or 0
        rows.append({
            "stage": stage, "kind": kind, "rule": first.rule, "n_jobs": len(js), "unit": first.unit,
            "work": total("work") or 0.0, "flops": total("flops"), "seconds_total": seconds,
            "seconds_max": peak("seconds"),
            "device_hours": (seconds or 0.0) * max(1, gpus) / 3600.0 if seconds is not None else None,
            "host_mb_max": peak("host_mb"), "device_mb_max": peak("device_mb"),
            "disk_bytes": float(sum(j.disk_bytes for j in js)),
            "runtime_request_min": first.request.get("runtime"), "mem_mb_request": first.request.get("mem_mb"),
            "gpu_request": gpus, "n_over_request": sum(bool(j.over_request(dev_mem)) for j in js),
            "accelerator": ctx.device.name, "mfu": ctx.mfu,
        })
    return rows


def totals(rows: list[dict], jobs: list[Job], ctx) -> dict:
    gpu = [r for r in rows if r["gpu_request"]]
    return {
        "jobs": len(jobs),
        "flops": sum(r["flops"] or 0.0 for r in rows),
        "gpu_hours": sum(r["device_hours"] or 0.0 for r in gpu),
        "cpu_job_hours": sum((r["seconds_total"] or 0.0) / 3600 for r in rows if not r["gpu_request"]),
        "longest_job_h": max((j.seconds or 0.0) for j in jobs) / 3600,
        "disk_tb": sum(r["disk_bytes"] for r in rows) / 1e12,
        "over_request": sum(r["n_over_request"] for r in rows),
    }


def plan_totals(cfg: dict, results: str | Path = "results") -> dict:
    """:func:`totals` of every job of the validated config ``cfg`` on its planned device."""
    from dlrepro.plan.stages import plan_jobs

    ctx, jobs = plan_jobs(cfg, results)
    return totals(summarize(jobs, ctx), jobs, ctx)
