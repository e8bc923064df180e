"""A PSG recording whose poll chain is lost (the worker killed, then Redis wiped: the chain's
countdown message was in both) is picked up by the stranded sweep once it has made no
progress for PSG_STRANDED_SECONDS, and scored exactly once, on a real worker."""

from __future__ import annotations

import signal
import time

import pytest
import redis as redis_lib
from django.core.files.uploadedfile import SimpleUploadedFile

from analytics.models import SleepSession
from integrations import psg
from integrations.models import Connection, PsgRecording, PsgStatus
from integrations.simulators.server import start_in_thread

from ...factories import OrganizationFactory, ParticipantFactory
from ..conftest import wait_for
from .conftest import broker_messages
from .test_psg_flow import _edf, publishing_to

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

STRANDED_SECONDS = 2


def _status(recording) -> str:
    return PsgRecording.objects.values_list("status", flat=True).get(pk=recording.pk)


def test_the_sweep_resumes_a_recording_whose_poll_chain_was_lost(broker_url, start_worker, settings):
    from config.celery_app import app

    settings.PSG_STRANDED_SECONDS = STRANDED_SECONDS
    env = {"PSG_STRANDED_SECONDS": STRANDED_SECONDS, "PLATFORM_MEDIA_ROOT": str(settings.MEDIA_ROOT)}
    with start_in_thread("usleep", tokens=["usleep-token"], job_seconds=4) as usleep:
        organization = OrganizationFactory()
        participant = ParticipantFactory(organization=organization)
        connection = Connection.objects.create(
            organization=organization, name="U-Sleep", provider="usleep", base_url=usleep.url,
            credentials={"token": "usleep-token"},
        )
        first = start_worker("psg-first", **env)
        with publishing_to(app, broker_url):
            recording = psg.psg_recording_upload(
                organization=organization, participant=participant, connection=connection,
                file=SimpleUploadedFile("night.edf", _edf(3)),
            )
        # The first poll found it pending: the chain now waits on a countdown message.
        wait_for(lambda: _status(recording) == PsgStatus.SCORING, timeout=30, what="the recording to be scoring")

        first.signal_group(signal.SIGKILL)
        first.wait_exit(10)
        client = redis_lib.Redis.from_url(broker_url)
        client.flushall()
        client.close()
        assert broker_messages(broker_url) == []

        fresh = start_worker("psg-fresh", **env)
        fresh.wait_ready()
        time.sleep(3)  # the upstream job is done by now, but nothing is left to poll it
        assert _status(recording) == PsgStatus.SCORING

        # Beat's sweep, every 1.5 s here: it claims the recording once its heartbeat is older
        # than the threshold and re-enqueues one poll.
        with publishing_to(app, broker_url):
            def swept():
                return app.send_task("integrations.psg_sweep_stranded") and _status(recording) == PsgStatus.COMPLETED

            wait_for(swept, timeout=40, interval=1.5, what="the sweep to resume and finish the recording")

        recording.refresh_from_db()
        assert recording.status == PsgStatus.COMPLETED and recording.error == ""
        assert SleepSession.objects.filter(participant=participant).count() == 1
        assert recording.sleep_session is not None and recording.upstream_deleted_at is not None
        assert usleep.truth()["sessions"] == []
        assert psg.psg_stranded_claim() == []  # completed: nothing stranded any more
        assert fresh.log().count("stranded in status=scoring: step re-enqueued") == 1
