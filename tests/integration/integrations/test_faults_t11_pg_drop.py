"""T11 pg-drop-mid-bulk (shared/reliability.md §7), PostgreSQL only.

A test-only trigger makes the INSERT of a page's sessions sleep (``pg_sleep(2)``); while the
worker's backend sleeps inside that page's transaction, the test kills it with
``pg_terminate_backend``. Pass: no partial page (the page's sessions and its cursor roll
back together), the sync is retried and ends EXACT, and the worker's next task gets a
healthy connection.

SQLite has no server backend to terminate (the database is a file opened in-process), so
there is no equivalent fault to inject: the test skips there.
"""

from __future__ import annotations

import pytest
from django.db import connection as db

from analytics.models import SleepSession
from integrations.models import ParticipantLink, SyncRun, SyncRunStatus

from ..conftest import wait_for
from .conftest import (
    assert_exact,
    broker_messages,
    linked_asleep_org,
    request_index_of_list,
    send_sync,
    truth_entries,
    wait_for_status,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def postgres():
    if db.vendor != "postgresql":
        pytest.skip("T11 kills a PostgreSQL server backend; SQLite has none (set DATABASE_URL=postgres://...)")


@pytest.fixture
def slow_session_insert(postgres):
    """``arm()`` installs the pg_sleep(2) trigger on session inserts; removed after the test."""
    table = SleepSession._meta.db_table

    def arm():
        with db.cursor() as cursor:
            cursor.execute(
                "CREATE OR REPLACE FUNCTION t11_slow_insert() RETURNS trigger AS $$ "
                "BEGIN PERFORM pg_sleep(2); RETURN NULL; END $$ LANGUAGE plpgsql"
            )
            cursor.execute(
                f"CREATE TRIGGER t11_slow_insert BEFORE INSERT ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION t11_slow_insert()"
            )

    def disarm():
        with db.cursor() as cursor:
            cursor.execute(f"DROP TRIGGER IF EXISTS t11_slow_insert ON {table}")
            cursor.execute("DROP FUNCTION IF EXISTS t11_slow_insert()")

    yield arm, disarm
    disarm()


def _sleeping_backends() -> list[int]:
    with db.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND wait_event = 'PgSleep'"
        )
        return [pid for (pid,) in cursor.fetchall()]


def _terminate(pids: list[int]) -> None:
    with db.cursor() as cursor:
        for pid in pids:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])


class PgDropMidBulkTests:
    def test_a_page_killed_mid_insert_rolls_back_whole_and_the_retry_ends_exact(
        self, asleep_sim, broker_url, start_worker, slow_session_insert
    ):
        arm, disarm = slow_session_insert
        _, connection = linked_asleep_org(asleep_sim, users=3, nights=12)
        links = list(ParticipantLink.objects.filter(connection=connection).order_by("pk"))
        users = [link.upstream_user_id for link in links]
        page_two = request_index_of_list(truth_entries(asleep_sim), users, 1)
        asleep_sim.arm_barrier(page_two)
        worker = start_worker("t11")
        task_id = send_sync(broker_url, connection.pk)
        assert asleep_sim.wait_barrier(page_two, timeout=30)
        # Page 1 (the first participant) commits (the engine fetches ahead, so it may still be
        # committing when page 2's request arrives); page 2's insert will sleep.
        first_page = wait_for(
            lambda: SleepSession.objects.filter(participant_id=links[0].participant_id).count(),
            timeout=10, what="page 1 to commit",
        )
        links[0].refresh_from_db()
        assert links[0].cursor is not None
        arm()
        asleep_sim.release_barrier()

        pids = wait_for(_sleeping_backends, timeout=20, interval=0.05, what="the worker's backend in pg_sleep")
        _terminate(pids)
        disarm()

        # No partial page: nothing of participant 2 was written, and its cursor did not move.
        assert SleepSession.objects.filter(participant_id=links[1].participant_id).count() == 0
        links[1].refresh_from_db()
        assert links[1].cursor is None
        assert SleepSession.objects.filter(participant_id=links[0].participant_id).count() == first_page

        [ok] = wait_for_status([connection], SyncRunStatus.SUCCEEDED, timeout=45)
        assert ok.task_id == task_id  # the same message, retried
        assert_exact(asleep_sim, [connection])
        runs = list(SyncRun.objects.filter(connection=connection).order_by("started_at"))
        assert [r.status for r in runs] == [SyncRunStatus.FAILED, SyncRunStatus.SUCCEEDED]
        assert runs[0].error == "database connection lost"

        # The next task on the same worker gets a healthy connection.
        _, other = linked_asleep_org(asleep_sim, users=1, nights=3)
        send_sync(broker_url, other.pk)
        wait_for_status([other], SyncRunStatus.SUCCEEDED, timeout=30)
        assert_exact(asleep_sim, [connection, other])
        wait_for(lambda: broker_messages(broker_url) == [], timeout=20, what="the broker to be empty")
        assert f"integrations.sync_connection[{task_id}] retry: Retry in" in worker.log()
        assert "Traceback" not in worker.log()
