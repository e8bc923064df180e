"""Pull the upstream's average stats per linked participant and store them as snapshots."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from analytics.models import UpstreamAverageStats

from .adapters import SYNC_RETRY_POLICY
from .models import Connection, ConnectionStatus, ParticipantLink
from .providers.asleep import AsleepClient
from .providers.errors import UpstreamAuthFailed, UpstreamError, UpstreamNotFound

logger = logging.getLogger(__name__)

# Dashboards compare the last four weeks; one Asleep call covers up to 100 days.
AVERAGE_STATS_WINDOW_DAYS = 28


def average_stats_pull(*, connection_id: int) -> int:
    """Store one snapshot per linked participant for the last window; returns snapshots written."""
    connection = Connection.objects.select_related("organization").get(pk=connection_id)
    if connection.provider != "asleep" or connection.status != ConnectionStatus.ACTIVE:
        return 0  # only Asleep publishes average stats
    end = timezone.localdate() - timedelta(days=1)
    start = end - timedelta(days=AVERAGE_STATS_WINDOW_DAYS - 1)
    links = ParticipantLink.objects.for_org(connection.organization).filter(connection=connection)
    written = 0
    with AsleepClient(connection.credentials.get("api_key", ""), base_url=connection.base_url,
                      allow_private=settings.UPSTREAM_ALLOW_PRIVATE) as client:
        client.retry_policy = SYNC_RETRY_POLICY
        for link in links.order_by("pk"):
            try:
                snapshots = client.average_stats(link.upstream_user_id, start_date=start, end_date=end)
            except UpstreamNotFound:
                continue
            except UpstreamAuthFailed:
                Connection.objects.filter(pk=connection.pk).update(
                    status=ConnectionStatus.NEEDS_ATTENTION, last_error="credentials refused by the upstream")
                raise
            with transaction.atomic():
                for snapshot in snapshots:
                    UpstreamAverageStats.objects.update_or_create(
                        organization=connection.organization, participant_id=link.participant_id,
                        provider=connection.provider, start_date=snapshot.start_date, end_date=snapshot.end_date,
                        defaults={"stats": snapshot.average_stats, "peculiarities": list(snapshot.peculiarities),
                                  "nights": len(snapshot.slept_session_ids)},
                    )
                    written += 1
    logger.info("average stats connection=%s snapshots=%d", connection_id, written)
    return written
