"""One figure style for the whole study.

Colours are fixed per policy, parametrization and init so that a reader who learns
"accumulate is blue" in one figure can rely on it in every other one. Every figure is
rendered from a result table only and saved as PNG and PDF through :func:`save_figure`.
"""

from __future__ import annotations

import json
import math
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
# (no pale colour: Okabe-Ito's yellow #F0E442 has contrast 1.3 on white, nearly invisible;
# dlrepro.figcheck refuses a series below 1.5)
_FALLBACK = ["#CC79A7", "#56B4E9", "#332288", "#999999", "#882255", "#44AA99"]

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


#: a marker and a line style per mixing policy, so that lines of equal values stay apart
MARKERS = {"replace": "o", "accumulate": "s", "accumulate-subsample": "^", "real": "D"}
LINESTYLES = {"replace": "-", "accumulate": "--", "accumulate-subsample": ":", "real": "-"}


def marker(name: str) -> str:
    return MARKERS.get(name, "o")


def linestyle(name: str) -> str:
    return LINESTYLES.get(name, "-")


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


def number(v: float) -> str:
    """A tick label a reader reads at a glance: 0.3, 5, 120, 10k, 2.5M (no "5.6x10^0")."""
    if v == 0 or not math.isfinite(v):
        return f"{v:g}"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= scale:
            return f"{v / scale:.3g}{suffix}"
    return f"{v:.3g}"


def readable_log_axis(ax, which: str = "both") -> None:
    """Ticks of a log axis labelled as plain numbers (:func:`number`), with enough of them
    to read a scale when the data span less than a decade or two (1-9 or 1, 2, 5 times each
    power of ten instead of a single power of ten), and no minor labels."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    for name in ("x", "y") if which == "both" else (which,):
        axis = ax.xaxis if name == "x" else ax.yaxis
        lo, hi = sorted(axis.get_view_interval())
        decades = math.log10(hi / lo) if lo > 0 and hi > 0 else 3.0
        subs = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0) if decades < 0.8 else \
            (1.0, 2.0, 5.0) if decades < 2.5 else (1.0,)
        axis.set_major_locator(LogLocator(base=10, subs=subs))
        axis.set_major_formatter(FuncFormatter(lambda v, _pos: number(v)))
        axis.set_minor_formatter(NullFormatter())


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
