"""The figure check (dlrepro.figcheck) on figures with known defects, and the width
figures on synthetic tables with an (arm, parametrization) pair not run."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from dlrepro import figcheck, style
from dlrepro.width import plots, runs


def _fig(n=2):
    fig, axes = style.subplots(n)
    for ax in axes:
        ax.plot([0, 1, 2], [0, 1, 4])
    return fig, axes


def test_clean_figure_passes():
    fig, axes = _fig()
    axes[0].set_title("left")
    axes[1].set_title("right")
    fig.set_layout_engine("tight")
    assert figcheck.problems(fig) == []


def test_overlapping_texts_are_found():
    fig, axes = _fig(1)
    axes[0].set_title("a title")
    axes[0].text(0.5, 1.02, "a text over the title", transform=axes[0].transAxes, ha="center")
    found = figcheck.problems(fig)
    assert any("title 'a title' overlaps" in f and "a text over the title" in f for f in found), found
    with pytest.raises(figcheck.FigureProblem, match="overlaps"):
        figcheck.check(fig, "toy")


def test_legend_over_a_neighbouring_title_and_over_data():
    fig, axes = _fig()
    axes[1].set_title("right panel")
    axes[0].plot([0, 2], [4, 4], label="a very long legend entry that runs far to the right of its panel")
    axes[0].legend(loc="upper left", bbox_to_anchor=(0.0, 1.15))
    found = figcheck.problems(fig)
    assert any("legend overlaps" in f and "right panel" in f for f in found), found
    fig, axes = _fig(1)
    axes[0].plot(np.linspace(0, 2, 50), np.full(50, 2.0), label="flat line")
    axes[0].legend(loc="center")  # the flat line crosses the centre
    assert any("legend covers" in f for f in figcheck.problems(fig))


def test_empty_panel_and_gap():
    fig, axes = style.subplots(3, ncols=3)
    axes[0].plot([0, 1])
    axes[2].plot([0, 1])
    axes[1].set_visible(False)
    found = figcheck.problems(fig)
    assert any("leaves a gap" in f for f in found), found
    fig, axes = style.subplots(2, ncols=2)
    axes[0].plot([0, 1])
    assert any("empty panel" in f for f in figcheck.problems(fig))


def test_low_contrast_series_are_found():
    """Okabe-Ito's yellow on white (contrast 1.3), as scaling_laws.png drew one sweep, is
    refused as a line and as markers; the palette's palest colour (orange, 2.1) and a
    pale confidence band are not."""
    fig, axes = _fig(1)
    assert figcheck.problems(fig) == []
    axes[0].plot([0, 1, 2], [1, 2, 3], color="#F0E442", label="data")
    axes[0].scatter([0, 1], [2, 2], color="#F0E442")
    axes[0].plot([0, 2], [3, 3], color=style.color("ntk"))
    axes[0].fill_between([0, 2], [0, 0], [1, 1], color="#0072B2", alpha=0.2)
    found = figcheck.problems(fig)
    assert len(found) == 2, found
    assert "series 'data' in #f0e442 has contrast 1.2" in found[0] or "series 'data' in #f0e442 has contrast 1.3" in found[0]
    assert "markers in #f0e442" in found[1]
    assert figcheck.contrast("#E69F00", "white") > figcheck.MIN_CONTRAST
    assert figcheck.contrast("#F0E442", "white") < figcheck.MIN_CONTRAST
    assert all(figcheck.contrast(c, "white") >= figcheck.MIN_CONTRAST for c in style._FALLBACK)


def test_an_axis_with_one_labelled_tick_is_found():
    """A log axis over about a decade whose minor labels are turned off (they collide on
    wider axes) labels only one power of ten (as width_coord_check.png did);
    :func:`dlrepro.style.readable_log_axis` labels several."""
    from matplotlib.ticker import NullFormatter

    fig, axes = style.subplots(2)
    for ax in axes:
        ax.plot([1, 2, 3], [0.3, 1.0, 2.9])
        ax.set_yscale("log")
        ax.yaxis.set_minor_formatter(NullFormatter())
    style.readable_log_axis(axes[1], "y")
    found = figcheck.problems(fig)
    assert len(found) == 1 and "axes 0 y axis labels a single tick" in found[0], found
    fig.canvas.draw()
    labels = [t.get_text() for t in axes[1].get_yticklabels() if t.get_text()]
    assert "1" in labels and "2" in labels and all("10^" not in t for t in labels), labels


def test_save_figure_refuses_a_bad_figure_when_enabled(tmp_path, monkeypatch):
    fig, axes = _fig(1)
    axes[0].set_title("t")
    axes[0].text(0.5, 1.02, "over", transform=axes[0].transAxes, ha="center")
    monkeypatch.setenv(figcheck.ENV, "1")
    with pytest.raises(figcheck.FigureProblem):
        style.save_figure(fig, tmp_path / "bad")
    assert not list(tmp_path.iterdir())  # nothing written


# --------------------------------------------------------------------------- width figures


ARMS = {"online": ("sp", "ntk", "mup"), "offline": ("sp", "mup")}  # NTK offline not run


def _sweep(seeds=(0, 1)):
    rows = []
    for arm, params in ARMS.items():
        for p in params:
            for w in (64, 128, 256, 512):
                for s in seeds:
                    for k in range(-3, 4):
                        rows.append({"model": "mlp", "arm": arm, "parametrization": p, "width": w,
                                     "n_params": 10 * w, "seed": s, "lr": 2.0 ** (k - 6), "log2_lr_mult": k,
                                     "steps": 10, "train_loss": 0.2 + 0.05 * (k - 0.3 * s) ** 2 + 10 / w,
                                     "test_loss": 0.3, "test_accuracy": 0.9, "diverged": 0})
    return pd.DataFrame(rows, columns=runs.LR_SWEEP_COLUMNS)


def _ensembles():
    rows = []
    for arm, params in ARMS.items():
        for p in params:
            for w in (64, 128, 256, 512):
                for k in (1, 2, 3):
                    rows.append({"model": "mlp", "arm": arm, "parametrization": p, "width": w, "step": 10, "k": k,
                                 "n_subsets": math.comb(3, k), "loss": 0.3 + 1 / w + 0.1 / k, "accuracy": 0.9})
    return pd.DataFrame(rows)


def _curves():
    rows = []
    for arm, params in ARMS.items():
        for p in params:
            for w in (64, 128, 256, 512):
                for s in (0, 1):
                    for step in (0, 1, 10, 100):
                        rows.append({"model": "mlp", "arm": arm, "parametrization": p, "width": w,
                                     "n_params": 10 * w, "seed": s, "lr": 0.01, "step": step,
                                     "train_loss": 2 / (1 + step) + 1 / w, "test_loss": 2 / (1 + step) + 2 / w,
                                     "test_accuracy": 0.9})
    return pd.DataFrame(rows, columns=runs.CURVE_COLUMNS)


@pytest.mark.parametrize("kind", ["lr_sweep", "ensembles", "curves"])
def test_width_figures_have_no_gaps_or_overlaps(kind, tmp_path, monkeypatch):
    table = {"lr_sweep": _sweep, "ensembles": _ensembles, "curves": _curves}[kind]()
    monkeypatch.setenv(figcheck.ENV, "1")
    paths = plots.PLOTS[kind](table, tmp_path / kind)
    assert [p.suffix for p in paths] == [".png", ".pdf"] and paths[0].stat().st_size > 10_000
