"""``python -m dlrepro report docs``: every number, table and command output of README.md
and docs/, generated.

A page holds generated blocks between two marker comments::

    <!-- begin:NAME ARGUMENT -->
    ... (replaced by make docs) ...
    <!-- end:NAME -->

and :func:`fill` replaces what is between them by the output of the generator ``NAME``
(:data:`GENERATORS`), given the argument, the page's folder and the sources: a results
folder of a run (``--results``), optionally a smoke run's (``--smoke-results``), the
schema and the repository. Nothing outside the markers changes. A block whose source is
absent (no smoke run given) is left as it is, and said so.

Generators: ``claims-count`` (the verdicts of ``claims.csv``), ``measured-results`` (the
claims table, each stage's headline numbers and the figures: :mod:`dlrepro.report.readme`),
``figure NAME`` (one figure of the run), ``stage-claims STAGE`` (that stage's claims and
the scale each was measured at), ``open-claims`` (each claim not reproduced, the seeds that
would resolve it and ``dlrepro plan``'s cost of the run with them), ``run-time main|smoke`` (wall time and jobs of the run,
from ``results/logs/run_time.json``), ``config-table`` (every key of the schema),
``command CMD`` (a command run in the repository and its output; ``command-grep PATTERN CMD``
the lines that match), ``plan-options``
(GPU-hours of the paper preset under each cost-cutting override), ``benchmarks`` (the
checks of ``docs/benchmarks.json``).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml

ROOT = Path(__file__).resolve().parents[3]
BLOCK = re.compile(r"(<!-- begin:(?P<name>[\w-]+)(?P<arg>[^\n]*?) -->\n)(?P<body>.*?)(<!-- end:(?P=name) -->)",
                   re.S)


class DocsError(ValueError):
    pass


@dataclass
class Sources:
    results: Path
    smoke_results: Path | None
    figures: Path  # docs/figures
    root: Path = ROOT


# ----------------------------------------------------------------------------- generators


def _claims(results: Path):
    from dlrepro import claims as C

    path = results / "claims.csv"
    if not path.exists():
        raise DocsError(f"{path} does not exist (run the workflow first)")
    return C.read(path)


def _preset(results: Path) -> str:
    from dlrepro.report.provenance import read

    run = read(results) or {}
    return str(run.get("preset") or "unknown")


def claims_count(arg: str, page: Path, src: Sources) -> str:
    rows = _claims(src.results)
    counts: dict[str, int] = {}
    for c in rows:
        counts[c.verdict] = counts.get(c.verdict, 0) + 1
    parts = ", ".join(f"{n} {v}" for v, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    return f"**{len(rows)} claims** measured by the `{_preset(src.results)}` preset's run: {parts}.\n"


def measured_results(arg: str, page: Path, src: Sources) -> str:
    from dlrepro.report import readme

    link = os.path.relpath(src.figures, page.parent).replace(os.sep, "/")
    preamble = (f"From one run of the `{_preset(src.results)}` preset "
                f"({_run_time_text(src.results)}); `results/summary.md` holds the same numbers "
                "with the config of each, `results/claims.csv` the claims.")
    return readme.section(_claims(src.results), src.results, src.figures, link, preamble)


def figure(arg: str, page: Path, src: Sources) -> str:
    from dlrepro.report.readme import FIGURE_CAPTIONS

    name = arg.strip()
    if not (src.figures / f"{name}.png").exists():
        raise DocsError(f"figure {name!r}: {src.figures / (name + '.png')} does not exist")
    link = os.path.relpath(src.figures / f"{name}.png", page.parent).replace(os.sep, "/")
    return f"![{FIGURE_CAPTIONS.get(name, name.replace('_', ' '))}]({link})\n"


def stage_claims(arg: str, page: Path, src: Sources) -> str:
    stage = arg.strip()
    rows = [c for c in _claims(src.results) if c.stage == stage]
    if not rows:
        return f"(the `{_preset(src.results)}` preset's run measured no claim of this stage)\n"
    lines = [f"Measured by the `{_preset(src.results)}` preset's run (`results/claims.csv`):", "",
             "| claim | statement | verdict | scale |", "| --- | --- | --- | --- |"]
    for c in rows:
        cells = [f"`{c.claim}`", c.statement, c.verdict, c.scale]
        lines.append("| " + " | ".join(str(x).replace("|", "\\|").replace("\n", " ") for x in cells) + " |")
    return "\n".join(lines) + "\n"


def _units_needed(c) -> tuple[int | None, str]:
    """How many units the claim's interval would need if its estimate held (the half-width
    shrinks as 1/sqrt(units), the t quantile ignored), and the text that says so or why more
    would not help."""
    import math

    if not all(math.isfinite(v) for v in (c.value, c.ci_lo, c.ci_hi)) or c.n_units < 1:
        return None, ""
    bounds = [float(b) for b in re.findall(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", c.expected)]
    if not bounds:
        return None, ""
    inside = [b for b in bounds if c.ci_lo < b < c.ci_hi]
    if not inside:
        return None, ""
    b = min(inside, key=lambda v: abs(c.value - v))
    distance = abs(c.value - b)
    half = (c.ci_hi - c.value) if b > c.value else (c.value - c.ci_lo)  # the interval's side facing b
    if distance < 0.1 * half:
        return None, "the estimate sits on the rule's boundary: no practical number of units decides it"
    need = math.ceil(c.n_units * (half / distance) ** 2)
    return need, f"about {need} {c.unit.split(' (')[0]} if the estimate held (now {c.n_units})"


#: where the config sets each claim's unit (its seeds): (claim id pattern, key path; ``{stage}``
#: and ``{model}`` from the pattern), the key :func:`_cost_at` extends to price the scale that
#: would resolve an open claim. The lists become seeds 0 .. n-1, as every preset writes them.
UNIT_KEYS = (
    (r"(?P<stage>collapse|vae|conformers)\.", ("{stage}", "seeds")),
    (r"init\.orthogonal_(trains_faster|generalises_better)", ("init", "training", "seeds")),
    (r"scaling\.data", ("scaling", "data_sweep", "seeds")),
    (r"scaling\.width\.", ("width", "mlp", "train", "seeds")),
    (r"width\.(?P<model>\w+)\.(mup_lr_transfer|sp_lr_drift)$", ("width", "{model}", "train", "lr_sweep_seeds")),
    (r"width\.\w+\.coord_check_", ("width", "coord_check", "seeds")),
    (r"width\.(?P<model>\w+)\.(agreement_across_widths|narrow_ensembles_worse|variance_slope)$",
     ("width", "{model}", "train", "seeds")),
)


def unit_key(claim: str) -> tuple[str, ...] | None:
    """The config key path of ``claim``'s unit (:data:`UNIT_KEYS`), or None."""
    for pattern, path in UNIT_KEYS:
        m = re.match(pattern, claim)
        if m:
            return tuple(part.format(**m.groupdict()) for part in path)
    return None


