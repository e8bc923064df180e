"""PSG recordings API: multipart upload (size limit, EDF validation first), status, delete."""

import os
from datetime import UTC, datetime

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from integrations import psg
from integrations.models import Connection, PsgRecording, PsgStatus
from tenants.roles import Role

from ...factories import OrganizationFactory, ParticipantFactory, SleepSessionFactory
from .conftest import psg_edf

pytestmark = pytest.mark.django_db


def _url(world, recording=None):
    base = f"/api/v1/orgs/{world.org.slug}/psg-recordings/"
    return f"{base}{recording.uuid}/" if recording else base


def _connection(organization, provider="usleep"):
    return Connection.objects.create(
        organization=organization, name=provider, provider=provider, base_url="https://93.184.216.34",
        credentials={"token": "t"} if provider != "asleep" else {"api_key": "k"},
    )


def _upload(client, world, data, *, participant=None, connection=None, name="night-of-jane.edf"):
    participant = participant or ParticipantFactory(organization=world.org)
    connection = connection or _connection(world.org)
    body = {
        "participant": str(participant.uuid),
        "connection": str(connection.uuid),
        "file": SimpleUploadedFile(name, data, content_type="application/octet-stream"),
    }
    return client.post(_url(world), body, format="multipart")


def _media_files(settings) -> list[str]:
    found = []
    for folder, _, files in os.walk(settings.MEDIA_ROOT):
        found += [os.path.join(folder, f) for f in files if "psg" in folder]
    return found


