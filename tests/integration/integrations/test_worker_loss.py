"""T5 child-sigkill and T6 main-sigkill (shared/reliability.md §7): a sync whose worker dies
mid-page ends EXACT on a later attempt, and the dead attempt's SyncRun ends failed.

- T5: SIGKILL the pool child. The main process sees WorkerLostError and requeues the message
  (reject_on_worker_lost); the copy waits for the dead attempt's lease to expire, takes over.
- T6: SIGKILL the whole worker (main + child). Nothing acks or requeues: the message stays in
  Redis's ``unacked`` hash until a fresh worker's start-up sweep restores it after the
  visibility timeout.
- T5, batch variant: a batch of one-link connections (integrations/sync_batch.py) cut off
  mid-way. The requeued copy finds every lease held by its own dead attempt and makes those
  connections due the moment the leases expire; beat syncs them then.
- T6, paused variant: a worker frozen (SIGSTOP) past its lease comes back after another
  attempt took over and finished; its page commit is refused by the lease (fencing) check,
  so the link rows keep what the newer attempt wrote.
"""

import os
import signal
import time

import pytest

from kombu import Connection as BrokerConnection

from integrations.models import ParticipantLink, SyncRun, SyncRunStatus

from ..conftest import wait_for
from .conftest import (
    VISIBILITY_TIMEOUT,
    assert_exact,
    broker_messages,
    linked_asleep_org,
    linked_beddit_org,
    request_index_of_list,
    send_sync,
    truth_entries,
    wait_for_status,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _mid_page_three(sim, connection) -> int:
    """The request index of a report in the middle of the third link's page."""
    users = list(connection.links.order_by("pk").values_list("upstream_user_id", flat=True))
    return request_index_of_list(truth_entries(sim), users, 2, offset=5)


def _running_run(connection) -> SyncRun:
    return wait_for(
        lambda: SyncRun.objects.filter(connection=connection, status=SyncRunStatus.RUNNING).first(),
        timeout=10, what="the running attempt",
    )


class ChildSigkillTests:
    def test_it_requeues_the_task_and_ends_exact_with_the_dead_attempt_failed(
        self, asleep_sim, broker_url, start_worker
    ):
        _, connection = linked_asleep_org(asleep_sim, users=4, nights=20)
        barrier = _mid_page_three(asleep_sim, connection)
        asleep_sim.arm_barrier(barrier)
        worker = start_worker("t5")
        task_id = send_sync(broker_url, connection.pk)
        assert asleep_sim.wait_barrier(barrier, timeout=30)
        dead = _running_run(connection)
        [child] = worker.children()

        os.kill(child, signal.SIGKILL)
        killed_at = time.monotonic()
        asleep_sim.release_barrier()

        [ok] = wait_for_status([connection], SyncRunStatus.SUCCEEDED, timeout=30)
        recovered_in = time.monotonic() - killed_at
        assert recovered_in < 30
        assert_exact(asleep_sim, [connection])
        dead.refresh_from_db()
        assert dead.status == SyncRunStatus.FAILED and dead.finished_at is not None
        assert dead.fetched > 0 and dead.fetched == dead.created  # it had committed pages 1 and 2
        # The same message ran again: requeued by the main process, not re-sent by anyone.
        assert ok.task_id == dead.task_id == task_id
        assert "WorkerLostError" in worker.log()
        assert SyncRun.objects.filter(connection=connection).count() == 2
        wait_for(lambda: broker_messages(broker_url) == [], timeout=10, what="the broker to be empty")


class BatchChildSigkillTests:
    def test_a_batch_cut_off_mid_way_ends_exact_once_its_leases_expire(
        self, beddit_sim, broker_url, start_worker, tmp_path
    ):
        from config.celery_app import app

        from .fault_beat import celery_beat

        _, connections = linked_beddit_org(beddit_sim, users=6, nights=5)
        ids = [c.pk for c in connections]
        beddit_sim.arm_barrier(5)  # a request in the middle of the batch holds
        worker = start_worker("t5-batch")
        with BrokerConnection(broker_url) as broker:
            task_id = app.send_task("integrations.sync_connections", args=[ids], connection=broker).id
        assert beddit_sim.wait_barrier(5, timeout=30)
        [child] = worker.children()

        os.kill(child, signal.SIGKILL)
        beddit_sim.release_barrier()
        # The copy requeued by the main process: every connection is its own dead attempt's.
        wait_for(lambda: "0 synced, 0 failed, 6 skipped" in worker.log(), timeout=20, what="the requeued copy")
        with celery_beat(broker_url=broker_url, folder=tmp_path, SYNC_SCHEDULER_SECONDS=1):
            wait_for_status(connections, SyncRunStatus.SUCCEEDED, timeout=45)
        assert_exact(beddit_sim, connections)
        dead = SyncRun.objects.filter(task_id=task_id)
        assert dead.count() == len(ids) and {r.status for r in dead} == {SyncRunStatus.FAILED}
        for connection in connections:  # one success each, from the batch beat sent
            assert SyncRun.objects.filter(connection=connection, status=SyncRunStatus.SUCCEEDED).count() == 1
        assert "WorkerLostError" in worker.log()


class MainSigkillTests:
    def test_it_recovers_on_a_fresh_worker_after_the_visibility_timeout(self, asleep_sim, broker_url, start_worker):
        _, connection = linked_asleep_org(asleep_sim, users=4, nights=20)
        barrier = _mid_page_three(asleep_sim, connection)
        asleep_sim.arm_barrier(barrier)
        first = start_worker("t6-first")
        task_id = send_sync(broker_url, connection.pk)
        assert asleep_sim.wait_barrier(barrier, timeout=30)
        dead = _running_run(connection)

        first.signal_group(signal.SIGKILL)
        first.wait_exit(10)
        asleep_sim.release_barrier()
        # Nobody acked or requeued it: the delivered message waits in `unacked`.
        assert [m["where"] for m in broker_messages(broker_url)] == ["unacked"]

        wait_until(dead.started_at.timestamp() + VISIBILITY_TIMEOUT + 2)
        fresh = start_worker("t6-fresh")
        [ok] = wait_for_status([connection], SyncRunStatus.SUCCEEDED, timeout=30)
        assert_exact(asleep_sim, [connection])
        dead.refresh_from_db()
        assert dead.status == SyncRunStatus.FAILED
        assert ok.task_id == task_id
        assert f"[{task_id}] received" in fresh.log()
        wait_for(lambda: broker_messages(broker_url) == [], timeout=10, what="the broker to be empty")

    def test_it_refuses_the_writes_of_a_paused_attempt_that_lost_its_lease(
        self, asleep_sim, broker_url, start_worker
    ):
        _, connection = linked_asleep_org(asleep_sim, users=4, nights=20)
        barrier = _mid_page_three(asleep_sim, connection)
        asleep_sim.arm_barrier(barrier)
        # Time limits far above the 12 s lease: this attempt outlives its lease while paused
        # (a GC pause, a stalled VM), which is what the fencing token exists for.
        stale = start_worker("t6-stale", CELERY_TASK_TIME_LIMIT=60, CELERY_TASK_SOFT_TIME_LIMIT=55)
        send_sync(broker_url, connection.pk)
        assert asleep_sim.wait_barrier(barrier, timeout=30)
        stale_run = _running_run(connection)
        stale.signal_group(signal.SIGSTOP)

        wait_until(stale_run.started_at.timestamp() + VISIBILITY_TIMEOUT + 2)
        start_worker("t6-fresh")
        [ok] = wait_for_status([connection], SyncRunStatus.SUCCEEDED, timeout=30)
        assert_exact(asleep_sim, [connection])
        links_after_takeover = list(
            ParticipantLink.objects.filter(connection=connection).order_by("pk").values_list("cursor", "last_synced_at")
        )

        stale.signal_group(signal.SIGCONT)
        asleep_sim.release_barrier()

        def refused():
            stale_run.refresh_from_db()
            return "lease lost" in stale_run.error

        wait_for(refused, timeout=20, what="the paused attempt to hit the fencing check")
        assert stale_run.status == SyncRunStatus.FAILED
        assert list(
            ParticipantLink.objects.filter(connection=connection).order_by("pk").values_list("cursor", "last_synced_at")
        ) == links_after_takeover
        assert_exact(asleep_sim, [connection])
        assert list(SyncRun.objects.filter(connection=connection, status=SyncRunStatus.SUCCEEDED)) == [ok]
