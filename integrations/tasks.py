"""Celery tasks of the integrations: thin wrappers around integrations.sync.

Tasks take ids, never model instances; they are idempotent (a redelivered sync finds the
lease held or re-upserts the same rows), acked late and requeued if their process dies
(config/settings/base.py). Retries: transient upstream faults back off exponentially with
jitter; a rate-limit wait longer than MAX_COUNTDOWN_SECONDS is never a Celery countdown
(Redis would redeliver it after the visibility timeout) but the connection's next_sync_at.
"""

import logging
import random

from celery import shared_task
from django.utils import timezone

logger = logging.getLogger(__name__)

MAX_COUNTDOWN_SECONDS = 300
MAX_RETRIES = 5


def _backoff(retries: int) -> float:
    # Full jitter over 2^n seconds, capped (AWS architecture blog, "Exponential Backoff and Jitter").
    return random.uniform(1, min(MAX_COUNTDOWN_SECONDS, 2 ** (retries + 2)))


@shared_task(name="integrations.schedule_due_syncs", acks_late=False, time_limit=60, soft_time_limit=50)
def schedule_due_syncs_task() -> int:
    """Beat, every minute: enqueue a sync for each connection whose next_sync_at has passed."""
    from .sync import due_connection_ids

    ids = due_connection_ids()
    for connection_id in ids:
        sync_connection_task.delay(connection_id)
    return len(ids)


@shared_task(bind=True, name="integrations.sync_connection", max_retries=MAX_RETRIES)
def sync_connection_task(self, connection_id: int) -> str:
    from .models import Connection
    from .sync import connection_sync

    outcome = connection_sync(connection_id=connection_id, task_id=self.request.id or "")
    if outcome.status == "deferred" and outcome.retry_after is not None:
        if outcome.retry_after <= MAX_COUNTDOWN_SECONDS and self.request.retries < self.max_retries:
            raise self.retry(countdown=outcome.retry_after + random.uniform(0, 1))
        return outcome.status  # next_sync_at already holds the long wait
    if outcome.status == "failed" and outcome.transient:
        if self.request.retries < self.max_retries:
            raise self.retry(countdown=_backoff(self.request.retries))
        # Out of retries: beat tries again at the next interval.
        connection = Connection.objects.filter(pk=connection_id).only("sync_interval").first()
        if connection is not None:
            Connection.objects.filter(pk=connection_id).update(
                next_sync_at=timezone.now() + connection.sync_interval
            )
    return outcome.status


@shared_task(name="integrations.schedule_average_stats", acks_late=False, time_limit=60, soft_time_limit=50)
def schedule_average_stats_task() -> int:
    """Beat, daily: one average-stats pull per active Asleep connection."""
    from .models import Connection, ConnectionStatus

    ids = list(Connection.objects.filter(provider="asleep", status=ConnectionStatus.ACTIVE).values_list("pk", flat=True))
    for connection_id in ids:
        pull_average_stats_task.delay(connection_id)
    return len(ids)


@shared_task(bind=True, name="integrations.pull_average_stats", max_retries=MAX_RETRIES)
def pull_average_stats_task(self, connection_id: int) -> int:
    from .average_stats import average_stats_pull
    from .providers.errors import UpstreamError

    try:
        return average_stats_pull(connection_id=connection_id)
    except UpstreamError as exc:
        if exc.permanent or self.request.retries >= self.max_retries:
            return 0
        retry_after = getattr(exc, "retry_after", None) or _backoff(self.request.retries)
        # Snapshots are idempotent upserts: a retry simply writes them again.
        raise self.retry(countdown=min(retry_after, MAX_COUNTDOWN_SECONDS)) from None
