"""T8 run-longer-than-vt (shared/reliability.md §7): upstream latency keeps a sync running past
the visibility timeout (its time limit raised for the test), so Redis redelivers the message to
a second, idle worker while the first still runs. The copy finds the connection's lease held
by its own message and exits without writing; exactly one successful SyncRun; EXACT."""

import pytest

from integrations.models import SyncRun, SyncRunStatus

from .conftest import VISIBILITY_TIMEOUT, assert_exact, linked_asleep_org, send_sync, wait_for_status

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

LONG_ENV = {"CELERY_TASK_TIME_LIMIT": 45, "CELERY_TASK_SOFT_TIME_LIMIT": 40, "SYNC_LEASE_SECONDS": 60}


class RunLongerThanVisibilityTimeoutTests:
    def test_it_lets_the_redelivered_copy_exit_without_writing(self, asleep_sim, broker_url, start_worker):
        _, connection = linked_asleep_org(asleep_sim, users=3, nights=25)
        asleep_sim.configure(latency=0.3)  # ~70 requests: ~21 s of upstream time
        first = start_worker("t8-a", **LONG_ENV)
        second = start_worker("t8-b", **LONG_ENV)
        first.wait_ready()
        second.wait_ready()
        task_id = send_sync(broker_url, connection.pk)

        [ok] = wait_for_status([connection], SyncRunStatus.SUCCEEDED, timeout=55)
        assert ok.duration_seconds > VISIBILITY_TIMEOUT
        logs = first.log() + second.log()
        assert logs.count(f"[{task_id}] received") == 2  # delivered, then redelivered
        assert logs.count("copy of its own running sync") == 1
        assert list(SyncRun.objects.filter(connection=connection)) == [ok]  # the copy wrote nothing
        assert_exact(asleep_sim, [connection])
