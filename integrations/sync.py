"""The sync engine: pull one connection's nights into the sleep store, exactly once.

Guarantees (shared/reliability.md §2, §7 "EXACT"):
- One sync per connection at a time: a lease row-claim (conditional UPDATE) that expires
  if its worker dies. Every page commit re-checks the lease token inside its transaction
  (fencing), so a stale attempt whose lease was taken over cannot write.
- A page's sessions, its quarantined records and the link's cursor commit in one
  transaction: the cursor never moves ahead of committed data, and a crash between pages
  loses nothing (the next attempt resumes from the last committed cursor). On a connection
  of many links, pages are fetched ahead by a thread and committed in groups
  (sync_pipeline.py): one transaction may carry the pages of several links, each with its
  cursor, so the fixed cost of a commit (the vectorized metrics call) is paid once per group,
  not once per participant.
- Upserts are keyed by (participant, provider, upstream id) with a content hash: re-running
  a sync, a retry or a redelivered task never duplicates, and unchanged nights write nothing.
- A malformed record is quarantined with its reason; the good records beside it land.
- Redelivery is expected (reliability.md §1): a copy of a message whose sync already succeeded
  exits at once; a copy that finds its own message's attempt holding the lease (still running
  past the visibility timeout, or dead with the lease) says "busy" and comes back once that
  lease is released or expires. Whoever takes a lease marks the runs left "running" by dead or
  fenced-out attempts as failed, and a run is recorded as succeeded only under the lease.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import InterfaceError, OperationalError, transaction
from django.db import connection as db_connection
from django.db.models import F, Q
from django.db.models.functions import Mod
from django.utils import timezone

from analytics.services import sleep_sessions_unchanged, sleep_sessions_upsert

from .adapters import adapter_for, fetch_links, http_concurrency
from .models import Connection, ConnectionStatus, ParticipantLink, QuarantinedRecord, SyncRun, SyncRunStatus
from .providers.base import Page, content_hash
from .providers.errors import UpstreamAuthFailed, UpstreamError, UpstreamRateLimited
from .sync_pipeline import FetchedPage, PageFetcher

logger = logging.getLogger(__name__)


class LeaseLost(Exception):
    """Another attempt took over this connection's lease: stop without writing."""


@dataclass
class SyncOutcome:
    # "succeeded" | "failed" | "deferred" | "skipped" | "busy" | "duplicate" | "sharded"
    # (sync_shards: "shard_done")
    status: str
    run_id: int | None = None
    # "deferred": seconds the upstream asked us to wait; "busy": until the lease expires.
    retry_after: float | None = None
    transient: bool = False  # for "failed": worth retrying soon
    counts: dict = field(default_factory=dict)
    # "sharded": the shards still to run, and the lease token they write under.
    shards: tuple[int, ...] = ()
    token: str = ""


# Throughput knobs (settings override them): at most this many records per commit; this many
# pages fetched ahead of the commits (memory stays bounded: pages stream through), for
# connections of at least SYNC_PIPELINE_MIN_LINKS links.
SYNC_DEFAULTS = {
    "SYNC_COMMIT_SESSIONS": 2000,
    "SYNC_FETCH_AHEAD_PAGES": 16,
    "SYNC_PIPELINE_MIN_LINKS": 50,
    # A connection of at least this many links is split into SYNC_SHARDS tasks (sync_shards).
    "SYNC_SHARD_MIN_LINKS": 200,
    "SYNC_SHARDS": 2,
}
ZERO_COUNTS = {"fetched": 0, "created": 0, "updated": 0, "unchanged": 0, "quarantined": 0}


def _setting(name: str) -> int:
    return int(getattr(settings, name, SYNC_DEFAULTS[name]))


def lease_seconds() -> int:
    # Longer than the hard task time limit, so a live task never loses its lease to a timer.
    return settings.SYNC_LEASE_SECONDS


def lease_acquire(connection_id: int, token: uuid.UUID) -> bool:
    now = timezone.now()
    claimed = Connection.objects.filter(
        Q(lease_token__isnull=True) | Q(lease_expires_at__lt=now), pk=connection_id
    ).update(lease_token=token, lease_expires_at=now + timedelta(seconds=lease_seconds()))
    return claimed == 1


