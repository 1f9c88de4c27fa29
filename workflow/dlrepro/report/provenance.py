"""What made a results folder: ``results/run.yaml``.

Every successful run of the workflow (its ``onsuccess`` hook) writes ``run.yaml`` beside its
results: the preset's name (config key ``preset``), the ``--configfile`` and ``--config``
arguments of the command line (as ``ARGS`` for ``make``), and the merged, validated
configuration. ``data.mirror`` is left out: it says where identical, verified bytes came
from, and changing it reruns nothing.

``python -m dlrepro report check-run [snakemake arguments]`` (run by ``make report`` before
Snakemake renders the HTML report, whose captions read the configuration of the command
line) compares the configuration those arguments make with the recorded one and, when they
differ, stops with one line naming the ``ARGS`` that reproduce the recorded run.
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path
from typing import Any, Iterable

import yaml

from dlrepro.io import write_text

RUN_FILE = "run.yaml"
#: config keys that do not change a result (where the data came from)
IGNORED = (("data", "mirror"),)


class RunMismatch(ValueError):
    """The results were made under another configuration than the one given."""


def comparable(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` without the keys of :data:`IGNORED`, normalised through JSON."""
    out = json.loads(json.dumps(config, sort_keys=True, default=str))
    for path in IGNORED:
        node = out
        for key in path[:-1]:
            node = node.get(key, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(path[-1], None)
    return out


def command_args(configfiles: Iterable[str | os.PathLike], overrides: dict[str, Any] | None,
                 root: str | os.PathLike) -> list[str]:
    """The ``--configfile`` / ``--config`` arguments that make this configuration, files
    inside ``root`` (the repository) relative to it."""
    args: list[str] = []
    files = []
    for f in configfiles:
        p = Path(f).absolute()
        try:
            files.append(p.relative_to(Path(root).absolute()).as_posix())
        except ValueError:
            files.append(str(p))
    if files:
        args += ["--configfile", *files]
    if overrides:
        args.append("--config")
        for key, value in overrides.items():
            text = value if isinstance(value, str) else \
                yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
            text = text.removesuffix("\n...").strip()
            args.append(f"{key}={text}")
    return args


def record(results: str | os.PathLike, config: dict[str, Any], configfiles, overrides,
           root: str | os.PathLike) -> Path:
    """Write ``<results>/run.yaml``; returns its path."""
    args = command_args(configfiles, overrides, root)
    body = {
        "preset": config.get("preset"),
        "args": shlex.join(args),
        "config": comparable(config),
    }
    path = Path(results) / RUN_FILE
    text = ("# What made this folder (written at the end of every successful run; dlrepro.report.provenance).\n"
            "# `make report ARGS=\"<args>\"` renders the report under this configuration.\n"
            + yaml.safe_dump(body, sort_keys=False, width=100))
    write_text(path, text)
    return path


TIMING_FILE = "logs/run_time.json"


def record_timing(results: str | os.PathLike, start: float, end: float, metadata: str | os.PathLike) -> Path:
    """``<results>/logs/run_time.json``: the wall time of this run and the number of jobs it
    ran (Snakemake's metadata records of outputs made since ``start``, counted by job).
    Under ``logs/``: a timing, so it stays out of the results, which are byte-identical
    across runs."""
    jobs = set()
    for f in Path(metadata).glob("*"):
        try:
            meta = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if (meta.get("starttime") or 0) >= start - 1:
            jobs.add((meta.get("rule"), meta.get("job_hash")))
    path = Path(results) / TIMING_FILE
    write_text(path, json.dumps({"seconds": round(end - start, 1), "jobs": len(jobs)}, sort_keys=True) + "\n")
    return path


def read(results: str | os.PathLike) -> dict[str, Any] | None:
    path = Path(results) / RUN_FILE
    if not path.is_file():
        return None
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def check(results: str | os.PathLike, config: dict[str, Any], target: str = "make report") -> None:
    """Raise :class:`RunMismatch` when ``results`` was made under another configuration
    than ``config`` (nothing recorded: nothing to compare)."""
    recorded = read(results)
    if not recorded or "config" not in recorded:
        return
    if comparable(recorded["config"]) == comparable(config):
        return
    args = recorded.get("args") or ""
    make_args = shlex.quote(args) if args else '""'
    differing = sorted(k for k in set(recorded["config"]) | set(config)
                       if comparable(recorded["config"]).get(k) != comparable(config).get(k))
    raise RunMismatch(
        f"{Path(results) / RUN_FILE} says these results were made by preset {recorded.get('preset')!r}"
        f"{' (' + args + ')' if args else ''}, not by the configuration given (preset {config.get('preset')!r}; "
        f"keys {', '.join(differing)} differ); run: {target} ARGS={make_args}"
    )


def done_line(results: str = "results", args: str = "") -> str:
    """The last line of a successful run: where its conclusions are, and the report command."""
    report = f"make report ARGS={shlex.quote(args)}" if args else "make report"
    return (f"Done. Claims: {results}/claims.csv; headline numbers: {results}/summary.md; "
            f"figures: {results}/figures/; HTML report: {report}")


def main_check(argv: list[str]) -> int:
    """``report check-run [--results DIR] [snakemake arguments]``."""
    import sys

    from dlrepro.config import ConfigError, check_snakemake_args

    results = "results"
    if argv[:1] == ["--results"]:
        results, argv = argv[1], argv[2:]
    for i, a in enumerate(argv):  # snakemake's --directory moves results/ with it
        if a in ("-d", "--directory") and i + 1 < len(argv):
            results = str(Path(argv[i + 1]) / results)
        elif a.startswith("--directory="):
            results = str(Path(a.split("=", 1)[1]) / results)
    try:
        cfg = check_snakemake_args(["-n", *argv])
    except ConfigError as exc:
        print(f"invalid configuration: {exc}", file=sys.stderr)
        return 1
    try:
        check(results, cfg)
    except RunMismatch as exc:
        print(str(exc), file=sys.stderr)
        return 1
    return 0
