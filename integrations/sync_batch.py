"""Small connections synced in batches: one task, one claim, one closing commit for many.

A person's own account (Beddit: a token reads its owner's nights only) is a connection of one
link. Synced by a task of its own, an unchanged one costs far more in bookkeeping than in work:
a task, a lease claim, a run, a dozen queries and two commits around two short requests. Beat
hands connections of at most SYNC_BATCH_MAX_LINKS links out in batches of
SYNC_BATCH_CONNECTIONS (integrations/tasks.py); a batch task
- claims every free lease in one statement and creates the runs in one more (one commit);
- fetches SYNC_BATCH_FETCH_CONNECTIONS connections at once (1, one at a time, is fastest on
  loopback and costs least memory; a distant upstream gains from more), each by a fetcher
  thread and client of its own;
- commits each connection's new nights exactly as a single sync does (its own run, fenced by
  its own lease token) and writes nothing for one that has nothing new;
- records the successes and releases their leases in one closing transaction, fenced per
  connection: one whose lease was taken over meanwhile records nothing.

A failing connection never stops the others: its run records why, as a single sync's would
(``sync.attempt_failed``), and one worth retrying soon (a transient fault, a short rate limit)
is handed to a task of its own, which retries with backoff. A connection held by another
attempt is skipped (beat brings it back when the scheduler's claim lapses); one held by an
earlier attempt of this same message (its worker died mid-batch) is due again the moment that
lease expires. A redelivered batch skips the connections it already synced.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import timedelta
from functools import reduce
from operator import or_

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import Case, Count, DateTimeField, ExpressionWrapper, F, Q, Subquery, UUIDField, Value, When
from django.utils import timezone

from .adapters import adapter_for
from .models import Connection, ConnectionStatus, ParticipantLink, SyncRun, SyncRunStatus
from .sync import (
    ZERO_COUNTS,
    LeaseLost,
    Untouched,
    _fail_stale_runs_of,
    attempt_failed,
    fetched_commit,
    lease_seconds,
)
from .sync_pipeline import PageFetcher

logger = logging.getLogger(__name__)

BATCH_DEFAULTS = {
    # Connections of at most this many links are synced in batches by beat...
    "SYNC_BATCH_MAX_LINKS": 4,
    # ...this many to a task.
    "SYNC_BATCH_CONNECTIONS": 25,
    # Connections fetched at once, and pages each reads ahead of its commits: each extra
    # connection costs a malloc arena (~15 MB a process, measured) and overlaps round trips.
    "SYNC_BATCH_FETCH_CONNECTIONS": 1,
    "SYNC_BATCH_AHEAD_PAGES": 1,
}


def batch_setting(name: str) -> int:
    return int(getattr(settings, name, BATCH_DEFAULTS[name]))


@dataclass
class BatchOutcome:
    synced: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)  # another attempt held the lease
    duplicate: list[int] = field(default_factory=list)  # this message synced it already
    # (connection id, seconds or None): hand to a task of its own, to retry after that long
    # (None: after the usual backoff).
    retry: list[tuple[int, float | None]] = field(default_factory=list)

    def summary(self) -> dict[str, int]:
        return {name: len(getattr(self, name)) for name in ("synced", "failed", "skipped", "duplicate", "retry")}


@dataclass
class _Attempt:
    """One claimed connection of the batch, from claim to its recorded end."""

    connection: Connection
    token: uuid.UUID
    run: SyncRun
    links: list[ParticipantLink] = field(default_factory=list)
    counts: dict = field(default_factory=lambda: dict(ZERO_COUNTS))
    idle: Untouched = field(default_factory=Untouched)


def sync_plan(ids: list[int]) -> tuple[list[int], list[list[int]]]:
    """Due connections as (those synced one task each, batches of small ones)."""
    if not ids:
        return [], []
    sizes = dict(
        ParticipantLink.objects.filter(connection_id__in=ids)
        .values("connection_id")
        .annotate(n=Count("pk"))
        .values_list("connection_id", "n")
    )
    small_most, per_task = batch_setting("SYNC_BATCH_MAX_LINKS"), max(1, batch_setting("SYNC_BATCH_CONNECTIONS"))
    if small_most <= 0:  # batching turned off
        return ids, []
    small = [pk for pk in ids if sizes.get(pk, 0) <= small_most]
    singles = [pk for pk in ids if sizes.get(pk, 0) > small_most]
    return singles, [small[i : i + per_task] for i in range(0, len(small), per_task)]


def _held_by(tokens: dict[int, uuid.UUID]) -> Q:
    """Connections whose lease is still the one this batch took for them."""
    return reduce(or_, (Q(pk=pk, lease_token=token) for pk, token in tokens.items()))


def _claim(ids: list[int], task_id: str) -> list[_Attempt]:
    """Take the free leases among ``ids`` and start a run for each, in one transaction."""
    tokens = {pk: uuid.uuid4() for pk in ids}
    now = timezone.now()
    with transaction.atomic():
        Connection.objects.filter(Q(lease_token__isnull=True) | Q(lease_expires_at__lt=now), pk__in=ids).update(
            lease_token=Case(
                *(When(pk=pk, then=Value(token, output_field=UUIDField())) for pk, token in tokens.items()),
                output_field=UUIDField(),
            ),
            lease_expires_at=now + timedelta(seconds=lease_seconds()),
        )
        connections = [
            c for c in Connection.objects.select_related("organization").filter(pk__in=ids).order_by("pk")
            if c.lease_token == tokens[c.pk]
        ]
        if not connections:
            return []
        stale = _fail_stale_runs_of([c.pk for c in connections])
        if stale:
            logger.warning("sync batch: marked %d abandoned run(s) failed", stale)
        runs = SyncRun.objects.bulk_create(
            SyncRun(uuid=tokens[c.pk], organization_id=c.organization_id, connection=c, task_id=task_id)
            for c in connections
        )
    attempts = {c.pk: _Attempt(c, tokens[c.pk], run) for c, run in zip(connections, runs, strict=True)}
    # Each connection's links, read within its own organization (one query for the batch).
    by_org: dict[int, list[int]] = {}
    for c in connections:
        by_org.setdefault(c.organization_id, []).append(c.pk)
    scope = reduce(or_, (Q(organization_id=org, connection_id__in=pks) for org, pks in by_org.items()))
    for link in ParticipantLink.objects.filter(scope).order_by("pk"):
        attempts[link.connection_id].links.append(link)
    return list(attempts.values())


def _own_busy_due_at_expiry(ids: list[int], task_id: str) -> None:
    """Connections an earlier attempt of this message still holds (it died mid-batch, or still
    runs past the visibility timeout): due again the moment that lease expires."""
    if not ids or not task_id:
        return
    mine = SyncRun.objects.filter(task_id=task_id, connection_id__in=ids, status=SyncRunStatus.RUNNING)
    Connection.objects.filter(pk__in=ids, lease_token__in=Subquery(mine.values("uuid"))).update(
        next_sync_at=F("lease_expires_at")
    )


class _Fetchers:
    """``with _Fetchers(attempts) as fetchers: for attempt, fetcher, error in fetchers: ...``

    Each attempt's fetcher and client, started SYNC_BATCH_FETCH_CONNECTIONS at a time, so the
    next connections' requests are in flight while one commits; each closed once its
    connection is done, every one still open on leaving the block."""

    def __init__(self, attempts: list[_Attempt]):
        self._pending = iter(attempts)
        self._window: deque[tuple[_Attempt, ExitStack, PageFetcher | None, BaseException | None]] = deque()
        self._ahead = max(1, batch_setting("SYNC_BATCH_FETCH_CONNECTIONS"))
        self._current: ExitStack | None = None

    def __enter__(self) -> _Fetchers:
        return self

    def __exit__(self, *exc_info: object) -> None:
        for stack in [self._current, *(entry[1] for entry in self._window)]:
            if stack is not None:
                stack.close()
        self._window.clear()

    def __iter__(self):
        self._fill()
        while self._window:
            attempt, self._current, fetcher, error = self._window.popleft()
            yield attempt, fetcher, error
            self._current.close()  # its fetcher stopped, its client closed
            self._current = None
            self._fill()

    def _fill(self) -> None:
        while len(self._window) < self._ahead and (attempt := next(self._pending, None)) is not None:
            stack = ExitStack()
            try:
                adapter = stack.enter_context(adapter_for(attempt.connection))
                fetcher = stack.enter_context(
                    PageFetcher(adapter, attempt.links, max_pages=batch_setting("SYNC_BATCH_AHEAD_PAGES"))
                )
                self._window.append((attempt, stack, fetcher, None))
            except Exception as exc:  # bad stored credentials, say: this connection's failure only
                stack.close()
                self._window.append((attempt, stack, None, exc))


def _record_successes(done: list[_Attempt]) -> list[_Attempt]:
    """One transaction: the runs of ``done`` that still hold their leases succeed, their idle
    links are stamped, their connections are active, due an interval on and released. Returns
    those whose lease was taken over meanwhile (nothing is recorded for them here)."""
    if not done:
        return []
    with transaction.atomic():
        tokens = {a.connection.pk: a.token for a in done}
        held = set(Connection.objects.select_for_update().filter(_held_by(tokens)).values_list("pk", flat=True))
        finished = timezone.now()
        won = [a for a in done if a.connection.pk in held]
        # One UPDATE per distinct set of counts (a re-sync of unchanged accounts: one or two),
        # far cheaper to build than a bulk_update's CASE per field and run.
        by_counts: dict[tuple, list[int]] = {}
        for attempt in won:
            by_counts.setdefault(tuple(sorted(attempt.counts.items())), []).append(attempt.run.pk)
        for counts, run_ids in by_counts.items():
            SyncRun.objects.filter(pk__in=run_ids).update(
                status=SyncRunStatus.SUCCEEDED, error="", finished_at=finished, **dict(counts)
            )
        if won:
            idle_links = {pk for a in won for pk in a.idle.links}
            if idle_links:
                ParticipantLink.objects.filter(pk__in=idle_links).update(last_synced_at=finished)
            Connection.objects.filter(pk__in=held).update(
                status=ConnectionStatus.ACTIVE,
                last_error="",
                last_synced_at=finished,
                next_sync_at=ExpressionWrapper(
                    Value(finished, output_field=DateTimeField()) + F("sync_interval"), output_field=DateTimeField()
                ),
                lease_token=None,  # released with the success it records
                lease_expires_at=None,
            )
    return [a for a in done if a.connection.pk not in held]


def _release(attempts: list[_Attempt]) -> None:
    """Release the leases of attempts that did not record a success (a failure, the time
    limit): best effort; a lease the database can't release now expires on its own."""
    open_ = {a.connection.pk: a.token for a in attempts}
    if not open_:
        return
    try:
        Connection.objects.filter(_held_by(open_)).update(lease_token=None, lease_expires_at=None)
    except DatabaseError:
        logger.warning("sync batch: %d lease(s) left to expire (database unavailable)", len(open_))