def lease_release(connection_id: int, token: uuid.UUID) -> None:
    Connection.objects.filter(pk=connection_id, lease_token=token).update(lease_token=None, lease_expires_at=None)


@dataclass(frozen=True)
class LeaseHolder:
    task_id: str
    seconds_left: float
    run: SyncRun


def _lease_holder(connection_id: int) -> LeaseHolder | None:
    """The attempt holding the lease (its task, the seconds until the lease expires, its run).

    An attempt's SyncRun carries its lease token as ``uuid``.
    """
    held = Connection.objects.filter(pk=connection_id, lease_token__isnull=False).values_list(
        "lease_token", "lease_expires_at"
    ).first()
    if held is None:
        return None
    run = SyncRun.objects.filter(uuid=held[0]).first()
    if run is None:
        return None
    return LeaseHolder(run.task_id, max(0.0, (held[1] - timezone.now()).total_seconds()), run)


def pending_shards(run: SyncRun) -> tuple[int, ...]:
    return tuple(k for k in range(run.shards) if not run.shards_done & (1 << k))


def shard_count(links: int) -> int:
    """Tasks a connection of this many links is split into (1: not split)."""
    if links < _setting("SYNC_SHARD_MIN_LINKS"):
        return 1
    return max(1, min(16, _setting("SYNC_SHARDS"), links))


def _fail_stale_runs(connection_id: int) -> int:
    """Right after taking the lease: runs still "running" belong to attempts that lost it."""
    return _fail_stale_runs_of([connection_id])


def _fail_stale_runs_of(connection_ids: list[int]) -> int:
    return SyncRun.objects.filter(connection_id__in=connection_ids, status=SyncRunStatus.RUNNING).update(
        status=SyncRunStatus.FAILED,
        finished_at=timezone.now(),
        error="attempt lost: worker died or lease expired",
    )


def _check_and_extend_lease(connection_id: int, token: uuid.UUID) -> None:
    """Inside a transaction: lock the connection row and prove we still hold the lease."""
    extended = Connection.objects.filter(pk=connection_id, lease_token=token).update(
        lease_expires_at=timezone.now() + timedelta(seconds=lease_seconds())
    )
    if extended != 1:
        raise LeaseLost()


@dataclass
class Untouched:
    """Pages of an attempt that wrote nothing, having nothing new: their links, which the
    attempt's end stamps as synced, and their unchanged nights, which no page commit added to
    the run's counts."""

    links: set[int] = field(default_factory=set)
    unchanged: int = 0


def _commit_pages(
    connection: Connection,
    run: SyncRun,
    fetched: list[FetchedPage],
    token: uuid.UUID,
    idle: Untouched | None = None,
) -> dict:
    """Commit pages of one or more links in one transaction: their sessions (one upsert, one
    vectorized metrics call), quarantined records, the run's counts and each link's cursor.

    Pages that bring nothing new (every night stored with the same content hash, no
    quarantined record) and leave their cursors where they are (a re-sync of unchanged data)
    write nothing: ``idle`` keeps their links, whose last_synced_at the attempt's end stamps,
    and their unchanged nights, so an unchanged connection costs one commit, not one per link.
    """
    records = [(f.link.participant_id, item, content_hash(item)) for f in fetched for item in f.page.items]
    quarantined = [bad for f in fetched for bad in f.page.quarantined]
    cursors: dict[int, object] = {}  # link pk -> its newest cursor in this batch, if any moved
    for f in fetched:
        if f.page.next_cursor is not None:
            cursors[f.link.pk] = f.page.next_cursor
    links = {f.link.pk: f.link for f in fetched}
    if (
        idle is not None
        and not quarantined
        and all(links[pk].cursor == cursor for pk, cursor in cursors.items())
        and sleep_sessions_unchanged(organization=connection.organization, records=records)
    ):
        # Nothing new (Asleep's lookback re-reads, an empty Beddit answer): no transaction.
        idle.links.update(links)
        idle.unchanged += len(records)
        return {**ZERO_COUNTS, "fetched": len(records), "unchanged": len(records)}
    with transaction.atomic():
        _check_and_extend_lease(connection.pk, token)
        result = sleep_sessions_upsert(organization=connection.organization, records=records)
        counts = {
            "fetched": len(records) + len(quarantined),
            "created": result.created,
            "updated": result.updated,
            # Includes in-batch repeats of one night, so fetched = created + updated + unchanged + quarantined.
            "unchanged": len(records) - result.created - result.updated,
            "quarantined": len(quarantined),
        }
        # The run's counts move with its pages: an attempt that dies still shows what it wrote.
        SyncRun.objects.filter(pk=run.pk).update(**{name: F(name) + n for name, n in counts.items()})
        QuarantinedRecord.objects.bulk_create(
            [
                QuarantinedRecord(
                    organization_id=connection.organization_id,
                    connection=connection,
                    sync_run=run,
                    upstream_id=(bad.upstream_id or "")[:128],
                    reason=bad.reason[:500],
                    payload=bad.payload,
                )
                for bad in quarantined
            ]
        )
        synced_at = timezone.now()
        for link_pk, cursor in cursors.items():
            ParticipantLink.objects.filter(pk=link_pk).update(cursor=cursor, last_synced_at=synced_at)
        unmoved = links.keys() - cursors.keys()
        if unmoved:
            ParticipantLink.objects.filter(pk__in=unmoved).update(last_synced_at=synced_at)
    for link_pk, cursor in cursors.items():
        links[link_pk].cursor = cursor  # what the database now holds: the next page compares to it
    if idle is not None:
        idle.links.difference_update(links)
    return counts


