"""PSG scoring steps against the U-Sleep and Grand Challenge simulators over real HTTP.

The steps are called one at a time, as the Celery tasks call them (tasks and their retries
run against a real worker in tests/integration/integrations/test_psg_flow.py).
"""

from datetime import UTC, datetime

import numpy as np
import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile

from analytics.models import NightlyMetrics, SleepSession
from integrations import psg
from integrations.models import ConnectionStatus, PsgRecording, PsgStatus
from integrations.providers.base import STAGE_NAME_CODES
from integrations.simulators.edf import make_edf
from integrations.simulators.nights import USLEEP_CLASSES
from integrations.simulators.usleep import expected_hypnogram
from integrations.tasks import MAX_COUNTDOWN_SECONDS, psg_poll_countdown
from tenants.api.errors import ApplicationError

from ...factories import ParticipantFactory
from .conftest import gc_connection, psg_edf, usleep_connection

pytestmark = pytest.mark.django_db


class PUBLIC:  # stands in for a simulator where no request is ever sent
    url = "https://93.184.216.34"


def canonical(usleep_classes: list[int]) -> bytes:
    """U-Sleep class indices -> canonical stage codes, through the class names."""
    return np.array(
        [STAGE_NAME_CODES[USLEEP_CLASSES[str(c)]] for c in usleep_classes], dtype=np.int8
    ).tobytes()


def upload(organization, participant, connection, data: bytes) -> PsgRecording:
    return psg.psg_recording_upload(
        organization=organization, participant=participant, connection=connection,
        file=SimpleUploadedFile("night.edf", data),
    )


def upstream_requests(sim) -> list[tuple[str, str]]:
    return [(e["method"], e["path"]) for e in sim.log()]


