"""T7 warm-shutdown (shared/reliability.md §7): SIGTERM mid-sync; the task either finishes or
is requeued; EXACT after a restart; never a second successful SyncRun for the same message.

- Warm shutdown (SIGTERM): the worker stops consuming and waits for the running sync, which
  finishes. Had its ack been lost at shutdown (celery#3802), a restart would run the message
  again; the copy (restored by the restart, or delivered by the test when the ack did land)
  must recognise its own finished sync and write nothing.
- Soft-then-cold shutdown (SIGTERM remapped to SIGQUIT, worker_soft_shutdown_timeout=5): the
  sync is still held after 5 s, so the worker cancels and requeues it; a restarted worker runs
  the copy, which takes over once the cancelled attempt's lease has expired.
"""

import os
import signal
import time

import pytest

from integrations.models import SyncRun, SyncRunStatus

from ..conftest import wait_for
from .conftest import (
    VISIBILITY_TIMEOUT,
    assert_exact,
    broker_messages,
    linked_asleep_org,
    request_index_of_list,
    send_sync,
    truth_entries,
    wait_for_status,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _hold_page_two(sim, connection) -> int:
    users = list(connection.links.order_by("pk").values_list("upstream_user_id", flat=True))
    index = request_index_of_list(truth_entries(sim), users, 1, offset=3)
    sim.arm_barrier(index)
    return index


class WarmShutdownTests:
    def test_it_lets_the_running_sync_finish_and_never_runs_it_again(self, asleep_sim, broker_url, start_worker):
        _, connection = linked_asleep_org(asleep_sim, users=3, nights=20)
        barrier = _hold_page_two(asleep_sim, connection)
        worker = start_worker("t7-warm")
        task_id = send_sync(broker_url, connection.pk)
        assert asleep_sim.wait_barrier(barrier, timeout=30)

        os.kill(worker.pid, signal.SIGTERM)  # to the main process, as a supervisor stops it
        wait_for(lambda: "Warm shutdown" in worker.log(), timeout=10, what="the warm shutdown")
        time.sleep(1)
        asleep_sim.release_barrier()
        [ok] = wait_for_status([connection], SyncRunStatus.SUCCEEDED, timeout=30)
        assert worker.wait_exit(20) == 0

        assert ok.task_id == task_id
        left = broker_messages(broker_url)
        if left:
            # celery#3802 struck: the ack was lost at shutdown. A restart after the visibility
            # timeout restores the message in its start-up sweep.
            assert [(m["where"], m["id"]) for m in left] == [("unacked", task_id)]
            wait_until(ok.started_at.timestamp() + VISIBILITY_TIMEOUT + 2)
        else:
            # Acked this time: deliver the copy celery#3802 would have left behind ourselves.
            send_sync(broker_url, connection.pk, task_id=task_id)
        restarted = start_worker("t7-warm-restarted")
        wait_for(lambda: f"[{task_id}] succeeded" in restarted.log(), timeout=30, what="the copy to run")
        assert "'duplicate'" in restarted.log()
        assert list(SyncRun.objects.filter(connection=connection)) == [ok]  # no second success
        assert broker_messages(broker_url) == []
        assert_exact(asleep_sim, [connection])

    def test_it_requeues_a_sync_still_running_after_the_soft_shutdown_window(
        self, asleep_sim, broker_url, start_worker
    ):
        _, connection = linked_asleep_org(asleep_sim, users=3, nights=20)
        barrier = _hold_page_two(asleep_sim, connection)
        worker = start_worker("t7-soft", REMAP_SIGTERM="SIGQUIT")
        task_id = send_sync(broker_url, connection.pk)
        assert asleep_sim.wait_barrier(barrier, timeout=30)
        cancelled = SyncRun.objects.get(connection=connection)

        os.kill(worker.pid, signal.SIGTERM)
        worker.wait_exit(20)  # 5 s of soft shutdown, then the running task is cancelled
        asleep_sim.release_barrier()
        assert "Soft Shutdown" in worker.log()
        assert [m["id"] for m in broker_messages(broker_url)] == [task_id]  # requeued, not lost

        start_worker("t7-soft-restarted")
        [ok] = wait_for_status([connection], SyncRunStatus.SUCCEEDED, timeout=40)
        assert ok.task_id == task_id
        cancelled.refresh_from_db()
        assert cancelled.status == SyncRunStatus.FAILED
        assert SyncRun.objects.filter(connection=connection).count() == 2
        assert_exact(asleep_sim, [connection])
        wait_for(lambda: broker_messages(broker_url) == [], timeout=10, what="the broker to be empty")
