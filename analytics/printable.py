"""The printable cohort report: one self-contained HTML file (inline CSS, inline SVG charts).

No script, font, image or stylesheet is fetched: the file prints the same offline, years
later, from any browser. Charts are drawn here as SVG from the same payload as every other
format (``analytics.reports.cohort_chart_data``), so they cannot disagree with the tables.
"""

from __future__ import annotations

from django.template.loader import render_to_string
from django.utils.html import escape
from django.utils.safestring import mark_safe

from analytics.report_pages import report_table
from analytics.reports import cohort_chart_data, grouping_label

# Chart geometry (SVG user units ~ CSS px); wide enough for an A4 page in portrait.
CHART_WIDTH = 680
LABEL_WIDTH = 170
ROW_HEIGHT = 22
AXIS_HEIGHT = 28
SCORE_RANGE = (0.0, 100.0)
BAR_COLOR = "#5b8def"
MEDIAN_COLOR = "#102a43"
UP_COLOR, DOWN_COLOR = "#2f855a", "#c53030"


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    step = (high - low) / count
    return [low + i * step for i in range(count + 1)]


def _x(value: float, low: float, high: float) -> float:
    plot = CHART_WIDTH - LABEL_WIDTH - 20
    return LABEL_WIDTH + (value - low) / (high - low) * plot


def _axis(low: float, high: float, top: float, decimals: int = 0, count: int = 5) -> list[str]:
    parts = []
    for tick in _ticks(low, high, count):
        x = _x(tick, low, high)
        parts.append(f'<line x1="{x:.1f}" y1="0" x2="{x:.1f}" y2="{top:.1f}" class="grid"/>')
        parts.append(f'<text x="{x:.1f}" y="{top + 16:.1f}" class="tick">{tick:.{decimals}f}</text>')
    return parts


def iqr_chart_svg(chart: dict) -> str:
    """Median (dark tick) and interquartile range (bar) of the figure per group, 0..100."""
    groups = [g for g in chart["groups"] if g["p25"] is not None and g["p75"] is not None]
    if not groups:
        return ""
    low, high = SCORE_RANGE
    height = len(groups) * ROW_HEIGHT + AXIS_HEIGHT
    top = len(groups) * ROW_HEIGHT
    parts = _axis(low, high, top)
    for i, group in enumerate(groups):
        y = i * ROW_HEIGHT
        x1, x2 = _x(group["p25"], low, high), _x(group["p75"], low, high)
        parts.append(f'<text x="{LABEL_WIDTH - 8}" y="{y + 15}" class="label">{escape(group["label"])}</text>')
        parts.append(f'<rect x="{x1:.1f}" y="{y + 4}" width="{max(x2 - x1, 1):.1f}" height="{ROW_HEIGHT - 8}" '
                     f'fill="{BAR_COLOR}" fill-opacity="0.55"/>')
        if group["median"] is not None:
            xm = _x(group["median"], low, high)
            parts.append(f'<line x1="{xm:.1f}" y1="{y + 2}" x2="{xm:.1f}" y2="{y + ROW_HEIGHT - 2}" '
                         f'stroke="{MEDIAN_COLOR}" stroke-width="3"/>')
    return _svg(height, parts, f"Sleep score per {chart['grouping']}: median and interquartile range")


def delta_chart_svg(chart: dict) -> str:
    """Change of the figure's mean against the previous period per group (bars from 0)."""
    groups = [g for g in chart["groups"] if g["delta"] is not None]
    if not groups:
        return ""
    bound = max(5.0, max(abs(g["delta"]) for g in groups))
    low, high = -bound, bound
    height = len(groups) * ROW_HEIGHT + AXIS_HEIGHT
    top = len(groups) * ROW_HEIGHT
    parts = _axis(low, high, top, decimals=1, count=4)  # an even count puts a tick on 0
    zero = _x(0.0, low, high)
    for i, group in enumerate(groups):
        y = i * ROW_HEIGHT
        x = _x(group["delta"], low, high)
        color = UP_COLOR if group["delta"] >= 0 else DOWN_COLOR
        parts.append(f'<text x="{LABEL_WIDTH - 8}" y="{y + 15}" class="label">{escape(group["label"])}</text>')
        parts.append(f'<rect x="{min(x, zero):.1f}" y="{y + 4}" width="{max(abs(x - zero), 1):.1f}" '
                     f'height="{ROW_HEIGHT - 8}" fill="{color}"/>')
    parts.append(f'<line x1="{zero:.1f}" y1="0" x2="{zero:.1f}" y2="{top:.1f}" stroke="#334e68"/>')
    return _svg(height, parts, f"Change of the mean sleep score per {chart['grouping']} against the previous period")


def _svg(height: float, parts: list[str], title: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" viewBox="0 0 {CHART_WIDTH} {height:.0f}" '
        f'preserveAspectRatio="xMinYMin meet"><title>{escape(title)}</title>' + "".join(parts) + "</svg>"
    )


def printable_tables(payload: dict) -> list[dict]:
    """One table per grouping level, laid out as on the reports page (key figures; every
    percentile is in the CSV and XLSX files)."""
    table = report_table(payload)
    titles = ["Overall"] + [
        "By " + " and ".join(grouping_label(g) for g in payload["group_by"][:level])
        for level in range(1, len(payload["group_by"]) + 1)
    ]
    return [{"title": title, "rows": [row for row in table["rows"] if row["level"] == level]}
            for level, title in enumerate(titles)]


def cohort_printable_html(*, organization, payload: dict, generated_at) -> bytes:
    """The printable report as UTF-8 HTML bytes."""
    chart = cohort_chart_data(payload)
    context = {
        "organization": organization,
        "payload": payload,
        "generated_at": generated_at,
        "chart": chart,
        "iqr_svg": mark_safe(iqr_chart_svg(chart)),  # built from escaped labels and numbers only
        "delta_svg": mark_safe(delta_chart_svg(chart)),
        "tables": printable_tables(payload),
        "grouping": " then ".join(grouping_label(g) for g in payload["group_by"]),
    }
    return render_to_string("analytics/reports/printable.html", context).encode("utf-8")
