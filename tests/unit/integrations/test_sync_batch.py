"""Small connections synced in batches (integrations/sync_batch.py) and how beat hands them out."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.utils import timezone

from analytics.models import SleepSession
from integrations import sync_batch
from integrations.models import Connection, ConnectionStatus, ParticipantLink, SyncRun, SyncRunStatus
from integrations.providers.transport import RetryPolicy
from integrations.simulators.server import start_in_thread
from integrations.sync import due_connection_ids
from integrations.sync_batch import connections_sync, sync_plan

from ...factories import OrganizationFactory, ParticipantFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def beddit_sim(settings):
    settings.UPSTREAM_ALLOW_PRIVATE = True
    with start_in_thread("beddit", seed=5) as sim:
        yield sim


def beddit_connections(sim, count: int, *, nights: int = 4, organization=None) -> list[Connection]:
    """One Beddit connection (a user's own token) and link per new upstream user."""
    organization = organization or OrganizationFactory()
    connections = []
    for user in sim.add_users(count=count, nights=nights):
        connection = Connection.objects.create(
            organization=organization, name=f"Beddit {user['id']}", provider="beddit", base_url=sim.url,
            credentials={"token": sim.credential(user=user["id"])}, sync_interval=timedelta(hours=1),
        )
        ParticipantLink.objects.create(
            organization=organization, connection=connection,
            participant=ParticipantFactory(organization=organization), upstream_user_id=str(user["id"]),
        )
        connections.append(connection)
    return connections


def truth(sim, connection) -> set[str]:
    """Upstream ids of the nights a sync must store for the connection's user."""
    user = connection.links.get().upstream_user_id
    return {t["upstream_id"] for t in sim.truth()["sessions"] if str(t["user_id"]) == user and not t["malformed"]}


def stored(connection) -> set[str]:
    participant = connection.links.get().participant_id
    return set(SleepSession.objects.filter(participant_id=participant).values_list("upstream_id", flat=True))


def pks(connections) -> list[int]:
    return [c.pk for c in connections]


def run_of(connection) -> SyncRun:
    return SyncRun.objects.filter(connection=connection).latest("pk")


@pytest.fixture
def quick_retries(monkeypatch):
    # A connection's transient fault is retried by a task of its own, not waited out here.
    monkeypatch.setattr("integrations.adapters.SYNC_RETRY_POLICY", RetryPolicy(tries=1))


class BatchSyncTests:
    def test_every_connection_lands_exactly_once_and_a_resync_writes_nothing(self, beddit_sim):
        connections = beddit_connections(beddit_sim, 5)
        outcome = connections_sync(connection_ids=pks(connections), task_id="batch-1")
        assert sorted(outcome.synced) == pks(connections) and not outcome.failed
        before = timezone.now()
        for connection in connections:
            connection.refresh_from_db()
            assert stored(connection) == truth(beddit_sim, connection) != set()
            run = run_of(connection)
            assert (run.status, run.task_id, run.error) == (SyncRunStatus.SUCCEEDED, "batch-1", "")
            assert run.created == run.fetched == len(truth(beddit_sim, connection))
            assert connection.lease_token is None and connection.status == ConnectionStatus.ACTIVE
            # Due an interval after its own sync, whatever the others' intervals.
            assert timedelta(minutes=59) < connection.next_sync_at - before <= timedelta(hours=1)
        sessions = SleepSession.objects.count()

        synced_at = {c.pk: c.links.get().last_synced_at for c in connections}
        again = connections_sync(connection_ids=pks(connections), task_id="batch-2")
        assert sorted(again.synced) == pks(connections)
        assert SleepSession.objects.count() == sessions
        for connection in connections:
            run = run_of(connection)
            assert (run.status, run.created, run.updated) == (SyncRunStatus.SUCCEEDED, 0, 0)
            assert connection.links.get().last_synced_at > synced_at[connection.pk]

    def test_new_nights_upstream_land_on_the_next_batch(self, beddit_sim):
        connections = beddit_connections(beddit_sim, 3)
        connections_sync(connection_ids=pks(connections), task_id="first")
        user = connections[1].links.get().upstream_user_id
        beddit_sim.call("POST", f"/_sim/users/{user}/nights", json={"count": 2})
        outcome = connections_sync(connection_ids=pks(connections), task_id="second")
        assert sorted(outcome.synced) == pks(connections)
        assert stored(connections[1]) == truth(beddit_sim, connections[1])
        assert run_of(connections[1]).created == 2
        assert run_of(connections[0]).created == 0

    def test_one_connections_failures_never_stop_the_others(self, beddit_sim, quick_retries):
        good, refused, flaky, limited = beddit_connections(beddit_sim, 4)
        Connection.objects.filter(pk=refused.pk).update(credentials={"token": "revoked"})
        user_of = {c.pk: c.links.get().upstream_user_id for c in (flaky, limited)}
        beddit_sim.configure(fault_paths=f"/user/{user_of[flaky.pk]}/", error_rate=1.0)
        outcome = connections_sync(connection_ids=pks([good, refused, flaky]), task_id="b")
        assert outcome.synced == [good.pk] and sorted(outcome.failed) == sorted([refused.pk, flaky.pk])
        assert outcome.retry == [(flaky.pk, None)]  # refused credentials are not retried
        assert stored(good) == truth(beddit_sim, good)
        refused.refresh_from_db()
        assert refused.status == ConnectionStatus.NEEDS_ATTENTION
        assert run_of(refused).error == "credentials refused"
        assert (run_of(flaky).status, run_of(flaky).error) == (SyncRunStatus.FAILED, "UpstreamUnavailable")
        assert not Connection.objects.filter(lease_token__isnull=False).exists()  # every lease released

        beddit_sim.configure(fault_paths=f"/user/{user_of[limited.pk]}/", error_rate=0.0, rate_limit_rate=1.0,
                             retry_after=120)
        outcome = connections_sync(connection_ids=pks([limited, good]), task_id="c")
        assert outcome.synced == [good.pk] and outcome.retry == [(limited.pk, 120.0)]
        limited.refresh_from_db()
        assert run_of(limited).status == SyncRunStatus.DEFERRED
        assert limited.next_sync_at > timezone.now() + timedelta(seconds=100) and limited.lease_token is None

    def test_a_connection_that_cannot_build_its_client_fails_alone(self, beddit_sim):
        good, broken = beddit_connections(beddit_sim, 2)
        Connection.objects.filter(pk=broken.pk).update(credentials={})  # no token, no password
        outcome = connections_sync(connection_ids=pks([broken, good]), task_id="b")
        assert outcome.synced == [good.pk] and outcome.failed == [broken.pk] and outcome.retry == []
        assert run_of(broken).error == "internal error"
        assert not Connection.objects.filter(lease_token__isnull=False).exists()

    def test_held_connections_are_skipped_and_a_redelivered_batch_skips_what_it_synced(self, beddit_sim):
        free, held = beddit_connections(beddit_sim, 2)
        other = uuid.uuid4()
        Connection.objects.filter(pk=held.pk).update(
            lease_token=other, lease_expires_at=timezone.now() + timedelta(minutes=5)
        )
        outcome = connections_sync(connection_ids=pks([free, held]), task_id="msg")
        assert (outcome.synced, outcome.skipped) == ([free.pk], [held.pk])
        held.refresh_from_db()
        assert held.lease_token == other and not SyncRun.objects.filter(connection=held).exists()

        copy = connections_sync(connection_ids=pks([free, held]), task_id="msg")  # the message again
        assert (copy.duplicate, copy.skipped) == ([free.pk], [held.pk])
        assert SyncRun.objects.filter(connection=free).count() == 1

    def test_a_connection_its_own_dead_attempt_holds_is_due_when_that_lease_expires(self, beddit_sim):
        (connection,) = beddit_connections(beddit_sim, 1)
        token, expires = uuid.uuid4(), timezone.now() + timedelta(seconds=90)
        Connection.objects.filter(pk=connection.pk).update(lease_token=token, lease_expires_at=expires)
        SyncRun.objects.create(uuid=token, organization_id=connection.organization_id, connection=connection,
                               task_id="msg")  # the attempt whose worker was killed mid-batch
        assert connections_sync(connection_ids=[connection.pk], task_id="msg").skipped == [connection.pk]
        connection.refresh_from_db()
        assert connection.next_sync_at == expires

        Connection.objects.filter(pk=connection.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
        assert connections_sync(connection_ids=[connection.pk], task_id="msg").synced == [connection.pk]
        runs = SyncRun.objects.filter(connection=connection).order_by("pk")
        assert [r.status for r in runs] == [SyncRunStatus.FAILED, SyncRunStatus.SUCCEEDED]  # abandoned, then done
        assert stored(connection) == truth(beddit_sim, connection)

    def test_a_connection_taken_over_mid_batch_records_nothing(self, beddit_sim, monkeypatch):
        first, taken = beddit_connections(beddit_sim, 2)
        newer = uuid.uuid4()
        real = sync_batch.fetched_commit

        def then_taken_over(connection, *args, **kwargs):
            real(connection, *args, **kwargs)
            if connection.pk == taken.pk:  # its lease expired and a newer attempt took it
                Connection.objects.filter(pk=taken.pk).update(lease_token=newer)

        monkeypatch.setattr(sync_batch, "fetched_commit", then_taken_over)
        outcome = connections_sync(connection_ids=pks([first, taken]), task_id="b")
        assert (outcome.synced, outcome.failed) == ([first.pk], [taken.pk])
        taken.refresh_from_db()
        assert taken.lease_token == newer  # not released by the attempt that lost it
        assert (run_of(taken).status, run_of(taken).error) == (SyncRunStatus.FAILED, "lease lost to a newer attempt")
        assert run_of(first).status == SyncRunStatus.SUCCEEDED

    def test_out_of_time_the_rest_is_due_at_once_and_every_lease_is_released(self, beddit_sim, monkeypatch):
        connections = beddit_connections(beddit_sim, 4)
        real = sync_batch.fetched_commit

        def time_runs_out_on_the_second(connection, *args, **kwargs):
            if connection.pk == connections[1].pk:
                raise SoftTimeLimitExceeded()
            real(connection, *args, **kwargs)

        monkeypatch.setattr(sync_batch, "fetched_commit", time_runs_out_on_the_second)
        outcome = connections_sync(connection_ids=pks(connections), task_id="b")
        assert outcome.synced == [connections[0].pk]
        assert sorted(outcome.failed) == pks(connections[1:]) and outcome.retry == [(connections[1].pk, None)]
        assert stored(connections[0]) == truth(beddit_sim, connections[0])
        for connection in connections[1:]:
            connection.refresh_from_db()
            assert (run_of(connection).status, run_of(connection).error) == (SyncRunStatus.FAILED, "time limit reached")
            assert connection.lease_token is None
        assert all(c.next_sync_at <= timezone.now() for c in connections[2:])

    def test_links_are_read_within_each_connections_organization(self, beddit_sim):
        (mine,) = beddit_connections(beddit_sim, 1)
        (theirs,) = beddit_connections(beddit_sim, 1)
        # A link that names my connection but belongs to another organization is never synced.
        stray = ParticipantLink.objects.create(
            organization=theirs.organization, connection=mine,
            participant=ParticipantFactory(organization=theirs.organization),
            upstream_user_id=theirs.links.get().upstream_user_id,
        )
        connections_sync(connection_ids=pks([mine, theirs]), task_id="b")
        assert not SleepSession.objects.filter(participant_id=stray.participant_id).exists()
        assert stored(theirs) == truth(beddit_sim, theirs)


class SchedulingTests:
    def test_small_connections_go_in_batches_and_big_ones_alone(self, beddit_sim, settings):
        settings.SYNC_BATCH_MAX_LINKS, settings.SYNC_BATCH_CONNECTIONS = 1, 2
        small = beddit_connections(beddit_sim, 3)
        big = small[0].organization.connections.create(
            name="Big", provider="beddit", base_url=beddit_sim.url, credentials={"token": "t"},
        )
        for user in ("91", "92"):
            ParticipantLink.objects.create(
                organization=big.organization, connection=big,
                participant=ParticipantFactory(organization=big.organization), upstream_user_id=user,
            )
        due = [small[0].pk, big.pk, small[1].pk, small[2].pk]
        singles, batches = sync_plan(due)
        assert singles == [big.pk]
        assert batches == [[small[0].pk, small[1].pk], [small[2].pk]]
        settings.SYNC_BATCH_MAX_LINKS = 0  # batching turned off
        assert sync_plan(due) == (due, [])

    def test_the_tick_claims_every_due_connection_in_chunks_once(self, beddit_sim):
        connections = beddit_connections(beddit_sim, 5)
        Connection.objects.update(next_sync_at=timezone.now() - timedelta(seconds=1))
        assert sorted(due_connection_ids(limit=2)) == pks(connections)
        assert due_connection_ids(limit=2) == []  # claimed: a second beat finds nothing
        assert all(c.next_sync_at > timezone.now() for c in Connection.objects.all())

    def test_the_tick_queues_batches_and_retries_go_to_tasks_of_their_own(self, beddit_sim, monkeypatch, settings,
                                                                         quick_retries):
        from integrations import tasks

        settings.SYNC_BATCH_CONNECTIONS = 2
        connections = beddit_connections(beddit_sim, 3)
        Connection.objects.update(next_sync_at=timezone.now() - timedelta(seconds=1))
        queued = []
        monkeypatch.setattr(tasks.sync_connections_task, "apply_async",
                            lambda args, queue=None: queued.append(("batch", args, queue)))
        monkeypatch.setattr(tasks.sync_connection_task, "apply_async",
                            lambda args, countdown=None, queue=None: queued.append(("single", args, countdown)))
        assert tasks.schedule_due_syncs_task.apply().get() == 3
        assert queued == [("batch", [pks(connections[:2])], None), ("batch", [pks(connections[2:])], None)]

        queued.clear()
        user = connections[0].links.get().upstream_user_id
        beddit_sim.configure(fault_paths=f"/user/{user}/", error_rate=1.0)
        summary = tasks.sync_connections_task.apply(args=[pks(connections)]).get()
        assert summary == {"synced": 2, "failed": 1, "skipped": 0, "duplicate": 0, "retry": 1}
        [(kind, args, countdown)] = queued
        assert (kind, args) == ("single", [connections[0].pk]) and 1 <= countdown <= 300
