"""Read hypnogram files into the canonical encoding, and write metric rows as CSV.

Pure functions, no Django import: the ``hypnogram-stats`` management command calls
``read_hypnogram`` per file, ``analytics.engine.metrics.night_metrics_from_list`` once, and
``format_rows_csv`` for the output.

Accepted file layout
--------------------
- One stage per line, or one per CSV / TSV row (delimiter sniffed from the first data row:
  tab, comma or semicolon). The stage is the last column, unless the first row is a header
  naming a ``stage``, ``label`` or ``sleep_stage`` column (case-insensitive), which is then
  used. A first row of several columns none of which is a stage value is also taken as a
  header (e.g. ``time,sleep``), and the last column is used.
- Blank lines and lines starting with ``#`` are skipped; a UTF-8 byte-order mark is ignored.
- Stage values, case-insensitive, surrounding spaces and quotes ignored:

  ====================================  ==========================================
  value                                 canonical code
  ====================================  ==========================================
  ``0``, ``W``, ``WAKE``                0 Wake
  ``1``, ``N1``                         1 N1
  ``2``, ``N2``                         2 N2
  ``3``, ``N3``, ``N4``                 3 N3 (R&K stage 4 is AASM N3)
  ``4``, ``R``, ``REM``                 4 REM
  ``5``, ``L``, ``LIGHT``               5 Light (wearable light sleep)
  ``-1``, ``?``, ``A``, ``ART``,        -1 no data (unscored, artefact, movement)
  ``UNS``, ``M``
  ====================================  ==========================================

  Digits are our encoding (shared/design.md), not R&K numbering: ``4`` is REM.

Anything else raises ``HypnogramFormatError`` whose message names the line number (1-based,
counting every physical line) and never the path, so callers can prefix the file name.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

STAGE_VALUES: dict[str, int] = {
    "0": 0, "w": 0, "wake": 0,
    "1": 1, "n1": 1,
    "2": 2, "n2": 2,
    "3": 3, "n3": 3, "n4": 3,
    "4": 4, "r": 4, "rem": 4,
    "5": 5, "l": 5, "light": 5,
    "-1": -1, "?": -1, "a": -1, "art": -1, "uns": -1, "m": -1,
}  # fmt: skip
STAGE_COLUMN_NAMES = ("stage", "label", "sleep_stage")
DELIMITERS = ("\t", ",", ";")
# Decimal places of the CSV output: YASA's precision; finer than any epoch fraction we show.
CSV_DECIMALS = 4


class HypnogramFormatError(ValueError):
    """A hypnogram file that cannot be read; the message has a line number, not a path."""


def parse_hypnogram(lines: Iterable[str]) -> np.ndarray:
    """Parse hypnogram text lines (see module docstring) into an int8 array of stage codes."""
    stages: list[int] = []
    delimiter: str | None = None
    column: int | None = None  # None: last column
    first_row = True
    for number, raw in enumerate(lines, start=1):
        line = raw.lstrip("\ufeff").strip() if number == 1 else raw.strip()
        if not line or line.startswith("#"):
            continue
        if first_row:
            delimiter = next((d for d in DELIMITERS if d in line), None)
        cells = _split(line, delimiter)
        if not any(c.strip() for c in cells):
            continue  # a row of empty cells is a blank line
        if first_row:
            first_row = False
            names = [c.strip().lower() for c in cells]
            named = [i for i, name in enumerate(names) if name in STAGE_COLUMN_NAMES]
            if named:
                column = named[0]
                continue
            if len(cells) > 1 and not any(name in STAGE_VALUES for name in names):
                continue  # a header without a stage column name: use the last column
        if column is None:
            cell = cells[-1]
        elif column < len(cells):
            cell = cells[column]
        else:
            raise HypnogramFormatError(f"line {number}: no value in stage column {column + 1}")
        token = cell.strip().strip("\"'").strip().lower()
        code = STAGE_VALUES.get(token)
        if code is None:
            shown = cell.strip()[:40] or "(empty)"
            raise HypnogramFormatError(
                f"line {number}: unknown sleep stage {shown!r}; expected one of "
                "W/WAKE, N1, N2, N3, N4, R/REM, L/LIGHT, ?/A/ART/UNS/M, -1 or 0-5"
            )
        stages.append(code)
    if not stages:
        raise HypnogramFormatError("no sleep stages found")
    return np.array(stages, dtype=np.int8)


def read_hypnogram(path: str | os.PathLike) -> np.ndarray:
    """Read one hypnogram file (UTF-8) with ``parse_hypnogram``."""
    try:
        with open(path, encoding="utf-8-sig") as handle:
            return parse_hypnogram(handle)
    except UnicodeDecodeError:
        raise HypnogramFormatError("not UTF-8 text (is it a hypnogram file?)") from None


def format_rows_csv(
    metrics_frame: pd.DataFrame, labels: Sequence[str], *, label_column: str = "file"
) -> str:
    """CSV text: a header, then one row per night, ``labels`` (e.g. file names) first.

    Floats are rounded to ``CSV_DECIMALS``; undefined (NaN) values are empty cells.
    """
    if len(labels) != len(metrics_frame):
        raise ValueError(f"{len(labels)} labels for {len(metrics_frame)} rows")
    table = metrics_frame.round(CSV_DECIMALS)
    table.insert(0, label_column, list(labels))
    return table.to_csv(index=False, na_rep="", lineterminator="\n")


def _split(line: str, delimiter: str | None) -> list[str]:
    """Cells of one row; quoted cells may contain the delimiter."""
    if delimiter is None:
        return [line]
    return next(csv.reader([line], delimiter=delimiter))
