"""Fixtures for the integrations tests (PSG scoring): the scoring simulators over real HTTP
(threads), an organization with a participant and one connection per scorer, EDF recordings,
and a fresh upload folder per test."""

from datetime import datetime

import numpy as np
import pytest

from integrations.models import Connection
from integrations.simulators.edf import make_edf
from integrations.simulators.nights import synthetic_hypnogram
from integrations.simulators.server import start_in_thread

from ...factories import OrganizationFactory, ParticipantFactory

USLEEP_TOKEN = "usleep-test-token"
GC_TOKEN = "gc-test-token"
GC_ALGORITHM = "sleep-staging"  # the simulator's preloaded algorithm


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