class USleepScoringTests:
    def test_it_scores_a_recording_stores_the_night_and_deletes_the_session(
        self, usleep_sim, scorer_settings, psg_org
    ):
        organization, participant = psg_org
        data = psg_edf(30, start=datetime(2026, 3, 2, 23, 15, 0))
        recording = upload(organization, participant, usleep_connection(organization, usleep_sim), data)

        assert psg.psg_recording_submit(recording_id=recording.pk).step is psg.PsgStep.SUBMITTED
        recording.refresh_from_db()
        name = f"psg-{recording.uuid.hex}"
        assert (recording.status, recording.upstream_id) == (PsgStatus.SUBMITTED, name)
        assert recording.submitted_at is not None and recording.claimed_until is None
        stager = f"/api/v1/sleep_stager/{name}"
        assert upstream_requests(usleep_sim) == [
            ("GET", "/api/v1/info/model_names"),
            ("POST", f"{stager}/set_model"),
            ("POST", f"{stager}/file"),
            ("GET", f"{stager}/file"),
            ("GET", f"{stager}/configuration_options"),
            ("GET", "/api/v1/info/config/MAX_CHANNEL_COMBINATIONS"),
            ("POST", f"{stager}/predict"),
        ]

        outcome = psg.psg_recording_poll(recording_id=recording.pk)
        assert outcome == psg.PsgOutcome(psg.PsgStep.COMPLETED)
        recording.refresh_from_db()
        assert recording.status == PsgStatus.COMPLETED and recording.finished_at is not None
        session = recording.sleep_session
        assert session.participant_id == participant.pk and session.provider == "usleep"
        assert bytes(session.stages) == canonical(expected_hypnogram(data))
        # The EDF clock time is New York time (the participant's zone).
        assert session.start == datetime(2026, 3, 3, 4, 15, tzinfo=UTC)
        assert session.timezone == "America/New_York"
        assert NightlyMetrics.objects.filter(session=session).exists()
        assert upstream_requests(usleep_sim)[-1] == ("DELETE", stager)
        assert recording.upstream_deleted_at is not None
        assert usleep_sim.truth()["sessions"] == []

    def test_it_sends_the_signals_without_the_patient_identification(self, usleep_sim, scorer_settings, psg_org):
        organization, participant = psg_org
        data = bytearray(psg_edf(10))
        data[8:88] = b"MCH-0234567 F 02-MAY-1951 Jane_Doe".ljust(80)
        recording = upload(organization, participant, usleep_connection(organization, usleep_sim), bytes(data))
        psg.psg_recording_submit(recording_id=recording.pk)
        [stored] = usleep_sim.sim.sessions.values()
        assert b"Jane_Doe" not in stored.file_bytes and stored.file_bytes[256:] == bytes(data)[256:]
        assert stored.file_name == f"{recording.uuid}.edf"  # not the uploaded name

    def test_it_reports_pending_while_the_scorer_works(self, usleep_sim, scorer_settings, psg_org):
        organization, participant = psg_org
        usleep_sim.configure(job_seconds=600)
        recording = upload(organization, participant, usleep_connection(organization, usleep_sim), psg_edf(10))
        psg.psg_recording_submit(recording_id=recording.pk)
        assert psg.psg_recording_poll(recording_id=recording.pk).step is psg.PsgStep.PENDING
        recording.refresh_from_db()
        assert recording.status == PsgStatus.SCORING and recording.sleep_session is None
        assert psg.psg_recording_poll(recording_id=recording.pk).step is psg.PsgStep.PENDING

    def test_a_failed_prediction_fails_the_recording_and_deletes_the_session(
        self, usleep_sim, scorer_settings, psg_org
    ):
        organization, participant = psg_org
        usleep_sim.configure(job_failure_rate=1.0)
        recording = upload(organization, participant, usleep_connection(organization, usleep_sim), psg_edf(10))
        psg.psg_recording_submit(recording_id=recording.pk)
        outcome = psg.psg_recording_poll(recording_id=recording.pk)
        assert (outcome.step, outcome.error) == (psg.PsgStep.FAILED, "scoring_failed")
        recording.refresh_from_db()
        assert (recording.status, recording.error) == (PsgStatus.FAILED, "scoring_failed")
        assert not SleepSession.objects.exists()
        assert usleep_sim.truth()["sessions"] == []

    def test_a_refused_token_fails_the_recording_and_flags_the_connection(self, usleep_sim, scorer_settings, psg_org):
        organization, participant = psg_org
        connection = usleep_connection(organization, usleep_sim)
        connection.credentials = {"token": "expired"}
        connection.save()
        recording = upload(organization, participant, connection, psg_edf(10))
        outcome = psg.psg_recording_submit(recording_id=recording.pk)
        assert (outcome.step, outcome.error) == (psg.PsgStep.FAILED, "upstream_auth_failed")
        connection.refresh_from_db()
        assert connection.status == ConnectionStatus.NEEDS_ATTENTION

    def test_a_transient_fault_leaves_the_recording_to_retry_and_the_retry_succeeds(
        self, usleep_sim, scorer_settings, psg_org
    ):
        organization, participant = psg_org
        recording = upload(organization, participant, usleep_connection(organization, usleep_sim), psg_edf(10))
        usleep_sim.configure(fault_paths="/predict$", error_rate=1.0)
        outcome = psg.psg_recording_submit(recording_id=recording.pk)
        assert (outcome.step, outcome.error) == (psg.PsgStep.RETRY, "upstream_unavailable")
        recording.refresh_from_db()
        assert recording.status == PsgStatus.UPLOADED and recording.claimed_until is None

        usleep_sim.configure(error_rate=0.0)
        assert psg.psg_recording_submit(recording_id=recording.pk).step is psg.PsgStep.SUBMITTED
        assert psg.psg_recording_poll(recording_id=recording.pk).step is psg.PsgStep.COMPLETED
        assert len(usleep_sim.truth()["sessions"]) == 0

    def test_a_rate_limit_carries_the_wait_the_upstream_asked_for(self, usleep_sim, scorer_settings, psg_org):
        organization, participant = psg_org
        recording = upload(organization, participant, usleep_connection(organization, usleep_sim), psg_edf(10))
        usleep_sim.configure(fault_paths="/predict$", schedule={"7": "429:42"})
        outcome = psg.psg_recording_submit(recording_id=recording.pk)
        assert (outcome.step, outcome.error, outcome.retry_after) == (psg.PsgStep.RETRY, "upstream_rate_limited", 42)

    def test_finished_steps_send_nothing_when_run_again(self, usleep_sim, scorer_settings, psg_org):
        organization, participant = psg_org
        recording = upload(organization, participant, usleep_connection(organization, usleep_sim), psg_edf(10))
        psg.psg_recording_submit(recording_id=recording.pk)
        psg.psg_recording_poll(recording_id=recording.pk)
        before = len(usleep_sim.log())
        assert psg.psg_recording_submit(recording_id=recording.pk).step is psg.PsgStep.COMPLETED
        assert psg.psg_recording_poll(recording_id=recording.pk).step is psg.PsgStep.COMPLETED
        assert psg.psg_recording_fail(recording_id=recording.pk, error="timeout").step is psg.PsgStep.COMPLETED
        assert len(usleep_sim.log()) == before
        assert SleepSession.objects.count() == 1

    def test_a_second_attempt_waits_while_the_first_holds_the_claim(self, usleep_sim, scorer_settings, psg_org):
        organization, participant = psg_org
        recording = upload(organization, participant, usleep_connection(organization, usleep_sim), psg_edf(10))
        PsgRecording.objects.filter(pk=recording.pk).update(claimed_until=datetime(2999, 1, 1, tzinfo=UTC))
        outcome = psg.psg_recording_submit(recording_id=recording.pk)
        assert outcome.step is psg.PsgStep.RETRY and outcome.error == "submit_stalled"
        assert usleep_sim.log() == []

    def test_a_final_failure_deletes_the_upstream_session(self, usleep_sim, scorer_settings, psg_org):
        organization, participant = psg_org
        usleep_sim.configure(job_seconds=600)
        recording = upload(organization, participant, usleep_connection(organization, usleep_sim), psg_edf(10))
        psg.psg_recording_submit(recording_id=recording.pk)
        assert len(usleep_sim.truth()["sessions"]) == 1
        outcome = psg.psg_recording_fail(recording_id=recording.pk, error="scoring_timeout")
        assert outcome == psg.PsgOutcome(psg.PsgStep.FAILED, error="scoring_timeout")
        assert usleep_sim.truth()["sessions"] == []

    def test_a_cleanup_that_fails_transiently_is_retried(self, usleep_sim, scorer_settings, psg_org):
        organization, participant = psg_org
        recording = upload(organization, participant, usleep_connection(organization, usleep_sim), psg_edf(10))
        psg.psg_recording_submit(recording_id=recording.pk)
        usleep_sim.configure(fault_paths=r"^/api/v1/sleep_stager/[^/]+$", error_rate=1.0)
        outcome = psg.psg_recording_poll(recording_id=recording.pk)
        assert outcome.step is psg.PsgStep.COMPLETED and outcome.cleanup_pending
        usleep_sim.configure(error_rate=0.0)
        assert psg.psg_recording_poll(recording_id=recording.pk) == psg.PsgOutcome(psg.PsgStep.COMPLETED)
        assert usleep_sim.truth()["sessions"] == []

    def test_it_deletes_the_session_of_a_recording_deleted_while_scoring(self, usleep_sim, scorer_settings, psg_org):
        organization, participant = psg_org
        usleep_sim.configure(job_seconds=600)
        connection = usleep_connection(organization, usleep_sim)
        recording = upload(organization, participant, connection, psg_edf(10))
        psg.psg_recording_submit(recording_id=recording.pk)
        psg.psg_recording_delete(recording=recording)
        assert psg.psg_recording_poll(recording_id=recording.pk).step is psg.PsgStep.GONE
        outcome = psg.usleep_orphan_delete(connection_id=connection.pk, session_name=f"psg-{recording.uuid.hex}")
        assert outcome.step is psg.PsgStep.COMPLETED
        assert usleep_sim.truth()["sessions"] == []

    def test_a_missing_file_fails_the_recording(self, usleep_sim, scorer_settings, psg_org):
        organization, participant = psg_org
        recording = upload(organization, participant, usleep_connection(organization, usleep_sim), psg_edf(10))
        recording.file.storage.delete(recording.file.name)
        outcome = psg.psg_recording_submit(recording_id=recording.pk)
        assert (outcome.step, outcome.error) == (psg.PsgStep.FAILED, "file_missing")

    def test_a_deleted_connection_fails_the_recording(self, usleep_sim, scorer_settings, psg_org):
        organization, participant = psg_org
        connection = usleep_connection(organization, usleep_sim)
        recording = upload(organization, participant, connection, psg_edf(10))
        connection.delete()
        outcome = psg.psg_recording_submit(recording_id=recording.pk)
        assert (outcome.step, outcome.error) == (psg.PsgStep.FAILED, "connection_unavailable")


