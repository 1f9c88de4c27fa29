"""Figures and the report: every figure of a run is in Snakemake's HTML report, figures
are real images of sensible size, and results/summary.md holds each stage's numbers."""

from __future__ import annotations

import base64
import struct

import pytest

from tests.conftest import SMOKE, copy_workdir, snakemake

pytestmark = pytest.mark.slow


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def test_every_figure_is_a_png_and_pdf_of_sensible_size(smoke_run):
    figures = sorted((smoke_run / "results" / "figures").glob("*.png"))
    names = {p.stem for p in figures}
    expected = {"linreg_test_error", "collapse_test_loss", "vae_metrics", "vae_samples",
                "conformers_metrics", "conformers_samples", "init_fluctuations", "init_ntk",
                "init_training", "scaling_laws", "width_curves", "width_lr_sweep",
                "width_coord_check", "width_agreement", "width_ensembles"}
    assert expected <= names, expected - names
    for png in figures:
        w, h = png_size(png)
        assert 300 <= w <= 6000 and 200 <= h <= 6000, (png.name, w, h)
        assert png.stat().st_size > 10_000, f"{png.name} looks empty"
        pdf = png.with_suffix(".pdf")
        assert pdf.read_bytes()[:5] == b"%PDF-", pdf.name


def test_html_report_contains_every_figure(smoke_run, tmp_path):
    report = tmp_path / "report.html"
    snakemake(*SMOKE, "--report", str(report), workdir=smoke_run)
    html = report.read_text(encoding="utf-8", errors="replace")
    for png in sorted((smoke_run / "results" / "figures").glob("*.png")):
        encoded = base64.b64encode(png.read_bytes()).decode()
        assert png.name in html, f"{png.name} is not listed in the report"
        assert encoded[:400] in html and encoded[-400:] in html, f"{png.name} is not embedded"
    assert "summary.md" in html
    assert "claims.html" in html  # the claims table, first category of the report


def test_summary_has_every_stage_with_its_config(smoke_run):
    text = (smoke_run / "results" / "summary.md").read_text()
    for heading in ("## Linear regression", "## Language-model collapse", "## VAE on images",
                    "## Molecule conformations", "## Width variants", "## Init variants",
                    "## Scaling laws"):
        assert heading in text
    assert text.count("```yaml") >= 7
    assert "| gpt2-tiny | replace |" in text


def test_summary_gives_every_policy_the_shared_generation0_row():
    """The conformer stage records generation 0 once, as policy 'real': each policy's row
    of the summary starts from it (a regression: the table came out empty)."""
    import pandas as pd

    from dlrepro.report.cli import _first_last

    df = pd.DataFrame({
        "policy": ["real", "replace", "replace", "accumulate", "accumulate", "real"],
        "generation": [0, 1, 2, 1, 2, 0],
        "seed": [0, 0, 0, 0, 0, 1],
        "test_loss": [1.0, 2.0, 3.0, 1.5, 1.25, 3.0],
    })
    t = _first_last(df, ["policy"], ["test_loss"]).set_index("policy")
    assert sorted(t.index) == ["accumulate", "replace"]
    assert t.loc["replace", "test_loss gen 0"] == 2.0  # mean over seeds of the real rows
    assert t.loc["replace", "test_loss gen 2"] == 3.0
    assert t.loc["accumulate", "test_loss gen 2"] == 1.25


def test_claims_csv_has_every_stage_with_valid_verdicts(smoke_run):
    import pandas as pd

    from dlrepro import claims as C
    from dlrepro.report.claims import STAGES

    path = smoke_run / "results" / "claims.csv"
    table = pd.read_csv(path)
    assert list(table.columns) == C.COLUMNS
    assert set(table["verdict"]) <= set(C.VERDICTS) and table["claim"].is_unique
    assert set(STAGES) <= set(table["stage"])  # the smoke preset runs every stage with claims
    for needed in ("linreg.replace_rises", "linreg.accumulate_bounded", "collapse.replace_rises",
                   "vae.accumulate_bounded", "conformers.mat_r.replace_rises", "width.mlp.mup_lr_transfer",
                   "width.mlp.coord_check_sp_grows", "width.mlp.variance_slope", "scaling.data"):
        assert needed in set(table["claim"]), needed
    # one seed (the smoke preset's collapse stages): no interval, not resolved
    few = table[table["n_units"] < C.MIN_UNITS]
    assert len(few) and (few["verdict"] == C.NOT_RESOLVED).all()
    assert few["ci_lo"].isna().all()
    assert len(C.read(path)) == len(table)
    text = (smoke_run / "results" / "summary.md").read_text()
    assert text.index("## Claims") < text.index("## Linear regression")
    assert "| `linreg.replace_rises` |" in text


# Figures the check still refuses (none: init_fluctuations' colliding minor ticks and
# legend were fixed with its plain log ticks and legend room)
KNOWN_FIGURE_PROBLEMS: set[str] = set()


def test_every_figure_rule_passes_the_figure_check(smoke_run, tmp_path, mirror):
    """Every figure rule rerun with DLREPRO_FIGCHECK=1: a figure whose texts overlap, whose
    legend covers data or that has an empty panel (or a gap) fails its job."""
    work = copy_workdir(smoke_run, tmp_path / "work")
    rules = ["linreg_figure", "collapse_figure", "vae_figure", "vae_grid", "conformers_figure",
             "conformers_drawing", "width_figure", "width_coord_check_figure", "init_figure", "scaling_figure",
             "curves_figure"]
    snakemake(*SMOKE, "--forcerun", *rules, "--keep-going", "--retries", "0", workdir=work, check=False,
              env={"DLREPRO_DATA_MIRROR": str(mirror), "DLREPRO_FIGCHECK": "1"}, timeout=900)
    failed = {}
    for log in (work / "results" / "logs").rglob("*.log"):
        text = log.read_text(errors="replace")
        if "FigureProblem" in text:
            line = [x for x in text.splitlines() if "FigureProblem" in x][-1]
            failed[line.split(":")[1].strip().split(" ")[0] if ":" in line else log.name] = line
    figures = {p.stem for p in (smoke_run / "results" / "figures").glob("*.png")}
    redrawn = {p.stem for p in (work / "results" / "figures").glob("*.png")}
    assert set(failed) <= KNOWN_FIGURE_PROBLEMS, failed
    assert figures - redrawn <= KNOWN_FIGURE_PROBLEMS, figures - redrawn
