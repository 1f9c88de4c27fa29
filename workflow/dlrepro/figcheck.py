"""Checks of a drawn figure: no two texts overlap, no legend covers data, no empty panel.

:func:`problems` draws the figure and compares the window extents of its text artists:
titles, axis labels, tick labels, offset texts (the ``x10^k`` of an axis), free texts,
the figure's suptitle and every legend (as one box). Two boxes of different artists that
intersect by more than :data:`TOLERANCE_PX` pixels in both directions are an overlap
(two tick labels of one axis included: log axes' minor labels often collide). A
legend inside an axes that covers one of that axes' plotted points is reported too, and
so is a visible axes with nothing drawn in it, and a hidden grid cell followed by a
visible panel in its row (a gap).

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


def problems(fig, *, tol: float = TOLERANCE_PX, legend_over_data: bool = True,
             empty_panels: bool = True) -> list[str]:
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
