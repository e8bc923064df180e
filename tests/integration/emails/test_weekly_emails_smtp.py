"""A weekly run through a real Celery worker to a real SMTP server (aiosmtpd on loopback).

Two beats dispatch at once and a third copy of every send task is enqueued besides (a
redelivery, or a dispatcher without the cache key): each person still gets exactly one
email; a second run sends nothing; the mail's parts, inline PNG, headers and one-click
unsubscribe link work. Broker: Redis when the suite runs with REDIS_URL, else the
embedded filesystem broker (as tests/integration/platform/test_celery_worker.py).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import io
import os
import signal
import re
import socket
import threading
import time
import uuid
from collections import Counter
from urllib.parse import urlsplit

import environ
import pytest
from aiosmtpd.controller import Controller
from django.core.cache import caches
from django.test import Client
from django.utils import timezone
from kombu import Connection
from PIL import Image

from analytics.email_delivery import dispatch_guard_key
from analytics.models import WeeklyDigest
from config.celery_app import app
from tenants.models import Participant
from tenants.roles import Role

from ...factories import MembershipFactory, ParticipantFactory, UserFactory
from ...unit.analytics.nights import days, store_nights
from ..conftest import celery_worker, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

SITE = "http://testserver"


class Recorder:
    """aiosmtpd handler keeping every accepted message.

    For an address in ``hold``, the message is kept (accepted) and the reply is held back
    until ``release`` is set: the sender is left between the server's acceptance and its
    own bookkeeping, where the test kills it.
    """

    def __init__(self):
        self.lock = threading.Lock()
        self.messages: list[tuple[list[str], bytes]] = []
        self.hold: set[str] = set()
        self.held = threading.Event()
        self.release = threading.Event()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.messages.append((list(envelope.rcpt_tos), envelope.original_content or envelope.content))
        if self.hold & set(envelope.rcpt_tos):
            self.held.set()
            await asyncio.get_running_loop().run_in_executor(None, self.release.wait, 60)
        return "250 Message accepted for delivery"

    def snapshot(self):
        with self.lock:
            return list(self.messages)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def smtp_server():
    recorder = Recorder()
    controller = Controller(recorder, hostname="127.0.0.1", port=_free_port())
    controller.start()
    try:
        yield recorder, controller.port
    finally:
        controller.stop()


@pytest.fixture
def broker(request, tmp_path, settings):
    """(kombu Connection, worker env) for Redis when configured, else the filesystem broker."""
    if os.environ.get("REDIS_URL"):
        redis_url = request.getfixturevalue("redis_url")
        cache_url = redis_url.replace("redis://", "rediscache://")
        settings.CACHES = {"default": environ.Env.cache_url_config(cache_url)}
        with Connection(redis_url) as connection:
            yield connection, {"CELERY_BROKER_URL": redis_url, "REDIS_URL": redis_url, "CACHE_URL": cache_url}
        return
    var_dir = tmp_path / "var"
    folders = {name: var_dir / "broker" / name for name in ("queue", "processed", "control")}
    for folder in folders.values():
        folder.mkdir(parents=True)
    cache_url = f"filecache://{tmp_path / 'cache'}"
    settings.CACHES = {"default": environ.Env.cache_url_config(cache_url)}
    options = {"data_folder_in": str(folders["queue"]), "data_folder_out": str(folders["queue"]),
               "processed_folder": str(folders["processed"]), "control_folder": str(folders["control"])}
    with Connection("filesystem://", transport_options=options) as connection:
        yield connection, {"CELERY_BROKER_URL": "filesystem://", "PLATFORM_VAR_DIR": str(var_dir), "REDIS_URL": "",
                           "CACHE_URL": cache_url}


def _organization_due_now(world):
    """world's organization, due right now (UTC, this weekday and hour); returns the week."""
    now = timezone.now()
    org = world.org
    org.timezone = "UTC"
    org.weekly_email_weekday = now.weekday()
    org.weekly_email_hour = now.hour
    org.save()
    monday = now.date() - dt.timedelta(days=now.weekday() + 7)
    return org, monday


def _parsed(raw: bytes):
    return email.message_from_bytes(raw, policy=email.policy.default)


