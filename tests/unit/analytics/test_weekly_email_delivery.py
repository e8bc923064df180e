"""Exactly once per person per week: claims, recovery points, retries, dispatch."""

from __future__ import annotations

import datetime as dt
import smtplib
import threading

import pytest
from django.core import mail
from django.core.cache import cache
from django.core.mail.backends.locmem import EmailBackend as LocmemBackend
from django.db import connection
from django.utils import timezone

from analytics import email_delivery
from analytics.email_delivery import (
    digest_claim,
    digest_mark_sending,
    weekly_admin_digests_send,
    weekly_emails_dispatch,
    weekly_participant_emails_send,
    weekly_recipients,
)
from analytics.email_tasks import send_weekly_participant_emails_task
from analytics.models import WeeklyDigest

from .weekly_email_setup import ISO_WEEK, ISO_YEAR, EmailWorld

# Tuesday 2026-03-10 09:00 UTC = 10:00 in Berlin (the factories' zone): inside the window of
# an organization sending on Tuesdays at 10:00, for the week 2026-W10.
NOW = dt.datetime(2026, 3, 10, 9, 0, tzinfo=dt.UTC)


@pytest.fixture
def setup(world_a, settings):
    settings.SITE_URL = "https://sleep.example.org"
    cache.clear()
    world = EmailWorld(world_a)
    world.org.weekly_email_weekday = 1
    world.org.weekly_email_hour = 10
    world.org.save()
    return world


def _send(setup, ids, token="task-1"):
    return weekly_participant_emails_send(organization_id=setup.org.pk, iso_year=ISO_YEAR, iso_week=ISO_WEEK,
                                          participant_ids=ids, token=token)


def _claim(setup, person, token):
    return digest_claim(organization_id=setup.org.pk, iso_year=ISO_YEAR, iso_week=ISO_WEEK, token=token,
                        participant_id=person.pk)


def _recipients():
    return sorted(address for message in mail.outbox for address in message.to)


class DispatchTests:
    def _dispatch(self, now=NOW):
        calls = []
        count = weekly_emails_dispatch(
            now=now,
            enqueue_participants=lambda *args: calls.append(("participants", *args)),
            enqueue_admins=lambda *args: calls.append(("admins", *args)),
        )
        assert count == len(calls)
        return calls

    def test_it_enqueues_receivers_with_nights_and_the_admins(self, setup):
        calls = self._dispatch()
        ids = {p.pk for p in setup.receivers}
        assert [c[:4] for c in calls] == [("participants", setup.org.pk, 2026, 10), ("admins", setup.org.pk, 2026, 10)]
        assert set(calls[0][4]) == ids
        admins = setup.org.memberships.filter(user__email__in=setup.admin_emails)
        assert set(calls[1][4]) == set(admins.values_list("pk", flat=True))

    def test_it_batches_participants(self, setup, settings):
        settings.WEEKLY_EMAIL_BATCH_SIZE = 2
        calls = [c for c in self._dispatch() if c[0] == "participants"]
        assert [len(c[4]) for c in calls] == [2, 1]

    def test_it_enqueues_nothing_outside_the_window(self, setup):
        assert self._dispatch(now=NOW - dt.timedelta(minutes=1)) == []
        assert self._dispatch(now=NOW + dt.timedelta(hours=24)) == []

    def test_a_second_tick_enqueues_nothing_and_a_finished_week_has_no_recipients(self, setup, mailoutbox):
        calls = self._dispatch()
        assert self._dispatch() == []  # the dispatch key holds until the stale interval
        for kind, org_id, year, week, ids in calls:
            send = weekly_participant_emails_send if kind == "participants" else weekly_admin_digests_send
            key = "participant_ids" if kind == "participants" else "membership_ids"
            send(organization_id=org_id, iso_year=year, iso_week=week, token="t", **{key: ids})
        assert _recipients() == sorted(setup.receiver_emails | setup.admin_emails)
        cache.clear()
        assert weekly_recipients(setup.org, ISO_YEAR, ISO_WEEK) == ([], [])
        assert self._dispatch() == []


