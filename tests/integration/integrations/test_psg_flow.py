"""PSG flow end to end: an admin uploads an EDF through the API; a real Celery worker
(real Redis) submits it, polls by retrying itself with a countdown, stores the hypnogram as
a canonical night and deletes the upstream U-Sleep session. Once per scorer."""

from contextlib import contextmanager
from datetime import datetime

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from kombu import Connection as BrokerConnection
from rest_framework.test import APIClient

from analytics.models import NightlyMetrics
from integrations.models import Connection, PsgRecording, PsgStatus
from integrations.providers.base import STAGE_NAME_CODES
from integrations.simulators.edf import make_edf
from integrations.simulators.nights import USLEEP_CLASSES, synthetic_hypnogram
from integrations.simulators.server import start_in_thread
from integrations.simulators.usleep import expected_hypnogram
from tenants.roles import Role

from ...factories import MembershipFactory, OrganizationFactory, ParticipantFactory, UserFactory
from ..conftest import celery_worker, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@contextmanager
def publishing_to(app, broker_url: str):
    """Make this process's Celery app (the API's on_commit .delay()) publish to ``broker_url``."""
    saved = app.conf.broker_url, app.conf.broker_transport_options

    def reset_pools():
        # Celery caches its connection and producer pools; drop them, as it does after a fork.
        app._pool = None
        if "amqp" in app.__dict__:
            app.amqp._producer_pool = None

    app.conf.broker_url, app.conf.broker_transport_options = broker_url, {}
    reset_pools()
    try:
        with BrokerConnection(broker_url) as broker:
            broker.ensure_connection(max_retries=3)
        yield
    finally:
        app.conf.broker_url, app.conf.broker_transport_options = saved
        reset_pools()


@pytest.fixture
def sims():
    # A few seconds of scoring: the first poll finds it pending, so the worker must retry.
    with start_in_thread("usleep", tokens=["usleep-token"], job_seconds=3) as usleep:
        with start_in_thread("grand_challenge", tokens=["gc-token"], job_seconds=3) as gc:
            yield usleep, gc


@pytest.fixture
def psg_worker(sims, redis_url, tmp_path, settings):
    from config.celery_app import app

    _, gc = sims
    env = {
        "CELERY_BROKER_URL": redis_url, "REDIS_URL": redis_url, "UPSTREAM_ALLOW_PRIVATE": "true",
        "UPSTREAM_CA_BUNDLE": gc.cert,  # trust the Grand Challenge simulator's certificate
        "PLATFORM_MEDIA_ROOT": str(settings.MEDIA_ROOT),  # the uploads this process stores
    }
    log_path = tmp_path / "worker.log"
    with celery_worker(env=env, concurrency=2, log_path=log_path), publishing_to(app, redis_url):
        yield log_path
    worker_log = log_path.read_text()
    assert "Traceback" not in worker_log, worker_log[-4000:]


def _admin_client(organization) -> APIClient:
    user = UserFactory()
    MembershipFactory(organization=organization, user=user, role=Role.ADMIN)
    client = APIClient()
    client.force_authenticate(user)
    return client


def _edf(seed: int) -> bytes:
    stages = synthetic_hypnogram(f"flow-{seed}".encode(), 120)
    return make_edf(3600, seed=seed, start=datetime(2026, 3, 2, 23, 15, 0), stages=np.asarray(stages))


def _canonical(usleep_classes: list[int]) -> bytes:
    return np.array([STAGE_NAME_CODES[USLEEP_CLASSES[str(c)]] for c in usleep_classes], dtype=np.int8).tobytes()


def _upload_and_wait(client, organization, participant, connection, data: bytes) -> PsgRecording:
    response = client.post(
        f"/api/v1/orgs/{organization.slug}/psg-recordings/",
        {"participant": str(participant.uuid), "connection": str(connection.uuid),
         "file": SimpleUploadedFile("night.edf", data)},
        format="multipart",
    )
    assert response.status_code == 201, response.content
    uuid = response.json()["uuid"]

    def finished():
        recording = PsgRecording.objects.get(uuid=uuid)
        return recording if recording.status in (PsgStatus.COMPLETED, PsgStatus.FAILED) else None

    recording = wait_for(finished, timeout=120, what="the recording to be scored")
    assert recording.status == PsgStatus.COMPLETED, recording.error
    status = client.get(f"/api/v1/orgs/{organization.slug}/psg-recordings/{uuid}/").json()
    assert status["status"] == "completed" and status["sleep_session"] == str(recording.sleep_session.uuid)
    return recording


def test_it_scores_an_uploaded_recording_with_usleep_through_a_real_worker(sims, psg_worker):
    usleep, _ = sims
    organization = OrganizationFactory()
    participant = ParticipantFactory(organization=organization, timezone="Europe/Lisbon")
    connection = Connection.objects.create(
        organization=organization, name="U-Sleep", provider="usleep", base_url=usleep.url,
        credentials={"token": "usleep-token"},
    )
    data = _edf(1)
    recording = _upload_and_wait(_admin_client(organization), organization, participant, connection, data)

    session = recording.sleep_session
    assert bytes(session.stages) == _canonical(expected_hypnogram(data))
    assert session.provider == "usleep" and session.participant_id == participant.pk
    assert NightlyMetrics.objects.filter(session=session).count() == 1
    requests = [(e["method"], e["path"]) for e in usleep.log()]
    stager = f"/api/v1/sleep_stager/{recording.upstream_id}"
    # Polled more than once (the worker retried itself with a countdown), then deleted.
    assert requests.count(("GET", f"{stager}/prediction_status")) >= 2
    assert requests[-1] == ("DELETE", stager)
    assert usleep.truth()["sessions"] == []
    # The clean-up runs after the completion commits: read the row again, give it a moment.
    wait_for(
        lambda: PsgRecording.objects.filter(pk=recording.pk, upstream_deleted_at__isnull=False).exists(),
        timeout=10, what="the upstream deletion to be recorded",
    )


def test_it_scores_an_uploaded_recording_with_grand_challenge_through_a_real_worker(sims, psg_worker):
    _, gc = sims
    organization = OrganizationFactory()
    participant = ParticipantFactory(organization=organization)
    connection = Connection.objects.create(
        organization=organization, name="Grand Challenge", provider="grand_challenge", base_url=gc.api_url,
        credentials={"token": "gc-token"}, options={"algorithm_slug": "sleep-staging"},
    )
    data = _edf(2)
    recording = _upload_and_wait(_admin_client(organization), organization, participant, connection, data)

    session = recording.sleep_session
    assert bytes(session.stages) == _canonical(expected_hypnogram(data))
    assert session.provider == "grand_challenge" and session.upstream_id == recording.upstream_id
    job_polls = [e for e in gc.log() if e["method"] == "GET" and e["path"].endswith(f"jobs/{recording.upstream_id}/")]
    assert len(job_polls) >= 2
