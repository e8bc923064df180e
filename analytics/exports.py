"""CSV and XLSX files of a cohort report, built from the very payload the JSON API returns.

Both formats take the serialized report (``analytics.api.cohort_payload``) and only lay it
out: same rows, same figures (already rounded there), suppressed figures left empty and
marked in the ``suppressed`` / ``suppression_note`` columns. Nothing is recomputed here,
so the three formats cannot disagree.
"""

from __future__ import annotations

import csv
import io

# openpyxl (and the Pillow it imports) is loaded by cohort_xlsx only: the worker processes
# that sync or send emails, and the web process until someone downloads a workbook, never
# need it (tests/unit/config/test_worker_imports.py).

LEVEL_TITLES = {0: "Overall"}
# Excel forbids these characters in sheet titles and caps titles at 31 characters.
_SHEET_FORBIDDEN = str.maketrans({c: " " for c in "\\/?*[]:"})
_HEADER_COLOR, _HEADER_FILL_COLOR = "FFFFFF", "305496"
_SUPPRESSED_COLOR, _SUPPRESSED_FILL_COLOR = "595959", "E7E6E6"


def group_label(spec: str) -> str:
    """``department`` -> ``department``; ``attr:site`` -> ``site``."""
    return spec.split(":", 1)[1] if spec.startswith("attr:") else spec


def table_columns(payload: dict) -> list[str]:
    """Column order shared by the CSV file and every XLSX sheet."""
    return [
        "level",
        *payload["group_by"],
        "participants",
        "nights",
        "suppressed",
        "suppression_reason",
        "suppression_note",
        *payload["figures"],
        "trend_available",
    ]


def _cells(row: dict, payload: dict) -> list:
    values = [row["level"]]
    values += [row["groups"].get(spec) for spec in payload["group_by"]]
    values += [row["participants"], row["nights"], row["suppressed"], row["suppression_reason"],
               row["suppression_note"]]
    values += [row[name] for name in payload["figures"]]
    values.append(row["trend_available"])
    return values


def _csv_value(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)  # repr of a float: reads back to the same number


def cohort_csv(payload: dict) -> bytes:
    """One CSV table of every cell (total, groups, sub-groups), UTF-8 with a BOM for Excel."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(table_columns(payload))
    for row in payload["rows"]:
        writer.writerow([_csv_value(v) for v in _cells(row, payload)])
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")


def _sheet_title(level: int, group_by: list[str]) -> str:
    if level == 0:
        return LEVEL_TITLES[0]
    title = "By " + " and ".join(group_label(g) for g in group_by[:level])
    return title.translate(_SHEET_FORBIDDEN)[:31]


def _write_table(sheet, header: list[str], rows: list[list], suppressed: list[bool] | None = None) -> None:
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    header_font = Font(bold=True, color=_HEADER_COLOR)
    header_fill = PatternFill("solid", fgColor=_HEADER_FILL_COLOR)
    suppressed_font = Font(italic=True, color=_SUPPRESSED_COLOR)
    suppressed_fill = PatternFill("solid", fgColor=_SUPPRESSED_FILL_COLOR)
    sheet.append(header)
    for cell in sheet[1]:
        cell.font = header_font
        cell.fill = header_fill
        cell.alignment = Alignment(horizontal="center", vertical="center", wrap_text=True)
    for index, values in enumerate(rows):
        sheet.append(values)
        if suppressed and suppressed[index]:
            # Suppressed cells stay empty; the grey row and its note say why at a glance.
            for cell in sheet[sheet.max_row]:
                cell.fill = suppressed_fill
                cell.font = suppressed_font
    sheet.freeze_panes = "A2"
    for index, name in enumerate(header, start=1):
        sheet.column_dimensions[get_column_letter(index)].width = max(10, min(40, len(str(name)) + 2))


def cohort_xlsx(payload: dict, *, generated_at=None, organization_name: str | None = None) -> bytes:
    """Workbook: one sheet per grouping level (Overall, By <first>, By <first> and <second>)
    with a formatted header row (suppressed rows greyed), then a Notes sheet (period,
    suppression rule, definitions; the organization and generation time when given)."""
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font

    workbook = Workbook()
    workbook.remove(workbook.active)
    header = table_columns(payload)
    for level in range(len(payload["group_by"]) + 1):
        sheet = workbook.create_sheet(_sheet_title(level, payload["group_by"]))
        rows = [row for row in payload["rows"] if row["level"] == level]
        _write_table(sheet, header, [_cells(row, payload) for row in rows], [row["suppressed"] for row in rows])

    notes = workbook.create_sheet("Notes")
    lines = [
        ("Report", "Cohort report" + (f" - {organization_name}" if organization_name else "")),
        ("Period", f"{payload['period']['start']} to {payload['period']['end']}"),
        ("Previous period (trend)", f"{payload['previous_period']['start']} to {payload['previous_period']['end']}"),
        ("Grouped by", ", ".join(payload["group_by"])),
        ("Minimum group size", payload["min_group_size"]),
        ("Suppression rule", payload["suppression_rule"]),
        ("Suppressed cells", "left empty; 'suppressed' is true and 'suppression_note' says why "
                             "(greyed rows)"),
        ("Generated at", generated_at.strftime("%Y-%m-%d %H:%M %Z").strip() if generated_at else ""),
        ("", ""),
        ("Figure", "Definition"),
        *[(name, text) for name, text in payload["definitions"].items()],
    ]
    for key, value in lines:
        notes.append([key, value])
    definitions_header = lines.index(("Figure", "Definition")) + 1
    for row_number in (1, definitions_header):
        for cell in notes[row_number]:
            cell.font = Font(bold=True)
    notes.column_dimensions["A"].width = 28
    notes.column_dimensions["B"].width = 120
    for row in notes.iter_rows(min_col=2, max_col=2):
        for cell in row:
            cell.alignment = Alignment(wrap_text=True, vertical="top")
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()
