"""``python -m dlrepro report summary``: ``results/summary.md`` from the result tables.

Each section holds the headline numbers of one stage, read from its tidy table(s) only,
followed by the config block that produced them. Stages whose tables are not given are
left out.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
import yaml

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
    t = _first_last(df, ["policy"], ["test_loss", "cov_r", "mat_r"])
    return (
        "## Molecule conformations\n\nDenoising test loss, COV-R and MAT-R (Angstrom) on "
        "held-out molecules, mean over seeds:\n\n" + _table(t) + "\n\n" + _config_block(config, "conformers")
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


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m dlrepro report")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("summary", help="results/summary.md from the result tables")
    for name in SECTIONS:
        s.add_argument(f"--{name}", type=Path, default=None, help=f"{name}'s headline table")
    s.add_argument("--config", required=True, help="the merged config as JSON")
    s.add_argument("--out", required=True, type=Path)
    args = ap.parse_args(argv)
    config = json.loads(args.config)
    log = get_logger("report")
    parts = [
        "# Headline numbers\n",
        "Written by the workflow from the result tables under `results/`; each section "
        "ends with the config that produced it (seed "
        f"{config.get('seed')}).\n",
    ]
    for name, fn in SECTIONS.items():
        path = getattr(args, name)
        if path is not None:
            parts.append(fn(path, config))
            log.info("section %s from %s", name, path)
    write_text(args.out, "\n".join(parts))
    return 0
