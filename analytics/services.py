"""Writes to the sleep store: upsert sessions in bulk and compute their nightly metrics.

Callers (the sync engine, PSG scoring, imports) hand over canonical records; this module
owns how they become rows. Everything here works on batches: one query to find what
exists, one bulk statement to write, one vectorized call to compute metrics.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import numpy as np
import pandas as pd
from django.db import transaction

from analytics.engine.metrics import night_metrics
from analytics.engine.nights import assign_night_dates, mark_main_sleep
from analytics.engine.scores import sleep_scores
from analytics.models import METRICS_VERSION, NightlyMetrics, SleepSession
from tenants.models import Organization

logger = logging.getLogger(__name__)

# Rows per bulk statement: large enough to amortise round trips, small enough that one
# statement stays well under PostgreSQL's parameter limit (65,535) with ~12 columns.
BULK_BATCH_SIZE = 2000
SESSION_UPDATE_FIELDS = [
    "start", "end", "timezone", "epoch_seconds", "stages", "upstream_stats",
    "upstream_updated_at", "content_hash", "updated_at",
]
METRIC_FIELDS = [
    f.name for f in NightlyMetrics._meta.concrete_fields
    if f.name not in ("session", "organization", "participant", "computed_at")
]


class CanonicalRecord(Protocol):
    """What a provider hands over (integrations.providers.base.CanonicalSession fits)."""

    provider: str
    upstream_id: str
    start: datetime
    end: datetime
    timezone: str
    epoch_seconds: int
    stages: bytes
    upstream_updated_at: datetime | None
    upstream_stats: dict


@dataclass
class StoreResult:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    session_ids: list[int] = field(default_factory=list)  # created or updated


@transaction.atomic
def sleep_sessions_upsert(
    *,
    organization: Organization,
    records: Sequence[tuple[int, CanonicalRecord, str]],
) -> StoreResult:
    """Insert new sessions, update changed ones, skip unchanged ones; then compute metrics.

    ``records`` holds (participant_id, record, content_hash). Participants must belong to
    ``organization`` (the caller resolved them inside it). A batch may repeat a key (an
    upstream revised a night between pages): the last occurrence wins, since one
    statement cannot touch a row twice.
    """
    latest: dict[tuple[int, str, str], tuple[int, CanonicalRecord, str]] = {}
    for participant_id, record, digest in records:
        latest[(participant_id, record.provider, record.upstream_id)] = (participant_id, record, digest)
    if not latest:
        return StoreResult()

    existing = _existing_hashes(organization, latest.keys())
    to_write, result = [], StoreResult()
    for key, (participant_id, record, digest) in latest.items():
        known = existing.get(key)
        if known == digest:
            result.unchanged += 1
            continue
        if known is None:
            result.created += 1
        else:
            result.updated += 1
        to_write.append(
            SleepSession(
                organization=organization,
                participant_id=participant_id,
                provider=record.provider,
                upstream_id=record.upstream_id,
                start=record.start,
                end=record.end,
                timezone=record.timezone,
                epoch_seconds=record.epoch_seconds,
                stages=bytes(record.stages),
                upstream_stats=record.upstream_stats,
                upstream_updated_at=record.upstream_updated_at,
                content_hash=digest,
            )
        )
    if to_write:
        # ON CONFLICT DO UPDATE: atomic even if another writer inserted the same night.
        SleepSession.objects.bulk_create(
            to_write,
            batch_size=BULK_BATCH_SIZE,
            update_conflicts=True,
            unique_fields=["participant", "provider", "upstream_id"],
            update_fields=SESSION_UPDATE_FIELDS,
        )
        written_keys = [(s.participant_id, s.provider, s.upstream_id) for s in to_write]
        result.session_ids = list(_session_ids(organization, written_keys).values())
        nightly_metrics_compute(organization=organization, session_ids=result.session_ids)
    return result


def _key_filter(keys: Iterable[tuple[int, str, str]]):
    """Query sessions by natural key: narrow by participant and upstream id, match exactly after."""
    keys = list(keys)
    return (
        {p for p, _, _ in keys},
        {u for _, _, u in keys},
        set(keys),
    )


def _existing_hashes(organization, keys) -> dict[tuple[int, str, str], str]:
    participants, upstream_ids, wanted = _key_filter(keys)
    found = {}
    rows = (
        SleepSession.objects.for_org(organization)
        .filter(participant_id__in=participants, upstream_id__in=upstream_ids)
        .values_list("participant_id", "provider", "upstream_id", "content_hash")
    )
    for participant_id, provider, upstream_id, digest in rows.iterator(chunk_size=5000):
        if (participant_id, provider, upstream_id) in wanted:
            found[(participant_id, provider, upstream_id)] = digest
    return found


def _session_ids(organization, keys) -> dict[tuple[int, str, str], int]:
    participants, upstream_ids, wanted = _key_filter(keys)
    rows = (
        SleepSession.objects.for_org(organization)
        .filter(participant_id__in=participants, upstream_id__in=upstream_ids)
        .values_list("participant_id", "provider", "upstream_id", "pk")
    )
    return {
        (p, prov, u): pk for p, prov, u, pk in rows.iterator(chunk_size=5000) if (p, prov, u) in wanted
    }


def _clock(local: pd.Series, offset_min: pd.Series) -> list:
    """Local clock time ``offset_min`` minutes after ``local``; None where the offset is NaN."""
    stamps = local + pd.to_timedelta(offset_min, unit="min")
    return [None if pd.isna(t) else t.to_pydatetime().time().replace(microsecond=0) for t in stamps]


@transaction.atomic
def nightly_metrics_compute(*, organization: Organization, session_ids: Sequence[int]) -> int:
    """(Re)compute NightlyMetrics for these sessions in one vectorized call; returns rows written.

    Also re-decides the main sleep of every (participant, night date) touched, since a new
    session can displace the previous main sleep of its date.
    """
    sessions = list(
        SleepSession.objects.for_org(organization)
        .filter(pk__in=list(session_ids))
        .select_related("participant")
        .only("pk", "participant_id", "start", "end", "timezone", "epoch_seconds", "stages",
              "participant__timezone")
        .order_by("pk")
    )
    if not sessions:
        return 0
    stages = [np.frombuffer(bytes(s.stages), dtype=np.int8) for s in sessions]
    lengths = np.fromiter((a.size for a in stages), dtype=np.int64, count=len(stages))
    epoch_seconds = np.fromiter((s.epoch_seconds for s in sessions), dtype=np.float64, count=len(sessions))
    ids = [s.pk for s in sessions]
    metrics = night_metrics(np.concatenate(stages), lengths, epoch_seconds, index=ids)

    # The night's zone: the participant's own if set, else the one the upstream reported.
    zones = pd.Series([s.participant.timezone or s.timezone for s in sessions], index=ids)
    nights = assign_night_dates(
        pd.Series([s.start for s in sessions], index=ids),
        pd.Series([s.end for s in sessions], index=ids),
        zones,
    )
    frame = metrics.join(nights)
    frame["participant_id"] = [s.participant_id for s in sessions]
    frame["start"] = pd.to_datetime([s.start for s in sessions], utc=True)
    frame["bedtime_local"] = _clock(frame["local_start"], pd.Series(0.0, index=frame.index))
    frame["wake_time_local"] = _clock(frame["local_end"], pd.Series(0.0, index=frame.index))
    frame["sleep_onset_local"] = _clock(frame["local_start"], frame["sleep_onset_offset_min"])
    frame["midsleep_local"] = _clock(frame["local_start"], frame["midsleep_offset_min"])
    scores = _scores(organization, frame, {s.participant_id: s.participant for s in sessions})
    frame = frame.join(scores[SCORE_COLUMNS])

    rows = []
    for session_id, row in zip(ids, frame.to_dict("records"), strict=True):
        values = {name: _db_value(row.get(name)) for name in METRIC_FIELDS if name in row}
        rows.append(
            NightlyMetrics(
                session_id=session_id,
                organization=organization,
                participant_id=row["participant_id"],
                metrics_version=METRICS_VERSION,
                is_main_sleep=True,  # settled below
                **values,
            )
        )
    NightlyMetrics.objects.bulk_create(
        rows,
        batch_size=BULK_BATCH_SIZE,
        update_conflicts=True,
        unique_fields=["session"],
        update_fields=[*METRIC_FIELDS, "computed_at"],
    )
    _settle_main_sleep(organization, frame[["participant_id", "night_date"]].drop_duplicates())
    return len(rows)


SCORE_COLUMNS = ["score", "score_duration", "score_efficiency", "score_continuity", "score_depth",
                 "score_regularity"]
# The timing-regularity component compares a night with the person's previous 14 nights.
SCORE_HISTORY_DAYS = 15


def _minutes_past_midnight(values) -> pd.Series:
    return pd.Series([np.nan if v is None else v.hour * 60 + v.minute + v.second / 60 for v in values])


def _scores(organization, frame: pd.DataFrame, participants: dict) -> pd.DataFrame:
    """Score the batch's nights with their participants' recent history in one call."""
    batch = pd.DataFrame({
        "participant_id": frame["participant_id"],
        "night_date": frame["night_date"],
        "is_nap": frame["is_nap"],
        "tst_min": frame["tst_min"], "se_pct": frame["se_pct"], "waso_min": frame["waso_min"],
        "awakenings_5min": frame["awakenings_5min"], "n3_min": frame["n3_min"], "rem_min": frame["rem_min"],
        "stages_resolved": (frame["n1_min"] + frame["n2_min"] + frame["n3_min"] + frame["rem_min"]) > 0,
        "bedtime_local": frame["local_start"].dt.hour * 60 + frame["local_start"].dt.minute,
        "midsleep_local": _minutes_past_midnight(frame["midsleep_local"]).to_numpy(),
    }, index=frame.index)
    start = min(batch["night_date"]) - pd.Timedelta(days=SCORE_HISTORY_DAYS)
    history_rows = list(
        NightlyMetrics.objects.for_org(organization)
        .filter(participant_id__in=batch["participant_id"].unique().tolist(), is_nap=False, is_main_sleep=True,
                night_date__gte=start, night_date__lte=max(batch["night_date"]))
        .exclude(session_id__in=batch.index.tolist())
        .values("session_id", "participant_id", "night_date", "bedtime_local", "midsleep_local", "tst_min")
    )
    if history_rows:
        history = pd.DataFrame(history_rows).set_index("session_id")
        history["bedtime_local"] = _minutes_past_midnight(history["bedtime_local"]).to_numpy()
        history["midsleep_local"] = _minutes_past_midnight(history["midsleep_local"]).to_numpy()
        history["is_nap"] = False
        combined = pd.concat([history, batch])
    else:
        combined = batch
    this_year = pd.Timestamp.now().year
    ages = {pid: (this_year - p.birth_year) if p.birth_year else np.nan for pid, p in participants.items()}
    combined["age_years"] = combined["participant_id"].map(ages)
    weights = organization.score_weights or None
    return sleep_scores(combined, weights=weights).loc[batch.index]


def _db_value(value):
    if isinstance(value, float) and np.isnan(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def _settle_main_sleep(organization, touched: pd.DataFrame) -> None:
    """Mark exactly one main sleep per touched (participant, night date)."""
    if touched.empty:
        return
    rows = pd.DataFrame.from_records(
        NightlyMetrics.objects.for_org(organization)
        .filter(
            participant_id__in=touched["participant_id"].unique().tolist(),
            night_date__in=touched["night_date"].unique().tolist(),
        )
        .values("session_id", "participant_id", "night_date", "is_nap", "tib_min", "session__start",
                "is_main_sleep"),
        columns=["session_id", "participant_id", "night_date", "is_nap", "tib_min", "session__start",
                 "is_main_sleep"],
    )
    if rows.empty:
        return
    rows = rows.merge(touched, on=["participant_id", "night_date"])  # only the touched pairs
    rows = rows.rename(columns={"session__start": "start"})
    main = mark_main_sleep(rows)
    change_to_true = rows.loc[main & ~rows["is_main_sleep"], "session_id"].tolist()
    change_to_false = rows.loc[~main & rows["is_main_sleep"], "session_id"].tolist()
    if change_to_true:
        NightlyMetrics.objects.for_org(organization).filter(session_id__in=change_to_true).update(is_main_sleep=True)
    if change_to_false:
        NightlyMetrics.objects.for_org(organization).filter(session_id__in=change_to_false).update(is_main_sleep=False)
