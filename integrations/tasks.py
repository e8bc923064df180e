"""Celery tasks of the integrations: thin wrappers around integrations.sync.

Tasks take ids, never model instances; they are idempotent (a redelivered sync finds the
lease held or re-upserts the same rows), acked late and requeued if their process dies
(config/settings/base.py). Retries: transient upstream faults back off exponentially with
jitter; a rate-limit wait longer than ``max_countdown_seconds()`` is never a Celery countdown
(Redis would redeliver it after the visibility timeout) but the connection's next_sync_at.
"""

import logging
import random
import uuid

from celery import shared_task
from django.utils import timezone

logger = logging.getLogger(__name__)

MAX_COUNTDOWN_SECONDS = 300
MAX_RETRIES = 5


def _backoff(retries: int) -> float:
    # Full jitter over 2^n seconds, capped (AWS architecture blog, "Exponential Backoff and Jitter").
    return random.uniform(1, min(MAX_COUNTDOWN_SECONDS, 2 ** (retries + 2)))


def max_countdown_seconds() -> float:
    """The longest countdown a retry may wait: MAX_COUNTDOWN_SECONDS, and less on Redis.

    A retry message is delivered at once and held, unacked, until its ETA; Redis redelivers
    it if it is still unacked a visibility timeout later, so waiting plus running (at most
    the hard time limit) must fit inside that timeout (reliability.md §1). 0: no countdown.
    """
    from django.conf import settings

    visibility_timeout = getattr(settings, "CELERY_VISIBILITY_TIMEOUT", None)
    if visibility_timeout is None:  # the filesystem broker has no visibility timeout
        return float(MAX_COUNTDOWN_SECONDS)
    return float(max(0, min(MAX_COUNTDOWN_SECONDS, visibility_timeout - settings.CELERY_TASK_TIME_LIMIT)))


def _queue_of(task) -> str | None:
    """The queue a task's message came from: the work it queues follows it (a deployment may
    route syncs apart)."""
    return (task.request.delivery_info or {}).get("routing_key") or None


@shared_task(bind=True, name="integrations.schedule_due_syncs", acks_late=False, time_limit=60, soft_time_limit=50)
def schedule_due_syncs_task(self) -> int:
    """Beat, every minute: enqueue a sync for each connection whose next_sync_at has passed;
    small connections in batches (integrations/sync_batch.py), the others one task each."""
    from .sync import due_connection_ids
    from .sync_batch import sync_plan

    queue = _queue_of(self)
    ids = due_connection_ids()
    singles, batches = sync_plan(ids)
    for connection_id in singles:
        sync_connection_task.apply_async(args=[connection_id], queue=queue)
    for batch in batches:
        sync_connections_task.apply_async(args=[batch], queue=queue)
    return len(ids)


@shared_task(bind=True, name="integrations.sync_connections", max_retries=MAX_RETRIES)
def sync_connections_task(self, connection_ids: list[int]) -> dict[str, int]:
    """A batch of small connections (integrations/sync_batch.py). A connection worth retrying
    soon gets a task of its own; a database fault in the batch's bookkeeping retries the batch
    (the connections it synced already are skipped)."""
    from django.db import InterfaceError, OperationalError
    from django.db import connection as db_connection

    from .sync_batch import connections_sync

    limit = max_countdown_seconds()
    try:
        outcome = connections_sync(connection_ids=connection_ids, task_id=self.request.id or "", max_countdown=limit)
    except (OperationalError, InterfaceError):
        db_connection.close_if_unusable_or_obsolete()
        if self.request.retries < self.max_retries:
            raise self.retry(countdown=min(_backoff(self.request.retries), limit)) from None
        raise
    queue = _queue_of(self)
    for connection_id, wait in outcome.retry:
        countdown = _backoff(0) if wait is None else wait + random.uniform(0, 1)
        sync_connection_task.apply_async(args=[connection_id], countdown=min(countdown, limit), queue=queue)
    return outcome.summary()


