"""PSG robustness: tasks scoped by organization, and the sweep of stranded recordings."""

from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from integrations import psg
from integrations.models import PsgRecording, PsgStatus

from ...factories import OrganizationFactory
from .conftest import psg_edf, usleep_connection

class PUBLIC:  # stands in for a simulator where no request is ever sent
    url = "https://93.184.216.34"


@pytest.fixture
def enqueued(monkeypatch):
    """Tasks enqueued with .delay(): [(task name, args)]; nothing reaches a broker."""
    from integrations import tasks

    sent = []
    for task in (tasks.psg_submit_task, tasks.psg_poll_task):
        monkeypatch.setattr(task, "delay", lambda *args, _name=task.name: sent.append((_name, args)))
    return sent


def upload(organization, participant, connection) -> PsgRecording:
    return psg.psg_recording_upload(
        organization=organization, participant=participant, connection=connection,
        file=SimpleUploadedFile("night.edf", psg_edf(10)),
    )


def _age(recording, seconds: float, **fields) -> None:
    """Pretend the recording made no progress for ``seconds``."""
    PsgRecording.objects.filter(pk=recording.pk).update(
        updated_at=timezone.now() - timedelta(seconds=seconds), **fields
    )


class OrganizationScopedTasksTests:
    def test_the_upload_enqueues_the_recording_with_its_organization(
        self, psg_org, enqueued, django_capture_on_commit_callbacks
    ):
        organization, participant = psg_org
        with django_capture_on_commit_callbacks(execute=True):
            recording = upload(organization, participant, usleep_connection(organization, PUBLIC))
        assert enqueued == [("integrations.psg_submit", (recording.pk, organization.pk))]

    def test_a_task_naming_another_organization_finds_and_touches_nothing(
        self, usleep_sim, scorer_settings, psg_org
    ):
        organization, participant = psg_org
        recording = upload(organization, participant, usleep_connection(organization, usleep_sim))
        other = OrganizationFactory()
        assert psg.psg_recording_submit(recording_id=recording.pk, organization_id=other.pk).step is psg.PsgStep.GONE
        assert psg.psg_recording_poll(recording_id=recording.pk, organization_id=other.pk).step is psg.PsgStep.GONE
        outcome = psg.psg_recording_fail(recording_id=recording.pk, error="internal_error", organization_id=other.pk)
        assert outcome.step is psg.PsgStep.GONE
        recording.refresh_from_db()
        assert recording.status == PsgStatus.UPLOADED and recording.error == "" and recording.claimed_until is None
        assert usleep_sim.log() == []  # nothing was sent upstream

        # The right organization goes through.
        outcome = psg.psg_recording_submit(recording_id=recording.pk, organization_id=organization.pk)
        assert outcome.step is psg.PsgStep.SUBMITTED

    def test_a_message_queued_before_tasks_carried_the_organization_still_runs(
        self, usleep_sim, scorer_settings, psg_org, monkeypatch
    ):
        from integrations.tasks import psg_poll_task, psg_submit_task

        organization, participant = psg_org
        recording = upload(organization, participant, usleep_connection(organization, usleep_sim))
        polls = []
        monkeypatch.setattr(psg_poll_task, "apply_async", lambda args, countdown: polls.append(args))
        psg_submit_task.push_request(retries=0, id="legacy")
        try:
            assert psg_submit_task.run(recording.pk) == "submitted"  # args=[recording_id] only
        finally:
            psg_submit_task.pop_request()
        assert polls == [[recording.pk, None]]
        recording.refresh_from_db()
        assert recording.status == PsgStatus.SUBMITTED

    def test_the_failure_handler_respects_the_organization(self, psg_org):
        from celery.exceptions import SoftTimeLimitExceeded

        from integrations.tasks import _psg_task_failure, psg_poll_task

        organization, participant = psg_org
        recording = upload(organization, participant, usleep_connection(organization, PUBLIC))
        other = OrganizationFactory()
        _psg_task_failure(psg_poll_task, SoftTimeLimitExceeded(), "id", [recording.pk, other.pk], {}, None)
        recording.refresh_from_db()
        assert recording.status == PsgStatus.UPLOADED
        _psg_task_failure(psg_poll_task, SoftTimeLimitExceeded(), "id", [recording.pk, organization.pk], {}, None)
        recording.refresh_from_db()
        assert (recording.status, recording.error) == (PsgStatus.FAILED, "timeout")


