"""Claims rendered for readers: a Markdown table (``summary.md``, README) and a
self-contained HTML page (the Snakemake report's "Claims" entry)."""

from __future__ import annotations

import html
import math

from dlrepro.claims import NOT_REPRODUCED, NOT_RESOLVED, REPRODUCED, Claim

VERDICT_MARK = {REPRODUCED: "reproduced", NOT_REPRODUCED: "**not reproduced**",
                NOT_RESOLVED: "not resolved at this scale"}
VERDICT_COLOUR = {REPRODUCED: "#1b7837", NOT_REPRODUCED: "#b2182b", NOT_RESOLVED: "#666666"}


def fmt(x: float) -> str:
    """A number with 3 significant digits (``-`` for NaN)."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:.3g}"


def measured(c: Claim) -> str:
    """``value [lo, hi]``, or ``value (no interval: N unit)``."""
    if math.isfinite(c.ci_lo) and math.isfinite(c.ci_hi):
        return f"{fmt(c.value)} [{fmt(c.ci_lo)}, {fmt(c.ci_hi)}]"
    return f"{fmt(c.value)} (no interval)"


def units(c: Claim) -> str:
    """``"3 seeds"``, ``"1 seed"``."""
    unit = c.unit[:-1] if c.n_units == 1 and c.unit.endswith("s") and " " not in c.unit else c.unit
    return f"{c.n_units} {unit}"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def counts(claims: list[Claim]) -> str:
    """``"3 reproduced, 1 not reproduced, 5 not resolved at this scale"``."""
    parts = []
    for verdict in (REPRODUCED, NOT_REPRODUCED, NOT_RESOLVED):
        n = sum(c.verdict == verdict for c in claims)
        parts.append(f"{n} {verdict}")
    return ", ".join(parts)


def markdown(claims: list[Claim]) -> str:
    """One Markdown table row per claim (measured value with its interval, the rule, the
    paper's value, the verdict), then the statistic and scale of each as a numbered note."""
    if not claims:
        return "No claims: no stage with claims was run.\n"
    level = {c.ci_level for c in claims}
    ci = f"{100 * level.pop():g}% CI" if len(level) == 1 else "CI"
    lines = [f"{counts(claims)}.", "",
             f"| claim | statement | measured [{ci}] | expected | paper | units | verdict |",
             "|---|---|---|---|---|---|---|"]
    for c in claims:
        lines.append("| " + " | ".join(_cell(x) for x in (
            f"`{c.claim}`", c.statement, measured(c), c.expected, c.reference or "-",
            units(c), VERDICT_MARK[c.verdict])) + " |")
    lines += ["", "What each measures, and at what scale:", ""]
    for c in claims:
        lines.append(f"- `{c.claim}`: {c.statistic}. Scale: {c.scale}. Source: {c.source}.")
    return "\n".join(lines) + "\n"


def html_page(claims: list[Claim], title: str = "Claims") -> str:
    """A self-contained HTML page with the claims table (embedded in Snakemake's report)."""
    esc = html.escape
    rows = []
    for c in claims:
        rows.append(
            "<tr>" + "".join(f"<td>{x}</td>" for x in (
                f"<code>{esc(c.claim)}</code>", esc(c.statement), esc(c.statistic), esc(measured(c)),
                esc(c.expected), esc(c.reference or "-"), esc(units(c)), esc(c.scale),
                esc(c.source)))
            + f'<td style="color:{VERDICT_COLOUR[c.verdict]};font-weight:bold">{esc(c.verdict)}</td></tr>')
    head = "".join(f"<th>{h}</th>" for h in ("claim", "statement", "statistic", "measured [CI]", "expected",
                                             "paper", "units", "scale", "source", "verdict"))
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>" + esc(title) + "</title>"
            "<style>body{font-family:sans-serif;font-size:13px}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:3px 6px;vertical-align:top;text-align:left}"
            "th{background:#eee}</style></head><body>\n"
            f"<h1>{esc(title)}</h1>\n<p>{esc(counts(claims))}.</p>\n"
            f"<table>\n<tr>{head}</tr>\n" + "\n".join(rows) + "\n</table>\n</body></html>\n")
