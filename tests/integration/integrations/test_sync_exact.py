"""T1 baseline-resync (shared/reliability.md §7): a full sync through a real worker yields
exactly the simulator's sessions, one NightlyMetrics row each, and a second sync writes nothing."""

import pytest

from analytics.models import NightlyMetrics, SleepSession
from integrations.models import SyncRunStatus

from .conftest import linked_asleep_org, stored_set, truth_set, wait_for_runs

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_it_syncs_exactly_and_resyncs_without_writing(asleep_sim, sync_worker):
    organization, connection = linked_asleep_org(asleep_sim, users=20, nights=30)
    sync_worker("integrations.sync_connection", [connection.pk])
    [first] = wait_for_runs(connection, 1)
    assert first.status == SyncRunStatus.SUCCEEDED, first.error
    truth = truth_set(asleep_sim)
    assert len(truth) >= 20 * 25  # the generator leaves some nights missing
    assert stored_set(connection) == truth
    assert SleepSession.objects.filter(organization=organization).count() == len(truth)
    assert NightlyMetrics.objects.filter(organization=organization).count() == len(truth)
    assert first.created == len(truth)
    assert first.fetched == first.created + first.updated + first.unchanged + first.quarantined

    sync_worker("integrations.sync_connection", [connection.pk])
    second = wait_for_runs(connection, 2)[0]
    assert second.status == SyncRunStatus.SUCCEEDED, second.error
    assert (second.created, second.updated) == (0, 0)
    assert stored_set(connection) == truth
    connection.refresh_from_db()
    assert connection.last_error == "" and connection.lease_token is None