class StrandedSweepTests:
    @pytest.fixture(autouse=True)
    def threshold(self, settings):
        settings.PSG_STRANDED_SECONDS = 900

    def _recordings(self, psg_org, **statuses):
        organization, participant = psg_org
        connection = usleep_connection(organization, PUBLIC)
        return {name: upload(organization, participant, connection) for name in statuses}

    def test_it_claims_each_stranded_recording_once_and_leaves_live_and_finished_ones(self, psg_org, enqueued):
        from integrations.tasks import psg_sweep_stranded_task

        organization, _ = psg_org
        names = ["uploaded_lost", "submitting", "submitted_lost", "scoring_lost", "scoring_live", "done", "failed"]
        rec = self._recordings(psg_org, **dict.fromkeys(names))
        _age(rec["uploaded_lost"], 1000)
        _age(rec["submitting"], 1000, claimed_until=timezone.now() + timedelta(seconds=600))  # a submit at work
        _age(rec["submitted_lost"], 1000, status=PsgStatus.SUBMITTED)
        _age(rec["scoring_lost"], 5000, status=PsgStatus.SCORING)
        _age(rec["scoring_live"], 60, status=PsgStatus.SCORING)
        _age(rec["done"], 9000, status=PsgStatus.COMPLETED)
        _age(rec["failed"], 9000, status=PsgStatus.FAILED)

        assert psg_sweep_stranded_task.run() == 3
        assert sorted(enqueued) == sorted([
            ("integrations.psg_submit", (rec["uploaded_lost"].pk, organization.pk)),
            ("integrations.psg_poll", (rec["submitted_lost"].pk, organization.pk)),
            ("integrations.psg_poll", (rec["scoring_lost"].pk, organization.pk)),
        ])
        # One chain at a time: the claim moved their heartbeat, so the next sweep skips them.
        assert psg_sweep_stranded_task.run() == 0
        assert len(enqueued) == 3
        assert PsgRecording.objects.get(pk=rec["scoring_lost"].pk).status == PsgStatus.SCORING

    def test_an_expired_submit_claim_is_stranded_too(self, psg_org):
        rec = self._recordings(psg_org, dead_submit=None)["dead_submit"]
        _age(rec, 1000, claimed_until=timezone.now() - timedelta(seconds=5))
        assert [step for step, *_ in psg.psg_stranded_claim()] == ["submit"]

    def test_two_sweeps_racing_claim_a_recording_once(self, psg_org):
        rec = self._recordings(psg_org, lost=None)["lost"]
        _age(rec, 1000, status=PsgStatus.SCORING)
        stale_view = PsgRecording.objects.filter(pk=rec.pk).values_list("updated_at", flat=True).get()
        assert len(psg.psg_stranded_claim()) == 1
        # A second sweep that read the row before the first claimed it loses the conditional UPDATE.
        assert PsgRecording.objects.filter(pk=rec.pk, updated_at=stale_view).update(updated_at=timezone.now()) == 0
        assert psg.psg_stranded_claim() == []

    def test_a_pending_poll_is_a_heartbeat(self, usleep_sim, scorer_settings, psg_org):
        organization, participant = psg_org
        usleep_sim.configure(job_seconds=600)
        recording = upload(organization, participant, usleep_connection(organization, usleep_sim))
        psg.psg_recording_submit(recording_id=recording.pk, organization_id=organization.pk)
        _age(recording, 1000, status=PsgStatus.SCORING)
        assert psg.psg_recording_poll(recording_id=recording.pk, organization_id=organization.pk).step is (
            psg.PsgStep.PENDING
        )
        assert psg.psg_stranded_claim() == []  # the chain is alive
        recording.refresh_from_db()
        assert timezone.now() - recording.updated_at < timedelta(seconds=60)

    def test_the_sweep_is_on_the_beat_schedule(self, settings):
        entries = [e for e in settings.CELERY_BEAT_SCHEDULE.values() if e["task"] == "integrations.psg_sweep_stranded"]
        assert len(entries) == 1 and entries[0]["schedule"] <= settings.PSG_STRANDED_SECONDS
