"""Compute and write the NightlyMetrics rows of a batch of sleep sessions.

The body of ``analytics.services.nightly_metrics_compute`` and of the metrics step of
``sleep_sessions_upsert``. The sessions arrive as columns (``SessionColumns``): from the
upsert that has just written them (nothing is read back), or from one ``values_list``
query. Every step works on whole columns: metrics, night dates, local clock times,
scores, the main-sleep decision and the rows. A batch costs four queries (participants,
the stored night dates of the batch's sessions, the stored nights around the batch's
dates, the upsert), plus one UPDATE per direction only when a stored night gains or loses
its main-sleep flag.

The main sleep of each touched (participant, night date) is decided before the write,
over the stored rivals plus the batch's nights, so the batch's rows are written with
their final flag (settling after the write gave the same flags at the cost of two more
statements, each firing the cohort triggers of analytics_nightlymetrics). Touched are the
dates the batch's sessions land on and the dates a revised session leaves (its stored
night date before the revision), where a rival may now be the main sleep.

PostgreSQL gets the rows through ``analytics.pg_bulk`` (one binary array per column);
other databases (SQLite in development and tests) through ``bulk_create``, from the same
columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

import numpy as np
import pandas as pd
from django.db import connection
from django.db.models import Q
from django.utils import timezone

from analytics import pg_bulk
from analytics.engine.metrics import night_metrics
from analytics.engine.nights import assign_night_dates, clock_seconds, main_sleep_flags
from analytics.engine.scores import sleep_scores
from analytics.models import METRICS_VERSION, NightlyMetrics
from tenants.models import Organization, Participant

# Rows per write statement: large enough to amortise round trips and the statement-level
# triggers on analytics_nightlymetrics, small enough to keep a statement a few MB.
BULK_BATCH_SIZE = 2000
METRIC_FIELDS = [
    f.name for f in NightlyMetrics._meta.concrete_fields
    if f.name not in ("session", "organization", "participant", "computed_at")
]
SCORE_COLUMNS = ["score", "score_duration", "score_efficiency", "score_continuity", "score_depth",
                 "score_regularity"]
# The timing-regularity component compares a night with the person's previous 14 nights.
SCORE_HISTORY_DAYS = 15
# Clock field -> (local datetime of assign_night_dates, metrics offset in minutes or None).
CLOCK_FIELDS = {
    "bedtime_local": ("local_start", None),
    "wake_time_local": ("local_end", None),
    "sleep_onset_local": ("local_start", "sleep_onset_offset_min"),
    "midsleep_local": ("local_start", "midsleep_offset_min"),
}


@dataclass(frozen=True)
class SessionColumns:
    """Stored sessions whose metrics to compute: one entry per session in each column."""

    ids: Sequence[int]
    participant_ids: Sequence[int]
    starts: Sequence[datetime]  # aware
    ends: Sequence[datetime]  # aware
    timezones: Sequence[str]  # the zone the upstream reported
    epoch_seconds: Sequence[int]
    stages: Sequence[bytes]  # canonical hypnograms, one int8 per epoch


@dataclass(frozen=True)
class _Nearby:
    """Stored nights of the batch's people from 15 days before its first date to its last,
    and on the dates the batch's sessions leave (the batch's own sessions left out), one
    array or list per column."""

    in_window: np.ndarray  # bool: inside the 15-day window (a candidate for score history)
    session_id: np.ndarray
    participant_id: np.ndarray
    night_date: np.ndarray  # datetime.date objects
    is_nap: np.ndarray
    is_main_sleep: np.ndarray
    tib_min: np.ndarray
    start: list  # the session's start (aware datetime)
    tst_min: np.ndarray
    bedtime_local: list  # datetime.time
    midsleep_local: list  # datetime.time or None


def nightly_metrics_store(*, organization: Organization, sessions: SessionColumns) -> int:
    """Compute the metrics of ``sessions``, upsert their NightlyMetrics, settle main sleeps.

    Runs in the caller's transaction; returns the number of rows written.
    """
    if not len(sessions.ids):
        return 0
    # Session-id order, as nightly_metrics_compute has always read them back.
    order = np.argsort(np.asarray(sessions.ids, dtype=np.int64), kind="stable")
    pick = order.tolist()
    ids = np.asarray(sessions.ids, dtype=np.int64)[order]
    participant_ids = np.asarray(sessions.participant_ids, dtype=np.int64)[order]
    stages = [sessions.stages[i] for i in pick]
    starts = [sessions.starts[i] for i in pick]

    lengths = np.fromiter((len(s) for s in stages), dtype=np.int64, count=len(stages))
    epoch_seconds = np.asarray(sessions.epoch_seconds, dtype=np.float64)[order]
    metrics = night_metrics(np.frombuffer(b"".join(stages), dtype=np.int8), lengths, epoch_seconds,
                            index=ids)

    people = _participants(organization, np.unique(participant_ids).tolist())
    # The night's zone: the participant's own if set, else the one the upstream reported.
    zones = [people.get(p, ("", None))[0] or sessions.timezones[i]
             for p, i in zip(participant_ids.tolist(), pick, strict=True)]
    nights = assign_night_dates(
        pd.Series(starts, index=ids),
        pd.Series([sessions.ends[i] for i in pick], index=ids),
        pd.Series(zones, index=ids),
    )
    clocks = {
        name: clock_seconds(nights[local], 0.0 if offset is None else metrics[offset].to_numpy())
        for name, (local, offset) in CLOCK_FIELDS.items()
    }
    night_dates = nights["night_date"].to_numpy()
    is_nap = nights["is_nap"].to_numpy()

    left = _dates_left(organization, ids, participant_ids, night_dates)
    nearby = _nearby_nights(organization, participant_ids, night_dates, ids, left)
    scores = _scores(organization, metrics, nights, clocks, participant_ids, nearby, people)
    tib_min = metrics["tib_min"].to_numpy()
    is_main, flips = _main_sleep(nearby, left, participant_ids, nights, tib_min, starts)

    columns = {
        "session_id": ids,
        "participant_id": participant_ids,
        "night_date": night_dates,
        "is_nap": is_nap,
        "is_main_sleep": is_main,
        **{name: metrics[name].to_numpy() for name in METRIC_FIELDS if name in metrics.columns},
        **clocks,  # seconds past local midnight, NaN for none
        **scores,
    }
    if connection.vendor == "postgresql":
        _write_postgresql(organization, columns)
    else:
        _write_orm(organization, columns)
    for flag, session_ids in flips.items():
        if session_ids:
            NightlyMetrics.objects.for_org(organization).filter(session_id__in=session_ids).update(
                is_main_sleep=flag
            )
    return len(ids)


def _participants(organization, participant_ids: list[int]) -> dict[int, tuple[str, int | None]]:
    """participant id -> (time zone override, birth year)."""
    rows = (
        Participant.objects.for_org(organization)
        .filter(pk__in=participant_ids)
        .values_list("pk", "timezone", "birth_year")
    )
    return {pk: (tz, birth_year) for pk, tz, birth_year in rows}


def _dates_left(organization, ids, participant_ids, night_dates) -> set[tuple[int, date]]:
    """(participant id, night date) pairs the batch's sessions were stored on and leave.

    A revision that moves a session to another night date leaves its old date to its
    rivals: that date's main sleep must be decided again.
    """
    arriving = set(zip(participant_ids.tolist(), night_dates.tolist(), strict=True))
    stored = (
        NightlyMetrics.objects.for_org(organization)
        .filter(session_id__in=ids.tolist(), night_date__isnull=False)
        .values_list("participant_id", "night_date")
    )
    return set(stored) - arriving


_NEARBY_FIELDS = ("session_id", "participant_id", "night_date", "is_nap", "is_main_sleep",
                  "tib_min", "session__start", "tst_min", "bedtime_local", "midsleep_local")


def _nearby_nights(organization, participant_ids, night_dates, ids, left) -> _Nearby:
    """One read for two uses: the scores' history and each touched date's main-sleep rivals
    (``left``: the (participant, date) pairs the batch's sessions leave)."""
    first, last = min(night_dates) - timedelta(days=SCORE_HISTORY_DAYS), max(night_dates)
    where = Q(participant_id__in=np.unique(participant_ids).tolist(), night_date__gte=first,
              night_date__lte=last)
    if left:
        # Narrowed to the exact pairs in _main_sleep.
        where |= Q(participant_id__in={p for p, _ in left}, night_date__in={d for _, d in left})
    rows = list(
        NightlyMetrics.objects.for_org(organization)
        .filter(where)
        .exclude(session_id__in=ids.tolist())
        .values_list(*_NEARBY_FIELDS)
    )
    data = list(zip(*rows, strict=True)) if rows else [()] * len(_NEARBY_FIELDS)
    days = np.asarray(data[2], dtype="datetime64[D]")
    return _Nearby(
        in_window=(days >= np.datetime64(first, "D")) & (days <= np.datetime64(last, "D")),
        session_id=np.asarray(data[0], dtype=np.int64),
        participant_id=np.asarray(data[1], dtype=np.int64),
        night_date=np.asarray(data[2], dtype=object),
        is_nap=np.asarray(data[3], dtype=bool),
        is_main_sleep=np.asarray(data[4], dtype=bool),
        tib_min=np.asarray(data[5], dtype=float),
        start=list(data[6]),
        tst_min=np.asarray(data[7], dtype=float),
        bedtime_local=list(data[8]),
        midsleep_local=list(data[9]),
    )


def _minutes_past_midnight(values: list) -> np.ndarray:
    """Stored clock times (datetime.time or None) -> minutes past midnight, with seconds."""
    return np.fromiter(
        (np.nan if v is None else v.hour * 60 + v.minute + v.second / 60 for v in values),
        dtype=float, count=len(values),
    )


def _seconds_to_minutes(seconds: np.ndarray) -> np.ndarray:
    """Seconds past midnight (NaN kept) -> minutes, in the same float steps as
    ``_minutes_past_midnight`` (hour * 60 + minute, plus second / 60): a night scores the
    same from the batch as from the store."""
    return np.floor_divide(seconds, 60) + np.mod(seconds, 60) / 60


def _scores(organization, metrics, nights, clocks, participant_ids, nearby: _Nearby,
            people) -> dict[str, np.ndarray]:
    """Score the batch's nights in one ``sleep_scores`` call; returns SCORE_COLUMNS arrays.

    History: the stored main sleeps (not naps) of the batch's people in the window read by
    ``_nearby_nights``, before this batch is written; then the batch's nights. Clock times
    in minutes past midnight with their seconds on both sides (the stored times carry
    seconds), so a night's score does not depend on how the nights were batched.
    """
    history = nearby.in_window & nearby.is_main_sleep & ~nearby.is_nap
    n_hist = int(history.sum())
    past = np.flatnonzero(history).tolist()

    def stacked(batch_values, history_values=None):
        if history_values is None:
            history_values = np.full(n_hist, np.nan)
        return np.concatenate([history_values, batch_values])

    n1, n2, n3, rem = (metrics[c].to_numpy() for c in ("n1_min", "n2_min", "n3_min", "rem_min"))
    combined = pd.DataFrame({
        "participant_id": np.concatenate([nearby.participant_id[history], participant_ids]),
        "night_date": np.concatenate([nearby.night_date[history], nights["night_date"].to_numpy()]),
        "bedtime_local": stacked(
            _seconds_to_minutes(clocks["bedtime_local"]),
            _minutes_past_midnight([nearby.bedtime_local[i] for i in past]),
        ),
        "midsleep_local": stacked(
            _seconds_to_minutes(clocks["midsleep_local"]),
            _minutes_past_midnight([nearby.midsleep_local[i] for i in past]),
        ),
        "tst_min": stacked(metrics["tst_min"].to_numpy(), nearby.tst_min[history]),
        "is_nap": np.concatenate([np.zeros(n_hist, dtype=bool), nights["is_nap"].to_numpy()]),
        "se_pct": stacked(metrics["se_pct"].to_numpy()),
        "waso_min": stacked(metrics["waso_min"].to_numpy()),
        "awakenings_5min": stacked(metrics["awakenings_5min"].to_numpy(dtype=float)),
        "n3_min": stacked(n3),
        "rem_min": stacked(rem),
        # Stored nights bring no stages: True keeps their depth component, as an unknown does.
        "stages_resolved": np.concatenate([np.ones(n_hist, dtype=bool), (n1 + n2 + n3 + rem) > 0]),
    })
    this_year = pd.Timestamp.now().year
    ages = {pid: (this_year - birth_year) if birth_year else np.nan
            for pid, (_, birth_year) in people.items()}
    combined["age_years"] = [ages.get(pid, np.nan) for pid in combined["participant_id"].tolist()]
    scored = sleep_scores(combined, weights=organization.score_weights or None)
    return {name: scored[name].to_numpy()[n_hist:] for name in SCORE_COLUMNS}


def _main_sleep(nearby: _Nearby, left, participant_ids, nights, tib_min, starts):
    """The batch's main-sleep flags, and the stored rivals whose flag changes.

    Decided over every stored night of each (participant, night date) the batch touches,
    the dates its sessions arrive on and those they leave (``left``), plus the batch's
    nights: what settling the dates after the write decided. Returns (flags in batch
    order, {True: session ids to set, False: session ids to clear}).
    """
    night_dates = nights["night_date"].to_numpy()
    touched = set(zip(participant_ids.tolist(), night_dates.tolist(), strict=True)) | left
    stored = zip(nearby.participant_id.tolist(), nearby.night_date.tolist(), strict=True)
    rivals = [i for i, key in enumerate(stored) if key in touched]
    # The batch's night dates as days, as assign_night_dates derived them from local_end.
    batch_days = nights["local_end"].to_numpy().astype("datetime64[D]")
    start = pd.to_datetime([nearby.start[i] for i in rivals] + list(starts), utc=True)
    main = main_sleep_flags(
        np.concatenate([nearby.participant_id[rivals], participant_ids]),
        np.concatenate([np.asarray(nearby.night_date[rivals], dtype="datetime64[D]"), batch_days]),
        np.concatenate([nearby.is_nap[rivals], nights["is_nap"].to_numpy()]),
        np.concatenate([nearby.tib_min[rivals], tib_min]),
        start.tz_localize(None).to_numpy(),
    )
    rival_main, was_main = main[:len(rivals)], nearby.is_main_sleep[rivals]
    rival_ids = nearby.session_id[rivals]
    flips = {True: rival_ids[rival_main & ~was_main].tolist(),
             False: rival_ids[~rival_main & was_main].tolist()}
    return main[len(rivals):], flips


# --- writing ------------------------------------------------------------------------------

# Django field type -> PostgreSQL element type of its unnest() array (others: int8).
_PG_ELEMENTS = {"FloatField": "float8", "BooleanField": "bool", "DateField": "date",
                "TimeField": "time"}


def _write_postgresql(organization, columns: dict) -> None:
    """One upsert per BULK_BATCH_SIZE rows, each column one binary array; NaN -> NULL."""
    meta = NightlyMetrics._meta
    elements = {name: _PG_ELEMENTS.get(meta.get_field(name).get_internal_type(), "int8")
                for name in columns}
    constants = {"organization": organization.pk, "metrics_version": METRICS_VERSION,
                 "computed_at": timezone.now()}
    for lo in range(0, len(columns["session_id"]), BULK_BATCH_SIZE):
        arrays = {}
        for name, values in columns.items():
            part = np.asarray(values[lo:lo + BULK_BATCH_SIZE])
            element = elements[name]
            missing = np.isnan(part) if element in ("float8", "time") else None
            arrays[name] = (element, pg_bulk.binary_array(element, part, missing))
        pg_bulk.upsert(NightlyMetrics, arrays=arrays, constants=constants, conflict=["session"],
                       update=[*METRIC_FIELDS, "computed_at"])


def _clock_times(seconds: np.ndarray) -> list:
    """Whole seconds past midnight (NaN: none) -> datetime.time or None."""
    out = np.full(seconds.size, None, dtype=object)
    known = ~np.isnan(seconds)
    values, positions = np.unique(seconds[known].astype(np.int64), return_inverse=True)
    made = np.empty(values.size, dtype=object)
    made[:] = [time(s // 3600, s // 60 % 60, s % 60) for s in values.tolist()]
    out[known] = made[positions]
    return out.tolist()


def _python_values(field, values) -> list:
    """A column as the ORM takes it: None for NaN, datetime.time for clock fields."""
    kind = field.get_internal_type()
    if kind == "TimeField":
        return _clock_times(values)
    if kind == "FloatField":
        return [None if v != v else v for v in values.tolist()]  # NaN != NaN
    return np.asarray(values).tolist()


def _write_orm(organization, columns: dict) -> None:
    fields = [NightlyMetrics._meta.get_field(name) for name in columns]
    names = [f.attname for f in fields]
    values = [_python_values(f, column) for f, column in zip(fields, columns.values(), strict=True)]
    rows = [
        NightlyMetrics(organization=organization, metrics_version=METRICS_VERSION,
                       **dict(zip(names, row, strict=True)))
        for row in zip(*values, strict=True)
    ]
    NightlyMetrics.objects.bulk_create(
        rows,
        batch_size=BULK_BATCH_SIZE,
        update_conflicts=True,
        unique_fields=["session"],
        update_fields=[*METRIC_FIELDS, "computed_at"],
    )
