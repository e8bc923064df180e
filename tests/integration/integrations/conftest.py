"""Fixtures for sync tests: simulators over real HTTP, organizations linked to them, workers.

The fault tests (shared/reliability.md §7 T2-T15) use:
- ``broker_url``: a private ``redis-server`` per test (AOF, noeviction), so killing, flushing
  or inspecting the broker never touches another suite's Redis;
- ``start_worker``: real ``celery -A config worker -P prefork`` processes with short
  visibility timeout, time limits and lease (``FAULT_ENV``), whose main and pool-child pids
  the test can signal;
- ``assert_exact``: the EXACT definition of reliability.md §7.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest
import redis as redis_lib
from kombu import Connection as BrokerConnection

from integrations.models import Connection, ParticipantLink, QuarantinedRecord, SyncRun, SyncRunStatus
from integrations.simulators.server import start_in_thread

from ...factories import OrganizationFactory, ParticipantFactory
from ..conftest import celery_worker, wait_for

# --- simulators and organizations ---------------------------------------------------------------


@pytest.fixture
def asleep_sim():
    sim = start_in_thread("asleep", seed=11)
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture
def beddit_sim():
    sim = start_in_thread("beddit", seed=11)
    try:
        yield sim
    finally:
        sim.stop()


def linked_asleep_org(sim, *, users: int, nights: int):
    """An organization with one Asleep connection and `users` participants linked to it."""
    key = sim.credential()
    upstream_users = sim.add_users(count=users, nights=nights)
    organization = OrganizationFactory()
    connection = Connection.objects.create(
        organization=organization, name="Asleep", provider="asleep", base_url=sim.url,
        credentials={"api_key": key}, sync_interval=timedelta(hours=1),
    )
    for upstream in upstream_users:
        participant = ParticipantFactory(organization=organization)
        ParticipantLink.objects.create(
            organization=organization, connection=connection, participant=participant,
            upstream_user_id=upstream["id"],
        )
    return organization, connection


def linked_beddit_org(sim, *, users: int, nights: int):
    """An organization with one Beddit connection (a user token) per participant."""
    organization = OrganizationFactory()
    connections = []
    for upstream in sim.add_users(count=users, nights=nights):
        token = sim.call("POST", "/_sim/credentials", json={"user": upstream["id"]})["value"]
        connection = Connection.objects.create(
            organization=organization, name=f"Beddit {upstream['id']}", provider="beddit",
            base_url=sim.url, credentials={"token": token}, sync_interval=timedelta(hours=1),
        )
        ParticipantLink.objects.create(
            organization=organization, connection=connection,
            participant=ParticipantFactory(organization=organization),
            upstream_user_id=str(upstream["id"]),
        )
        connections.append(connection)
    return organization, connections


def stored_set(connection) -> set[tuple[str, str, str]]:
    """(upstream user, upstream id, stages sha256) of every stored session of a connection."""
    from analytics.models import SleepSession

    links = dict(connection.links.values_list("participant_id", "upstream_user_id"))
    rows = SleepSession.objects.filter(participant_id__in=links).values_list("participant_id", "upstream_id", "stages")
    return {(links[p], u, hashlib.sha256(bytes(s)).hexdigest()) for p, u, s in rows}


def truth_set(sim) -> set[tuple[str, str, str]]:
    """The simulator's sessions a sync must store: (user, upstream id, canonical stages sha256)."""
    return {(t["user_id"], t["upstream_id"], t["sha"]) for t in truth_entries(sim) if not t["malformed"]}


def truth_entries(sim) -> list[dict]:
    """Every session the simulator holds, with ``sha`` of its canonical stages."""
    if sim.provider == "asleep":
        entries = [t for t in sim.truth()["sessions"] if t["state"] == "COMPLETE"]
        for t in entries:
            t["sha"] = t["stages_sha256"]  # the Asleep simulator hashes canonical stages already
        return entries
    from integrations.providers.beddit import epochs_to_canonical

    entries = sim.truth(stages=1)["sessions"]
    for t in entries:
        # Beddit's truth hashes its own per-epoch codes; map them as the client does.
        _, canonical = epochs_to_canonical(np.asarray(t.pop("provider_stages"), dtype=np.int64))
        t["sha"] = hashlib.sha256(canonical.astype(np.int8).tobytes()).hexdigest()
        t.pop("stages", None)
    return entries