def _credentials_replaced(connection: Connection) -> bool:
    """Whether the stored credentials differ from those this attempt loaded (and used)."""
    current = Connection.objects.filter(pk=connection.pk).first()
    return current is not None and current.credentials != connection.credentials


def _finish(run: SyncRun, status: str, counts: dict, error: str = "") -> None:
    for name, value in counts.items():
        setattr(run, name, value)
    run.status = status
    run.error = error[:300]
    run.finished_at = timezone.now()
    run.save()


def connection_links(connection: Connection, shard: int = 0, shards: int = 1) -> list[ParticipantLink]:
    """The connection's links in pk order; with ``shards``, those of one shard (pk mod shards)."""
    links = ParticipantLink.objects.for_org(connection.organization).filter(connection=connection)
    if shards > 1:
        links = links.alias(shard=Mod("pk", shards)).filter(shard=shard)
    return list(links.order_by("pk"))


def links_sync(
    connection: Connection, run: SyncRun, token: uuid.UUID, links: list[ParticipantLink], *, idle: Untouched,
    counts: dict, pipelined: bool | None = None,
) -> None:
    """Page through ``links`` and commit their nights under the lease, adding to ``counts`` as
    each commit lands (so an attempt that fails midway still reports what it wrote).

    Pages are fetched by threads and committed here (sync_pipeline). A connection of many
    links fetches ahead and commits the pages waiting in groups; one of a few links runs in
    lockstep, one request at a time, each page committed before the next request (what the
    fault tests' request arithmetic relies on).
    """
    if pipelined is None:
        pipelined = len(links) >= _setting("SYNC_PIPELINE_MIN_LINKS")
    with adapter_for(connection) as adapter:
        ahead, threads = 0, 1
        if pipelined:
            ahead, threads = _setting("SYNC_FETCH_AHEAD_PAGES"), fetch_links()
            adapter.concurrency = http_concurrency()
        with PageFetcher(adapter, links, max_pages=ahead, threads=threads) as fetcher:
            fetched_commit(connection, run, token, fetcher, idle=idle, counts=counts)


def fetched_commit(
    connection: Connection, run: SyncRun, token: uuid.UUID, fetcher: PageFetcher, *, idle: Untouched, counts: dict
) -> None:
    """Commit the pages ``fetcher`` hands over, in groups, under the lease; raises what it raises."""
    for batch in fetcher.batches(_setting("SYNC_COMMIT_SESSIONS")):
        for name, value in _commit_pages(connection, run, batch, token, idle).items():
            counts[name] += value