def with_units(cfg: dict, path: tuple[str, ...], n: int) -> dict:
    """A copy of ``cfg`` whose list at ``path`` is ``0 .. n-1``."""
    import copy

    out = copy.deepcopy(cfg)
    node = out
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = list(range(n))
    return out


def _run_plan(results: Path) -> tuple[dict, dict, float | None] | None:
    """The run's config (``run.yaml``), ``dlrepro plan``'s totals for it and the run's
    measured wall seconds (``run_time.json``, None if absent); None without a config."""
    from dlrepro.config import validate_config
    from dlrepro.plan.summary import plan_totals
    from dlrepro.report.provenance import TIMING_FILE, read

    config = (read(results) or {}).get("config")
    if not isinstance(config, dict):
        return None
    timing = results / TIMING_FILE
    seconds = json.loads(timing.read_text())["seconds"] if timing.exists() else None
    return config, plan_totals(validate_config(config), results), seconds


def _cost_at(c, need: int, results: Path, run: tuple[dict, dict, float | None] | None) -> str:
    """``dlrepro plan``'s cost of the run's config with the claim's unit extended to
    ``need``: jobs and CPU-job hours against the plan of the run's own config (``run``:
    :func:`_run_plan`), and the run's measured wall time scaled by that ratio."""
    from dlrepro.config import validate_config
    from dlrepro.plan.summary import plan_totals

    path = unit_key(c.claim)
    if path is None or run is None or not run[1]["cpu_job_hours"]:
        return ""
    config, base, seconds = run
    more = plan_totals(validate_config(with_units(config, path, need)), results)
    ratio = more["cpu_job_hours"] / base["cpu_job_hours"]
    text = (f"`{'.'.join(path)}`: 0..{need - 1}: {more['jobs']} jobs ({more['jobs'] - base['jobs']:+d}), "
            f"{ratio:.2f}x the CPU-job hours")
    if seconds is not None:
        minutes = seconds / 60
        text += f", about {minutes * ratio:.0f} minutes where this run took {minutes:.0f}"
    return text


