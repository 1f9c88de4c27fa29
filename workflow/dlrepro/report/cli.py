"""``python -m dlrepro report <summary|claims|readme>``.

``summary``  ``results/summary.md``: a **Claims** section first (from ``--claims``, the
             ``claims.csv`` below), then per stage the headline numbers read from its tidy
             table(s) only, followed by the config block that produced them. Stages whose
             tables are not given are left out.
``claims``   ``results/claims.csv`` (columns :data:`dlrepro.claims.COLUMNS`, README "Claims")
             from the result tables of ``--stages`` under ``--results`` (the registry
             :mod:`dlrepro.report.claims`), and optionally the same as an HTML page
             (``--html``, for Snakemake's report).
``check-run`` stops ``make report`` with one line when ``results/run.yaml`` records another
             configuration than the command line's (:mod:`dlrepro.report.provenance`).
``docs``     fills the generated blocks of README.md and docs/ (:mod:`dlrepro.report.docs`).
``readme``   rewrites the measured-results section of ``README.md`` between its markers
             (:mod:`dlrepro.report.readme`) from ``claims.csv``, the stage tables and the
             figures folder.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
import yaml

from dlrepro.errors import UserError
from dlrepro.io import read_json, write_text
from dlrepro.log import get_logger


def _table(frame: pd.DataFrame, floatfmt: str = ".4g") -> str:
    cols = list(frame.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in frame.itertuples(index=False):
        cells = [format(v, floatfmt) if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _first_last(frame: pd.DataFrame, keys: list[str], metrics: list[str]) -> pd.DataFrame:
    """Mean over seeds of each metric at generation 0 and at the last generation.

    A stage may record generation 0, which every policy shares, once under its own policy
    name (e.g. ``real``): a policy without a generation-0 row then takes that one."""
    mean = frame.groupby(keys + ["generation"], as_index=False)[metrics].mean()
    last = int(mean["generation"].max())
    rows = []
    for key, group in mean.groupby(keys):
        key = key if isinstance(key, tuple) else (key,)
        g0 = group[group["generation"] == 0]
        gl = group[group["generation"] == last]
        if g0.empty and "policy" in keys:
            shared = mean[mean["generation"] == 0]
            for k, v in zip(keys, key):
                if k != "policy":
                    shared = shared[shared[k] == v]
            g0 = shared.head(1)
        if g0.empty or gl.empty:
            continue
        row = dict(zip(keys, key))
        for m in metrics:
            row[f"{m} gen 0"] = float(g0[m].iloc[0])
            row[f"{m} gen {last}"] = float(gl[m].iloc[0])
        rows.append(row)
    return pd.DataFrame(rows)


def _config_block(config: dict, key: str) -> str:
    return "Config (`" + key + "`):\n\n```yaml\n" + yaml.safe_dump(
        {key: config.get(key)}, sort_keys=True, default_flow_style=None
    ) + "```\n"


def section_collapse(csv: Path, config: dict) -> str:
    df = pd.read_csv(csv)
    t = _first_last(df, ["model", "policy"], ["test_loss"])
    return (
        "## Language-model collapse\n\nTest cross-entropy on the real held-out split "
        "(nats/token), mean over seeds:\n\n" + _table(t) + "\n\n" + _config_block(config, "collapse")
    )


def section_linreg(check: Path, config: dict) -> str:
    c = read_json(check)
    lines = [
        "## Linear regression\n",
        f"- largest |simulation - exact theory| / standard error: {c['max_abs_z']:.2f} "
        f"over {c['n_rows']} rows (worst: {json.dumps(c['worst_row'], sort_keys=True)})",
        f"- replace: last / first test error at least {c['replace_min_last_over_first']:.3g}x",
        f"- accumulate: largest mean / its limit {c['accumulate_max_mean_over_bound_limit']:.3g} "
        f"(theory below the pi^2/6 bound: {c['accumulate_theory_below_bound']})",
        "",
    ]
    return "\n".join(lines) + "\n" + _config_block(config, "linreg")


def section_vae(csv: Path, config: dict) -> str:
    df = pd.read_csv(csv)
    t = _first_last(df, ["policy"], ["test_neg_elbo", "sample_kid", "sample_classes_covered"])
    return (
        "## VAE on images\n\nNegative ELBO on real test images (nats/image), KID and digit "
        "classes covered by samples, mean over seeds:\n\n" + _table(t) + "\n\n" + _config_block(config, "vae")
    )


def section_conformers(csv: Path, config: dict) -> str:
    df = pd.read_csv(csv)
    is_baseline = df["method"] == "rdkit-etkdgv3" if "method" in df.columns else pd.Series(False, index=df.index)
    t = _first_last(df[~is_baseline], ["policy"], ["test_loss", "cov_r", "mat_r"])
    base = df[is_baseline]
    baseline = (
        f"\n\nRDKit ETKDGv3 on the same molecules (no MMFF, same number of samples): COV-R "
        f"{base.cov_r.mean():.4g}, MAT-R {base.mat_r.mean():.4g}." if len(base) else ""
    )
    return (
        "## Molecule conformations\n\nDenoising test loss, COV-R and MAT-R (Angstrom) on "
        "held-out molecules, mean over seeds:\n\n" + _table(t) + baseline + "\n\n"
        + _config_block(config, "conformers")
    )


def section_init(csv: Path, config: dict) -> str:
    df = pd.read_csv(csv)
    cols = [c for c in ("init", "quantity", "width", "fitted_slope", "slope_se", "theory_slope",
                        "asymptotic_theory_slope") if c in df.columns]
    return (
        "## Init variants\n\nDepth slopes of the normalised fluctuations (fitted vs theory):\n\n"
        + _table(df[cols]) + "\n\n" + _config_block(config, "init")
    )


def section_width(csv: Path, config: dict) -> str:
    df = pd.read_csv(csv)
    return (
        "## Width variants\n\nOptimal learning rate per width and parametrization:\n\n"
        + _table(df) + "\n\n" + _config_block(config, "width")
    )


def section_scaling(csv: Path, config: dict) -> str:
    df = pd.read_csv(csv)
    cols = [c for c in df.columns if c in {"sweep", "group", "x", "E", "E_lo", "E_hi", "A", "alpha",
                                           "alpha_lo", "alpha_hi", "n_points", "regime", "warning"}]
    return "## Scaling laws\n\n" + _table(df[cols]) + "\n\n" + _config_block(config, "scaling")


SECTIONS = {
    "linreg": section_linreg,
    "collapse": section_collapse,
    "vae": section_vae,
    "conformers": section_conformers,
    "width": section_width,
    "init": section_init,
    "scaling": section_scaling,
}


def section_claims(csv: Path) -> str:
    from dlrepro import claims as C
    from dlrepro.report.render import markdown

    return ("## Claims\n\nEach seed-paper claim measured here, with an interval from resampling "
            "the independent unit (seeds, initialisations, repetitions or runs) and a verdict "
            "decided from that interval (`results/claims.csv`; docs/claims.md):\n\n"
            + markdown(C.read(csv)))


def _json_arg(text: str, what: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SystemExit(f"report: {what} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise SystemExit(f"report: {what} must be a JSON object, got {type(value).__name__}")
    return value


def cmd_claims(args) -> int:
    from dlrepro import claims as C
    from dlrepro.io import write_text
    from dlrepro.report.claims import STAGES, collect
    from dlrepro.report.render import html_page

    unknown = [s for s in args.stages if s not in STAGES]
    if unknown:
        raise SystemExit(f"report claims: --stages {unknown} have no claims; stages with claims: "
                         f"{', '.join(STAGES)}")
    config = _json_arg(args.config, "--config")
    rows = collect(args.stages, args.results, config)
    if config.get("preset"):  # which configuration measured it, first in every scale
        import dataclasses

        rows = [dataclasses.replace(c, scale=f"preset {config['preset']}; {c.scale}") for c in rows]
    C.write(args.out, rows)
    if args.html:
        write_text(args.html, html_page(rows))
    log = get_logger("report", step="claims")
    for c in rows:
        log.info("%s: %s (%.4g [%.4g, %.4g], %d %s)", c.claim, c.verdict, c.value, c.ci_lo, c.ci_hi,
                 c.n_units, c.unit)
    return 0


def cmd_readme(args) -> int:
    from dlrepro import claims as C
    from dlrepro.report import readme

    if not args.claims.exists():
        raise SystemExit(f"report readme: {args.claims} does not exist (run the workflow first)")
    if not args.readme.exists():
        raise SystemExit(f"report readme: {args.readme} does not exist")
    text = args.readme.read_text(encoding="utf-8")
    link = args.link_prefix if args.link_prefix is not None else \
        Path(args.figures).as_posix() if args.figures else ""
    body = readme.section(C.read(args.claims), args.results, args.figures, link, args.preamble or "")
    try:
        new = readme.replace_between_markers(text, body, str(args.readme))
    except ValueError as exc:
        raise SystemExit(f"report readme: {exc}") from None
    write_text(args.readme, new)
    get_logger("report", step="readme").info("%s: measured-results section rewritten from %s",
                                             args.readme, args.claims)
    return 0


def cmd_coverage(args) -> int:
    """Print the coverage table; with ``--write``, replace the text between the file's
    coverage markers with it (the file is checked before the minutes of simulation)."""
    import os

    from dlrepro import coverage

    start, end = "<!-- coverage:start -->", "<!-- coverage:end -->"
    if args.write is not None:
        doc = args.write.read_text() if args.write.is_file() else ""
        if start not in doc or end not in doc or doc.index(start) > doc.index(end):
            raise UserError(f"{args.write}: lacks the markers {start} ... {end}")
    text = coverage.markdown(coverage.table(workers=os.cpu_count() or 1))
    print(text, end="")
    if args.write is not None:
        doc = args.write.read_text()
        head, rest = doc.split(start, 1)
        write_text(args.write, f"{head}{start}\n{text}{end}{rest.split(end, 1)[1]}")
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["docs"]:
        from dlrepro.report.docs import main as docs_main

        return docs_main(argv[1:])
    if argv[:1] == ["check-run"]:
        from dlrepro.report.provenance import main_check

        return main_check(argv[1:])
    ap = argparse.ArgumentParser(prog="python -m dlrepro report", description="The reports of a run: results/summary.md and results/claims.csv (written by the workflow), and the documentation's generated blocks "
                                 "(make docs: subcommands docs, coverage); check-run compares a run's recorded config with the current one.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("summary", help="results/summary.md from the result tables")
    for name in SECTIONS:
        s.add_argument(f"--{name}", type=Path, default=None, help=f"{name}'s headline table")
    s.add_argument("--claims", type=Path, default=None, help="claims.csv: the Claims section")
    s.add_argument("--config", required=True, help="the merged config as JSON")
    s.add_argument("--out", required=True, type=Path)
    c = sub.add_parser("claims", help="results/claims.csv from the stages' result tables")
    c.add_argument("--stages", nargs="*", default=[], help="stages whose claims to collect (none: an empty table)")
    c.add_argument("--results", type=Path, default=Path("results"), help="the results folder")
    c.add_argument("--config", required=True, help="the merged config as JSON")
    c.add_argument("--out", required=True, type=Path)
    c.add_argument("--html", type=Path, default=None, help="also write the claims as an HTML page")
    r = sub.add_parser("readme", help="rewrite README.md's measured-results section from a run")
    r.add_argument("--readme", type=Path, default=Path("README.md"))
    r.add_argument("--claims", type=Path, default=Path("results/claims.csv"))
    r.add_argument("--results", type=Path, default=Path("results"))
    r.add_argument("--figures", type=Path, default=None, help="figures to show (e.g. docs/figures)")
    r.add_argument("--link-prefix", default=None, help="path of the figures in the README's links")
    r.add_argument("--preamble", default=None, help="a sentence before the section (e.g. the run)")
    v = sub.add_parser("coverage", help="the interval methods' measured coverage (dlrepro.coverage) as Markdown")
    v.add_argument("--write", type=Path, default=None,
                   help="also write it into this file between <!-- coverage:start --> and <!-- coverage:end -->")
    args = ap.parse_args(argv)
    if args.cmd == "coverage":
        return cmd_coverage(args)
    if args.cmd == "claims":
        return cmd_claims(args)
    if args.cmd == "readme":
        return cmd_readme(args)
    config = _json_arg(args.config, "--config")
    log = get_logger("report")
    parts = [
        "# Headline numbers\n",
        f"Preset **{config.get('preset', 'custom')}**, seed {config.get('seed')}. "
        "Written by the workflow from the result tables under `results/`; each section "
        "ends with the config that produced it, and `results/run.yaml` records the whole "
        "configuration and the command-line arguments of the run.\n",
    ]
    if args.claims is not None:
        parts.append(section_claims(args.claims))
        log.info("section claims from %s", args.claims)
    for name, fn in SECTIONS.items():
        path = getattr(args, name)
        if path is not None:
            parts.append(fn(path, config))
            log.info("section %s from %s", name, path)
    write_text(args.out, "\n".join(parts))
    return 0