class ClaimTests:
    def test_it_sends_only_to_opted_in_participants_with_an_address_and_nights(self, setup, mailoutbox):
        everyone = list(setup.org.participants.values_list("pk", flat=True))
        outcome = _send(setup, everyone)
        assert outcome.sent == 3
        assert _recipients() == sorted(setup.receiver_emails)
        assert set(WeeklyDigest.objects.filter(sent_at__isnull=False).values_list("participant_id", flat=True)) == {
            p.pk for p in setup.receivers
        }

    def test_a_repeated_or_duplicated_task_sends_nothing_twice(self, setup, mailoutbox):
        ids = [p.pk for p in setup.receivers]
        assert _send(setup, ids, token="task-1").sent == 3
        assert _send(setup, ids, token="task-1").sent == 0  # the same task redelivered
        assert _send(setup, ids, token="task-2").sent == 0  # a second beat's copy
        assert len(mail.outbox) == 3
        assert WeeklyDigest.objects.filter(attempts=1).count() == 3

    def test_an_unsubscribe_before_the_send_wins(self, setup, mailoutbox):
        person = setup.receivers[0]
        person.weekly_email_opt_in = False
        person.save()
        _send(setup, [p.pk for p in setup.receivers])
        assert person.email not in _recipients() and len(mail.outbox) == 2

    def test_a_fresh_claim_of_another_task_is_left_alone(self, setup, mailoutbox):
        person = setup.receivers[0]
        assert _claim(setup, person, "crashed-task") is not None
        assert _send(setup, [person.pk], token="other-task").sent == 0
        assert mail.outbox == []

    def test_a_task_resumes_its_own_claim_left_before_the_smtp_hand_off(self, setup, mailoutbox):
        person = setup.receivers[0]
        assert _claim(setup, person, "task-1") is not None  # then the worker died while rendering
        assert _send(setup, [person.pk], token="task-1").sent == 1  # redelivered with its task id
        row = WeeklyDigest.objects.get(participant=person)
        assert row.attempts == 2 and row.sent_at is not None and len(mail.outbox) == 1

    def test_a_stale_claim_is_taken_over_once(self, setup, mailoutbox, settings):
        person = setup.receivers[0]
        _claim(setup, person, "crashed-task")
        stale = timezone.now() - dt.timedelta(seconds=settings.WEEKLY_EMAIL_CLAIM_STALE_SECONDS + 1)
        WeeklyDigest.objects.update(claimed_at=stale)
        assert _send(setup, [person.pk], token="later-task").sent == 1
        assert _send(setup, [person.pk], token="even-later-task").sent == 0
        assert len(mail.outbox) == 1

    def test_a_claim_taken_over_cannot_reach_smtp(self, setup):
        person = setup.receivers[0]
        first = _claim(setup, person, "slow-task")
        WeeklyDigest.objects.update(claimed_at=timezone.now() - dt.timedelta(days=1))
        second = _claim(setup, person, "later-task")
        assert second.attempt == first.attempt + 1
        assert digest_mark_sending(first) is False
        assert digest_mark_sending(second) is True

    def test_a_digest_whose_outcome_is_unknown_is_never_resent(self, setup, mailoutbox):
        person = setup.receivers[0]
        claim = _claim(setup, person, "task-1")
        assert digest_mark_sending(claim)  # handed to SMTP, then the process died
        WeeklyDigest.objects.update(claimed_at=timezone.now() - dt.timedelta(days=1))
        assert _send(setup, [person.pk], token="task-1").sent == 0
        assert _send(setup, [person.pk], token="task-2").sent == 0
        assert mail.outbox == []
        assert person.pk not in weekly_recipients(setup.org, ISO_YEAR, ISO_WEEK)[0]


class FlakySMTP(LocmemBackend):
    """Refuses listed recipients with a given reply code, accepts everyone else."""

    refuse: dict[str, int] = {}

    def send_messages(self, messages):
        for message in messages:
            code = self.refuse.get(message.to[0])
            if code:
                raise smtplib.SMTPRecipientsRefused({message.to[0]: (code, b"no")})
        return super().send_messages(messages)


class Disconnecting(LocmemBackend):
    def send_messages(self, messages):
        raise smtplib.SMTPServerDisconnected("connection lost during DATA")


