"""The public one-click unsubscribe: signed token, GET confirms, POST unsubscribes."""

from __future__ import annotations

import time
from unittest import mock

import pytest
from django.test import Client

from analytics import emails
from tenants.models import AuditEvent, Participant

from ...factories import ParticipantFactory


@pytest.fixture
def person(world_a):
    return ParticipantFactory(organization=world_a.org, name="Ada Lovelace", email="ada@people.test")


def _url(token: str) -> str:
    return f"/unsubscribe/{token}/"


def _private_bits(person) -> list[str]:
    return [person.name, person.email, str(person.uuid), person.organization.name, person.organization.slug]


class UnsubscribeTokenTests:
    def test_it_round_trips_the_participant_uuid(self, person):
        assert emails.participant_uuid_from_token(emails.unsubscribe_token(person.uuid)) == person.uuid

    def test_it_refuses_a_tampered_foreign_or_expired_token(self, person, settings):
        token = emails.unsubscribe_token(person.uuid)
        payload, stamp, signature = token.rsplit(":", 2)
        other = emails.unsubscribe_token(ParticipantFactory(organization=person.organization).uuid)
        forged = other.rsplit(":", 2)[0] + f":{stamp}:{signature}"
        from django.core import signing

        wrong_salt = signing.dumps({"p": str(person.uuid)}, salt="another.purpose", compress=False)
        for bad in (token[:-1] + ("A" if token[-1] != "A" else "B"), forged, wrong_salt, "example", "", "a:b:c"):
            with pytest.raises(emails.InvalidUnsubscribeToken):
                emails.participant_uuid_from_token(bad)
        days = settings.WEEKLY_EMAIL_UNSUBSCRIBE_MAX_AGE_DAYS
        with mock.patch("time.time", return_value=time.time() - (days + 1) * 86400):
            old = emails.unsubscribe_token(person.uuid)
        with pytest.raises(emails.InvalidUnsubscribeToken):
            emails.participant_uuid_from_token(old)


class UnsubscribePageTests:
    def test_get_asks_to_confirm_and_changes_nothing(self, person, client):
        response = client.get(_url(emails.unsubscribe_token(person.uuid)))
        assert response.status_code == 200
        assert b"Unsubscribe from the weekly sleep emails?" in response.content
        assert b'method="post"' in response.content
        person.refresh_from_db()
        assert person.weekly_email_opt_in is True

    def test_post_unsubscribes_without_login_or_csrf_token_and_reveals_nothing(self, person):
        client = Client(enforce_csrf_checks=True)  # as a mail provider's one-click POST
        response = client.post(_url(emails.unsubscribe_token(person.uuid)), data="List-Unsubscribe=One-Click",
                               content_type="application/x-www-form-urlencoded")
        assert response.status_code == 200
        assert b"You are unsubscribed" in response.content
        text = response.content.decode()
        for bit in _private_bits(person):
            assert bit not in text
        person.refresh_from_db()
        assert person.weekly_email_opt_in is False
        event = AuditEvent.objects.get(action="weekly_email.unsubscribed")
        assert event.organization_id == person.organization_id and event.target == str(person.uuid)
        assert event.actor is None
        # Again: the same success page, no second audit event.
        assert client.post(_url(emails.unsubscribe_token(person.uuid))).status_code == 200
        assert AuditEvent.objects.filter(action="weekly_email.unsubscribed").count() == 1

    def test_a_deleted_participants_link_answers_the_same_success(self, person, client):
        token = emails.unsubscribe_token(person.uuid)
        Participant.objects.filter(pk=person.pk).delete()
        response = client.post(_url(token))
        assert response.status_code == 200 and b"You are unsubscribed" in response.content

    def test_a_bad_token_gets_a_clear_400_page_and_changes_nothing(self, person, client):
        token = emails.unsubscribe_token(person.uuid)
        for bad in (token[:-2] + "xx", "example"):
            for method in (client.get, client.post):
                response = method(_url(bad))
                assert response.status_code == 400
                assert b"This unsubscribe link is not valid" in response.content
        person.refresh_from_db()
        assert person.weekly_email_opt_in is True
        assert not AuditEvent.objects.filter(action="weekly_email.unsubscribed").exists()

    def test_other_methods_are_refused(self, person, client):
        assert client.put(_url(emails.unsubscribe_token(person.uuid))).status_code == 405
