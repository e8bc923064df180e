"""A big connection's sync split across shard tasks under one lease (integrations/sync_shards.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from analytics.models import SleepSession
from integrations import sync_shards
from integrations.models import Connection, ConnectionStatus, SyncRun, SyncRunStatus
from integrations.providers.errors import UpstreamRateLimited, UpstreamUnavailable
from integrations.simulators.server import start_in_thread
from integrations.sync import connection_sync
from integrations.sync_shards import shard_sync

from .conftest import complete_nights, linked_asleep_connection, stored_nights

KEY = "shard-test-key"
pytestmark = pytest.mark.django_db


@pytest.fixture
def asleep_sim():
    with start_in_thread("asleep", seed=31, keys=[KEY]) as sim:
        yield sim


@pytest.fixture
def connection(asleep_sim, settings):
    settings.UPSTREAM_ALLOW_PRIVATE = True
    settings.SYNC_SHARD_MIN_LINKS, settings.SYNC_SHARDS = 4, 2
    return linked_asleep_connection(asleep_sim, KEY, users=6, nights=5)


truth, stored = complete_nights, stored_nights


def split(connection, task_id: str = "parent-task"):
    outcome = connection_sync(connection_id=connection.pk, task_id=task_id)
    assert outcome.status == "sharded" and outcome.shards == (0, 1)
    return outcome


def run_shard(outcome, shard: int):
    return shard_sync(connection_id=outcome_connection(outcome), run_id=outcome.run_id, token=outcome.token,
                      shard=shard)


def outcome_connection(outcome) -> int:
    return SyncRun.objects.get(pk=outcome.run_id).connection_id


class SplitRunTests:
    def test_the_shards_together_sync_exactly_and_the_last_one_ends_the_run(self, asleep_sim, connection):
        parent = split(connection)
        connection.refresh_from_db()
        assert str(connection.lease_token) == parent.token  # held by the run, not by a task
        run = SyncRun.objects.get(pk=parent.run_id)
        assert (run.status, run.shards) == (SyncRunStatus.RUNNING, 2)

        assert run_shard(parent, 1).status == "shard_done"
        assert SyncRun.objects.get(pk=parent.run_id).status == SyncRunStatus.RUNNING
        assert run_shard(parent, 1).status == "duplicate"  # redelivered after its bit was set
        assert run_shard(parent, 0).status == "succeeded"

        run.refresh_from_db()
        connection.refresh_from_db()
        assert run.status == SyncRunStatus.SUCCEEDED and run.finished_at is not None
        assert connection.lease_token is None and connection.status == ConnectionStatus.ACTIVE
        assert stored(connection) == truth(asleep_sim)
        assert run.created == run.fetched == len(truth(asleep_sim))
        assert all(link.cursor and link.last_synced_at for link in connection.links.all())

        again = split(connection, task_id="second")
        assert run_shard(again, 0).status == "shard_done" and run_shard(again, 1).status == "succeeded"
        second = SyncRun.objects.get(pk=again.run_id)
        assert (second.created, second.updated) == (0, 0) and second.status == SyncRunStatus.SUCCEEDED
        # The lookback's nights, read and found unchanged without a page commit, still count.
        assert second.fetched == second.unchanged > 0

    def test_each_link_belongs_to_exactly_one_shard(self, connection):
        from integrations.sync import connection_links

        shard_links = [connection_links(connection, k, 3) for k in range(3)]
        pks = [link.pk for links in shard_links for link in links]
        assert sorted(pks) == sorted(connection.links.values_list("pk", flat=True))
        assert len(pks) == len(set(pks))

    def test_a_redelivered_parent_queues_only_the_shards_not_done(self, connection):
        parent = split(connection, task_id="t-1")
        run_shard(parent, 0)
        copy = connection_sync(connection_id=connection.pk, task_id="t-1")
        assert (copy.status, copy.shards, copy.token) == ("sharded", (1,), parent.token)
        other = connection_sync(connection_id=connection.pk, task_id="someone-else")
        assert other.status == "skipped"  # the lease is the run's

    def test_a_shard_of_a_run_taken_over_writes_nothing(self, asleep_sim, connection, settings):
        parent = split(connection)
        Connection.objects.filter(pk=connection.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
        settings.SYNC_SHARD_MIN_LINKS = 1000  # the next attempt syncs in one task
        assert connection_sync(connection_id=connection.pk, task_id="next").status == "succeeded"
        assert SyncRun.objects.get(pk=parent.run_id).status == SyncRunStatus.FAILED  # abandoned
        before = SleepSession.objects.count()
        assert run_shard(parent, 0).status == "duplicate"
        assert SleepSession.objects.count() == before

    def test_a_stale_shard_stops_at_its_first_commit(self, asleep_sim, connection, monkeypatch):
        parent = split(connection)
        real = sync_shards.links_sync

        def taken_over_meanwhile(*args, **kwargs):
            Connection.objects.filter(pk=connection.pk).update(lease_token=None)
            return real(*args, **kwargs)

        monkeypatch.setattr(sync_shards, "links_sync", taken_over_meanwhile)
        assert run_shard(parent, 0).status == "skipped"
        assert SleepSession.objects.count() == 0

    def test_a_rate_limit_in_one_shard_defers_the_run_and_the_other_shard_stops(self, connection, monkeypatch):
        parent = split(connection)

        def limited(*args, **kwargs):
            raise UpstreamRateLimited("slow down", retry_after=120, provider="asleep")

        monkeypatch.setattr(sync_shards, "links_sync", limited)
        assert run_shard(parent, 0).status == "deferred"
        run = SyncRun.objects.get(pk=parent.run_id)
        connection.refresh_from_db()
        assert run.status == SyncRunStatus.DEFERRED and connection.lease_token is None
        assert connection.next_sync_at > timezone.now() + timedelta(seconds=100)
        monkeypatch.undo()
        assert run_shard(parent, 1).status == "duplicate"
        assert SleepSession.objects.count() == 0

    def test_a_transient_fault_keeps_the_lease_for_the_shards_retry(self, asleep_sim, connection, monkeypatch):
        parent = split(connection)
        real = sync_shards.links_sync
        calls = []

        def flaky(*args, **kwargs):
            calls.append(1)
            if len(calls) == 1:
                raise UpstreamUnavailable("down", provider="asleep")
            return real(*args, **kwargs)

        monkeypatch.setattr(sync_shards, "links_sync", flaky)
        outcome = run_shard(parent, 0)
        assert (outcome.status, outcome.transient) == ("failed", True)
        connection.refresh_from_db()
        assert str(connection.lease_token) == parent.token
        assert run_shard(parent, 0).status == "shard_done"  # the retry
        assert run_shard(parent, 1).status == "succeeded"
        assert stored(connection) == truth(asleep_sim)

    def test_the_task_queues_one_task_per_shard_on_its_own_queue(self, connection, monkeypatch):
        from integrations import tasks

        queued = []
        monkeypatch.setattr(
            tasks.sync_connection_shard_task, "apply_async", lambda args, queue=None: queued.append((args, queue))
        )
        assert tasks.sync_connection_task.apply(args=[connection.pk]).get() == "sharded"
        run = SyncRun.objects.get(connection=connection)
        assert [(args[0], args[1], args[3]) for args, _ in queued] == [(connection.pk, run.pk, 0), (connection.pk, run.pk, 1)]
        assert all(args[2] == str(run.uuid) for args, _ in queued)
