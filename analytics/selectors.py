"""Reads of the sleep store for the engine: frames of NightlyMetrics per organization and range.

Every read goes through ``Model.objects.for_org(organization)``. Frames are built from
``values_list`` (no model instances) so a 10,000-person, 90-night report is two queries
and one pandas frame, never a loop over people (style.md rules 26, 29; design.md flow 5).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from django.db import connection
from django.db.models.fields.json import KeyTransform
from psycopg import Cursor, postgres
from psycopg.adapt import Loader
from psycopg.pq import Format

from analytics.engine import cohorts
from analytics.models import NightlyMetrics, SleepSession
from tenants.models import Organization, Participant

# Columns every analytics frame carries (NightlyMetrics field -> frame column).
NIGHT_COLUMNS = {
    "participant_id": "participant_id",
    "night_date": "night_date",
    "is_nap": "is_nap",
    "is_main_sleep": "is_main_sleep",
    "score": "score",
    "tst_min": "tst_min",
    "se_pct": "se_pct",
    "waso_min": "waso_min",
}
# Clock columns for weekly summaries: stored as local TimeFields, handed to the engine as
# minutes past local midnight (weekly.py's input; the engine's name for wake time differs).
CLOCK_COLUMNS = {
    "bedtime_local": "bedtime_local",
    "midsleep_local": "midsleep_local",
    "wake_time_local": "waketime_local",
}
DEPARTMENT_COLUMN = "department"
ATTRIBUTE_PREFIX = "attr:"
# SRI needs every epoch of every session: keep its windows short (about 1 KB a night).
SRI_MAX_WINDOW_DAYS = 31


def _minutes(values: Iterable) -> np.ndarray:
    return np.fromiter(
        (np.nan if v is None else v.hour * 60 + v.minute + v.second / 60 for v in values), dtype=float
    )


def nightly_metrics_frame(
    *,
    organization: Organization,
    start: dt.date,
    end: dt.date,
    participant_ids: Sequence[int] | None = None,
    include_naps: bool = False,
    with_clock: bool = False,
) -> pd.DataFrame:
    """One row per stored night of ``organization`` with ``start <= night_date <= end``.

    One query. Main sleeps only unless ``include_naps`` (then every stored sleep, with
    ``is_nap`` / ``is_main_sleep`` to tell them apart). Columns: ``participant_id``,
    ``night_date`` (datetime64, local wake-up date), ``is_nap``, ``is_main_sleep``,
    ``score`` (0-100), ``tst_min``, ``se_pct`` (%), ``waso_min`` (float, NaN where
    undefined); with ``with_clock`` also ``bedtime_local``, ``midsleep_local``,
    ``waketime_local`` (minutes past local midnight).
    """
    queryset = NightlyMetrics.objects.for_org(organization).filter(night_date__gte=start, night_date__lte=end)
    if not include_naps:
        queryset = queryset.filter(is_main_sleep=True, is_nap=False)
    if participant_ids is not None:
        queryset = queryset.filter(participant_id__in=list(participant_ids))
    if connection.vendor == "postgresql" and not with_clock:
        return _nightly_frame_postgresql(queryset, include_naps=include_naps)
    fields = list(NIGHT_COLUMNS) + (list(CLOCK_COLUMNS) if with_clock else [])
    rows = list(queryset.order_by().values_list(*fields))
    columns = list(NIGHT_COLUMNS.values()) + (list(CLOCK_COLUMNS.values()) if with_clock else [])
    if not rows:
        frame = pd.DataFrame({c: pd.Series(dtype=float) for c in columns})
        frame["participant_id"] = frame["participant_id"].astype(np.int64)
        frame["night_date"] = pd.Series(dtype="datetime64[ns]")
        frame["is_nap"] = frame["is_nap"].astype(bool)
        frame["is_main_sleep"] = frame["is_main_sleep"].astype(bool)
        return frame
    data = list(zip(*rows, strict=True))
    frame = pd.DataFrame(
        {
            "participant_id": np.asarray(data[0], dtype=np.int64),
            "night_date": pd.to_datetime(pd.Series(data[1])).astype("datetime64[ns]"),
            "is_nap": np.asarray(data[2], dtype=bool),
            "is_main_sleep": np.asarray(data[3], dtype=bool),
            **{
                name: pd.to_numeric(pd.Series(data[i], dtype=object), errors="coerce").astype(float)
                for i, name in enumerate(("score", "tst_min", "se_pct", "waso_min"), start=4)
            },
        }
    )
    if with_clock:
        for i, name in enumerate(CLOCK_COLUMNS.values(), start=len(NIGHT_COLUMNS)):
            frame[name] = _minutes(data[i])
    return frame


class _RawArrayLoader(Loader):
    """Keep a binary PostgreSQL array as its raw bytes (numpy parses it, not Python)."""

    format = Format.BINARY

    def load(self, data) -> bytes:
        return bytes(data)


# (frame column, SQL expression over the compiled query's columns, big-endian numpy type).
# NULL becomes NaN in SQL so every array is NULL-free and has a fixed-width binary layout.
_PG_COLUMNS = (
    ("participant_id", "participant_id::int8", ">i8"),
    ("night_date", "(night_date - DATE '1970-01-01')::int4", ">i4"),
    ("is_nap", "is_nap::int4", ">i4"),
    ("is_main_sleep", "is_main_sleep::int4", ">i4"),
    ("score", "COALESCE(score, 'NaN')::float8", ">f8"),
    ("tst_min", "COALESCE(tst_min, 'NaN')::float8", ">f8"),
    ("se_pct", "COALESCE(se_pct, 'NaN')::float8", ">f8"),
    ("waso_min", "COALESCE(waso_min, 'NaN')::float8", ">f8"),
)
# Binary array header: ndim, has-null flag, element type oid, then (size, lower bound) per dim.
_ARRAY_HEADER_BYTES = 20


def _binary_array(raw: bytes | None, dtype: str) -> np.ndarray:
    if raw is None:  # array_agg over no rows
        return np.zeros(0, dtype=dtype[1:])
    ndim, has_null, _oid, size, _lower = np.frombuffer(raw[:_ARRAY_HEADER_BYTES], ">i4")
    if ndim != 1 or has_null:
        raise ValueError("expected a one-dimensional array without NULLs")
    # Each element is (int32 length, value).
    items = np.frombuffer(raw[_ARRAY_HEADER_BYTES:], dtype=[("length", ">i4"), ("value", dtype)], count=size)
    return items["value"].astype(dtype[1:])


def _nightly_frame_postgresql(queryset, *, include_naps: bool) -> pd.DataFrame:
    """The same frame as the ORM path, fetched as one row of binary arrays (PostgreSQL only).

    A report reads up to a million rows; building a Python tuple per row costs ~6 s for
    900,000 nights, arrays parsed by numpy ~1 s (bench/analytics.py). The query is the
    ORM's own (same filters, same scoping), wrapped in array_agg: every aggregate of one
    aggregation reads the rows in the same order, so the arrays stay aligned.
    """
    # Without naps every row is a main sleep: the two flags need not travel.
    columns = [c for c in _PG_COLUMNS if include_naps or c[0] not in ("is_nap", "is_main_sleep")]
    sql, params = queryset.order_by().values_list(*[name for name, _, _ in columns]).query.sql_with_params()
    aggregates = ", ".join(f"array_agg({expression})" for _, expression, _ in columns)
    connection.ensure_connection()
    # Django's cursors bind client-side, which has no binary results: a plain psycopg cursor
    # on the same connection (same transaction) does.
    with connection.wrap_database_errors, Cursor(connection.connection) as cursor:
        for type_name in ("int4", "int8", "float8"):
            cursor.adapters.register_loader(postgres.types[type_name].array_oid, _RawArrayLoader)
        cursor.execute(f"SELECT {aggregates} FROM ({sql}) AS nights", params, binary=True)
        row = cursor.fetchone()
    arrays = {name: _binary_array(raw, dtype) for (name, _, dtype), raw in zip(columns, row, strict=True)}
    size = arrays["participant_id"].size
    return pd.DataFrame(
        {
            "participant_id": arrays["participant_id"],
            "night_date": pd.to_datetime(arrays["night_date"], unit="D").astype("datetime64[ns]"),
            "is_nap": arrays["is_nap"].astype(bool) if include_naps else np.zeros(size, dtype=bool),
            "is_main_sleep": arrays["is_main_sleep"].astype(bool) if include_naps else np.ones(size, dtype=bool),
            **{name: arrays[name] for name in ("score", "tst_min", "se_pct", "waso_min")},
        }
    )


def participants_frame(
    *, organization: Organization, attributes: Sequence[str] = (), participant_ids: Sequence[int] | None = None
) -> pd.DataFrame:
    """The organization's participants for grouping, indexed by ``participant_id``.

    One query. Columns: ``uuid`` (str), ``department`` (name or None), ``birth_year``,
    and ``attr:<name>`` for each requested attribute (string value or None).
    """
    queryset = Participant.objects.for_org(organization)
    if participant_ids is not None:
        queryset = queryset.filter(pk__in=list(participant_ids))
    rows = list(queryset.order_by("pk").values_list("pk", "uuid", "department__name", "birth_year", "attributes"))
    frame = pd.DataFrame(
        {
            "uuid": [str(r[1]) for r in rows],
            DEPARTMENT_COLUMN: np.array([r[2] for r in rows], dtype=object),
            "birth_year": np.array([np.nan if r[3] is None else r[3] for r in rows], dtype=float),
        },
        index=pd.Index([r[0] for r in rows], name="participant_id", dtype=np.int64),
    )
    for name in attributes:
        # One pass per requested attribute over participants (not nights): values are strings.
        values = [(r[4] or {}).get(name) if isinstance(r[4], dict) else None for r in rows]
        frame[ATTRIBUTE_PREFIX + name] = np.array([None if v is None else str(v) for v in values], dtype=object)
    return frame


def cohort_frame(
    *, organization: Organization, start: dt.date, end: dt.date, group_by: Sequence[str], include_naps: bool = False
) -> pd.DataFrame:
    """Nights of ``nightly_metrics_frame`` joined with the grouping columns ``group_by``.

    ``group_by`` holds ``department`` and/or ``attr:<name>``; the frame gets one column of
    that exact name per entry (labels as strings, None when unset).
    """
    nights = nightly_metrics_frame(organization=organization, start=start, end=end, include_naps=include_naps)
    attributes = [g[len(ATTRIBUTE_PREFIX):] for g in group_by if g.startswith(ATTRIBUTE_PREFIX)]
    people = participants_frame(organization=organization, attributes=attributes)
    return nights.join(people[list(group_by)], on="participant_id")


def session_stages_frame(
    *, organization: Organization, start: dt.date, end: dt.date, participant_ids: Sequence[int] | None = None
) -> pd.DataFrame:
    """Sessions (naps included) whose night falls in a bounded window, with their stages.

    For the Sleep Regularity Index (``regularity.sleep_regularity_index`` input: columns
    ``participant_id``, ``start`` (UTC), ``timezone``, ``stages`` (bytes), ``epoch_s``,
    ``is_nap``). Refuses windows longer than ``SRI_MAX_WINDOW_DAYS``: stages are the
    only large column of the store.
    """
    if (end - start).days + 1 > SRI_MAX_WINDOW_DAYS:
        raise ValueError(f"stage windows are limited to {SRI_MAX_WINDOW_DAYS} days")
    queryset = SleepSession.objects.for_org(organization).filter(
        metrics__night_date__gte=start, metrics__night_date__lte=end
    )
    if participant_ids is not None:
        queryset = queryset.filter(participant_id__in=list(participant_ids))
    rows = list(
        queryset.order_by("participant_id", "start").values_list(
            "participant_id", "start", "timezone", "participant__timezone", "stages", "epoch_seconds",
            "metrics__is_nap",
        )
    )
    return pd.DataFrame(
        {
            "participant_id": [r[0] for r in rows],
            "start": pd.to_datetime([r[1] for r in rows], utc=True),
            "timezone": [r[3] or r[2] for r in rows],
            "stages": [bytes(r[4]) for r in rows],
            "epoch_s": [r[5] for r in rows],
            "is_nap": [bool(r[6]) for r in rows],
        }
    )


# --- cohort reports ---------------------------------------------------------------------------------
# analytics_cohortnights (migration 0005): packed column -> (frame column, big-endian numpy type).
_COHORT_PACKED = {
    "days": ("night_date", ">i4"),
    "score": ("score", ">f8"),
    "tst_min": ("tst_min", ">f8"),
    "se_pct": ("se_pct", ">f8"),
    "waso_min": ("waso_min", ">f8"),
}


def cohort_nights(
    *, organization: Organization, start: dt.date, end: dt.date, participant_order: Sequence[int] | None = None
) -> pd.DataFrame:
    """Main sleeps (naps excluded) of ``organization`` with ``start <= night_date <= end``,
    each participant's nights together: the input of ``cohorts.cohort_report_by_participant``.

    Columns ``participant_id``, ``night_date`` (datetime64), ``score``, ``tst_min``,
    ``se_pct``, ``waso_min`` (NaN where undefined). On PostgreSQL one query over
    ``analytics_cohortnights`` (a quarter of a participant's nights per row, kept by triggers:
    see migration 0005); elsewhere ``nightly_metrics_frame``. With ``participant_order``
    (ids), people come in that order (others last), so the engine need not reorder nights.
    """
    if connection.vendor != "postgresql":
        frame = nightly_metrics_frame(organization=organization, start=start, end=end)
        return frame.drop(columns=["is_nap", "is_main_sleep"])
    connection.ensure_connection()
    # Raw SQL (the table has no model), scoped by the organization's id as for_org would.
    with connection.wrap_database_errors, Cursor(connection.connection) as cursor:
        cursor.execute(
            f"SELECT participant_id, nights, {', '.join(_COHORT_PACKED)} FROM analytics_cohortnights "
            "WHERE organization_id = %s AND quarter >= %s AND quarter <= %s",
            [organization.pk, dt.date(start.year, (start.month - 1) // 3 * 3 + 1, 1), end],
            binary=True,
        )
        rows = cursor.fetchall()
    runs = np.fromiter((row[0] for row in rows), np.int64, len(rows))  # one run = one person's quarter
    lengths = np.fromiter((row[1] for row in rows), np.int64, len(rows))
    run_start = np.cumsum(lengths) - lengths
    participant = np.repeat(runs, lengths)
    columns = {  # each packed column: its rows' bytes joined, read by numpy as they are
        column: np.frombuffer(b"".join([row[i] for row in rows]), dtype=dtype).astype(dtype[1:])
        for i, (column, dtype) in enumerate(_COHORT_PACKED.values(), start=2)
    }
    days = columns.pop("night_date").astype(np.int64)
    first, last = (np.datetime64(d, "D").astype(np.int64) for d in (start, end))
    # Whole runs in the wanted order of people (by id without one; others last), quarters in order.
    position = runs
    if participant_order is not None:
        position = pd.Index(np.asarray(participant_order, dtype=np.int64)).get_indexer(runs)
        position[position < 0] = len(participant_order)
    order = np.lexsort((days[run_start], position))
    take = np.repeat(run_start[order] - (np.cumsum(lengths[order]) - lengths[order]), lengths[order])
    take += np.arange(take.size)
    take = take[(days[take] >= first) & (days[take] <= last)]
    return pd.DataFrame(
        {
            "participant_id": participant[take],
            "night_date": (days[take] * 86_400_000_000_000).astype("datetime64[ns]"),
            **{name: values[take] for name, values in columns.items()},
        }
    )


def cohort_people(*, organization: Organization, group_by: Sequence[str]) -> pd.DataFrame:
    """The organization's participants with only the ``group_by`` columns (labels as
    ``participants_frame`` gives them: department name, attribute value as a string, None
    when unset), indexed by ``participant_id``. One query; attributes read key by key in SQL."""
    keys = {spec: spec[len(ATTRIBUTE_PREFIX):] for spec in group_by if spec.startswith(ATTRIBUTE_PREFIX)}
    annotations = {f"group_{i}": KeyTransform(name, "attributes") for i, name in enumerate(keys.values())}
    rows = list(
        Participant.objects.for_org(organization).annotate(**annotations).order_by("pk")
        .values_list("pk", "department__name", *annotations)
    )
    columns = list(zip(*rows, strict=True)) if rows else [[] for _ in range(2 + len(keys))]
    frame = pd.DataFrame(index=pd.Index(np.asarray(columns[0], dtype=np.int64), name="participant_id"))
    attribute_values = dict(zip(keys, columns[2:], strict=True))
    for spec in group_by:
        if spec == DEPARTMENT_COLUMN:
            frame[spec] = np.array(columns[1], dtype=object)
        else:
            frame[spec] = np.array([None if v is None else str(v) for v in attribute_values[spec]], dtype=object)
    return frame


def cohort_report_frame(
    *,
    organization: Organization,
    period: tuple[dt.date, dt.date],
    previous_period: tuple[dt.date, dt.date],
    group_by: Sequence[str],
    regularity: pd.Series | None = None,
    previous_regularity: pd.Series | None = None,
) -> pd.DataFrame:
    """The organization's cohort report (``cohorts.cohort_report``'s frame) over ``period``,
    with the trend against ``previous_period``: two queries (nights of both periods, people)."""
    first = min(period[0], previous_period[0])
    last = max(period[1], previous_period[1])
    people = cohort_people(organization=organization, group_by=group_by)
    nights = cohort_nights(
        organization=organization, start=first, end=last,
        participant_order=cohorts.participant_order(people, list(group_by)),
    )
    return cohorts.cohort_report_by_participant(
        nights, people, group_by=list(group_by), min_group_size=organization.min_group_size,
        period=period, previous_period=previous_period, regularity=regularity,
        previous_regularity=previous_regularity,
    )
