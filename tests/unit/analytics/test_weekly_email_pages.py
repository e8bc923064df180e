"""The admin "Emails" pages: preview, test send (to oneself, rate-limited), audit."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from django.core.cache import cache

from analytics.models import WeeklyDigest
from tenants.models import AuditEvent
from tenants.roles import Role

from ...factories import ParticipantFactory
from .weekly_email_setup import WEEK, EmailWorld


@pytest.fixture
def setup(world_a, settings):
    settings.SITE_URL = "https://sleep.example.org"
    cache.clear()
    return EmailWorld(world_a)


def _client(client, world, role=Role.ADMIN):
    client.force_login(world.users[role])
    return client


def _base(setup):
    return f"/o/{setup.org.slug}/emails/"


class EmailPageTests:
    def test_it_lists_matches_and_frames_the_preview(self, setup, client):
        person = setup.receivers[0]
        c = _client(client, setup.world)
        response = c.get(_base(setup), {"q": "Receiver", "week": WEEK})
        assert response.status_code == 200
        assert response.content.count(b"Receiver ") >= 3
        response = c.get(_base(setup), {"participant": str(person.uuid), "week": WEEK})
        body = response.content.decode()
        assert f'src="{_base(setup)}preview/{person.uuid}/?week={WEEK}"' in body
        assert "Will receive this email." in body
        assert "<script" not in body and 'style="' not in body  # the page CSP allows neither

    def test_it_explains_who_gets_no_email(self, setup, client):
        body = _client(client, setup.world).get(
            _base(setup), {"participant": str(setup.opted_out.uuid), "week": WEEK}).content.decode()
        assert "Unsubscribed from the weekly emails" in body

    def test_the_preview_is_the_email_with_its_chart_inline_and_is_audited(self, setup, client):
        person = setup.receivers[0]
        response = _client(client, setup.world).get(f"{_base(setup)}preview/{person.uuid}/", {"week": WEEK})
        assert response.status_code == 200
        body = response.content.decode()
        assert re.search(r'src="data:image/png;base64,[A-Za-z0-9+/=]{200,}"', body)
        assert "cid:" not in body and "/unsubscribe/example/" in body
        assert response["X-Frame-Options"] == "SAMEORIGIN"
        csp = response["Content-Security-Policy"]
        assert "frame-ancestors 'self'" in csp and "default-src 'none'" in csp and "script-src 'none'" in csp
        event = AuditEvent.objects.get(action="weekly_email.previewed")
        assert event.target == str(person.uuid) and event.actor == setup.world.users[Role.ADMIN]
        assert event.params == {"week": WEEK}
        assert mail.outbox == [] and not WeeklyDigest.objects.exists()

    def test_the_admin_digest_preview(self, setup, client):
        response = _client(client, setup.world, Role.OWNER).get(f"{_base(setup)}preview/admin/", {"week": WEEK})
        assert response.status_code == 200 and b"Sleep across the organization" in response.content
        assert AuditEvent.objects.get(action="weekly_email.previewed").target == "admin-digest"

    def test_another_organizations_participant_is_not_found(self, setup, world_b, client):
        stranger = ParticipantFactory(organization=world_b.org)
        c = _client(client, setup.world)
        assert c.get(f"{_base(setup)}preview/{stranger.uuid}/").status_code == 404
        assert c.get(_base(setup), {"participant": str(stranger.uuid)}).status_code == 404
        assert c.post(f"{_base(setup)}test/", {"participant": str(stranger.uuid), "week": WEEK}).status_code == 404
        assert mail.outbox == [] and not AuditEvent.objects.exists()

    def test_a_bad_week_is_a_400(self, setup, client):
        c = _client(client, setup.world)
        assert c.get(_base(setup), {"week": "2026-W60"}).status_code == 400
        person = setup.receivers[0]
        assert c.get(f"{_base(setup)}preview/{person.uuid}/", {"week": "soon"}).status_code == 400
        assert c.post(f"{_base(setup)}test/", {"participant": str(person.uuid), "week": "x"}).status_code == 400
        assert mail.outbox == []


class TestSendTests:
    def test_it_goes_to_the_admin_not_the_participant_and_claims_nothing(self, setup, client):
        person = setup.receivers[0]
        response = _client(client, setup.world).post(
            f"{_base(setup)}test/", {"participant": str(person.uuid), "week": WEEK})
        assert response.status_code == 302
        assert len(mail.outbox) == 1
        message = mail.outbox[0]
        assert message.to == ["admin@alpha.test"] and message.subject.startswith("[Test] Your sleep")
        assert "List-Unsubscribe" not in message.extra_headers
        assert not WeeklyDigest.objects.exists()
        event = AuditEvent.objects.get(action="weekly_email.test_sent")
        assert event.target == str(person.uuid) and event.actor == setup.world.users[Role.ADMIN]

    def test_the_admin_digest_test(self, setup, client):
        response = _client(client, setup.world, Role.OWNER).post(
            f"{_base(setup)}test/", {"participant": "admin", "week": WEEK})
        assert response.status_code == 302
        assert mail.outbox[0].to == ["owner@alpha.test"] and "programme summary" in mail.outbox[0].subject

    def test_it_is_rate_limited_per_admin(self, setup, client, settings):
        settings.WEEKLY_EMAIL_TESTS_PER_HOUR = 2
        c = _client(client, setup.world)
        data = {"participant": str(setup.receivers[0].uuid), "week": WEEK}
        assert [c.post(f"{_base(setup)}test/", data).status_code for _ in range(3)] == [302, 302, 429]
        assert len(mail.outbox) == 2
        assert AuditEvent.objects.filter(action="weekly_email.test_sent").count() == 2

    def test_an_admin_without_an_address_gets_a_400(self, setup, client):
        admin = setup.world.users[Role.ADMIN]
        admin.email = ""
        admin.save()
        response = _client(client, setup.world).post(
            f"{_base(setup)}test/", {"participant": str(setup.receivers[0].uuid), "week": WEEK})
        assert response.status_code == 400 and b"no email address" in response.content
        assert mail.outbox == []

    @pytest.mark.parametrize("role", [Role.HR, Role.MEMBER])
    def test_other_roles_may_not(self, setup, client, role):
        response = _client(client, setup.world, role).post(
            f"{_base(setup)}test/", {"participant": str(setup.receivers[0].uuid), "week": WEEK})
        assert response.status_code == 403 and mail.outbox == []