def attempt_failed(connection: Connection, run: SyncRun, counts: dict, exc: BaseException) -> SyncOutcome | None:
    """Record how an attempt that raised ``exc`` ended (its run, the connection's state) and
    say what happened; None for an unexpected error, recorded as internal (re-raise it)."""
    now = timezone.now
    if isinstance(exc, LeaseLost):
        _finish(run, SyncRunStatus.FAILED, counts, "lease lost to a newer attempt")
        return SyncOutcome("failed", run.pk, counts=counts)
    if isinstance(exc, UpstreamRateLimited):
        _finish(run, SyncRunStatus.DEFERRED, counts, f"rate limited: retry after {exc.retry_after:.0f}s")
        Connection.objects.filter(pk=connection.pk).update(
            next_sync_at=now() + timedelta(seconds=exc.retry_after), last_error="rate limited"
        )
        return SyncOutcome("deferred", run.pk, retry_after=exc.retry_after, counts=counts)
    if isinstance(exc, UpstreamAuthFailed):
        if _credentials_replaced(connection):
            # Rotated while this attempt still used the old ones (T13): the new credentials
            # were not refused. Retry soon, with them.
            _finish(run, SyncRunStatus.FAILED, counts, "credentials replaced during the sync")
            return SyncOutcome("failed", run.pk, transient=True, counts=counts)
        _finish(run, SyncRunStatus.FAILED, counts, "credentials refused")
        Connection.objects.filter(pk=connection.pk).update(
            status=ConnectionStatus.NEEDS_ATTENTION, last_error="credentials refused by the upstream"
        )
        return SyncOutcome("failed", run.pk, counts=counts)
    if isinstance(exc, UpstreamError):
        _finish(run, SyncRunStatus.FAILED, counts, f"{type(exc).__name__}")
        Connection.objects.filter(pk=connection.pk).update(last_error=type(exc).__name__)
        return SyncOutcome("failed", run.pk, transient=not exc.permanent, counts=counts)
    if isinstance(exc, SoftTimeLimitExceeded):
        # The task's time is up (a slow or flaky upstream). Committed pages stay and the
        # cursors moved with them, so a retry resumes where this attempt stopped.
        _finish(run, SyncRunStatus.FAILED, counts, "time limit reached")
        return SyncOutcome("failed", run.pk, transient=True, counts=counts)
    if isinstance(exc, (OperationalError, InterfaceError)):
        # The database dropped us (a restart, a failover, a killed backend; T11): the page in
        # flight rolled back whole, its cursor with it. Record it on a fresh connection and
        # let the task retry; re-raising would ack the message and lose the sync.
        db_connection.close_if_unusable_or_obsolete()
        _finish(run, SyncRunStatus.FAILED, counts, "database connection lost")
        return SyncOutcome("failed", run.pk, transient=True, counts=counts)
    _finish(run, SyncRunStatus.FAILED, counts, "internal error")
    return None


