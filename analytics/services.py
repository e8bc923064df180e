"""Writes to the sleep store: upsert sessions in bulk and compute their nightly metrics.

Callers (the sync engine, PSG scoring, imports) hand over canonical records; this module
owns how they become rows. Everything here works on batches: one query to find what
exists, one bulk statement to write, one vectorized call to compute metrics
(``analytics.metrics_store``), which takes the written sessions from memory. On
PostgreSQL the bulk statements go through ``analytics.pg_bulk`` (one array parameter per
column) instead of ``bulk_create``, which cost more CPU per session than the metrics.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from django.db import connection, transaction
from django.utils import timezone

from analytics import pg_bulk
from analytics.metrics_store import BULK_BATCH_SIZE, SessionColumns, nightly_metrics_store
from analytics.models import SleepSession
from tenants.models import Organization

logger = logging.getLogger(__name__)

SESSION_UPDATE_FIELDS = [
    "start", "end", "timezone", "epoch_seconds", "stages", "upstream_stats",
    "upstream_updated_at", "content_hash", "updated_at",
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
        to_write.append((participant_id, record, digest))
    if not to_write:
        return result
    # ON CONFLICT DO UPDATE: atomic even if another writer inserted the same night.
    if connection.vendor == "postgresql":
        result.session_ids = _sessions_write_postgresql(organization, to_write)
    else:
        result.session_ids = _sessions_write_orm(organization, to_write)
    # The metrics read the sessions just written from memory, not back from the database.
    records = [record for _, record, _ in to_write]
    sessions = SessionColumns(
        ids=result.session_ids,
        participant_ids=[participant_id for participant_id, _, _ in to_write],
        starts=[r.start for r in records],
        ends=[r.end for r in records],
        timezones=[r.timezone for r in records],
        epoch_seconds=[r.epoch_seconds for r in records],
        stages=[bytes(r.stages) for r in records],
    )
    nightly_metrics_store(organization=organization, sessions=sessions)
    return result


def _sessions_write_orm(organization, to_write) -> list[int]:
    """Upsert through bulk_create; returns the session ids in ``to_write`` order."""
    sessions = [
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
        for participant_id, record, digest in to_write
    ]
    SleepSession.objects.bulk_create(
        sessions,
        batch_size=BULK_BATCH_SIZE,
        update_conflicts=True,
        unique_fields=["participant", "provider", "upstream_id"],
        update_fields=SESSION_UPDATE_FIELDS,
    )
    if any(s.pk is None for s in sessions):  # a database without INSERT ... RETURNING
        keys = [(s.participant_id, s.provider, s.upstream_id) for s in sessions]
        ids = _session_ids(organization, keys)
        return [ids[key] for key in keys]
    return [s.pk for s in sessions]


def _sessions_write_postgresql(organization, to_write) -> list[int]:
    """The same upsert as one unnest() statement per BULK_BATCH_SIZE sessions (pg_bulk).

    Returns the session ids in ``to_write`` order. Writes every SleepSession field: keep
    it in step with the model (tests/unit/analytics/test_store_sessions.py checks).
    """
    stats_field = SleepSession._meta.get_field("upstream_stats")
    ids: dict[tuple[int, str, str], int] = {}
    now = timezone.now()  # auto_now_add / auto_now, as bulk_create sets them
    for lo in range(0, len(to_write), BULK_BATCH_SIZE):
        part = to_write[lo:lo + BULK_BATCH_SIZE]
        records = [record for _, record, _ in part]
        # The JSONField's own adaptation: the same jsonb as bulk_create stores.
        stats = [stats_field.get_db_prep_save(r.upstream_stats, connection) for r in records]
        people = pg_bulk.binary_array("int8", [participant_id for participant_id, _, _ in part])
        epochs = pg_bulk.binary_array("int8", [r.epoch_seconds for r in records])
        rows = pg_bulk.upsert(
            SleepSession,
            arrays={
                "participant": ("int8", people),
                "provider": ("text", [r.provider for r in records]),
                "upstream_id": ("text", [r.upstream_id for r in records]),
                "start": ("timestamptz", [r.start for r in records]),
                "end": ("timestamptz", [r.end for r in records]),
                "timezone": ("text", [r.timezone for r in records]),
                "epoch_seconds": ("int8", epochs),
                "stages": ("bytea", [bytes(r.stages) for r in records]),
                "upstream_stats": ("jsonb", stats),
                "upstream_updated_at": ("timestamptz", [r.upstream_updated_at for r in records]),
                "content_hash": ("text", [digest for _, _, digest in part]),
            },
            constants={"organization": organization.pk, "created_at": now, "updated_at": now},
            # The model's default (uuid4) drawn by the server, only for rows actually inserted.
            expressions={"uuid": "gen_random_uuid()"},
            conflict=["participant", "provider", "upstream_id"],
            update=SESSION_UPDATE_FIELDS,
            returning=["participant", "provider", "upstream_id", "id"],
        )
        ids.update({(p, provider, u): pk for p, provider, u, pk in rows})
    return [ids[(p, r.provider, r.upstream_id)] for p, r, _ in to_write]


def sleep_sessions_unchanged(
    *, organization: Organization, records: Sequence[tuple[int, CanonicalRecord, str]]
) -> bool:
    """Whether every record is stored already with the same content: an upsert would write nothing.

    One read, no transaction: a re-sync that finds its nights unchanged opens none.
    """
    if not records:
        return True
    wanted = {
        (participant_id, record.provider, record.upstream_id): digest for participant_id, record, digest in records
    }
    return _existing_hashes(organization, wanted.keys()) == wanted


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
    for participant_id, provider, upstream_id, digest in rows:
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


@transaction.atomic
def nightly_metrics_compute(*, organization: Organization, session_ids: Sequence[int]) -> int:
    """(Re)compute NightlyMetrics for these sessions in one vectorized call; returns rows written.

    Also re-decides the main sleep of every (participant, night date) touched, since a new
    session can displace the previous main sleep of its date.
    """
    rows = list(
        SleepSession.objects.for_org(organization)
        .filter(pk__in=list(session_ids))
        .values_list("pk", "participant_id", "start", "end", "timezone", "epoch_seconds", "stages")
    )
    if not rows:
        return 0
    ids, participant_ids, starts, ends, zones, epoch_seconds, stages = zip(*rows, strict=True)
    sessions = SessionColumns(
        ids=ids, participant_ids=participant_ids, starts=starts, ends=ends, timezones=zones,
        epoch_seconds=epoch_seconds, stages=[bytes(s) for s in stages],
    )
    return nightly_metrics_store(organization=organization, sessions=sessions)