@shared_task(bind=True, name="integrations.sync_connection", max_retries=MAX_RETRIES)
def sync_connection_task(self, connection_id: int) -> str:
    from .models import Connection
    from .sync import connection_sync

    outcome = connection_sync(connection_id=connection_id, task_id=self.request.id or "")
    if outcome.status == "sharded":
        # A big connection: one task per shard, so every pool process takes part (sync_shards).
        # Shards go to the queue their sync came from (a deployment may route syncs apart).
        queue = _queue_of(self)
        for shard in outcome.shards:
            sync_connection_shard_task.apply_async(
                args=[connection_id, outcome.run_id, outcome.token, shard], queue=queue
            )
        return outcome.status
    can_retry = self.request.retries < self.max_retries
    limit = max_countdown_seconds()
    if outcome.status == "deferred" and outcome.retry_after is not None:
        wait = outcome.retry_after + random.uniform(0, 1)
        if wait <= limit and can_retry:
            raise self.retry(countdown=wait)
        return outcome.status  # next_sync_at already holds the long wait
    if outcome.status == "busy":
        # Our own message's earlier attempt holds the lease: look again when it expires, in
        # hops no longer than a countdown may be. Without a countdown, or out of retries, leave
        # it: the attempt is alive, or beat re-claims the connection after the lease.
        if limit > 0 and can_retry:
            raise self.retry(countdown=min(outcome.retry_after + random.uniform(0.5, 1.5), limit))
        return "skipped"
    if outcome.status == "failed" and outcome.transient:
        if can_retry:
            raise self.retry(countdown=min(_backoff(self.request.retries), limit))
        # Out of retries: beat tries again at the next interval.
        connection = Connection.objects.filter(pk=connection_id).only("sync_interval").first()
        if connection is not None:
            Connection.objects.filter(pk=connection_id).update(
                next_sync_at=timezone.now() + connection.sync_interval
            )
    return outcome.status


@shared_task(bind=True, name="integrations.sync_connection_shard", max_retries=MAX_RETRIES)
def sync_connection_shard_task(self, connection_id: int, run_id: int, token: str, shard: int) -> str:
    """One shard of a split run (integrations/sync_shards.py); retries itself under the run's lease."""
    from .sync_shards import lease_extend, shard_give_up, shard_sync

    outcome = shard_sync(connection_id=connection_id, run_id=run_id, token=token, shard=shard)
    if outcome.status == "failed" and outcome.transient:
        if self.request.retries < self.max_retries and lease_extend(
            connection_id=connection_id, token=uuid.UUID(token)
        ):
            raise self.retry(countdown=min(_backoff(self.request.retries), max_countdown_seconds()))
        shard_give_up(connection_id=connection_id, run_id=run_id, token=token)
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


# --- PSG scoring (integrations/psg.py) ----------------------------------------------------------
# Submit uploads a whole recording (up to PSG_MAX_UPLOAD_BYTES): it gets more time than the
# global limit, still far below the broker's visibility timeout. A poll is a few small calls.
PSG_SUBMIT_SOFT_TIME_LIMIT, PSG_SUBMIT_TIME_LIMIT = 840, 900
PSG_POLL_SOFT_TIME_LIMIT, PSG_POLL_TIME_LIMIT = 100, 120
PSG_SUBMIT_MAX_RETRIES = 8
# Poll countdowns: U-Sleep scores a night in a minute or two, so look early and often, then
# settle at the cap (Grand Challenge jobs may queue for a while).
PSG_POLL_COUNTDOWNS = (2, 5, 10, 20, 30, 60)
PSG_POLL_MAX_COUNTDOWN = 120
# About six hours of polling at the cap; then the recording fails as "scoring_timeout".
PSG_POLL_MAX_RETRIES = 180


def psg_poll_countdown(retries: int, retry_after: float | None = None) -> float:
    """Seconds before poll number ``retries + 1``: the schedule, then the cap; never sooner
    than the upstream asked, never longer than MAX_COUNTDOWN_SECONDS."""
    countdown = PSG_POLL_COUNTDOWNS[retries] if retries < len(PSG_POLL_COUNTDOWNS) else PSG_POLL_MAX_COUNTDOWN
    if retry_after is not None:
        countdown = max(countdown, retry_after)
    return float(min(countdown, MAX_COUNTDOWN_SECONDS))


def _psg_task_failure(self, exc, task_id, args, kwargs, einfo) -> None:
    """An unexpected error (or the soft time limit) ended a PSG task: record it."""
    from celery.exceptions import SoftTimeLimitExceeded

    from .psg import psg_recording_fail

    recording_id = args[0] if args else kwargs.get("recording_id")
    organization_id = args[1] if len(args) > 1 else kwargs.get("organization_id")
    if recording_id is not None:
        error = "timeout" if isinstance(exc, SoftTimeLimitExceeded) else "internal_error"
        psg_recording_fail(recording_id=recording_id, error=error, organization_id=organization_id)