def open_claims(arg: str, page: Path, src: Sources) -> str:
    """The run's claims that are not reproduced or not resolved, with their interval, why
    (the claim's ``scale``), the units the interval would need and ``dlrepro plan``'s cost
    of the run at that many."""
    rows = [c for c in _claims(src.results) if c.verdict != "reproduced"]
    if not rows:
        return f"Every claim of the `{_preset(src.results)}` preset's run is reproduced.\n"
    lines = [f"{len(rows)} claim(s) of the `{_preset(src.results)}` preset's run (`results/claims.csv`):", "",
             "| claim | verdict | value [95% interval] | rule | units needed | the run at that many "
             "(`dlrepro plan`) | scale and reason |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    needed = [_units_needed(c) for c in rows]
    run = _run_plan(src.results) if any(need for need, _ in needed) else None  # planned once
    for c, (need, units) in zip(rows, needed):
        interval = f"{c.value:.3g} [{c.ci_lo:.3g}, {c.ci_hi:.3g}]"
        cells = [f"`{c.claim}`", c.verdict, interval, c.expected, units,
                 _cost_at(c, need, src.results, run) if need else "", c.scale]
        lines.append("| " + " | ".join(str(x).replace("|", "\\|").replace("\n", " ") for x in cells) + " |")
    return "\n".join(lines) + "\n"


def _run_time_text(results: Path) -> str:
    from dlrepro.report.provenance import TIMING_FILE

    path = results / TIMING_FILE
    if not path.exists():
        raise DocsError(f"{path} does not exist (written at the end of a run)")
    t = json.loads(path.read_text())
    minutes = t["seconds"] / 60
    span = f"{minutes:.1f} minutes" if minutes >= 2 else f"{t['seconds']:.0f} seconds"
    return f"{t['jobs']} jobs in {span} of wall time"


def run_time(arg: str, page: Path, src: Sources) -> str | None:
    which = arg.strip() or "main"
    results = src.results if which == "main" else src.smoke_results
    if results is None:
        return None
    import platform

    cores = os.cpu_count()
    return (f"{_run_time_text(results)} (the `{_preset(results)}` preset, measured on {cores} "
            f"CPU cores, {platform.machine()}, by the run `make docs` read)\n")


def config_table(arg: str, page: Path, src: Sources) -> str:
    from dlrepro.config import load_schema

    schema = load_schema()
    rows = []

    def walk(node: dict, path: str) -> None:
        node = _resolve(node, schema)
        props = node.get("properties")
        if node.get("type") == "object" and props:
            for key, sub in props.items():
                walk(sub, f"{path}.{key}" if path else key)
            return
        kind = node.get("type") or ("name" if "registry" in node else "enum" if "enum" in node else "")
        if "registry" in node:
            kind = f"name ({node['registry']})"
        elif "enum" in node:
            kind = " \\| ".join(str(v) for v in node["enum"])
        elif isinstance(kind, list):
            kind = " or ".join(map(str, kind))
        rng = []
        for k, sym in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<")):
            if k in node:
                rng.append(f"{sym} {node[k]}")
        default = json.dumps(node["default"]) if "default" in node else ""
        desc = " ".join(str(node.get("description", "")).split())
        rows.append((path, kind + (f" ({', '.join(rng)})" if rng else ""), default, desc))

    walk(schema, "")
    lines = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    for key, kind, default, desc in rows:
        cells = [f"`{key}`", kind, f"`{default}`" if default else "", desc]
        lines.append("| " + " | ".join(c.replace("|", "\\|") if i != 1 else c for i, c in enumerate(cells)) + " |")
    return (f"Generated from `workflow/schemas/config.schema.yaml` ({len(rows)} keys; a key whose "
            "default is a block is filled from the defaults of its own keys):\n\n" + "\n".join(lines) + "\n")


def _resolve(node: dict, schema: dict) -> dict:
    if isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"].removeprefix("#/").split("/")
        target = schema
        for part in ref:
            target = target[part]
        return {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def scratch_checkout(root: Path, where: Path) -> Path:
    """A folder whose entries link to the repository's top-level entries: a command run in
    it reads the repository's files as the pages show them, and the files it writes (e.g.
    ``--out fits.json``) land in the scratch folder, not in the repository."""
    where.mkdir(parents=True, exist_ok=True)
    for entry in root.iterdir():
        if entry.name not in (".git", "results") and not (where / entry.name).exists():
            (where / entry.name).symlink_to(entry)
    return where


def _run(command: str, root: Path, timeout: float = 600) -> str:
    import tempfile

    env = {**os.environ, "PYTHONPATH": str(root / "workflow"), "COLUMNS": "200"}
    argv = shlex.split(command)
    if argv[:1] == ["python"]:
        argv[0] = sys.executable
    with tempfile.TemporaryDirectory(prefix="dlrepro-docs-") as tmp:
        proc = subprocess.run(argv, cwd=scratch_checkout(root, Path(tmp)), capture_output=True, text=True,
                              env=env, timeout=timeout)
    out = (proc.stdout + proc.stderr).rstrip("\n")
    if proc.returncode not in (0, 1):
        raise DocsError(f"`{command}` exited with {proc.returncode}: {out[-500:]}")
    return out


def command(arg: str, page: Path, src: Sources) -> str:
    """The command (run in the repository; ``python`` is this interpreter) and its output."""
    cmd = arg.strip()
    out = _run(cmd, src.root)
    shown = cmd if len(cmd) <= 100 else " \\\n    ".join(_wrap(cmd, 95))
    return f"```console\n$ {shown}\n{out}\n```\n"


def _wrap(cmd: str, width: int) -> list[str]:
    parts, line = [], ""
    for word in shlex.split(cmd):
        word = shlex.quote(word)
        if line and len(line) + len(word) + 1 > width:
            parts.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return parts + [line]


def command_grep(arg: str, page: Path, src: Sources) -> str:
    """``PATTERN CMD``: the command and the lines of its output that match the regular
    expression ``PATTERN`` (no spaces in it)."""
    pattern, cmd = arg.strip().split(" ", 1)
    out = _run(cmd, src.root)
    kept = [ln for ln in out.splitlines() if re.search(pattern, ln)]
    if not kept:
        raise DocsError(f"`{cmd}`: no output line matches {pattern!r}")
    return f"```console\n$ {cmd}\n" + "\n".join(kept) + "\n```\n"


#: the overrides whose cost the planning page shows, with what each costs the science
PLAN_OPTIONS = [
    ("collapse={sampling: {max_new_tokens: 255}}", "synthetic documents capped at 255 tokens (the longest are cut)"),
    ("collapse={generations: 4}", "5 generations instead of the paper's 10"),
    ("collapse={seeds: [0, 1], policies: [replace, accumulate]}",
     "two seeds; no fixed-budget (`accumulate-subsample`) arm"),
    ("collapse={seeds: [0]}", "one seed: no seed bands in the collapse figure"),
]


def _gpu_hours(out: str) -> str:
    m = re.search(r"([\d,.]+) GPU-hours", out)
    if not m:
        raise DocsError(f"no GPU-hours in the plan's output: {out[-300:]}")
    return m.group(1)


def plan_options(arg: str, page: Path, src: Sources) -> str:
    base = "python -m dlrepro plan --configfile workflow/presets/paper.yaml --brief"
    lines = ["| `--config` | GPU-hours | what it costs the science |", "| --- | --- | --- |",
             f"| (none) | {_gpu_hours(_run(base, src.root))} | |"]
    for override, cost in PLAN_OPTIONS:
        out = _run(f"{base} --config {shlex.quote(override)}", src.root)
        lines.append(f"| `{override}` | {_gpu_hours(out)} | {cost} |")
    return "\n".join(lines) + "\n"


def benchmarks(arg: str, page: Path, src: Sources) -> str:
    path = src.root / "docs" / "benchmarks.json"
    data = json.loads(path.read_text())
    m = data.get("machine", {})
    lines = [f"From `docs/benchmarks.json` ({m.get('cores')} cores, {m.get('cpu')}, torch {m.get('torch')}, "
             f"Python {m.get('python')}):", "",
             "| benchmark | measured | value | target | detail |", "| --- | --- | --- | --- | --- |"]
    for r in data["results"]:
        for c in r.get("checks", []):
            v = c.get("value")
            value = "" if v is None else f"{v:.3g} {c.get('unit') or ''}".strip()
            tgt = c.get("target")
            target = "" if tgt is None else ((">= " if c.get("higher_is_better") else "<= ") + f"{tgt:g}")
            lines.append(f"| `{r['benchmark']}` | {c.get('metric', '')} | {value} | {target} | {c.get('note') or ''} |")
    return "\n".join(lines) + "\n"


GENERATORS: dict[str, Callable[[str, Path, Sources], str | None]] = {
    "claims-count": claims_count,
    "measured-results": measured_results,
    "figure": figure,
    "stage-claims": stage_claims,
    "open-claims": open_claims,
    "run-time": run_time,
    "config-table": config_table,
    "command": command,
    "command-grep": command_grep,
    "plan-options": plan_options,
    "benchmarks": benchmarks,
}


def fill(text: str, page: Path, src: Sources, log=print) -> str:
    """``text`` with every generated block rewritten."""

    def one(m: re.Match) -> str:
        name, arg = m.group("name"), m.group("arg")
        gen = GENERATORS.get(name)
        if gen is None:
            raise DocsError(f"{page}: unknown generated block {name!r}; known: {', '.join(GENERATORS)}")
        body = gen(arg, page, src)
        if body is None:
            log(f"{page}: block {name}{arg} left as it was (its source was not given)")
            return m.group(0)
        return f"{m.group(1)}{body.rstrip()}\n{m.group(5)}"

    return BLOCK.sub(one, text)


def pages(root: Path = ROOT) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


def main(argv: list[str]) -> int:
    import argparse

    from dlrepro.io import write_text

    ap = argparse.ArgumentParser(prog="python -m dlrepro report docs",
                                 description="Fill the generated blocks of README.md and docs/*.md from a run.")
    ap.add_argument("--results", type=Path, default=Path("results"), help="the run's results folder")
    ap.add_argument("--smoke-results", type=Path, default=None, help="a smoke run's results folder (its time)")
    ap.add_argument("--figures", type=Path, default=ROOT / "docs" / "figures", help="the figures shown")
    ap.add_argument("pages", nargs="*", type=Path, help="pages to fill (default: README.md and docs/**/*.md)")
    args = ap.parse_args(argv)
    src = Sources(args.results, args.smoke_results, args.figures.resolve())
    try:
        for page in args.pages or pages():
            page = page.resolve()
            text = page.read_text(encoding="utf-8")
            new = fill(text, page, src)
            if new != text:
                write_text(page, new)
                print(f"report docs: {page.relative_to(ROOT) if page.is_relative_to(ROOT) else page} rewritten")
    except DocsError as exc:
        print(f"report docs: {exc}", file=sys.stderr)
        return 1
    return 0
