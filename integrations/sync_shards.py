"""One big connection's sync split across tasks, so every pool process works on it.

A sync task (integrations/sync.py ``connection_sync``) that finds at least
SYNC_SHARD_MIN_LINKS links takes the lease and creates the run as usual, then marks the run
as split into SYNC_SHARDS shards and hands each shard (the links whose pk mod the shard count
is its number) to a task of its own; the task that split it returns at once and holds no
pool slot. The lease stays held, by the run: every shard commits its pages fenced by the
run's lease token, exactly as an unsplit sync does, so what a shard wrote is never undone and
a stale shard (its run taken over after the lease expired) writes nothing.

- A shard that has paged all its links sets its bit in ``SyncRun.shards_done`` inside a
  fenced transaction; the one that completes the set records the success and releases the
  lease in that same transaction, so exactly one does it.
- A shard redelivered after its bit is set does nothing; one redelivered mid-way resumes from
  its links' committed cursors (reliability.md §1): no session is lost or written twice.
- A transient upstream or database fault: the shard task retries itself under the same lease
  (extended first). A rate limit, refused credentials, a permanent error or a shard out of
  retries ends the whole run, releases the lease, and the other shards stop at their next
  commit (their fencing fails). The connection's next_sync_at says when beat tries again.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from celery.exceptions import SoftTimeLimitExceeded
from django.db import InterfaceError, OperationalError, transaction
from django.db import connection as db_connection
from django.db.models import F
from django.utils import timezone

from .models import Connection, ConnectionStatus, ParticipantLink, SyncRun, SyncRunStatus
from .providers.errors import UpstreamAuthFailed, UpstreamError, UpstreamRateLimited
from .sync import (
    ZERO_COUNTS,
    LeaseLost,
    SyncOutcome,
    Untouched,
    _check_and_extend_lease,
    _credentials_replaced,
    connection_links,
    links_sync,
)

logger = logging.getLogger(__name__)


def _run_in_progress(connection_id: int, run_id: int) -> SyncRun | None:
    return SyncRun.objects.filter(pk=run_id, connection_id=connection_id, status=SyncRunStatus.RUNNING).first()


def run_end(
    *, connection_id: int, run_id: int, token: uuid.UUID, run_status: str, error: str, **connection_fields
) -> bool:
    """End a split run early (and release its lease) if it still holds the lease; whether it did."""
    try:
        with transaction.atomic():
            _check_and_extend_lease(connection_id, token)
            SyncRun.objects.filter(pk=run_id, status=SyncRunStatus.RUNNING).update(
                status=run_status, error=error[:300], finished_at=timezone.now()
            )
            Connection.objects.filter(pk=connection_id).update(
                lease_token=None, lease_expires_at=None, **connection_fields
            )
    except LeaseLost:
        return False
    return True


def lease_extend(*, connection_id: int, token: uuid.UUID) -> bool:
    """Before a shard's retry waits: keep the run's lease alive through the countdown."""
    try:
        with transaction.atomic():
            _check_and_extend_lease(connection_id, token)
    except LeaseLost:
        return False
    return True


def shard_sync(*, connection_id: int, run_id: int, token: str, shard: int) -> SyncOutcome:
    """Sync one shard of a split run. Never raises for upstream trouble: says what happened."""
    token = uuid.UUID(token)
    run = _run_in_progress(connection_id, run_id)
    if run is None or not run.shards or run.shards_done & (1 << shard):
        return SyncOutcome("duplicate", run_id)  # done, or the run ended
    connection = Connection.objects.select_related("organization").filter(pk=connection_id).first()
    if connection is None or connection.lease_token != token:
        return SyncOutcome("skipped", run_id)  # another attempt took over
    links = connection_links(connection, shard, run.shards)
    now = timezone.now
    try:
        idle = Untouched()
        counts = dict(ZERO_COUNTS)
        links_sync(connection, run, token, links, idle=idle, counts=counts, pipelined=True)
        with transaction.atomic():
            _check_and_extend_lease(connection_id, token)
            if idle.links:
                ParticipantLink.objects.filter(pk__in=idle.links).update(last_synced_at=now())
            SyncRun.objects.filter(pk=run_id).update(
                shards_done=F("shards_done").bitor(1 << shard),
                fetched=F("fetched") + idle.unchanged,
                unchanged=F("unchanged") + idle.unchanged,
            )
            done = SyncRun.objects.filter(pk=run_id).values_list("shards_done", flat=True).get()
            if done != (1 << run.shards) - 1:
                return SyncOutcome("shard_done", run_id, counts=counts)
            # The last shard: the run's success and the lease's release commit together.
            SyncRun.objects.filter(pk=run_id).update(status=SyncRunStatus.SUCCEEDED, finished_at=now(), error="")
            Connection.objects.filter(pk=connection_id).update(
                status=ConnectionStatus.ACTIVE,
                last_error="",
                last_synced_at=now(),
                next_sync_at=now() + connection.sync_interval,
                lease_token=None,
                lease_expires_at=None,
            )
        logger.info("sync done connection=%s run=%s (%d shards)", connection_id, run_id, run.shards)
        return SyncOutcome("succeeded", run_id, counts=counts)
    except LeaseLost:
        return SyncOutcome("skipped", run_id)  # the run ended or was taken over: nothing to record
    except UpstreamRateLimited as exc:
        run_end(
            connection_id=connection_id, run_id=run_id, token=token, run_status=SyncRunStatus.DEFERRED,
            error=f"rate limited: retry after {exc.retry_after:.0f}s",
            next_sync_at=now() + timedelta(seconds=exc.retry_after), last_error="rate limited",
        )
        return SyncOutcome("deferred", run_id, retry_after=exc.retry_after)
    except UpstreamAuthFailed:
        if _credentials_replaced(connection):
            # Rotated mid-run (T13): the new credentials were not refused; beat retries now.
            run_end(connection_id=connection_id, run_id=run_id, token=token, run_status=SyncRunStatus.FAILED,
                    error="credentials replaced during the sync", next_sync_at=now())
            return SyncOutcome("failed", run_id)
        run_end(
            connection_id=connection_id, run_id=run_id, token=token, run_status=SyncRunStatus.FAILED,
            error="credentials refused", status=ConnectionStatus.NEEDS_ATTENTION,
            last_error="credentials refused by the upstream",
        )
        return SyncOutcome("failed", run_id)
    except UpstreamError as exc:
        if exc.permanent:
            run_end(connection_id=connection_id, run_id=run_id, token=token, run_status=SyncRunStatus.FAILED,
                    error=type(exc).__name__, last_error=type(exc).__name__,
                    next_sync_at=now() + connection.sync_interval)
            return SyncOutcome("failed", run_id)
        return SyncOutcome("failed", run_id, transient=True)  # the task retries this shard
    except SoftTimeLimitExceeded:
        return SyncOutcome("failed", run_id, transient=True)  # committed pages stay; resume
    except (OperationalError, InterfaceError):
        db_connection.close_if_unusable_or_obsolete()  # the page in flight rolled back whole
        return SyncOutcome("failed", run_id, transient=True)
    except BaseException:
        run_end(connection_id=connection_id, run_id=run_id, token=token, run_status=SyncRunStatus.FAILED,
                error="internal error", next_sync_at=now() + connection.sync_interval)
        raise


def shard_give_up(*, connection_id: int, run_id: int, token: str) -> None:
    """A shard out of retries: the run failed; beat tries again at the next interval."""
    connection = Connection.objects.filter(pk=connection_id).only("sync_interval").first()
    if connection is None:
        return
    run_end(
        connection_id=connection_id, run_id=run_id, token=uuid.UUID(token), run_status=SyncRunStatus.FAILED,
        error="a shard ran out of retries", next_sync_at=timezone.now() + connection.sync_interval,
    )
