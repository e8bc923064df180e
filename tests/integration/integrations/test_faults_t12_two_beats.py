"""T12 two-beats (shared/reliability.md §7): two ``celery beat`` processes run at once, as after
a botched deploy ("ensure only a single scheduler is running", celery#2856 and friends).

Both send ``integrations.schedule_due_syncs`` every 2 s; 30 connections are due every 5 s,
for 12 s (the catalogue's 10 s interval and 60 s run, shortened to keep the test fast). The
scheduler task claims each due connection with a conditional UPDATE of ``next_sync_at`` (on
PostgreSQL under FOR UPDATE SKIP LOCKED), so the second beat's tick finds nothing to claim; the
one-link connections go out in batches (integrations/sync_batch.py). Pass: every sync message finds its connection
free (none is sent twice), no two SyncRuns of one connection overlap, each connection runs
at most as often as its interval allows, and the end state is EXACT.

Not covered: the RedBeat variant (a Redis lock keeping the second beat idle); the platform
does not use RedBeat and relies on the idempotent claim instead.
"""

from __future__ import annotations

import math
import re
import time
from datetime import timedelta

import pytest

from integrations.models import Connection, SyncRun, SyncRunStatus

from ..conftest import wait_for
from .conftest import assert_exact, broker_messages, linked_beddit_org
from .fault_beat import celery_beat

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

SCHEDULER_SECONDS = 2
INTERVAL_SECONDS = 5
RUN_SECONDS = 12


class TwoBeatsTests:
    def test_two_schedulers_never_sync_a_connection_twice_at_once(
        self, beddit_sim, broker_url, start_worker, tmp_path
    ):
        _, connections = linked_beddit_org(beddit_sim, users=30, nights=3)
        Connection.objects.filter(pk__in=[c.pk for c in connections]).update(
            sync_interval=timedelta(seconds=INTERVAL_SECONDS)
        )
        # The scheduler's claim lasts a lease; a longer one than the shared 12 s keeps a sync
        # message that waits in a busy CI queue from being claimed (and sent) a second time.
        workers = [start_worker("t12-a", SYNC_LEASE_SECONDS=30), start_worker("t12-b", SYNC_LEASE_SECONDS=30)]
        env = {"SYNC_SCHEDULER_SECONDS": SCHEDULER_SECONDS}
        launched = time.time()
        with celery_beat(broker_url=broker_url, folder=tmp_path, name="beat-1", **env) as one, \
                celery_beat(broker_url=broker_url, folder=tmp_path, name="beat-2", **env) as two:
            for worker in workers:
                worker.wait_ready()
            wait_for(
                lambda: all("beat: Starting..." in b.log_path.read_text() for b in (one, two)),
                timeout=30, what="both beats to start",
            )
            time.sleep(RUN_SECONDS)
            beats = [one.log_path.read_text(), two.log_path.read_text()]
        for log in beats:  # both really ran and sent the scheduler task, side by side
            assert log.count("Sending due task integrations-schedule-due-syncs") >= RUN_SECONDS // SCHEDULER_SECONDS - 2

        # Let the syncs already enqueued finish.
        wait_for(lambda: broker_messages(broker_url) == [], timeout=30, what="the broker to drain")
        wait_for(
            lambda: not SyncRun.objects.filter(connection__in=connections, status=SyncRunStatus.RUNNING).exists(),
            timeout=20, what="the last runs to finish",
        )

        logs = "".join(worker.log() for worker in workers)
        singles = set(re.findall(r"integrations\.sync_connection\[([0-9a-f-]+)\] received", logs))
        # One-link connections go out in batches (sync_batch): "N synced, N failed, N skipped".
        done = r"sync batch done: (\d+) synced, (\d+) failed, (\d+) skipped"
        batches = [tuple(map(int, m)) for m in re.findall(done, logs)]
        assert batches, "the due connections were handed out in batches"
        runs = list(SyncRun.objects.filter(connection__in=connections).order_by("connection_id", "started_at"))
        # Every connection sent was a claim of a free connection: none was skipped as held.
        assert "another sync holds the lease" not in logs
        assert all(skipped == 0 for _, _, skipped in batches)
        assert len(singles) + sum(synced + failed for synced, failed, _ in batches) == len(runs)
        assert all(run.status == SyncRunStatus.SUCCEEDED for run in runs), {r.status for r in runs}

        # From the first beat's start to the last queued sync's end.
        most = math.ceil((time.time() - launched) / INTERVAL_SECONDS) + 1
        for connection in connections:
            mine = [run for run in runs if run.connection_id == connection.pk]
            assert 1 <= len(mine) <= most, (connection.pk, len(mine), most)
            for earlier, later in zip(mine, mine[1:]):
                assert earlier.finished_at <= later.started_at, "two runs of one connection overlapped"
                # A run is claimed only once the interval after the previous one has passed.
                assert later.started_at - earlier.finished_at >= timedelta(seconds=INTERVAL_SECONDS - 0.5)
        assert len(runs) > len(connections)  # the interval really came round during the test
        assert_exact(beddit_sim, connections)