class SmtpFailureTests:
    @pytest.fixture
    def flaky(self, settings):
        settings.EMAIL_BACKEND = f"{__name__}.FlakySMTP"
        FlakySMTP.refuse = {}
        yield FlakySMTP
        FlakySMTP.refuse = {}

    def test_a_transient_refusal_is_retried_and_sent_once(self, setup, flaky, mailoutbox):
        first, second, third = setup.receivers
        flaky.refuse = {first.email: 451}
        outcome = _send(setup, [p.pk for p in setup.receivers], token="task-1")
        assert (outcome.sent, outcome.retry_ids) == (2, [first.pk])
        row = WeeklyDigest.objects.get(participant=first)
        assert row.error == "transient:refused" and row.sending_at is None and row.sent_at is None
        flaky.refuse = {}
        again = _send(setup, [p.pk for p in setup.receivers], token="task-1")  # the task's retry
        assert (again.sent, again.retry_ids) == (1, [])
        assert _recipients() == sorted(setup.receiver_emails)

    def test_a_permanent_refusal_is_recorded_and_not_retried(self, setup, flaky, mailoutbox):
        person = setup.receivers[0]
        flaky.refuse = {person.email: 550}
        outcome = _send(setup, [person.pk])
        assert (outcome.sent, outcome.failed, outcome.retry_ids) == (0, 1, [])
        assert WeeklyDigest.objects.get(participant=person).error == "refused"
        flaky.refuse = {}
        WeeklyDigest.objects.update(claimed_at=timezone.now() - dt.timedelta(days=1))
        assert _send(setup, [person.pk], token="task-2").sent == 0
        assert person.pk not in weekly_recipients(setup.org, ISO_YEAR, ISO_WEEK)[0]

    def test_a_connection_lost_mid_message_is_unknown_and_the_rest_retried(self, setup, settings, mailoutbox):
        settings.EMAIL_BACKEND = f"{__name__}.Disconnecting"
        ids = [p.pk for p in setup.receivers]
        outcome = _send(setup, ids)
        assert outcome.unknown == 1 and outcome.retry_ids == ids[1:]
        first = WeeklyDigest.objects.get(participant_id=ids[0])
        assert first.sending_at is not None and first.sent_at is None and first.error == "unknown"
        settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
        assert _send(setup, ids).sent == 2  # the retry: everyone but the unknown one
        assert ids[0] not in weekly_recipients(setup.org, ISO_YEAR, ISO_WEEK)[0]

    def test_a_task_out_of_attempts_gives_up(self, setup, flaky, mailoutbox):
        person = setup.receivers[0]
        flaky.refuse = {person.email: 421}
        for attempt in range(email_delivery.MAX_ATTEMPTS + 2):
            _send(setup, [person.pk], token=f"task-{attempt}")
        row = WeeklyDigest.objects.get(participant=person)
        assert row.attempts == email_delivery.MAX_ATTEMPTS and row.sent_at is None
        assert person.pk not in weekly_recipients(setup.org, ISO_YEAR, ISO_WEEK)[0]


class RefuseOnce(LocmemBackend):
    """Refuses the first message to ``address`` with a 451, then accepts everything."""

    address = ""

    def send_messages(self, messages):
        if messages[0].to[0] == RefuseOnce.address:
            RefuseOnce.address = ""
            raise smtplib.SMTPRecipientsRefused({messages[0].to[0]: (451, b"try later")})
        return super().send_messages(messages)


class TaskTests:
    def test_a_retried_task_sends_only_what_failed(self, setup, settings, mailoutbox):
        settings.EMAIL_BACKEND = f"{__name__}.RefuseOnce"
        RefuseOnce.address = setup.receivers[0].email
        # Eager: the retry runs inline, with the same task id, for the refused person only.
        result = send_weekly_participant_emails_task.apply(
            args=[setup.org.pk, ISO_YEAR, ISO_WEEK, [p.pk for p in setup.receivers]], task_id="abc",
        )
        assert result.successful()
        assert result.get() == 1  # the retry's own count
        assert _recipients() == sorted(setup.receiver_emails)
        assert WeeklyDigest.objects.get(participant=setup.receivers[0]).attempts == 2
        # The same message redelivered once more sends nothing.
        again = send_weekly_participant_emails_task.apply(
            args=[setup.org.pk, ISO_YEAR, ISO_WEEK, [p.pk for p in setup.receivers]], task_id="abc",
        )
        assert again.get() == 0 and len(mail.outbox) == 3


@pytest.mark.django_db(transaction=True)
class ConcurrencyTests:
    def test_two_concurrent_senders_send_each_email_once(self, world_a, settings):
        settings.SITE_URL = "https://sleep.example.org"
        setup = EmailWorld(world_a)
        ids = [p.pk for p in setup.receivers]
        mail.outbox = []
        barrier = threading.Barrier(2)
        errors = []

        def run(token):
            try:
                barrier.wait()
                _send(setup, ids, token=token)
            except Exception as exc:  # pragma: no cover - surfaced below
                errors.append(exc)
            finally:
                connection.close()

        threads = [threading.Thread(target=run, args=(f"beat-{i}",)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert errors == []
        assert _recipients() == sorted(setup.receiver_emails)
        assert WeeklyDigest.objects.filter(sent_at__isnull=False).count() == 3