def assert_exact(sim, connections) -> None:
    """EXACT (reliability.md §7) for these connections against the simulator's truth.

    - the stored (user, upstream id, content) set equals the truth, with no duplicate key;
    - one NightlyMetrics row per session;
    - every cursor is at or before the committed data it stands for;
    - every finished SyncRun has fetched = created + updated + unchanged + quarantined.
    """
    from analytics.models import NightlyMetrics, SleepSession

    entries = truth_entries(sim)
    truth = {(t["user_id"], t["upstream_id"], t["sha"]) for t in entries if not t["malformed"]}
    links = list(ParticipantLink.objects.filter(connection__in=connections))
    user_of = {link.participant_id: link.upstream_user_id for link in links}
    rows = list(
        SleepSession.objects.filter(participant_id__in=user_of).values_list(
            "pk", "participant_id", "provider", "upstream_id", "stages"
        )
    )
    keys = [(p, provider, u) for _, p, provider, u, _ in rows]
    assert len(keys) == len(set(keys)), "duplicate sessions"
    stored = {(user_of[p], u, hashlib.sha256(bytes(s)).hexdigest()) for _, p, _, u, s in rows}
    missing, extra = truth - stored, stored - truth
    assert not missing and not extra, (
        f"{len(missing)} missing {sorted(missing)[:3]}, {len(extra)} extra {sorted(extra)[:3]}"
    )

    session_ids = {pk for pk, *_ in rows}
    metric_ids = list(NightlyMetrics.objects.filter(session_id__in=session_ids).values_list("session_id", flat=True))
    assert sorted(metric_ids) == sorted(session_ids), "not exactly one NightlyMetrics row per session"

    quarantined = set(
        QuarantinedRecord.objects.filter(connection__in=connections).values_list("upstream_id", flat=True)
    )
    committed_ids = {u for _, _, _, u, _ in rows} | quarantined
    by_user: dict[str, list[dict]] = {}
    for t in entries:
        if t["upstream_id"] in committed_ids:
            by_user.setdefault(t["user_id"], []).append(t)
    for link in links:
        committed = by_user.get(link.upstream_user_id, [])
        if link.cursor in (None, "", {}):
            continue
        if isinstance(link.cursor, str):  # Asleep: the date (UTC) to re-read from
            newest = max(date.fromisoformat(t["start"][:10]) for t in committed)
            assert date.fromisoformat(link.cursor) <= newest, (link.cursor, newest)
        else:  # Beddit: the newest `updated` delivered
            newest = max(t["updated"] for t in committed)
            assert link.cursor["updated_after"] <= newest + 1e-6, (link.cursor, newest)

    for run in SyncRun.objects.filter(connection__in=connections).exclude(status=SyncRunStatus.RUNNING):
        assert run.fetched == run.created + run.updated + run.unchanged + run.quarantined, run.__dict__


# --- broker and workers -------------------------------------------------------------------------

