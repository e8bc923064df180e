"""T15 pagination-drift (shared/reliability.md §7): the Asleep upstream inserts a late night
before the engine's offset while it pages with offset/limit (every 2nd list page of a user), so
the rest of the list shifts by one. Pass: no in-batch duplicate reaches the upsert, and the
data is EXACT by the next sync at the latest."""

import pytest

from integrations.models import SyncRun, SyncRunStatus

from .conftest import assert_exact, linked_asleep_org, send_sync, stored_set, truth_set, wait_for_status

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# Two users of ~105 nights: two list pages (limit 100) and ~210 reports per sync.
SLOW_ENV = {
    "CELERY_VISIBILITY_TIMEOUT": 60, "CELERY_TASK_TIME_LIMIT": 40, "CELERY_TASK_SOFT_TIME_LIMIT": 35,
    "SYNC_LEASE_SECONDS": 50,
}


class PaginationDriftTests:
    def test_it_is_exact_by_the_next_sync_when_nights_arrive_mid_scan(self, asleep_sim, broker_url, start_worker):
        _, connection = linked_asleep_org(asleep_sim, users=2, nights=115)
        before = truth_set(asleep_sim)
        asleep_sim.configure(drift_every=2)
        start_worker("t15", **SLOW_ENV)
        send_sync(broker_url, connection.pk)
        [first] = wait_for_status([connection], SyncRunStatus.SUCCEEDED, timeout=45)

        after_first = truth_set(asleep_sim)
        assert len(after_first) == len(before) + 2  # one late night per user, inserted mid-scan
        assert (first.unchanged, first.quarantined) == (0, 0)
        assert first.fetched == first.created  # the shifted page's repeat never reached the upsert
        assert stored_set(connection) < after_first  # a late night landed behind the offset

        asleep_sim.configure(drift_every=0)
        send_sync(broker_url, connection.pk)
        wait_for_status([connection], SyncRunStatus.SUCCEEDED, count=2, timeout=45)
        assert_exact(asleep_sim, [connection])
        assert SyncRun.objects.filter(connection=connection).count() == 2
