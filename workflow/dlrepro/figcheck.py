"""Checks of a drawn figure: no two texts overlap, no legend covers data, no empty panel.

:func:`problems` draws the figure and compares the window extents of its text artists:
titles, axis labels, tick labels, offset texts (the ``x10^k`` of an axis), free texts,
the figure's suptitle and every legend (as one box). Two boxes of different artists that
intersect by more than :data:`TOLERANCE_PX` pixels in both directions are an overlap
(two tick labels of one axis included: log axes' minor labels often collide). A
legend inside an axes that covers one of that axes' plotted points is reported too, and
so is a visible axes with nothing drawn in it, a hidden grid cell followed by a
visible panel in its row (a gap), a series (line or markers) whose colour, blended by its
alpha, has a contrast ratio below :data:`MIN_CONTRAST` against the panel's background
(WCAG's ratio: a pale yellow on white is 1.3, the palest colour of the study's palette
2.1), and an axis that labels a single tick (nothing to read a scale from).

``dlrepro.style.save_figure`` runs :func:`problems` on every figure when the environment
variable :data:`ENV` is set (``1``) and raises :class:`FigureProblem` naming them, so a
figure job of the workflow fails instead of writing an unreadable figure (the tests run
every figure rule of a smoke run this way).
"""

from __future__ import annotations

import itertools
import os

import numpy as np

ENV = "DLREPRO_FIGCHECK"
TOLERANCE_PX = 1.0
#: the least contrast ratio (WCAG 2: (L1 + 0.05) / (L2 + 0.05)) of a series against its background
MIN_CONTRAST = 1.5


class FigureProblem(ValueError):
    """A figure with overlapping texts, a legend over data or an empty panel."""


def _drawn_ticks(axis) -> list:
    """The ticks matplotlib draws: those inside the view interval (``get_ticklabels`` also
    returns labels of ticks just outside it, which are never drawn)."""
    lo, hi = sorted(axis.get_view_interval())
    ticks = axis.get_major_ticks() + axis.get_minor_ticks()
    span = hi - lo
    return [t for t in ticks if lo - 1e-9 * span <= t.get_loc() <= hi + 1e-9 * span]


def _texts(fig, renderer) -> list[tuple[str, str, object]]:
    """(owner, description, bbox) of every visible, non-empty text box of the figure."""
    out = []

    def add(owner: str, what: str, artist) -> None:
        if artist is None or not artist.get_visible():
            return
        if hasattr(artist, "get_text") and not artist.get_text().strip():
            return
        bbox = artist.get_window_extent(renderer)
        if bbox.width > 0 and bbox.height > 0:
            out.append((owner, what, bbox))

    for i, ax in enumerate(fig.axes):
        if not ax.get_visible():
            continue
        name = f"axes {i}" + (f" '{ax.get_title()}'" if ax.get_title() else "")
        for loc, t in (("title", ax.title), ("left title", ax._left_title), ("right title", ax._right_title)):
            add(f"{name}:{loc}", f"{name} {loc} '{t.get_text()}'", t)
        for axis_name, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
            add(f"{name}:{axis_name}label", f"{name} {axis_name} label '{axis.label.get_text()}'", axis.label)
            add(f"{name}:{axis_name}offset", f"{name} {axis_name} offset text", axis.get_offset_text())
            for tick in _drawn_ticks(axis):
                for t in (tick.label1, tick.label2):
                    if t.get_visible():
                        add(f"{name}:{axis_name}tick:{id(t)}", f"{name} {axis_name} tick label '{t.get_text()}'", t)
        for t in ax.texts:
            add(f"{name}:text:{id(t)}", f"{name} text '{t.get_text()}'", t)
        legend = ax.get_legend()
        if legend is not None and legend.get_visible():
            out.append((f"{name}:legend", f"{name} legend", legend.get_window_extent(renderer)))
    for j, legend in enumerate(fig.legends):
        if legend.get_visible():
            out.append((f"figure legend {j}", f"figure legend {j}", legend.get_window_extent(renderer)))
    for t in fig.texts:
        if t is getattr(fig, "_suptitle", None):
            continue
        add(f"figure text {id(t)}", f"figure text '{t.get_text()}'", t)
    if getattr(fig, "_suptitle", None) is not None:
        add("suptitle", f"suptitle '{fig._suptitle.get_text()}'", fig._suptitle)
    return out


def _overlap(a, b, tol: float) -> bool:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return w > tol and h > tol


def _data_points(ax) -> np.ndarray:
    """Display coordinates of the points drawn in ``ax`` (lines' vertices, scatter offsets)."""
    pts = []
    for line in ax.get_lines():
        if line.get_visible():
            xy = line.get_xydata()
            if len(xy):
                pts.append(ax.transData.transform(np.asarray(xy, float)))
    for coll in ax.collections:
        if coll.get_visible() and hasattr(coll, "get_offsets"):
            off = np.asarray(coll.get_offsets(), float)
            if off.ndim == 2 and len(off) and coll.get_offset_transform() is ax.transData:
                pts.append(ax.transData.transform(off))
    if not pts:
        return np.zeros((0, 2))
    p = np.concatenate(pts)
    return p[np.isfinite(p).all(axis=1)]


