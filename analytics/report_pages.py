"""What the reports page shows: the cohort payload laid out for a table, and export rows.

Presentation only (labels, units, suppression wording); the figures are the payload's.
"""

from __future__ import annotations

from analytics.engine.cohorts import REASON_BELOW_MIN, REASON_COMPLEMENTARY
from analytics.export_services import FORMATS
from analytics.models import Export
from analytics.reports import grouping_label

RECENT_EXPORTS = 10


def suppression_text(row: dict, min_group_size: int) -> str:
    """Why a cell is withheld, in the page's words."""
    if row["suppression_reason"] == REASON_BELOW_MIN:
        return f"Withheld: fewer than {min_group_size} people"
    if row["suppression_reason"] == REASON_COMPLEMENTARY:
        return "Withheld: could be derived by subtraction from the groups shown"
    return ""


def _hours(minutes) -> str | None:
    if minutes is None:
        return None
    total = int(round(minutes))
    return f"{total // 60} h {total % 60:02d}"


def _signed(value, unit: str = "") -> str | None:
    if value is None:
        return None
    return f"{'+' if value > 0 else ''}{value:g}{unit}"


def report_table(payload: dict) -> dict:
    """Rows for the page's table: every cell of the report (total, groups, sub-groups)."""
    group_by = payload["group_by"]
    rows = []
    for row in payload["rows"]:
        level = row["level"]
        labels = [row["groups"].get(spec) for spec in group_by[:level]]
        rows.append(
            {
                "level": level,
                "label": "All participants" if level == 0 else " › ".join(str(label) for label in labels),
                "suppressed": row["suppressed"],
                "note": suppression_text(row, payload["min_group_size"]) if row["suppressed"] else "",
                "participants": row["participants"],
                "nights": row["nights"],
                "score_median": row.get("score_median"),
                "score_iqr": None if row.get("score_p25") is None else f"{row['score_p25']:g}–{row['score_p75']:g}",
                "score_mean": row.get("score_mean"),
                "score_delta": _signed(row.get("score_mean_delta")),
                "tst_mean": _hours(row.get("tst_mean")),
                "tst_delta": _signed(None if row.get("tst_mean_delta") is None else round(row["tst_mean_delta"]),
                                     " min"),
                "se_mean": row.get("se_mean"),
                "waso_mean": row.get("waso_mean"),
            }
        )
    return {
        "grouping": " then ".join(grouping_label(spec) for spec in group_by),
        "rows": rows,
        "suppressed": sum(1 for row in rows if row["suppressed"]),
    }


def export_rows(organization, *, limit: int = RECENT_EXPORTS) -> list[dict]:
    """The organization's latest exports for the page (no personal data: who asked is not shown)."""
    rows = []
    for export in Export.objects.for_org(organization).order_by("-created_at", "-id")[:limit]:
        params = export.params or {}
        rows.append(
            {
                "uuid": str(export.uuid),
                "format": FORMATS[export.format].label if export.format in FORMATS else export.format,
                "period": f"{params.get('start')} to {params.get('end')}",
                "grouping": " then ".join(grouping_label(spec) for spec in params.get("group_by", [])),
                "status": export.status,
                "progress": export.progress,
                "created_at": export.created_at,
                "expires_at": export.expires_at,
                "active": export.status in (Export.Status.PENDING, Export.Status.RUNNING),
                "downloadable": export.status == Export.Status.DONE,
            }
        )
    return rows
