"""PSG upload from the participant page: the service's checks, the size limit, CSRF, isolation."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from integrations.models import Connection, PsgRecording, PsgStatus
from integrations.simulators.edf import make_edf
from integrations.simulators.nights import synthetic_hypnogram
from tenants.roles import Role

from ...factories import ParticipantFactory


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")


@pytest.fixture
def scorer(world_a):
    return Connection.objects.create(organization=world_a.org, name="U-Sleep", provider="usleep",
                                     base_url="https://sleep.example.org", credentials={"token": "t"})


def _edf() -> bytes:
    stages = synthetic_hypnogram(b"page", 60)
    return make_edf(1800, seed=2, start=datetime(2026, 3, 2, 23, 0), stages=np.asarray(stages))


def _post(client, world, participant, connection, content: bytes):
    client.force_login(world.users[Role.ADMIN])
    return client.post(f"/o/{world.org.slug}/participants/{participant.uuid}/psg/",
                       {"connection": str(connection.uuid), "file": SimpleUploadedFile("night.edf", content)})


@pytest.mark.django_db
class PsgUploadPageTests:
    def test_it_uploads_and_shows_the_progress(self, client, world_a, scorer, django_capture_on_commit_callbacks):
        person = world_a.member_participant
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            response = _post(client, world_a, person, scorer, _edf())
        assert response.status_code == 302
        recording = PsgRecording.objects.get()
        assert (recording.participant, recording.status) == (person, PsgStatus.UPLOADED)
        assert len(callbacks) == 1  # scoring queued after commit
        page = client.get(response["Location"]).content.decode()
        assert '<progress max="100" value="10">' in page and "The recording was uploaded" in page

    def test_it_refuses_a_file_that_is_not_edf(self, client, world_a, scorer):
        response = _post(client, world_a, world_a.member_participant, scorer, b"plain text, not EDF" * 20)
        assert response.status_code == 400
        assert b"not a valid EDF recording" in response.content
        assert not PsgRecording.objects.exists()

    def test_it_refuses_a_file_over_the_limit(self, client, world_a, scorer, settings):
        settings.PSG_MAX_UPLOAD_BYTES = 1000
        response = _post(client, world_a, world_a.member_participant, scorer, _edf())
        assert response.status_code == 413
        assert b"larger than the upload limit" in response.content
        assert not PsgRecording.objects.exists()

    def test_it_refuses_another_organizations_participant_or_connection(self, client, world_a, world_b, scorer):
        theirs = Connection.objects.create(organization=world_b.org, name="B", provider="usleep",
                                           base_url="https://sleep.example.org", credentials={"token": "t"})
        assert _post(client, world_a, world_b.member_participant, scorer, _edf()).status_code == 404
        assert _post(client, world_a, world_a.member_participant, theirs, _edf()).status_code == 400
        assert not PsgRecording.objects.exists()

    def test_it_needs_a_manager_and_a_csrf_token(self, world_a, scorer):
        strict = Client(enforce_csrf_checks=True)
        strict.force_login(world_a.users[Role.ADMIN])
        url = f"/o/alpha/participants/{world_a.member_participant.uuid}/psg/"
        refused = strict.post(url, {"connection": str(scorer.uuid), "file": SimpleUploadedFile("n.edf", _edf())})
        assert refused.status_code == 403 and b"CSRF" in refused.content
        member = Client()
        member.force_login(world_a.users[Role.MEMBER])
        assert member.post(url, {"connection": str(scorer.uuid)}).status_code == 403
        assert not PsgRecording.objects.exists()

    def test_it_offers_the_form_to_managers_only(self, client, world_a, scorer):
        other = ParticipantFactory(organization=world_a.org)
        client.force_login(world_a.users[Role.ADMIN])
        assert b'action="psg/"' in client.get(f"/o/alpha/participants/{other.uuid}/").content
        client.force_login(world_a.users[Role.MEMBER])
        assert b'action="psg/"' not in client.get(f"/o/alpha/participants/{world_a.member_participant.uuid}/").content