def _holes(fig) -> list[str]:
    """Hidden grid cells with a visible panel after them in the same row: a blank gap in the
    figure (hidden cells at the end of the last row, after every panel, are fine)."""
    cells = []
    for ax in fig.axes:
        spec = ax.get_subplotspec() if hasattr(ax, "get_subplotspec") else None
        if spec is not None:
            cells.append((spec.rowspan.start, spec.colspan.start, ax.get_visible()))
    out = []
    for row, col, visible in cells:
        if not visible and any(r == row and c > col and v for r, c, v in cells):
            out.append(f"an empty (hidden) panel at row {row + 1}, column {col + 1} leaves a gap")
    return out


def _luminance(rgb) -> float:
    """WCAG 2 relative luminance of an sRGB colour (components in [0, 1])."""
    c = np.asarray(rgb[:3], float)
    c = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return float(0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2])


def contrast(color, background) -> float:
    """Contrast ratio of ``color`` (RGBA, its alpha blended over ``background``) against ``background``."""
    from matplotlib.colors import to_rgba

    fg, bg = np.asarray(to_rgba(color), float), np.asarray(to_rgba(background), float)[:3]
    seen = fg[3] * fg[:3] + (1 - fg[3]) * bg
    hi, lo = sorted((_luminance(seen), _luminance(bg)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def _background(ax):
    from matplotlib.colors import to_rgba

    bg = to_rgba(ax.get_facecolor())
    return bg if bg[3] > 0 else to_rgba(ax.figure.get_facecolor())


def _pale_series(ax, name: str, min_contrast: float) -> list[str]:
    """Lines and scatter markers hard to see against the panel (bands and fills are exempt)."""
    from matplotlib.collections import PathCollection
    from matplotlib.colors import to_hex, to_rgba

    bg = _background(ax)
    out = []
    for line in ax.get_lines():
        if not line.get_visible() or len(line.get_xydata()) == 0:
            continue
        drawn = line.get_linestyle() not in ("None", "none", "", " ") and line.get_linewidth() > 0
        marked = line.get_marker() not in (None, "None", "none", "", " ")
        if not (drawn or marked):
            continue
        rgba = to_rgba(line.get_color(), line.get_alpha())
        c = contrast(rgba, bg)
        if c < min_contrast:
            label = line.get_label()
            what = f"series '{label}'" if label and not label.startswith("_") else "a line"
            out.append(f"{name} {what} in {to_hex(rgba)} has contrast {c:.2f} against its background "
                       f"(at least {min_contrast})")
    for coll in ax.collections:
        if not (isinstance(coll, PathCollection) and coll.get_visible() and len(coll.get_offsets())):
            continue
        colors = coll.get_facecolors()
        if not len(colors):
            continue
        worst = min((tuple(c) for c in colors), key=lambda c: contrast(c, bg))
        c = contrast(worst, bg)
        if c < min_contrast:
            out.append(f"{name} markers in {to_hex(worst)} have contrast {c:.2f} against their background "
                       f"(at least {min_contrast})")
    return out


def _single_tick_axes(ax, name: str) -> list[str]:
    """An axis with exactly one labelled tick in view: no scale can be read from it (an axis
    with none is taken as deliberately bare: a shared axis, an image)."""
    out = []
    for axis_name, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
        if not axis.get_visible():
            continue
        labels = {t.get_text() for tick in _drawn_ticks(axis) for t in (tick.label1, tick.label2)
                  if t.get_visible() and t.get_text().strip()}
        if len(labels) == 1:
            out.append(f"{name} {axis_name} axis labels a single tick ('{labels.pop()}')")
    return out


def problems(fig, *, tol: float = TOLERANCE_PX, legend_over_data: bool = True,
             empty_panels: bool = True, min_contrast: float = MIN_CONTRAST,
             single_ticks: bool = True) -> list[str]:
    """What is wrong with ``fig`` (an empty list when nothing is)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    found = []
    boxes = _texts(fig, renderer)
    for (o1, d1, b1), (o2, d2, b2) in itertools.combinations(boxes, 2):
        if o1 == o2:
            continue
        if _overlap(b1, b2, tol):
            found.append(f"{d1} overlaps {d2}")
    if empty_panels:
        found += _holes(fig)
    for i, ax in enumerate(fig.axes):
        if not ax.get_visible():
            continue
        name = f"axes {i}" + (f" '{ax.get_title()}'" if ax.get_title() else "")
        has_data = bool(ax.get_lines() or ax.collections or ax.patches or ax.images or ax.texts)
        if empty_panels and not has_data:
            found.append(f"{name} is an empty panel")
        found += _pale_series(ax, name, min_contrast)
        if single_ticks and has_data and not ax.images:
            found += _single_tick_axes(ax, name)
        legend = ax.get_legend()
        if legend_over_data and legend is not None and legend.get_visible():
            bb = legend.get_window_extent(renderer)
            pts = _data_points(ax)
            inside = ((pts[:, 0] > bb.x0) & (pts[:, 0] < bb.x1) & (pts[:, 1] > bb.y0) & (pts[:, 1] < bb.y1))
            if inside.any():
                found.append(f"{name} legend covers {int(inside.sum())} plotted point(s)")
    return found


def check(fig, where: str = "figure", **kw) -> None:
    """Raise :class:`FigureProblem` listing :func:`problems` of ``fig``, if any."""
    found = problems(fig, **kw)
    if found:
        raise FigureProblem(f"{where}: {len(found)} problem(s): " + "; ".join(found))


def enabled() -> bool:
    return os.environ.get(ENV, "") not in ("", "0")
