"""A big connection synced by shard tasks on a real worker (integrations/sync_shards.py):
both pool processes take part, the run ends EXACT once, and a pool child killed mid-shard
costs nothing but a re-run of its shard under the same run."""

import os
import re
import signal
from datetime import datetime

import pytest

from integrations.models import SyncRun, SyncRunStatus

from ..conftest import wait_for
from .conftest import assert_exact, linked_asleep_org, send_sync, wait_for_status

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

SHARDED = {"SYNC_SHARD_MIN_LINKS": 4, "SYNC_SHARDS": 2}


def test_both_pool_processes_sync_one_connection_exactly(asleep_sim, broker_url, start_worker):
    _, connection = linked_asleep_org(asleep_sim, users=8, nights=10)
    asleep_sim.configure(latency=0.01)
    worker = start_worker("shards", concurrency=2, **SHARDED)
    worker.wait_ready()
    send_sync(broker_url, connection.pk)
    [run] = wait_for_status([connection], SyncRunStatus.SUCCEEDED, timeout=60)
    assert run.shards == 2 and run.shards_done == 0b11
    assert_exact(asleep_sim, [connection])
    assert SyncRun.objects.filter(connection=connection).count() == 1
    # The two shard tasks ran at the same time (so in the two pool processes): their
    # [end - duration, end] intervals, read off the worker's log, overlap.
    spans = []
    for line in worker.log().splitlines():
        found = re.search(r"^(\S+ \S+) .*sync_connection_shard\[.*\] succeeded in ([0-9.]+)s", line)
        if found:
            end = datetime.strptime(found[1], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            spans.append((end - float(found[2]), end))
    assert len(spans) == 2
    (start_a, end_a), (start_b, end_b) = spans
    assert start_a < end_b and start_b < end_a, spans

    send_sync(broker_url, connection.pk)
    runs = wait_for_status([connection], SyncRunStatus.SUCCEEDED, count=2, timeout=60)
    second = max(runs, key=lambda r: r.started_at)
    assert (second.created, second.updated) == (0, 0)
    assert_exact(asleep_sim, [connection])


def test_a_pool_child_killed_mid_shard_reruns_its_shard_under_the_same_run(asleep_sim, broker_url, start_worker):
    _, connection = linked_asleep_org(asleep_sim, users=8, nights=15)
    asleep_sim.configure(latency=0.03)
    worker = start_worker("shards-kill", concurrency=2, **SHARDED)
    worker.wait_ready()
    send_sync(broker_url, connection.pk)
    run = wait_for(
        lambda: SyncRun.objects.filter(connection=connection, shards=2, fetched__gt=0).first(),
        timeout=30, what="a shard's first commit",
    )
    for child in worker.children():  # whichever runs a shard now, it dies mid-way
        os.kill(child, signal.SIGKILL)
    run.refresh_from_db()
    assert run.status == SyncRunStatus.RUNNING

    [ok] = wait_for_status([connection], SyncRunStatus.SUCCEEDED, timeout=60)
    assert ok.pk == run.pk  # the same run: its lease held, the lost shard re-ran
    assert_exact(asleep_sim, [connection])
    assert SyncRun.objects.filter(connection=connection).count() == 1
    assert "WorkerLostError" in worker.log()
