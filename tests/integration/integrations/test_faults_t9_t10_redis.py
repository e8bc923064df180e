"""T9 redis-restart-persistent and T10 redis-wiped (shared/reliability.md §7).

- T9: the broker (a private ``redis-server`` with AOF, ``appendfsync always``) is SIGKILLed
  mid-sync and restarted from its AOF 3 s later. The worker must reconnect and consume
  again (the celery#8030 class of bug: a worker that stays up but never consumes after a
  Redis reconnect); the interrupted sync ends EXACT; the recovery time is printed.
- T10: FLUSHALL while 10 syncs are queued (one of them running). The queue is gone, but
  the database is the outbox: once the scheduler's claim on each connection lapses, beat
  re-derives the work from ``next_sync_at`` within two scheduler periods; EXACT; no
  connection is left leased, and no run "running", past the lease.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import redis as redis_lib

from integrations.models import Connection, SyncRun, SyncRunStatus

from ..conftest import wait_for
from .fault_beat import celery_beat
from .conftest import (
    _free_port,
    assert_exact,
    broker_messages,
    linked_asleep_org,
    linked_beddit_org,
    request_index_of_list,
    send_sync,
    truth_entries,
    wait_for_status,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# Shorter than the shared fault settings (visibility timeout 15 s, limits 10/8 s, lease 12 s)
# with the same ordering (limit < lease, limit < visibility timeout), so each test recovers
# in seconds: a message restored after the visibility timeout (T9), a claim that lapses (T10).
FAST = {"CELERY_VISIBILITY_TIMEOUT": 8, "CELERY_TASK_TIME_LIMIT": 5, "CELERY_TASK_SOFT_TIME_LIMIT": 4,
        "SYNC_LEASE_SECONDS": 6}


class RedisServer:
    """A private redis-server that can be killed and restarted on the same port and AOF."""

    def __init__(self, folder: Path):
        self.binary = shutil.which("redis-server")
        self.folder, self.port = folder, _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder),
             "--save", "", "--appendonly", "yes", "--appendfsync", "always",
             "--maxmemory-policy", "noeviction", "--logfile", str(self.folder / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True,
        )
        wait_for(self.ping, timeout=10, interval=0.05, what="the private redis-server")

    def ping(self) -> bool:
        client = redis_lib.Redis.from_url(self.url, socket_connect_timeout=0.5)
        try:
            return client.ping()
        except redis_lib.exceptions.ConnectionError:
            return False
        finally:
            client.close()

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def client(self) -> redis_lib.Redis:
        return redis_lib.Redis.from_url(self.url)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


@pytest.fixture
def redis_server(tmp_path):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed: T9/T10 need a private Redis they can kill and flush")
    folder = tmp_path / "redis"
    folder.mkdir()
    server = RedisServer(folder)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def broker_url(redis_server):
    """Overrides the shared fixture: the workers use the restartable server."""
    return redis_server.url


def _running_run(connection) -> SyncRun:
    return wait_for(
        lambda: SyncRun.objects.filter(connection=connection, status=SyncRunStatus.RUNNING).first(),
        timeout=10, what="the running attempt",
    )


class RedisRestartTests:
    def test_the_worker_consumes_again_after_a_restart_from_the_aof_and_the_sync_ends_exact(
        self, asleep_sim, redis_server, start_worker
    ):
        _, connection = linked_asleep_org(asleep_sim, users=3, nights=15)
        users = list(connection.links.order_by("pk").values_list("upstream_user_id", flat=True))
        barrier = request_index_of_list(truth_entries(asleep_sim), users, 1, offset=3)
        asleep_sim.arm_barrier(barrier)
        worker = start_worker("t9", **FAST)
        task_id = send_sync(redis_server.url, connection.pk)
        assert asleep_sim.wait_barrier(barrier, timeout=30)
        dead = _running_run(connection)
        # The delivered message is persisted in `unacked` (AOF, fsync always) before the kill.
        assert [m["id"] for m in broker_messages(redis_server.url)] == [task_id]

        redis_server.kill()
        killed_at = time.monotonic()
        asleep_sim.release_barrier()
        time.sleep(3)
        redis_server.start()
        restarted_at = time.monotonic()
        # The restarted server still holds the message: the AOF kept it.
        assert task_id in {m["id"] for m in broker_messages(redis_server.url)}

        [ok] = wait_for_status([connection], SyncRunStatus.SUCCEEDED, timeout=45)
        recovered_in = time.monotonic() - killed_at
        assert_exact(asleep_sim, [connection])
        assert SyncRun.objects.filter(connection=connection, status=SyncRunStatus.SUCCEEDED).count() == 1
        # The attempt cut off by the connection loss (cancelled: it could no longer ack) is
        # marked failed by the one that took over.
        dead.refresh_from_db()
        assert dead.status == SyncRunStatus.FAILED and dead.finished_at is not None
        assert "cannot be acknowledged after a connection loss" in worker.log()

        # The worker consumes new work after the reconnect (celery#8030 class): a fresh sync
        # of a second connection runs on the same, never restarted worker process.
        _, other = linked_asleep_org(asleep_sim, users=1, nights=3)
        sent_at = time.monotonic()
        send_sync(redis_server.url, other.pk)
        wait_for_status([other], SyncRunStatus.SUCCEEDED, timeout=30)
        assert worker.process.poll() is None
        assert_exact(asleep_sim, [connection, other])
        wait_for(lambda: broker_messages(redis_server.url) == [], timeout=20, what="the broker to be empty")
        print(
            f"T9 recovery: {recovered_in:.1f}s from the Redis kill to EXACT "
            f"({time.monotonic() - sent_at:.1f}s for a new task after the restart at +{restarted_at - killed_at:.1f}s)"
        )
        assert ok.task_id == task_id


SCHEDULER_SECONDS = 2


class RedisWipedTests:
    def test_beat_rederives_the_lost_work_from_next_sync_at(self, beddit_sim, redis_server, start_worker, tmp_path):
        _, connections = linked_beddit_org(beddit_sim, users=10, nights=4)
        beddit_sim.arm_barrier(1)  # the first sync holds; the other nine wait in the queue
        # Batches of one connection (integrations/sync_batch.py): ten messages, as beat sends them.
        start_worker("t10", **FAST, SYNC_BATCH_CONNECTIONS=1)
        with celery_beat(broker_url=redis_server.url, folder=tmp_path, SYNC_SCHEDULER_SECONDS=SCHEDULER_SECONDS):
            assert beddit_sim.wait_barrier(1, timeout=30)
            queued = wait_for(
                lambda: [m for m in broker_messages(redis_server.url) if m["task"] == "integrations.sync_connections"]
                if len(broker_messages(redis_server.url)) >= 10 else None,
                timeout=10, what="ten sync messages in the broker",
            )
            assert len(queued) == 10
            claimed_until = max(Connection.objects.filter(pk__in=[c.pk for c in connections]).values_list(
                "next_sync_at", flat=True))

            redis_server.client().flushall()
            flushed_at = time.time()
            assert broker_messages(redis_server.url) == []
            beddit_sim.release_barrier()

            # Lost with the queue; the scheduler's claim (next_sync_at moved a lease ahead)
            # lapses, and beat claims and enqueues them again.
            wait_for_status(connections, SyncRunStatus.SUCCEEDED, timeout=45)
            done_at = time.time()
        limit = claimed_until.timestamp() + 2 * SCHEDULER_SECONDS + 10  # + the syncs themselves
        assert done_at <= limit, (done_at - claimed_until.timestamp())
        assert_exact(beddit_sim, connections)
        for connection in Connection.objects.filter(pk__in=[c.pk for c in connections]):
            assert connection.lease_token is None and connection.next_sync_at.timestamp() > time.time() + 3000
        assert not SyncRun.objects.filter(connection__in=connections, status=SyncRunStatus.RUNNING).exists()
        assert SyncRun.objects.filter(connection__in=connections).count() == 10  # each ran once
        print(f"T10 recovery: {done_at - flushed_at:.1f}s from FLUSHALL to all ten synced")
