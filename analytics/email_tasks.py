"""Celery tasks for the weekly emails: thin wrappers around analytics/email_delivery.py.

``schedule_weekly_emails`` (beat, every WEEKLY_EMAIL_SCHEDULER_SECONDS) fans out one task
per batch of participants (WEEKLY_EMAIL_BATCH_SIZE) and one for the admin digests of each
organization whose window is open. Send tasks are safe to run twice: WeeklyDigest claims
decide who sends (email_delivery.py explains the recovery points).
"""

from __future__ import annotations

import random

from celery import shared_task

__all__ = [
    "schedule_weekly_emails_task",
    "send_weekly_participant_emails_task",
    "send_weekly_admin_digests_task",
]

MAX_RETRIES = 5
# Retries wait at most this long: below any visibility timeout minus the task time limit.
MAX_COUNTDOWN_SECONDS = 300


def _backoff(retries: int) -> float:
    # Full jitter over 2^n seconds, capped (as integrations/tasks.py).
    return random.uniform(1, min(MAX_COUNTDOWN_SECONDS, 2 ** (retries + 3)))


@shared_task(name="analytics.schedule_weekly_emails", acks_late=False, time_limit=120, soft_time_limit=100)
def schedule_weekly_emails_task() -> int:
    from django.utils import timezone

    from analytics.email_delivery import weekly_emails_dispatch

    def participants(organization_id, iso_year, iso_week, ids):
        send_weekly_participant_emails_task.delay(organization_id, iso_year, iso_week, ids)

    def admins(organization_id, iso_year, iso_week, ids):
        send_weekly_admin_digests_task.delay(organization_id, iso_year, iso_week, ids)

    return weekly_emails_dispatch(now=timezone.now(), enqueue_participants=participants, enqueue_admins=admins)


def _send(task, service, organization_id: int, iso_year: int, iso_week: int, ids: list[int]) -> int:
    import smtplib

    try:
        outcome = service(organization_id=organization_id, iso_year=iso_year, iso_week=iso_week,
                          ids=ids, token=task.request.id or "")
    except (smtplib.SMTPException, OSError) as exc:
        # The SMTP server could not be reached: nothing was claimed, try the whole batch later.
        raise task.retry(exc=exc, countdown=_backoff(task.request.retries)) from None
    if outcome.retry_ids and task.request.retries < task.max_retries:
        raise task.retry(args=[organization_id, iso_year, iso_week, outcome.retry_ids],
                         countdown=_backoff(task.request.retries))
    return outcome.sent


@shared_task(bind=True, name="analytics.send_weekly_participant_emails", max_retries=MAX_RETRIES)
def send_weekly_participant_emails_task(self, organization_id: int, iso_year: int, iso_week: int,
                                        participant_ids: list[int]) -> int:
    from analytics.email_delivery import weekly_participant_emails_send

    def service(*, ids, **kwargs):
        return weekly_participant_emails_send(participant_ids=ids, **kwargs)

    return _send(self, service, organization_id, iso_year, iso_week, participant_ids)


@shared_task(bind=True, name="analytics.send_weekly_admin_digests", max_retries=MAX_RETRIES)
def send_weekly_admin_digests_task(self, organization_id: int, iso_year: int, iso_week: int,
                                   membership_ids: list[int]) -> int:
    from analytics.email_delivery import weekly_admin_digests_send

    def service(*, ids, **kwargs):
        return weekly_admin_digests_send(membership_ids=ids, **kwargs)

    return _send(self, service, organization_id, iso_year, iso_week, membership_ids)