class UploadTests:
    def test_it_stores_the_recording_and_enqueues_scoring_after_commit(
        self, world_a, settings, django_capture_on_commit_callbacks
    ):
        participant = ParticipantFactory(organization=world_a.org, timezone="America/New_York")
        data = psg_edf(30, start=datetime(2026, 3, 2, 23, 15, 0))
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            response = _upload(world_a.client(Role.ADMIN), world_a, data, participant=participant)
        assert response.status_code == 201, response.content
        body = response.json()
        recording = PsgRecording.objects.get(uuid=body["uuid"])
        assert body["status"] == "uploaded" and body["provider"] == "usleep"
        assert body["participant"] == str(participant.uuid)
        assert body["size"] == len(data) and body["original_name"] == "night-of-jane.edf"
        assert body["edf_channels"] == ["EEG C3-M2", "EOG E1-M2", "EMG chin"]
        assert body["edf_duration_seconds"] == 1800
        # 23:15 on the participant's clock in New York (EST, UTC-5) is 04:15 UTC.
        assert recording.edf_start == datetime(2026, 3, 3, 4, 15, tzinfo=UTC)
        assert recording.timezone == "America/New_York"
        # Stored per organization, named by the recording, never by the uploaded name.
        assert recording.file.name == f"psg/org-{world_a.org.pk}/{recording.uuid}.edf"
        with recording.file.open("rb") as stored:
            assert stored.read() == data
        assert len(callbacks) == 1  # psg_submit_task, once the row is committed

    def test_it_reads_the_start_in_the_organization_zone_without_a_participant_zone(self, world_a):
        participant = ParticipantFactory(organization=world_a.org, timezone="")
        world_a.org.timezone = "Asia/Tokyo"
        world_a.org.save()
        data = psg_edf(10, start=datetime(2026, 3, 2, 23, 0, 0))
        response = _upload(world_a.client(Role.OWNER), world_a, data, participant=participant)
        assert response.status_code == 201, response.content
        recording = PsgRecording.objects.get(uuid=response.json()["uuid"])
        assert recording.edf_start == datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
        assert recording.timezone == "Asia/Tokyo"

    @pytest.mark.parametrize(
        "data, reason",
        [
            (b"%PDF-1.7 not a recording" * 20, "version field"),
            (psg_edf(10)[:-100], "header declares"),
            (psg_edf(10)[:700], "truncated signal headers"),
        ],
        ids=["pdf", "truncated-data", "truncated-header"],
    )
    def test_it_refuses_a_file_that_is_not_edf_with_a_clear_message(self, world_a, settings, data, reason):
        response = _upload(world_a.client(Role.ADMIN), world_a, data)
        assert response.status_code == 400, response.content
        body = response.json()
        assert body["code"] == "invalid"
        [message] = body["fields"]["file"]
        assert message.startswith("The file is not a valid EDF recording") and reason in message
        assert not PsgRecording.objects.exists() and _media_files(settings) == []

    def test_it_refuses_an_empty_file(self, world_a):
        response = _upload(world_a.client(Role.ADMIN), world_a, b"")
        assert response.status_code == 400 and "file" in response.json()["fields"]

    def test_it_answers_413_before_reading_a_body_over_the_limit(self, world_a, settings):
        data = psg_edf(30)
        settings.PSG_MAX_UPLOAD_BYTES = len(data) // 4
        response = _upload(world_a.client(Role.ADMIN), world_a, data)
        assert response.status_code == 413, response.content
        assert response.json()["code"] == "payload_too_large"
        assert not PsgRecording.objects.exists() and _media_files(settings) == []

    def test_it_answers_413_while_a_file_streams_past_the_limit(self, world_a, settings, monkeypatch):
        # Within the envelope allowance, so only the upload handler can catch it: the view
        # never gets as far as the service.
        data = psg_edf(30)
        settings.PSG_MAX_UPLOAD_BYTES = len(data) - 1
        monkeypatch.setattr(psg, "psg_recording_upload", lambda **kw: pytest.fail("the body was read"))
        response = _upload(world_a.client(Role.ADMIN), world_a, data)
        assert response.status_code == 413, response.content
        assert response.json()["code"] == "payload_too_large"
        assert not PsgRecording.objects.exists() and _media_files(settings) == []

    def test_it_refuses_a_connection_that_does_not_score_psg(self, world_a):
        response = _upload(world_a.client(Role.ADMIN), world_a, psg_edf(10), connection=_connection(world_a.org, "asleep"))
        assert response.status_code == 400
        assert "does not score PSG" in response.json()["fields"]["connection"][0]
        assert not PsgRecording.objects.exists()

    def test_it_accepts_a_grand_challenge_connection(self, world_a):
        connection = _connection(world_a.org, "grand_challenge")
        response = _upload(world_a.client(Role.ADMIN), world_a, psg_edf(10), connection=connection)
        assert response.status_code == 201 and response.json()["provider"] == "grand_challenge"

    def test_it_refuses_another_organizations_participant_or_connection(self, world_a, world_b):
        foreign_participant = ParticipantFactory(organization=world_b.org)
        foreign_connection = _connection(world_b.org)
        client = world_a.client(Role.OWNER)
        for kwargs, field in (({"participant": foreign_participant}, "participant"),
                              ({"connection": foreign_connection}, "connection")):
            response = _upload(client, world_a, psg_edf(10), **kwargs)
            assert response.status_code == 400 and field in response.json()["fields"]
        assert not PsgRecording.objects.exists()

    def test_it_refuses_a_json_body_it_cannot_upload(self, world_a):
        participant = ParticipantFactory(organization=world_a.org)
        body = {"participant": str(participant.uuid), "connection": str(_connection(world_a.org).uuid),
                "file": "UEsDBBQAAAAIAA=="}
        response = world_a.client(Role.ADMIN).post(_url(world_a), body, format="json")
        assert response.status_code == 400 and "file" in response.json()["fields"]

    @pytest.mark.parametrize("role", [Role.HR, Role.MEMBER])
    def test_it_lets_only_owners_and_admins_upload(self, world_a, role):
        response = _upload(world_a.client(role), world_a, psg_edf(10))
        assert response.status_code == 403
        assert not PsgRecording.objects.exists()


def _recording(organization, **fields):
    fields.setdefault("participant", ParticipantFactory(organization=organization))
    fields.setdefault("connection", _connection(organization))
    return PsgRecording.objects.create(
        organization=organization, file=f"psg/org-{organization.pk}/x.edf", size=10,
        edf_start=datetime(2026, 1, 1, 22, tzinfo=UTC), edf_duration_seconds=60.0, edf_channels=["EEG"],
        timezone="UTC", **fields,
    )


