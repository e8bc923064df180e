"""Fixtures for sync tests: a simulator over real HTTP, an organization linked to it, a worker."""

import hashlib
from datetime import timedelta

import pytest
from kombu import Connection as BrokerConnection

from integrations.models import Connection, ParticipantLink, SyncRun, SyncRunStatus
from integrations.simulators.server import start_in_thread

from ...factories import OrganizationFactory, ParticipantFactory
from ..conftest import celery_worker, wait_for


@pytest.fixture
def asleep_sim():
    sim = start_in_thread("asleep", seed=11)
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


def stored_set(connection) -> set[tuple[str, str, str]]:
    """(upstream user, upstream id, stages sha256) of every stored session of a connection."""
    from analytics.models import SleepSession

    links = dict(connection.links.values_list("participant_id", "upstream_user_id"))
    rows = SleepSession.objects.filter(participant_id__in=links).values_list("participant_id", "upstream_id", "stages")
    return {(links[p], u, hashlib.sha256(bytes(s)).hexdigest()) for p, u, s in rows}


def truth_set(sim) -> set[tuple[str, str, str]]:
    return {
        (t["user_id"], t["upstream_id"], t["stages_sha256"])
        for t in sim.truth()["sessions"]
        if t["state"] == "COMPLETE" and not t["malformed"]
    }


@pytest.fixture
def sync_worker(redis_url, tmp_path):
    """A real Celery worker (prefork) consuming from real Redis; yields a send(task, args) function."""
    from config.celery_app import app

    env = {"CELERY_BROKER_URL": redis_url, "REDIS_URL": redis_url, "UPSTREAM_ALLOW_PRIVATE": "true"}
    with celery_worker(env=env, concurrency=2, log_path=tmp_path / "worker.log"):
        with BrokerConnection(redis_url) as broker:
            yield lambda name, args: app.send_task(name, args=args, connection=broker)
    worker_log = (tmp_path / "worker.log").read_text()
    assert "Traceback" not in worker_log or "Retry in" in worker_log, worker_log[-4000:]


def wait_for_runs(connection, count: int, timeout: float = 90):
    def finished():
        runs = list(SyncRun.objects.filter(connection=connection).exclude(status=SyncRunStatus.RUNNING))
        return runs if len(runs) >= count else None

    return wait_for(finished, timeout=timeout, what=f"{count} finished sync runs")