def test_it_sends_each_weekly_email_exactly_once_through_a_worker(world_a, smtp_server, broker, tmp_path):
    recorder, port = smtp_server
    connection, broker_env = broker
    org, monday = _organization_due_now(world_a)
    receivers = []
    for i in range(3):
        person = ParticipantFactory(organization=org, name=f"Receiver {i}", email=f"receiver{i}@people.test",
                                    birth_year=1988)
        store_nights(org, person, days(monday - dt.timedelta(days=28), 35), sleep_epochs=820 + 30 * i)
        receivers.append(person)
    opted_out = ParticipantFactory(organization=org, email="out@people.test", weekly_email_opt_in=False)
    store_nights(org, opted_out, days(monday, 7))
    no_address = ParticipantFactory(organization=org, email="")
    store_nights(org, no_address, days(monday, 7))
    ParticipantFactory(organization=org, email="idle@people.test")  # no night that week
    MembershipFactory(organization=org, user=UserFactory(username="hr2@alpha.test"), role=Role.HR)
    admins = {world_a.users[Role.OWNER].email, world_a.users[Role.ADMIN].email}
    expected = {p.email for p in receivers} | admins
    iso_year, iso_week, _ = monday.isocalendar()

    env = {**broker_env, "DJANGO_SETTINGS_MODULE": "tests.integration.emails.worker_settings",
           "EMAIL_URL": f"smtp://127.0.0.1:{port}", "PLATFORM_SITE_URL": SITE}
    log = tmp_path / "worker.log"
    with celery_worker(env=env, concurrency=2, log_path=log):
        # Two beats tick at once; besides, a copy of every send task (redelivered, or from a
        # dispatcher that missed the cache key).
        app.send_task("analytics.schedule_weekly_emails", connection=connection)
        app.send_task("analytics.schedule_weekly_emails", connection=connection)
        ids = [p.pk for p in receivers]
        app.send_task("analytics.send_weekly_participant_emails", args=[org.pk, iso_year, iso_week, ids],
                      connection=connection)
        admin_ids = list(org.memberships.filter(role__in=[Role.OWNER, Role.ADMIN]).values_list("pk", flat=True))
        app.send_task("analytics.send_weekly_admin_digests", args=[org.pk, iso_year, iso_week, admin_ids],
                      connection=connection)
        try:
            wait_for(lambda: WeeklyDigest.objects.filter(sent_at__isnull=False).count() == len(expected),
                     timeout=120, what="every weekly email to be sent")
        except AssertionError:
            raise AssertionError(log.read_text()[-4000:]) from None
        time.sleep(3)  # let the duplicate tasks finish: they must not send anything
        first_run = recorder.snapshot()
        counts = Counter(address for rcpts, _ in first_run for address in rcpts)
        assert counts == Counter({address: 1 for address in expected}), counts

        # A second run (the dispatch key cleared, as after its expiry) finds nobody to send.
        caches["default"].delete(dispatch_guard_key(org.pk, iso_year, iso_week))
        app.send_task("analytics.schedule_weekly_emails", connection=connection)
        token = uuid.uuid4().hex
        app.send_task("platform.heartbeat", args=[token], connection=connection)
        wait_for(lambda: caches["default"].get(f"platform:probe:{token}"), timeout=60, what="the probe task")
        time.sleep(3)
        assert len(recorder.snapshot()) == len(expected)
        assert "analytics.schedule_weekly_emails" in log.read_text()

    assert WeeklyDigest.objects.count() == len(expected)
    by_address = {rcpts[0]: _parsed(raw) for rcpts, raw in first_run}

    # The participant's email: text + related(html + png), cid, headers.
    person = receivers[0]
    message = by_address[person.email]
    assert message.get_content_type() == "multipart/alternative"
    text, related = message.get_payload()
    html_part, image = related.get_payload()
    assert (text.get_content_type(), related.get_content_type()) == ("text/plain", "multipart/related")
    assert (html_part.get_content_type(), image.get_content_type()) == ("text/html", "image/png")
    html = html_part.get_content()
    assert f'src="cid:{image["Content-ID"].strip("<>")}"' in html
    png = image.get_payload(decode=True)
    Image.open(io.BytesIO(png)).verify()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert "It is not medical advice." in text.get_content()
    for url in re.findall(r'(?:href|src)="([^"]+)"', html):
        assert url.startswith((SITE + "/", "cid:")), url
    assert message["Message-ID"].strip() == f"<weekly.participant.{iso_year}-W{iso_week:02d}.{person.uuid}@testserver>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsubscribe = message["List-Unsubscribe"].strip().strip("<>")
    assert unsubscribe.startswith(SITE + "/unsubscribe/") and unsubscribe in text.get_content()

    # Admin digests name nobody.
    for address in admins:
        digest = by_address[address]
        assert "programme summary" in digest["Subject"]
        body = digest.get_body(preferencelist=("plain",)).get_content()
        assert not any(p.name in body or p.email in body for p in receivers)

    # One-click unsubscribe, as a mail provider does it: no cookie, no CSRF token.
    path = urlsplit(unsubscribe).path
    client = Client(enforce_csrf_checks=True)
    assert client.get(path).status_code == 200
    assert Participant.objects.get(pk=person.pk).weekly_email_opt_in is True
    response = client.post(path, data="List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200 and person.name.encode() not in response.content
    assert Participant.objects.get(pk=person.pk).weekly_email_opt_in is False


def test_a_worker_killed_after_the_server_accepted_never_resends(world_a, smtp_server, broker, tmp_path):
    """reliability.md T17: SIGKILL between the SMTP acceptance and the sent mark."""
    recorder, port = smtp_server
    connection, broker_env = broker
    org, monday = _organization_due_now(world_a)
    people = [ParticipantFactory(organization=org, email=f"p{i}@people.test") for i in range(3)]
    for person in people:
        store_nights(org, person, days(monday, 7))
    first, crashed, later = people
    recorder.hold = {crashed.email}
    iso_year, iso_week, _ = monday.isocalendar()
    env = {**broker_env, "DJANGO_SETTINGS_MODULE": "tests.integration.emails.worker_settings",
           "EMAIL_URL": f"smtp://127.0.0.1:{port}", "PLATFORM_SITE_URL": SITE}
    ids = [p.pk for p in people]
    with celery_worker(env=env, log_path=tmp_path / "worker-1.log") as worker:
        app.send_task("analytics.send_weekly_participant_emails", args=[org.pk, iso_year, iso_week, ids],
                      connection=connection)
        assert recorder.held.wait(90), (tmp_path / "worker-1.log").read_text()[-4000:]
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)
    recorder.release.set()
    row = WeeklyDigest.objects.get(participant=crashed)
    assert row.sending_at is not None and row.sent_at is None  # outcome unknown to us
    assert WeeklyDigest.objects.get(participant=first).sent_at is not None
    assert not WeeklyDigest.objects.filter(participant=later).exists()

    with celery_worker(env=env, log_path=tmp_path / "worker-2.log"):
        # The next beat tick, and the killed task's message delivered again.
        app.send_task("analytics.schedule_weekly_emails", connection=connection)
        app.send_task("analytics.send_weekly_participant_emails", args=[org.pk, iso_year, iso_week, ids],
                      connection=connection)
        wait_for(lambda: WeeklyDigest.objects.filter(participant=later, sent_at__isnull=False).exists(),
                 timeout=90, what="the rest of the batch")
        token = uuid.uuid4().hex
        app.send_task("platform.heartbeat", args=[token], connection=connection)
        wait_for(lambda: caches["default"].get(f"platform:probe:{token}"), timeout=60, what="the probe task")
        time.sleep(2)
    counts = Counter(address for rcpts, _ in recorder.snapshot() for address in rcpts)
    assert [counts[p.email] for p in people] == [1, 1, 1]  # the crashed one: accepted once, never resent
    row.refresh_from_db()
    assert row.sent_at is None and row.sending_at is not None
    ids_sent = {m["Message-ID"].strip() for _, raw in recorder.snapshot() for m in [_parsed(raw)]
                if m["To"] in {p.email for p in people}}
    assert f"<weekly.participant.{iso_year}-W{iso_week:02d}.{crashed.uuid}@testserver>" in ids_sent
