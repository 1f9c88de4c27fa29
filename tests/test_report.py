"""Figures and the report: every figure of a run is in Snakemake's HTML report, figures
are real images of sensible size, and results/summary.md holds each stage's numbers."""

from __future__ import annotations

import base64
import struct

import pytest

from tests.conftest import SMOKE, snakemake

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
