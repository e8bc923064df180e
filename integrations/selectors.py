"""Reads of the integrations tables for the dashboard: enrollment, sync health, PSG recordings.

Aggregated in the database (a fixed number of queries whatever the number of participants
or runs); every read is scoped with ``for_org``.
"""

from __future__ import annotations

import datetime as dt

from django.db.models import Count, IntegerField, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from tenants.models import Organization, Participant

from .models import (
    PSG_PROVIDERS,
    Connection,
    ConnectionStatus,
    ParticipantLink,
    PsgRecording,
    PsgStatus,
    QuarantinedRecord,
    SyncRun,
    SyncRunStatus,
)

# "Syncing" = linked to a connection whose sync reached this participant in the last N days.
SYNCING_WITHIN_DAYS = 3
# Sync health counts failures over this window.
SYNC_FAILURE_WINDOW_DAYS = 7


def enrollment_counts(organization: Organization) -> dict:
    """Participants enrolled, linked to a connection, and synced within SYNCING_WITHIN_DAYS. Two queries."""
    since = timezone.now() - dt.timedelta(days=SYNCING_WITHIN_DAYS)
    links = ParticipantLink.objects.for_org(organization).aggregate(
        linked=Count("participant", distinct=True),
        syncing=Count("participant", distinct=True, filter=Q(last_synced_at__gte=since)),
    )
    return {
        "enrolled": Participant.objects.for_org(organization).count(),
        "linked": links["linked"],
        "syncing": links["syncing"],
        "syncing_within_days": SYNCING_WITHIN_DAYS,
    }



# --- sync health ----------------------------------------------------------------------------
def _count_subquery(queryset) -> Coalesce:
    counted = queryset.order_by().values("connection").annotate(n=Count("pk")).values("n")
    return Coalesce(Subquery(counted, output_field=IntegerField()), Value(0))


def sync_health(organization: Organization) -> list[dict]:
    """Each connection with its last SyncRun, recent failures, quarantined records, links. One query."""
    since = timezone.now() - dt.timedelta(days=SYNC_FAILURE_WINDOW_DAYS)
    last_run = SyncRun.objects.filter(connection=OuterRef("pk")).order_by("-started_at", "-pk")
    connections = (
        Connection.objects.for_org(organization)
        .annotate(
            last_run_status=Subquery(last_run.values("status")[:1]),
            last_run_started=Subquery(last_run.values("started_at")[:1]),
            last_run_finished=Subquery(last_run.values("finished_at")[:1]),
            last_run_error=Subquery(last_run.values("error")[:1]),
            failures=_count_subquery(
                SyncRun.objects.filter(connection=OuterRef("pk"), status=SyncRunStatus.FAILED, started_at__gte=since)
            ),
            quarantined=_count_subquery(QuarantinedRecord.objects.filter(connection=OuterRef("pk"))),
            linked_people=_count_subquery(ParticipantLink.objects.filter(connection=OuterRef("pk"))),
        )
        .order_by("name", "pk")
        .values(
            "uuid", "name", "provider", "status", "last_error", "last_synced_at", "next_sync_at",
            "last_run_status", "last_run_started", "last_run_finished", "last_run_error",
            "failures", "quarantined", "linked_people",
        )
    )
    out = []
    for row in connections:
        reasons = []
        if row["status"] == ConnectionStatus.NEEDS_ATTENTION:
            reasons.append("The upstream refused the credentials: update them and test the connection.")
        if row["last_run_status"] == SyncRunStatus.FAILED:
            reasons.append("The last sync failed" + (f" ({row['last_run_error']})." if row["last_run_error"] else "."))
        if row["quarantined"]:
            reasons.append(f"{row['quarantined']} record(s) could not be read and were set aside.")
        out.append({
            **row,
            "status_label": ConnectionStatus(row["status"]).label,
            "last_run_label": SyncRunStatus(row["last_run_status"]).label if row["last_run_status"] else "never run",
            "needs_attention": bool(reasons) and (
                row["status"] == ConnectionStatus.NEEDS_ATTENTION or row["last_run_status"] == SyncRunStatus.FAILED
            ),
            "reasons": reasons,
        })
    return out




# --- PSG recordings ------------------------------------------------------------------------------
# How far along a recording is, for progress bars (status -> percent). Scoring has no finer
# progress upstream: these are the steps of integrations/psg.py.
PSG_PROGRESS = {
    PsgStatus.UPLOADED: 10, PsgStatus.SUBMITTED: 35, PsgStatus.SCORING: 70, PsgStatus.COMPLETED: 100,
    PsgStatus.FAILED: 100,
}
PSG_RECENT = 10


def psg_recordings_of(participant: Participant) -> list[dict]:
    """The participant's latest PSG recordings with status and progress. One query."""
    rows = (
        PsgRecording.objects.for_org(participant.organization)
        .filter(participant=participant)
        .order_by("-created_at", "-pk")
        .values("uuid", "created_at", "status", "error", "edf_duration_seconds", "connection__name",
                "sleep_session__uuid")[:PSG_RECENT]
    )
    return [
        {**row, "status_label": PsgStatus(row["status"]).label, "progress": PSG_PROGRESS.get(row["status"], 0),
         "failed": row["status"] == PsgStatus.FAILED, "hours": round(row["edf_duration_seconds"] / 3600, 1)}
        for row in rows
    ]


def psg_scorers(organization: Organization) -> list[Connection]:
    """Connections of the organization that score PSG recordings (U-Sleep, Grand Challenge)."""
    return list(Connection.objects.for_org(organization).filter(provider__in=PSG_PROVIDERS).order_by("name", "pk"))