class GrandChallengeScoringTests:
    def test_it_runs_an_algorithm_job_and_stores_the_night(self, gc_sim, scorer_settings, psg_org):
        scorer_settings.UPSTREAM_CA_BUNDLE = gc_sim.cert  # the simulator's self-signed certificate
        organization, participant = psg_org
        data = psg_edf(30, start=datetime(2026, 3, 2, 23, 15, 0))
        recording = upload(organization, participant, gc_connection(organization, gc_sim), data)

        assert psg.psg_recording_submit(recording_id=recording.pk).step is psg.PsgStep.SUBMITTED
        recording.refresh_from_db()
        job = gc_sim.sim.jobs[recording.upstream_id]
        assert recording.upstream_upload_id in gc_sim.sim.uploads
        assert job.inputs[0]["socket"]["slug"] == "psg-edf-file"

        assert psg.psg_recording_poll(recording_id=recording.pk).step is psg.PsgStep.COMPLETED
        recording.refresh_from_db()
        session = recording.sleep_session
        assert session.provider == "grand_challenge" and session.upstream_id == job.pk
        assert bytes(session.stages) == canonical(expected_hypnogram(data))
        assert session.start == datetime(2026, 3, 3, 4, 15, tzinfo=UTC)

    def test_it_reports_pending_then_a_failed_job(self, gc_sim, scorer_settings, psg_org):
        scorer_settings.UPSTREAM_CA_BUNDLE = gc_sim.cert
        organization, participant = psg_org
        gc_sim.configure(job_seconds=600)
        recording = upload(organization, participant, gc_connection(organization, gc_sim), psg_edf(10))
        psg.psg_recording_submit(recording_id=recording.pk)
        assert psg.psg_recording_poll(recording_id=recording.pk).step is psg.PsgStep.PENDING
        assert PsgRecording.objects.get(pk=recording.pk).status == PsgStatus.SCORING
        recording.refresh_from_db()
        gc_sim.call("POST", f"/_sim/jobs/{recording.upstream_id}/cancel")
        outcome = psg.psg_recording_poll(recording_id=recording.pk)
        assert (outcome.step, outcome.error) == (psg.PsgStep.FAILED, "scoring_failed")

    def test_it_reuses_an_upload_when_starting_the_job_failed(self, gc_sim, scorer_settings, psg_org):
        scorer_settings.UPSTREAM_CA_BUNDLE = gc_sim.cert
        organization, participant = psg_org
        recording = upload(organization, participant, gc_connection(organization, gc_sim), psg_edf(10))
        gc_sim.configure(fault_paths="/algorithms/jobs/$", error_rate=1.0)
        assert psg.psg_recording_submit(recording_id=recording.pk).step is psg.PsgStep.RETRY
        gc_sim.configure(error_rate=0.0)
        assert psg.psg_recording_submit(recording_id=recording.pk).step is psg.PsgStep.SUBMITTED
        assert len(gc_sim.sim.uploads) == 1 and len(gc_sim.sim.jobs) == 1

    def test_a_connection_without_an_algorithm_fails_as_misconfigured(self, gc_sim, scorer_settings, psg_org):
        scorer_settings.UPSTREAM_CA_BUNDLE = gc_sim.cert
        organization, participant = psg_org
        recording = upload(organization, participant, gc_connection(organization, gc_sim, options={}), psg_edf(10))
        outcome = psg.psg_recording_submit(recording_id=recording.pk)
        assert (outcome.step, outcome.error) == (psg.PsgStep.FAILED, "connection_misconfigured")
        assert gc_sim.sim.uploads == {}

    def test_an_untrusted_certificate_is_a_transient_fault_not_a_silent_downgrade(self, gc_sim, scorer_settings, psg_org):
        organization, participant = psg_org
        recording = upload(organization, participant, gc_connection(organization, gc_sim), psg_edf(10))
        outcome = psg.psg_recording_submit(recording_id=recording.pk)
        assert (outcome.step, outcome.error) == (psg.PsgStep.RETRY, "upstream_unavailable")
        assert gc_sim.sim.uploads == {}


