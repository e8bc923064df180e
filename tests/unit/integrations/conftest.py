"""Fixtures for the integrations tests: the simulators over real HTTP (threads), an
organization linked to an Asleep simulator (sync tests), one connection per PSG scorer, EDF
recordings, and a fresh upload folder per test."""

from datetime import datetime, timedelta

import numpy as np
import pytest

from analytics.models import SleepSession
from integrations.models import Connection, ParticipantLink
from integrations.simulators.edf import make_edf
from integrations.simulators.nights import synthetic_hypnogram
from integrations.simulators.server import start_in_thread

from ...factories import OrganizationFactory, ParticipantFactory

USLEEP_TOKEN = "usleep-test-token"
GC_TOKEN = "gc-test-token"
GC_ALGORITHM = "sleep-staging"  # the simulator's preloaded algorithm


def linked_asleep_connection(sim, api_key: str, *, users: int, nights: int) -> Connection:
    """A new organization with one Asleep connection to ``sim`` and a participant linked to
    each of ``users`` new upstream users with ``nights`` nights."""
    organization = OrganizationFactory()
    connection = Connection.objects.create(
        organization=organization, name="Asleep", provider="asleep", base_url=sim.url,
        credentials={"api_key": api_key}, sync_interval=timedelta(hours=1),
    )
    for user in sim.add_users(count=users, nights=nights):
        ParticipantLink.objects.create(
            organization=organization, connection=connection,
            participant=ParticipantFactory(organization=organization), upstream_user_id=user["id"],
        )
    return connection


def complete_nights(sim) -> set[tuple[str, str]]:
    """(upstream user, upstream id) of every COMPLETE night the simulator holds."""
    return {(t["user_id"], t["upstream_id"]) for t in sim.truth()["sessions"] if t["state"] == "COMPLETE"}


def stored_nights(connection) -> set[tuple[str, str]]:
    """(upstream user, upstream id) of every night stored for the connection's participants."""
    users = dict(connection.links.values_list("participant_id", "upstream_user_id"))
    rows = SleepSession.objects.filter(participant_id__in=users).values_list("participant_id", "upstream_id")
    return {(users[p], u) for p, u in rows}


def psg_edf(minutes: int = 30, *, seed: int = 4, start: datetime = datetime(2026, 3, 2, 23, 15, 0)) -> bytes:
    """A small PSG (EEG, EOG, EMG at 64 Hz) whose signals follow a synthetic night."""
    stages = synthetic_hypnogram(f"psg-{seed}".encode(), minutes * 2)
    return make_edf(minutes * 60, seed=seed, start=start, stages=np.asarray(stages))


@pytest.fixture
def usleep_sim():
    with start_in_thread("usleep", tokens=[USLEEP_TOKEN], job_seconds=0) as sim:
        yield sim


@pytest.fixture
def gc_sim():
    with start_in_thread("grand_challenge", tokens=[GC_TOKEN], job_seconds=0) as sim:
        yield sim


@pytest.fixture
def scorer_settings(settings):
    settings.UPSTREAM_ALLOW_PRIVATE = True  # the simulators listen on 127.0.0.1
    return settings


@pytest.fixture
def psg_org(db):
    organization = OrganizationFactory(timezone="Europe/Berlin")
    participant = ParticipantFactory(organization=organization, timezone="America/New_York")
    return organization, participant


def usleep_connection(organization, sim, **fields) -> Connection:
    return Connection.objects.create(
        organization=organization, name="U-Sleep", provider="usleep", base_url=sim.url,
        credentials={"token": USLEEP_TOKEN}, **fields,
    )


def gc_connection(organization, sim, **fields) -> Connection:
    fields.setdefault("options", {"algorithm_slug": GC_ALGORITHM})
    return Connection.objects.create(
        organization=organization, name="Grand Challenge", provider="grand_challenge", base_url=sim.api_url,
        credentials={"token": GC_TOKEN}, **fields,
    )


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    """Each test its own upload folder, so a test can see exactly what it stored."""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return tmp_path / "media"