def connections_sync(*, connection_ids: list[int], task_id: str = "", max_countdown: float = 300.0) -> BatchOutcome:
    """Sync a batch of small connections (see the module docstring). Never raises for upstream
    trouble; a database fault in the batch's own bookkeeping raises (the task retries)."""
    outcome = BatchOutcome()
    task_id = task_id[:64]
    started = time.monotonic()
    ids = list(dict.fromkeys(connection_ids))
    if task_id:
        # A redelivered copy of this message: what it synced already is done.
        synced = set(
            SyncRun.objects.filter(connection_id__in=ids, task_id=task_id, status=SyncRunStatus.SUCCEEDED)
            .values_list("connection_id", flat=True)
        )
        outcome.duplicate = sorted(synced)
        ids = [pk for pk in ids if pk not in synced]
    if not ids:
        return outcome
    attempts = _claim(ids, task_id)
    claimed = {a.connection.pk for a in attempts}
    outcome.skipped = [pk for pk in ids if pk not in claimed]
    _own_busy_due_at_expiry(outcome.skipped, task_id)

    done: list[_Attempt] = []
    ended: set[int] = set()  # connections whose run records a failure
    lost: list[_Attempt] = []
    try:
        with _Fetchers(attempts) as fetchers:
            for attempt, fetcher, error in fetchers:
                try:
                    if error is not None:
                        raise error
                    fetched_commit(
                        attempt.connection, attempt.run, attempt.token, fetcher,
                        idle=attempt.idle, counts=attempt.counts,
                    )
                    done.append(attempt)
                except Exception as exc:  # SoftTimeLimitExceeded too: this connection's end first
                    ended.add(attempt.connection.pk)
                    _end_failed(attempt, exc, outcome, max_countdown)
                    if isinstance(exc, SoftTimeLimitExceeded):
                        raise
    except SoftTimeLimitExceeded:
        # Out of time: what is committed stays; the connections not reached are due at once.
        reached = ended | {a.connection.pk for a in done}
        waiting = [a for a in attempts if a.connection.pk not in reached]
        SyncRun.objects.filter(pk__in=[a.run.pk for a in waiting]).update(
            status=SyncRunStatus.FAILED, finished_at=timezone.now(), error="time limit reached"
        )
        Connection.objects.filter(pk__in=[a.connection.pk for a in waiting]).update(next_sync_at=timezone.now())
        outcome.failed += [a.connection.pk for a in waiting]
    finally:
        try:
            lost = _record_successes(done)
            released = {a.connection.pk for a in done}
        except BaseException:
            released = set()
            raise
        finally:
            _release([a for a in attempts if a.connection.pk not in released])
    for attempt in lost:
        attempt_failed(attempt.connection, attempt.run, attempt.counts, LeaseLost())
        outcome.failed.append(attempt.connection.pk)
    outcome.synced = [a.connection.pk for a in done if a not in lost]
    logger.info(
        "sync batch done: %d synced, %d failed, %d skipped, %d already synced, %d to retry, seconds=%.2f",
        len(outcome.synced), len(outcome.failed), len(outcome.skipped), len(outcome.duplicate), len(outcome.retry),
        time.monotonic() - started,
    )
    return outcome


def _end_failed(attempt: _Attempt, exc: BaseException, outcome: BatchOutcome, max_countdown: float) -> None:
    """Record one connection's failure as a single sync would; queue a retry if it is worth one.
    Its lease is released with the batch's end."""
    result = attempt_failed(attempt.connection, attempt.run, attempt.counts, exc)
    outcome.failed.append(attempt.connection.pk)
    if result is None:
        logger.error(
            "sync batch: connection=%s failed with an internal error (%s)", attempt.connection.pk, type(exc).__name__,
            exc_info=exc,
        )
        return
    if result.status == "deferred" and result.retry_after is not None and result.retry_after <= max_countdown:
        outcome.retry.append((attempt.connection.pk, result.retry_after))
    elif result.status == "failed" and result.transient:
        outcome.retry.append((attempt.connection.pk, None))