class UploadServiceTests:
    def test_it_refuses_a_recording_over_the_limit_before_reading_it(self, settings, psg_org):
        organization, participant = psg_org
        settings.PSG_MAX_UPLOAD_BYTES = 1000
        connection = usleep_connection(organization, PUBLIC)
        with pytest.raises(ApplicationError) as caught:
            upload(organization, participant, connection, psg_edf(10))
        assert caught.value.status_code == 413
        assert not PsgRecording.objects.exists()

    def test_it_refuses_recordings_shorter_than_an_epoch(self, psg_org):
        organization, participant = psg_org
        connection = usleep_connection(organization, PUBLIC)
        with pytest.raises(ValidationError, match="shorter than one 30-second epoch"):
            upload(organization, participant, connection, make_edf(10, record_duration=10))

    def test_it_refuses_a_participant_of_another_organization(self, psg_org):
        organization, _ = psg_org
        stranger = ParticipantFactory()
        connection = usleep_connection(organization, PUBLIC)
        with pytest.raises(ValidationError):
            upload(organization, stranger, connection, psg_edf(10))


def test_the_poll_schedule_starts_quick_and_settles_at_its_cap():
    assert [psg_poll_countdown(n) for n in range(8)] == [2, 5, 10, 20, 30, 60, 120, 120]
    assert psg_poll_countdown(0, retry_after=42) == 42
    assert psg_poll_countdown(3, retry_after=3600) == MAX_COUNTDOWN_SECONDS