def connection_sync(*, connection_id: int, task_id: str = "") -> SyncOutcome:
    """Sync every link of one connection. Never raises for upstream trouble: says what happened."""
    token = uuid.uuid4()
    task_id = task_id[:64]
    if task_id and SyncRun.objects.filter(
        connection_id=connection_id, task_id=task_id, status=SyncRunStatus.SUCCEEDED
    ).exists():
        # A redelivered copy of a message already synced (visibility timeout, or an ack lost
        # at shutdown, celery#3802): the work is done.
        logger.info("sync skipped connection=%s: task %s already succeeded", connection_id, task_id)
        return SyncOutcome("duplicate")
    with transaction.atomic():
        # Lease, stale runs and this attempt's run commit together: one commit, not three.
        acquired = lease_acquire(connection_id, token)
        if acquired:
            stale = _fail_stale_runs(connection_id)
            connection = Connection.objects.select_related("organization").get(pk=connection_id)
            run = SyncRun.objects.create(
                uuid=token, organization_id=connection.organization_id, connection=connection, task_id=task_id
            )
    if not acquired:
        holder = _lease_holder(connection_id)
        if task_id and holder is not None and holder.task_id == task_id:
            if holder.run.shards and holder.run.status == SyncRunStatus.RUNNING:
                # Our own run, split into shard tasks: this copy may be all that is left of a
                # message whose process died before it queued them. A shard queued twice is
                # harmless (upserts, cursors); one never queued would hold the lease to expiry.
                return SyncOutcome(
                    "sharded", holder.run.pk, shards=pending_shards(holder.run), token=str(holder.run.uuid)
                )
            # A copy of our own message: its first attempt still runs (redelivered past the
            # visibility timeout) or died holding the lease (requeued after its process was
            # lost). Only the lease tells which: come back when it is released or expires.
            logger.info(
                "sync busy connection=%s: a copy of its own running sync, lease expires in %.0fs",
                connection_id, holder.seconds_left,
            )
            return SyncOutcome("busy", retry_after=holder.seconds_left)
        logger.info("sync skipped connection=%s: another sync holds the lease", connection_id)
        return SyncOutcome("skipped")
    if stale:
        logger.warning("sync connection=%s: marked %d abandoned run(s) failed", connection_id, stale)
    counts = dict(ZERO_COUNTS)
    released = False
    started = time.monotonic()
    now = timezone.now
    try:
        links = list(connection_links(connection))
        shards = shard_count(len(links))
        if shards > 1:
            # Split across tasks, so every pool process works on one big connection. The
            # lease stays held, now by the run: the last shard to finish releases it.
            SyncRun.objects.filter(pk=run.pk).update(shards=shards)
            released = True
            logger.info("sync connection=%s: %d links split into %d shard tasks", connection_id, len(links), shards)
            return SyncOutcome("sharded", run.pk, shards=tuple(range(shards)), token=str(token))
        idle = Untouched()
        links_sync(connection, run, token, links, idle=idle, counts=counts)
        with transaction.atomic():
            # Fenced like every page: an attempt that lost its lease never records a success.
            _check_and_extend_lease(connection_id, token)
            _finish(run, SyncRunStatus.SUCCEEDED, counts)
            if idle.links:
                ParticipantLink.objects.filter(pk__in=idle.links).update(last_synced_at=now())
            Connection.objects.filter(pk=connection_id).update(
                status=ConnectionStatus.ACTIVE,
                last_error="",
                last_synced_at=now(),
                next_sync_at=now() + connection.sync_interval,
                lease_token=None,  # released with the success it records
                lease_expires_at=None,
            )
            released = True
    except BaseException as exc:
        outcome = attempt_failed(connection, run, counts, exc)
        if outcome is None:
            raise
        return outcome
    finally:
        if not released:
            lease_release(connection_id, token)

    logger.info(
        "sync done connection=%s fetched=%d created=%d updated=%d unchanged=%d quarantined=%d seconds=%.2f",
        connection_id, counts["fetched"], counts["created"], counts["updated"], counts["unchanged"],
        counts["quarantined"], time.monotonic() - started,
    )
    return SyncOutcome("succeeded", run.pk, counts=counts)


def due_connection_ids(*, limit: int = 500, chunks: int = 20) -> list[int]:
    """Claim connections whose next_sync_at has passed, moving it on so a second beat skips them.

    In chunks of ``limit``, each its own short transaction, until none is left (at most
    ``chunks``: a backlog bigger than that waits for the next tick). On PostgreSQL a chunk is
    claimed with FOR UPDATE SKIP LOCKED and one UPDATE; elsewhere row by row, each a
    conditional UPDATE. Either way only one scheduler wins each connection (two beats are safe).
    """
    ids: list[int] = []
    for _ in range(chunks):
        claimed = _due_chunk_claim(limit)
        ids += claimed
        if len(claimed) < limit:
            break
    return ids


def _due_chunk_claim(limit: int) -> list[int]:
    now = timezone.now()
    claim_until = now + timedelta(seconds=lease_seconds())
    due = (
        Connection.objects.filter(status=ConnectionStatus.ACTIVE, next_sync_at__lte=now)
        .exclude(provider__in=["usleep", "grand_challenge", "import"])
        .order_by("next_sync_at")
    )
    with transaction.atomic():
        if db_connection.features.has_select_for_update_skip_locked:
            # Rows another beat is claiming are skipped; those we lock stay due until we commit.
            ids = list(due.select_for_update(skip_locked=True).values_list("pk", flat=True)[:limit])
            Connection.objects.filter(pk__in=ids).update(next_sync_at=claim_until)
            return ids
        ids = []
        for connection_id in list(due.values_list("pk", flat=True)[:limit]):
            # Conditional UPDATE: only one scheduler wins each connection.
            if Connection.objects.filter(pk=connection_id, next_sync_at__lte=now).update(next_sync_at=claim_until):
                ids.append(connection_id)
        return ids