class ReadTests:
    def test_it_lists_the_organizations_recordings_newest_first_in_constant_queries(
        self, world_a, world_b, django_assert_max_num_queries
    ):
        session = SleepSessionFactory(participant=ParticipantFactory(organization=world_a.org))
        mine = [_recording(world_a.org) for _ in range(3)]
        _recording(world_a.org, status=PsgStatus.COMPLETED, sleep_session=session,
                   participant=session.participant)
        _recording(world_b.org)
        client = world_a.client(Role.ADMIN)
        with django_assert_max_num_queries(5):
            response = client.get(_url(world_a))
        assert response.status_code == 200
        results = response.json()["results"]
        assert len(results) == 4
        assert results[0]["sleep_session"] == str(session.uuid)
        assert {r["uuid"] for r in results[1:]} == {str(r.uuid) for r in mine}

    def test_it_filters_by_status_and_participant(self, world_a):
        done = _recording(world_a.org, status=PsgStatus.COMPLETED)
        _recording(world_a.org, status=PsgStatus.SCORING)
        client = world_a.client(Role.OWNER)
        by_status = client.get(_url(world_a), {"status": "completed"}).json()["results"]
        assert [r["uuid"] for r in by_status] == [str(done.uuid)]
        by_participant = client.get(_url(world_a), {"participant": str(done.participant.uuid)}).json()["results"]
        assert [r["uuid"] for r in by_participant] == [str(done.uuid)]

    def test_it_shows_a_recording_with_its_error_code(self, world_a):
        recording = _recording(world_a.org, status=PsgStatus.FAILED, error="scoring_failed")
        body = world_a.client(Role.ADMIN).get(_url(world_a, recording)).json()
        assert (body["status"], body["error"], body["sleep_session"]) == ("failed", "scoring_failed", None)

    def test_it_survives_a_deleted_connection(self, world_a):
        recording = _recording(world_a.org)
        recording.connection.delete()
        body = world_a.client(Role.ADMIN).get(_url(world_a, recording)).json()
        assert body["connection"] is None and body["provider"] is None


class DeleteTests:
    def test_it_deletes_the_row_and_then_the_file_and_keeps_the_night(
        self, world_a, django_capture_on_commit_callbacks
    ):
        response = _upload(world_a.client(Role.ADMIN), world_a, psg_edf(10))
        recording = PsgRecording.objects.get(uuid=response.json()["uuid"])
        session = SleepSessionFactory(participant=recording.participant)
        PsgRecording.objects.filter(pk=recording.pk).update(status=PsgStatus.COMPLETED, sleep_session=session)
        path = recording.file.path
        assert os.path.exists(path)
        with django_capture_on_commit_callbacks(execute=True):
            response = world_a.client(Role.ADMIN).delete(_url(world_a, recording))
        assert response.status_code == 204
        assert not PsgRecording.objects.filter(pk=recording.pk).exists()
        assert not os.path.exists(path)
        session.refresh_from_db()  # the scored night stays

    def test_it_schedules_the_upstream_session_delete_of_a_recording_being_scored(
        self, world_a, django_capture_on_commit_callbacks
    ):
        recording = _recording(world_a.org, status=PsgStatus.SCORING, upstream_id="psg-abc")
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            response = world_a.client(Role.ADMIN).delete(_url(world_a, recording))
        assert response.status_code == 204
        assert len(callbacks) == 2  # the file, and psg_upstream_delete_task

    def test_it_hides_another_organizations_recording(self, world_a, world_b):
        foreign = _recording(world_b.org)
        assert world_a.client(Role.OWNER).delete(_url(world_a, foreign)).status_code == 404
        assert PsgRecording.objects.filter(pk=foreign.pk).exists()


def test_it_keeps_recordings_apart_per_organization_on_disk(world_a):
    other = OrganizationFactory()
    assert other.pk != world_a.org.pk
    r1 = _upload(world_a.client(Role.ADMIN), world_a, psg_edf(10))
    recording = PsgRecording.objects.get(uuid=r1.json()["uuid"])
    assert recording.file.name.startswith(f"psg/org-{world_a.org.pk}/")
