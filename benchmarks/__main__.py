"""``python -m benchmarks``: run the benchmarks, print one table, write JSON (see ``benchmarks/__init__.py``)."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

from benchmarks import machine

# In the order of issue #11's list.
NAMES = ["training_overhead", "sampling", "mfu", "data_path", "workflow_scale", "scaling_fit", "denormals"]


def _fmt(value: float) -> str:
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def table(results: list[dict], verdicts: bool = True) -> str:
    """The results as a text table; ``verdicts=False`` leaves out pass/FAIL (quick sizes)."""
    rows = [("benchmark", "metric", "value", "target", "")]
    for result in results:
        for c in result["checks"]:
            target = "" if c["target"] is None else ((">= " if c["higher_is_better"] else "<= ")
                                                     + _fmt(c["target"]))
            verdict = {True: "pass", False: "FAIL", None: ""}[c["ok"]] if verdicts else ""
            rows.append((result["benchmark"], c["metric"], f"{_fmt(c['value'])} {c['unit']}".strip(),
                         target, verdict))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", metavar="NAME", help=f"benchmarks to run (default: all of {NAMES})")
    ap.add_argument("--quick", action="store_true", help="tiny sizes (seconds each), as the tests run them")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/results.json"),
                    help="JSON file to write (default: %(default)s)")
    args = ap.parse_args(argv)
    unknown = [n for n in args.names if n not in NAMES]
    if unknown:
        ap.error(f"unknown benchmark(s) {unknown}; known: {NAMES}")
    results = []
    for name in args.names or NAMES:
        module = importlib.import_module(f"benchmarks.{name}")
        setup = module.QUICK if args.quick else module.Setup()
        print(f"[benchmarks] {name} ({'quick' if args.quick else 'full'} sizes) ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        result = module.benchmark(setup)
        result["wall_s"] = time.perf_counter() - t0
        print(f"[benchmarks] {name} done in {result['wall_s']:.1f} s", file=sys.stderr, flush=True)
        results.append(result)
    if args.quick:
        print("quick sizes: a test of the benchmarks themselves; the targets are for the full sizes")
    print(table(results, verdicts=not args.quick))
    payload = {"machine": machine(), "quick": args.quick, "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(args.out.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    tmp.replace(args.out)
    print(f"wrote {args.out}")
    failed = [c["metric"] for r in results for c in r["checks"] if c["ok"] is False]
    return 1 if failed and not args.quick else 0


if __name__ == "__main__":
    raise SystemExit(main())
