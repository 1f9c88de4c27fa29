"""One figure style for the whole study.

Colours are fixed per policy, parametrization and init so that a reader who learns
"accumulate is blue" in one figure can rely on it in every other one. Every figure is
rendered from a result table only and saved as PNG and PDF through :func:`save_figure`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

from dlrepro.errors import UserError
from dlrepro.io import atomic_path  # noqa: E402

# Colour-blind-safe (Okabe-Ito) colours, one fixed colour per category.
COLORS: dict[str, str] = {
    # mixing policies
    "replace": "#D55E00",
    "accumulate": "#0072B2",
    "accumulate-subsample": "#009E73",
    "real": "#000000",
    # parametrizations
    "sp": "#D55E00",
    "ntk": "#E69F00",
    "mup": "#0072B2",
    # inits
    "gaussian": "#D55E00",
    "orthogonal": "#0072B2",
    # theory vs simulation
    "theory": "#000000",
}
_FALLBACK = ["#CC79A7", "#56B4E9", "#F0E442", "#999999", "#882255", "#44AA99"]

DPI = 150
FIGSIZE_PANEL = (4.0, 3.2)  # inches per panel

# The workflow passes the config's ``figures`` block to figure jobs in this variable (it is
# a parameter of the figure rules only, so editing it reruns figures and nothing else).
STYLE_ENV = "DLREPRO_FIGURE_STYLE"
DEFAULT_STYLE = {"context": "paper", "style": "whitegrid", "font_scale": 1.15, "dpi": DPI}


def current_style() -> dict:
    """The default style updated by ``$DLREPRO_FIGURE_STYLE`` (a JSON object), if set."""
    style = dict(DEFAULT_STYLE)
    raw = os.environ.get(STYLE_ENV)
    if raw:
        extra = json.loads(raw)
        unknown = sorted(set(extra) - set(DEFAULT_STYLE))
        if unknown:
            raise UserError(f"{STYLE_ENV}: unknown keys {unknown}; known: {sorted(DEFAULT_STYLE)}")
        style.update(extra)
    return style


def color(name: str) -> str:
    """The colour of a category; unknown names get a stable colour from a fallback list."""
    if name in COLORS:
        return COLORS[name]
    return _FALLBACK[sum(map(ord, str(name))) % len(_FALLBACK)]


def palette(names) -> dict[str, str]:
    return {n: color(n) for n in names}


def apply() -> None:
    """Apply the study's style (call before creating figures)."""
    st = current_style()
    sns.set_theme(context=st["context"], style=st["style"], font_scale=st["font_scale"])
    plt.rcParams.update(
        {
            "figure.dpi": st["dpi"],
            "savefig.dpi": st["dpi"],
            "savefig.bbox": "tight",
            "axes.titlesize": "medium",
            "legend.frameon": False,
            "pdf.fonttype": 42,
            # stable bytes: no creation date in the PDF/PNG metadata
            "svg.hashsalt": "dlrepro",
        }
    )


def subplots(n_panels: int, ncols: int | None = None, **kwargs):
    """A row (or grid) of equally sized panels in the study's style."""
    apply()
    ncols = ncols or min(n_panels, 4)
    nrows = -(-n_panels // ncols)
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(FIGSIZE_PANEL[0] * ncols, FIGSIZE_PANEL[1] * nrows),
        squeeze=False,
        **kwargs,
    )
    for ax in axes.flat[n_panels:]:
        ax.set_visible(False)
    return fig, axes.flat[:n_panels]


def save_figure(fig, path: str | os.PathLike) -> list[Path]:
    """Save ``fig`` as ``<path>.png`` and ``<path>.pdf`` (``path`` may carry either suffix).

    Both files are written atomically, without timestamps in their metadata. With
    ``$DLREPRO_FIGCHECK`` set, :func:`dlrepro.figcheck.check` runs first (nothing is
    written if it finds overlapping texts or an empty panel).
    """
    path = Path(path)
    stem = path.with_suffix("") if path.suffix in {".png", ".pdf"} else path
    from dlrepro import figcheck

    if figcheck.enabled():  # $DLREPRO_FIGCHECK: refuse overlapping texts, empty panels
        figcheck.check(fig, where=stem.name)
    out = []
    for ext, meta in ((".png", {"Software": None}), (".pdf", {"CreationDate": None, "Producer": None})):
        target = stem.with_suffix(ext)
        with atomic_path(target) as tmp:
            fig.savefig(tmp, format=ext[1:], metadata=meta)
        out.append(target)
    plt.close(fig)
    return out