@shared_task(
    bind=True,
    name="integrations.psg_submit",
    max_retries=PSG_SUBMIT_MAX_RETRIES,
    soft_time_limit=PSG_SUBMIT_SOFT_TIME_LIMIT,
    time_limit=PSG_SUBMIT_TIME_LIMIT,
    on_failure=_psg_task_failure,
)
def psg_submit_task(self, recording_id: int, organization_id: int | None = None) -> str:
    """Send a recording to its scorer, then hand over to psg_poll_task."""
    from .psg import PsgStep, psg_recording_fail, psg_recording_submit

    # organization_id scopes every lookup; None only in messages queued before it existed.
    outcome = psg_recording_submit(recording_id=recording_id, organization_id=organization_id)
    if outcome.step is PsgStep.SUBMITTED:
        # Also on a re-run after a crash between commit and enqueue: a second poll chain is
        # harmless (polls are idempotent), a missing one would strand the recording.
        psg_poll_task.apply_async(args=[recording_id, organization_id], countdown=psg_poll_countdown(0))
    elif outcome.step is PsgStep.RETRY or outcome.cleanup_pending:
        if self.request.retries < self.max_retries:
            wait = _backoff(self.request.retries)
            if outcome.retry_after is not None:
                wait = max(wait, min(outcome.retry_after, MAX_COUNTDOWN_SECONDS) + random.uniform(0, 1))
            raise self.retry(countdown=wait)
        if outcome.step is PsgStep.RETRY:
            outcome = psg_recording_fail(
                recording_id=recording_id,
                error=outcome.error or "upstream_unavailable",
                organization_id=organization_id,
            )
    return outcome.step.value


@shared_task(
    bind=True,
    name="integrations.psg_poll",
    max_retries=PSG_POLL_MAX_RETRIES,
    soft_time_limit=PSG_POLL_SOFT_TIME_LIMIT,
    time_limit=PSG_POLL_TIME_LIMIT,
    on_failure=_psg_task_failure,
)
def psg_poll_task(self, recording_id: int, organization_id: int | None = None) -> str:
    """One look at the scorer; re-run by ``retry(countdown=...)`` until it is done."""
    from .psg import PsgStep, psg_recording_fail, psg_recording_poll

    outcome = psg_recording_poll(recording_id=recording_id, organization_id=organization_id)
    if outcome.step in (PsgStep.PENDING, PsgStep.RETRY) or outcome.cleanup_pending:
        if self.request.retries < self.max_retries:
            raise self.retry(countdown=psg_poll_countdown(self.request.retries, outcome.retry_after))
        if outcome.step is PsgStep.PENDING:
            outcome = psg_recording_fail(
                recording_id=recording_id, error="scoring_timeout", organization_id=organization_id
            )
        elif outcome.step is PsgStep.RETRY:
            outcome = psg_recording_fail(
                recording_id=recording_id,
                error=outcome.error or "upstream_unavailable",
                organization_id=organization_id,
            )
    return outcome.step.value


@shared_task(name="integrations.psg_sweep_stranded", acks_late=False, time_limit=60, soft_time_limit=50)
def psg_sweep_stranded_task() -> int:
    """Beat: re-enqueue the next step of recordings whose task chain was lost (psg.py)."""
    from .psg import psg_stranded_claim

    claimed = psg_stranded_claim()
    for step, recording_id, organization_id in claimed:
        (psg_submit_task if step == "submit" else psg_poll_task).delay(recording_id, organization_id)
    return len(claimed)


@shared_task(bind=True, name="integrations.psg_upstream_delete", max_retries=MAX_RETRIES, time_limit=60, soft_time_limit=50)
def psg_upstream_delete_task(self, connection_id: int, session_name: str) -> str:
    """Delete the U-Sleep session of a recording deleted while it was being scored."""
    from .psg import PsgStep, usleep_orphan_delete

    outcome = usleep_orphan_delete(connection_id=connection_id, session_name=session_name)
    if outcome.step is PsgStep.RETRY and self.request.retries < self.max_retries:
        raise self.retry(countdown=_backoff(self.request.retries))
    return outcome.step.value
