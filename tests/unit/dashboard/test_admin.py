"""The Django admin for integrations: write-only credentials, actions, read-only history, PSG upload."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from integrations.models import Connection, PsgRecording, PsgStatus
from integrations.simulators.edf import make_edf
from integrations.simulators.nights import synthetic_hypnogram

from ...factories import (
    ConnectionFactory,
    OrganizationFactory,
    ParticipantFactory,
    SyncRunFactory,
    UserFactory,
)

SECRET = "sk-very-secret-api-key-123"


@pytest.fixture
def staff(client, db):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")


def _connection_form(org, **overrides):
    data = {
        "organization": org.pk, "name": "Asleep main", "provider": "asleep", "base_url": "https://93.184.215.14",
        "new_credentials": f'{{"api_key": "{SECRET}"}}', "options": "{}", "sync_interval": "01:00:00",
        "status": "active",
    }
    return {**data, **overrides}


@pytest.mark.django_db
class ConnectionAdminTests:
    def test_it_stores_credentials_encrypted_and_never_shows_them(self, staff):
        org = OrganizationFactory()
        response = staff.post("/admin/integrations/connection/add/", _connection_form(org))
        assert response.status_code == 302, response.content[:2000]
        connection = Connection.objects.get(name="Asleep main")
        assert connection.credentials == {"api_key": SECRET}
        page = staff.get(f"/admin/integrations/connection/{connection.pk}/change/").content.decode()
        assert SECRET not in page and "api_key" not in page.split("placeholder")[0]
        # Saving without new credentials keeps the old ones.
        staff.post(f"/admin/integrations/connection/{connection.pk}/change/",
                   {**_connection_form(org, new_credentials=""), "name": "Renamed"})
        connection.refresh_from_db()
        assert (connection.name, connection.credentials) == ("Renamed", {"api_key": SECRET})

    @pytest.mark.parametrize(
        "overrides, message",
        [
            ({"new_credentials": "not json"}, "must be a JSON object"),
            ({"new_credentials": '{"token": "x"}'}, "asleep credentials need api_key"),
            ({"new_credentials": ""}, "A new connection needs credentials"),
            ({"base_url": "http://127.0.0.1:8000"}, "Base URL refused"),
        ],
    )
    def test_it_refuses_bad_input_with_a_message_and_stores_nothing(self, staff, overrides, message):
        org = OrganizationFactory()
        response = staff.post("/admin/integrations/connection/add/", _connection_form(org, **overrides))
        assert response.status_code == 200
        assert message in response.content.decode()
        assert not Connection.objects.exists()

    def test_it_tests_a_connection_from_the_list(self, staff):
        connection = ConnectionFactory()  # loopback base URL: the SSRF guard refuses it, nothing is sent
        response = staff.post("/admin/integrations/connection/", {
            "action": "test_connection", "_selected_action": [connection.pk]}, follow=True)
        assert "could not be reached" in response.content.decode()

    def test_it_queues_a_sync_now(self, staff, django_capture_on_commit_callbacks):
        connection = ConnectionFactory()
        before = connection.next_sync_at
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            response = staff.post("/admin/integrations/connection/", {
                "action": "sync_now", "_selected_action": [connection.pk]}, follow=True)
        assert "a sync was queued" in response.content.decode()
        assert len(callbacks) == 1
        connection.refresh_from_db()
        assert connection.next_sync_at > before

    def test_it_keeps_sync_history_read_only(self, staff):
        run = SyncRunFactory(started_at=timezone.now())
        assert staff.get("/admin/integrations/syncrun/").status_code == 200
        assert staff.get("/admin/integrations/syncrun/add/").status_code == 403
        assert staff.post(f"/admin/integrations/syncrun/{run.pk}/delete/", {"post": "yes"}).status_code == 403


@pytest.mark.django_db
class PsgAdminTests:
    def _scorer(self):
        org = OrganizationFactory()
        connection = Connection.objects.create(organization=org, name="U-Sleep", provider="usleep",
                                               base_url="https://sleep.example.org", credentials={"token": "t"})
        return org, connection, ParticipantFactory(organization=org)

    def test_it_uploads_an_edf_through_the_service(self, staff, django_capture_on_commit_callbacks):
        org, connection, participant = self._scorer()
        stages = synthetic_hypnogram(b"admin", 60)
        edf = make_edf(1800, seed=1, start=datetime(2026, 3, 2, 23, 0), stages=np.asarray(stages))
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            response = staff.post("/admin/integrations/psgrecording/add/", {
                "participant": participant.pk, "connection": connection.pk,
                "file": SimpleUploadedFile("night.edf", edf)})
        assert response.status_code == 302, response.content[:3000]
        recording = PsgRecording.objects.get()
        assert recording.status == PsgStatus.UPLOADED
        assert (recording.edf_duration_seconds, recording.size) == (1800, len(edf))
        assert len(callbacks) == 1  # the scoring task, after commit
        page = staff.get(f"/admin/integrations/psgrecording/{recording.pk}/change/").content.decode()
        assert '<progress max="100" value="10">' in page

    def test_it_refuses_a_file_that_is_not_edf(self, staff):
        _, connection, participant = self._scorer()
        response = staff.post("/admin/integrations/psgrecording/add/", {
            "participant": participant.pk, "connection": connection.pk,
            "file": SimpleUploadedFile("night.edf", b"hello, not an EDF" * 30)})
        assert response.status_code == 200
        assert "not a valid EDF recording" in response.content.decode()
        assert not PsgRecording.objects.exists()

    def test_it_refuses_a_file_over_the_limit(self, staff, settings):
        settings.PSG_MAX_UPLOAD_BYTES = 100
        _, connection, participant = self._scorer()
        response = staff.post("/admin/integrations/psgrecording/add/", {
            "participant": participant.pk, "connection": connection.pk,
            "file": SimpleUploadedFile("night.edf", b"0" * 500)})
        assert "larger than the upload limit" in response.content.decode()
        assert not PsgRecording.objects.exists()