# Test settings of reliability.md §7 "Shared harness": visibility timeout 15 s, time limits
# 10/8 s; the lease outlives the hard limit; kombu sweeps `unacked` every second.
FAULT_ENV = {
    "CELERY_VISIBILITY_TIMEOUT": "15",
    "CELERY_TASK_TIME_LIMIT": "10",
    "CELERY_TASK_SOFT_TIME_LIMIT": "8",
    "SYNC_LEASE_SECONDS": "12",
    "CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT": "5",
    "CELERY_UNACKED_RESTORE_INTERVAL": "1",
    "CELERY_UNACKED_RESTORE_THROTTLE": "1",
    "UPSTREAM_ALLOW_PRIVATE": "true",
}
VISIBILITY_TIMEOUT = 15


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def broker_url(tmp_path, request):
    """A private redis-server for this test (falls back to the shared test Redis without one)."""
    binary = shutil.which("redis-server")
    if binary is None:
        yield request.getfixturevalue("redis_url")
        return
    folder = tmp_path / "redis"
    folder.mkdir()
    port = _free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder), "--save", "",
         "--appendonly", "yes", "--appendfsync", "always", "--maxmemory-policy", "noeviction",
         "--logfile", str(folder / "redis.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis_lib.Redis.from_url(url, socket_connect_timeout=1)

    def up():
        try:
            return client.ping()
        except redis_lib.exceptions.ConnectionError:
            return False

    try:
        wait_for(up, timeout=10, interval=0.05, what="the private redis-server")
        yield url
    finally:
        client.close()
        process.terminate()
        process.wait(10)


class Worker:
    """A running `celery worker` process group: its pids, log and signals."""

    def __init__(self, name: str, log_path: Path, env: dict[str, str], concurrency: int):
        self.name, self.log_path = name, log_path
        self._context = celery_worker(env=env, concurrency=concurrency, log_path=log_path)
        self.process = self._context.__enter__()
        self.pid = self.process.pid

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def wait_ready(self, timeout: float = 30) -> None:
        wait_for(lambda: " ready." in self.log(), timeout=timeout, what=f"{self.name} to be ready")

    def children(self) -> list[int]:
        """Pids of the pool processes (the main process's children)."""
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            # "pid (comm) state ppid ...": comm may hold spaces, so split after the last ")".
            if int(stat.rsplit(")", 1)[1].split()[1]) == self.pid:
                found.append(int(entry))
        return found

    def signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            pass

    def wait_exit(self, timeout: float) -> int:
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        """Stop at once (SIGCONT first, in case the test froze it); the test is over."""
        self.signal_group(signal.SIGCONT)
        self.signal_group(signal.SIGKILL)
        self._context.__exit__(None, None, None)


@pytest.fixture
def start_worker(broker_url, tmp_path):
    """``start_worker(name, concurrency=1, **env)`` starts a worker on the private broker."""
    started: list[Worker] = []

    def start(name: str = "worker", *, concurrency: int = 1, **overrides) -> Worker:
        env = {**FAULT_ENV, "CELERY_BROKER_URL": broker_url, **{k: str(v) for k, v in overrides.items()}}
        worker = Worker(name, tmp_path / f"{name}.log", env, concurrency)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def send_sync(broker_url: str, connection_id: int, *, task_id: str | None = None) -> str:
    """Enqueue a sync of one connection, as beat or the API would; returns the task id.

    ``task_id`` re-sends an earlier message, as a broker redelivery would.
    """
    from config.celery_app import app

    with BrokerConnection(broker_url) as broker:
        return app.send_task(
            "integrations.sync_connection", args=[connection_id], connection=broker, task_id=task_id
        ).id


def broker_messages(broker_url: str) -> list[dict]:
    """Every message the broker holds: waiting in the queue or delivered but not acked."""
    client = redis_lib.Redis.from_url(broker_url)
    try:
        found = [("queue", json.loads(raw)) for raw in client.lrange("default", 0, -1)]
        found += [("unacked", json.loads(raw)[0]) for raw in client.hvals("unacked")]
    finally:
        client.close()
    return [
        {"where": where, "id": m["headers"].get("id"), "task": m["headers"].get("task"),
         "eta": m["headers"].get("eta"), "retries": m["headers"].get("retries")}
        for where, m in found
    ]


def wait_for_status(connections, status: str, *, count: int = 1, timeout: float = 45) -> list[SyncRun]:
    """Wait until each connection has `count` runs in `status`; returns all such runs."""
    def done():
        runs = list(SyncRun.objects.filter(connection__in=connections, status=status))
        per = {c.pk: sum(1 for r in runs if r.connection_id == c.pk) for c in connections}
        return runs if all(n >= count for n in per.values()) else None

    return wait_for(done, timeout=timeout, interval=0.1, what=f"{count} {status} run(s) per connection")


def request_index_of_list(sim_truth: list[dict], users: list[str], k: int, *, offset: int = 0) -> int:
    """Asleep: the simulator request index of user k's first list page in a first full sync.

    A sync walks links in order; per user: one list page (<=100 nights), then one report per
    COMPLETE night that is not malformed (a malformed list item is quarantined unread).
    ``sim_truth`` is ``truth_entries(sim)``; indexes count from 1.
    """
    index = 1
    for user in users[:k]:
        index += 1 + sum(1 for t in sim_truth if t["user_id"] == user and not t["malformed"])
    return index + offset


@pytest.fixture
def sync_worker(broker_url, tmp_path):
    """A real Celery worker (prefork) consuming from real Redis; yields a send(task, args) function."""
    from config.celery_app import app

    env = {"CELERY_BROKER_URL": broker_url, "REDIS_URL": broker_url, "UPSTREAM_ALLOW_PRIVATE": "true"}
    with celery_worker(env=env, concurrency=2, log_path=tmp_path / "worker.log"):
        with BrokerConnection(broker_url) as broker:
            yield lambda name, args: app.send_task(name, args=args, connection=broker)
    worker_log = (tmp_path / "worker.log").read_text()
    assert "Traceback" not in worker_log or "Retry in" in worker_log, worker_log[-4000:]


def wait_for_runs(connection, count: int, timeout: float = 90):
    def finished():
        runs = list(SyncRun.objects.filter(connection=connection).exclude(status=SyncRunStatus.RUNNING))
        return runs if len(runs) >= count else None

    return wait_for(finished, timeout=timeout, what=f"{count} finished sync runs")


def wait_until(deadline: float) -> None:
    """Sleep (in the test process) until a time.time() deadline."""
    left = deadline - time.time()
    if left > 0:
        time.sleep(left)