class TaskFinalFailureTests:
    """What the tasks do once their retries are spent (the retries themselves run against a
    real worker in the integration test)."""

    def _run(self, task, recording_id, retries):
        task.push_request(retries=retries, id="test")
        try:
            return task.run(recording_id)
        finally:
            task.pop_request()

    def test_a_recording_still_scoring_after_the_last_poll_times_out(self, usleep_sim, scorer_settings, psg_org):
        from integrations.tasks import PSG_POLL_MAX_RETRIES, psg_poll_task

        organization, participant = psg_org
        usleep_sim.configure(job_seconds=600)
        recording = upload(organization, participant, usleep_connection(organization, usleep_sim), psg_edf(10))
        psg.psg_recording_submit(recording_id=recording.pk)
        assert self._run(psg_poll_task, recording.pk, PSG_POLL_MAX_RETRIES) == "failed"
        recording.refresh_from_db()
        assert (recording.status, recording.error) == (PsgStatus.FAILED, "scoring_timeout")
        assert usleep_sim.truth()["sessions"] == []

    def test_an_upstream_down_for_every_submit_attempt_fails_the_recording(
        self, usleep_sim, scorer_settings, psg_org
    ):
        from integrations.tasks import PSG_SUBMIT_MAX_RETRIES, psg_submit_task

        organization, participant = psg_org
        recording = upload(organization, participant, usleep_connection(organization, usleep_sim), psg_edf(10))
        usleep_sim.configure(error_rate=1.0)
        assert self._run(psg_submit_task, recording.pk, PSG_SUBMIT_MAX_RETRIES) == "failed"
        recording.refresh_from_db()
        assert (recording.status, recording.error) == (PsgStatus.FAILED, "upstream_unavailable")

    def test_an_unexpected_error_is_recorded_by_the_failure_handler(self, psg_org):
        from celery.exceptions import SoftTimeLimitExceeded

        from integrations.tasks import _psg_task_failure, psg_submit_task

        organization, participant = psg_org
        recording = upload(organization, participant, usleep_connection(organization, PUBLIC), psg_edf(10))
        _psg_task_failure(psg_submit_task, SoftTimeLimitExceeded(), "id", [recording.pk], {}, None)
        recording.refresh_from_db()
        assert (recording.status, recording.error) == (PsgStatus.FAILED, "timeout")
