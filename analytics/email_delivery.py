"""Sending the weekly emails exactly once per person per week (claims, recovery points).

Delivery of tasks is at least once (acks late, redelivered after a worker dies, two beats
may both dispatch), so each email hangs on a ``WeeklyDigest`` row, unique per participant
(or admin membership) and ISO week. The steps for one recipient:

1. **claim**: insert the row (``claim_token`` = the task id, ``attempts`` = 1). An
   IntegrityError means someone else has it: skip, unless the row may be taken over (below).
2. render the message (data, chart, templates);
3. **sending**: a conditional UPDATE sets ``sending_at`` (fenced on ``attempts``, so a
   taken-over claim cannot proceed) and commits *before* the message goes to SMTP;
4. hand the message to the SMTP server, then set ``sent_at``.

A claim may be taken over (conditional UPDATE bumping ``attempts``) only while nothing was
handed to SMTP (``sending_at`` empty), up to ``MAX_ATTEMPTS``: at once by the same task id
(a redelivered or retried task resuming its own work), at once after a *transient* SMTP
refusal (4xx, nothing accepted), or by anyone once the claim is older than
``WEEKLY_EMAIL_CLAIM_STALE_SECONDS`` (longer than a task may live: its worker is gone).

A row with ``sending_at`` but no ``sent_at`` is **unknown**: the process died (or the
connection broke) between the hand-off and the mark, and the server may have accepted the
mail. It is never sent again: we prefer a rare missing email to a duplicate (reliability.md
T17). The window is one SMTP transaction; a NOOP before each hand-off keeps a dead
connection from turning into "unknown". A permanent refusal (5xx, recipient refused) is
recorded in ``error`` and not retried.
"""

from __future__ import annotations

import datetime as dt
import logging
import smtplib
from dataclasses import dataclass, field

from django.conf import settings
from django.core.mail import get_connection
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from analytics import emails
from analytics.models import NightlyMetrics, WeeklyDigest
from analytics.engine import weekly
from tenants.models import Membership, Organization, Participant
from tenants.roles import MANAGERS

logger = logging.getLogger(__name__)

# Claims (first try included) per recipient and week; beyond, the week is given up.
MAX_ATTEMPTS = 5
TRANSIENT_PREFIX = "transient:"
UNKNOWN = "unknown"


@dataclass(frozen=True)
class Claim:
    digest_id: int
    attempt: int


@dataclass
class SendOutcome:
    sent: int = 0
    skipped: int = 0
    failed: int = 0
    unknown: int = 0
    retry_ids: list[int] = field(default_factory=list)  # transient failures: send again later
    connection_lost: bool = False


# --- claims ---------------------------------------------------------------------------------------
def _recipient_filter(*, participant_id: int | None, membership_id: int | None) -> Q:
    if participant_id is not None:
        return Q(participant_id=participant_id)
    return Q(membership_id=membership_id)


def digest_claim(
    *, organization_id: int, iso_year: int, iso_week: int, token: str,
    participant_id: int | None = None, membership_id: int | None = None,
) -> Claim | None:
    """Claim one recipient's email of one week, or None when it is not ours to send."""
    try:
        with transaction.atomic():
            row = WeeklyDigest.objects.create(
                organization_id=organization_id, participant_id=participant_id, membership_id=membership_id,
                iso_year=iso_year, iso_week=iso_week, claim_token=token,
            )
        return Claim(row.pk, 1)
    except IntegrityError:
        pass
    row = (
        WeeklyDigest.objects.filter(_recipient_filter(participant_id=participant_id, membership_id=membership_id),
                                    organization_id=organization_id, iso_year=iso_year, iso_week=iso_week)
        .only("pk", "attempts", "claim_token", "claimed_at", "sending_at", "sent_at", "error")
        .first()
    )
    if row is None or not _may_take_over(row, token=token, now=timezone.now()):
        return None
    taken = WeeklyDigest.objects.filter(
        pk=row.pk, attempts=row.attempts, sending_at__isnull=True, sent_at__isnull=True
    ).update(attempts=F("attempts") + 1, claimed_at=timezone.now(), claim_token=token, error="")
    return Claim(row.pk, row.attempts + 1) if taken else None


def _may_take_over(row: WeeklyDigest, *, token: str, now: dt.datetime) -> bool:
    if row.sent_at is not None or row.sending_at is not None or row.attempts >= MAX_ATTEMPTS:
        return False
    if row.error.startswith(TRANSIENT_PREFIX):
        return True
    if row.error:  # permanent refusal
        return False
    if token and row.claim_token == token:
        return True  # our own earlier attempt (redelivered or retried task) died before sending
    return row.claimed_at <= now - dt.timedelta(seconds=settings.WEEKLY_EMAIL_CLAIM_STALE_SECONDS)


def _fenced(claim: Claim):
    return WeeklyDigest.objects.filter(pk=claim.digest_id, attempts=claim.attempt, sent_at__isnull=True)


def digest_mark_sending(claim: Claim) -> bool:
    """The recovery point before the SMTP hand-off; False: the claim was taken over."""
    return _fenced(claim).filter(sending_at__isnull=True).update(sending_at=timezone.now()) == 1


def digest_mark_sent(claim: Claim) -> None:
    _fenced(claim).update(sent_at=timezone.now(), error="")


def digest_mark_failed(claim: Claim, *, code: str, accepted_unknown: bool) -> None:
    if accepted_unknown:
        _fenced(claim).update(error=code[:64])  # sending_at stays: never resent
    else:
        _fenced(claim).update(sending_at=None, error=code[:64])


def finished_digests(*, organization_id: int, iso_year: int, iso_week: int):
    """Rows of the week that nobody may send again (sent, unknown, refused, out of attempts)."""
    return WeeklyDigest.objects.filter(organization_id=organization_id, iso_year=iso_year, iso_week=iso_week).filter(
        Q(sent_at__isnull=False) | Q(sending_at__isnull=False) | Q(attempts__gte=MAX_ATTEMPTS)
        | (~Q(error="") & ~Q(error__startswith=TRANSIENT_PREFIX))
    )


# --- recipients -------------------------------------------------------------------------------------
def eligible_participants(organization: Organization):
    """Opted in, with an address (re-checked when sending: an unsubscribe wins)."""
    return Participant.objects.for_org(organization).filter(weekly_email_opt_in=True).exclude(email="")


def participants_with_nights(organization: Organization, iso_year: int, iso_week: int):
    start, end = weekly.iso_week_bounds(iso_year, iso_week)
    return (
        NightlyMetrics.objects.for_org(organization)
        .filter(night_date__gte=start.date(), night_date__lte=end.date(), is_main_sleep=True, is_nap=False)
        .values("participant_id")
    )


def eligible_admins(organization: Organization):
    return (
        Membership.objects.for_org(organization)
        .filter(role__in=MANAGERS, user__is_active=True)
        .exclude(user__email="")
        .select_related("user")
    )


def weekly_recipients(organization: Organization, iso_year: int, iso_week: int) -> tuple[list[int], list[int]]:
    """Participant ids and admin membership ids still to be sent for the week.

    Participants without a main sleep in the week get no email (an empty summary every
    week is noise to someone who stopped wearing their tracker); their absence is not a row.
    """
    done = finished_digests(organization_id=organization.pk, iso_year=iso_year, iso_week=iso_week)
    participant_ids = list(
        eligible_participants(organization)
        .filter(pk__in=participants_with_nights(organization, iso_year, iso_week))
        .exclude(pk__in=done.filter(participant__isnull=False).values("participant_id"))
        .order_by("pk").values_list("pk", flat=True)
    )
    admin_ids: list[int] = []
    if Participant.objects.for_org(organization).exists():
        admin_ids = list(
            eligible_admins(organization)
            .exclude(pk__in=done.filter(membership__isnull=False).values("membership_id"))
            .order_by("pk").values_list("pk", flat=True)
        )
    return participant_ids, admin_ids


# --- sending -----------------------------------------------------------------------------------------
def _smtp_alive(connection) -> bool:
    """NOOP on an open SMTP connection; reopen it if the server dropped it while idle."""
    smtp = getattr(connection, "connection", None)
    if smtp is None:
        return True  # not an SMTP backend (locmem, console...)
    try:
        smtp.noop()
        return True
    except (smtplib.SMTPException, OSError):
        connection.close()
        try:
            return bool(connection.open()) or connection.connection is not None
        except (smtplib.SMTPException, OSError):
            return False


def _classify(exc: Exception) -> tuple[str, bool, bool]:
    """(code, transient, accepted_unknown) of a failed hand-off."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        transient = bool(codes) and all(400 <= c < 500 for c in codes)
        return (f"{TRANSIENT_PREFIX}refused" if transient else "refused"), transient, False
    if isinstance(exc, smtplib.SMTPResponseException):
        # A reply code: the server answered, so it did not accept this message.
        transient = 400 <= exc.smtp_code < 500
        return (f"{TRANSIENT_PREFIX}{exc.smtp_code}" if transient else f"smtp:{exc.smtp_code}"), transient, False
    # Disconnected or timed out mid-transaction: the server may have accepted it.
    return UNKNOWN, False, True


def _send_one(claim: Claim, message, connection, outcome: SendOutcome, recipient_id: int) -> None:
    if not _smtp_alive(connection):
        digest_mark_failed(claim, code=f"{TRANSIENT_PREFIX}connect", accepted_unknown=False)
        outcome.retry_ids.append(recipient_id)
        outcome.connection_lost = True
        return
    if not digest_mark_sending(claim):
        outcome.skipped += 1
        return
    try:
        connection.send_messages([message])
    except Exception as exc:  # noqa: BLE001 - classified, recorded, never swallowed silently
        code, transient, unknown = _classify(exc)
        digest_mark_failed(claim, code=code, accepted_unknown=unknown)
        logger.warning("weekly email failed digest=%s code=%s", claim.digest_id, code)
        if transient:
            outcome.retry_ids.append(recipient_id)
        elif unknown:
            outcome.unknown += 1
            outcome.connection_lost = True
        else:
            outcome.failed += 1
        return
    digest_mark_sent(claim)
    outcome.sent += 1


def _send_each(recipients: list, outcome: SendOutcome, *, claim, message) -> None:
    """One message per recipient over one SMTP connection, each claimed first (None: skipped).

    The connection opens before anything is claimed (a refusal fails the task, which retries);
    once it is lost, the recipients not yet tried go back in ``outcome.retry_ids``.
    """
    connection = get_connection(fail_silently=False)
    connection.open()
    try:
        for index, recipient in enumerate(recipients):
            if outcome.connection_lost:
                outcome.retry_ids.extend(r.pk for r in recipients[index:])
                break
            row = claim(recipient)
            if row is None:
                outcome.skipped += 1
                continue
            _send_one(row, message(recipient, connection), connection, outcome, recipient.pk)
    finally:
        connection.close()


def weekly_participant_emails_send(
    *, organization_id: int, iso_year: int, iso_week: int, participant_ids: list[int], token: str
) -> SendOutcome:
    """Send one batch of participants' emails of one week (claims make it safe to repeat)."""
    outcome = SendOutcome()
    organization = Organization.objects.filter(pk=organization_id).first()
    if organization is None:
        return outcome
    people = list(eligible_participants(organization).filter(pk__in=participant_ids).order_by("pk"))
    outcome.skipped += len(set(participant_ids)) - len(people)
    if not people:
        return outcome
    weeks = emails.participant_weeks(
        organization=organization, iso_year=iso_year, iso_week=iso_week, participant_ids=[p.pk for p in people]
    )

    def claim(person):
        if int(weeks.summary.loc[person.pk, "nights"]) == 0:
            return None  # no nights this week: no e-mail
        return digest_claim(organization_id=organization.pk, iso_year=iso_year, iso_week=iso_week, token=token,
                            participant_id=person.pk)

    _send_each(
        people, outcome, claim=claim,
        message=lambda person, connection: emails.build_participant_message(
            organization=organization, participant=person, weeks=weeks, connection=connection
        ),
    )
    logger.info(
        "weekly participant emails org=%s week=%s sent=%s skipped=%s failed=%s unknown=%s retry=%s",
        organization_id, emails.week_label(iso_year, iso_week), outcome.sent, outcome.skipped, outcome.failed,
        outcome.unknown, len(outcome.retry_ids),
    )
    return outcome


def weekly_admin_digests_send(
    *, organization_id: int, iso_year: int, iso_week: int, membership_ids: list[int], token: str
) -> SendOutcome:
    """Send the organization digest of one week to each listed owner/admin."""
    outcome = SendOutcome()
    organization = Organization.objects.filter(pk=organization_id).first()
    if organization is None:
        return outcome
    admins = list(eligible_admins(organization).filter(pk__in=membership_ids).order_by("pk"))
    outcome.skipped += len(set(membership_ids)) - len(admins)
    if not admins:
        return outcome
    row = emails.organization_week(organization=organization, iso_year=iso_year, iso_week=iso_week)
    _send_each(
        admins, outcome,
        claim=lambda membership: digest_claim(organization_id=organization.pk, iso_year=iso_year,
                                              iso_week=iso_week, token=token, membership_id=membership.pk),
        message=lambda membership, connection: emails.build_admin_message(
            organization=organization, membership=membership, email=membership.user.email, row=row,
            connection=connection,
        ),
    )
    logger.info(
        "weekly admin digests org=%s week=%s sent=%s skipped=%s failed=%s unknown=%s retry=%s",
        organization_id, emails.week_label(iso_year, iso_week), outcome.sent, outcome.skipped, outcome.failed,
        outcome.unknown, len(outcome.retry_ids),
    )
    return outcome


# --- scheduling ----------------------------------------------------------------------------------------
def dispatch_guard_key(organization_id: int, iso_year: int, iso_week: int) -> str:
    return f"analytics:weekly-email:dispatch:{organization_id}:{emails.week_label(iso_year, iso_week)}"


def weekly_emails_dispatch(*, now: dt.datetime, enqueue_participants, enqueue_admins) -> int:
    """Enqueue the sends of every organization whose window is open at ``now``.

    ``enqueue_participants(org_id, year, week, ids)`` / ``enqueue_admins(org_id, year, week,
    ids)`` put tasks on the queue. An organization-week is dispatched at most once per
    stale interval (a cache key): every beat tick between would only enqueue copies of
    work already queued. Nothing depends on the key for correctness (claims do that);
    once it expires, a later tick enqueues whoever is still unsent (opted in since, or
    whose claim went stale). Returns the number of tasks enqueued.
    """
    from django.core.cache import cache

    from analytics.email_schedule import due_week

    max_delay = dt.timedelta(hours=settings.WEEKLY_EMAIL_MAX_DELAY_HOURS)
    batch = max(1, int(settings.WEEKLY_EMAIL_BATCH_SIZE))
    enqueued = 0
    organizations = Organization.objects.only("pk", "timezone", "weekly_email_weekday", "weekly_email_hour")
    for organization in organizations.order_by("pk").iterator():
        due = due_week(now=now, tz=organization.timezone, weekday=organization.weekly_email_weekday,
                       hour=organization.weekly_email_hour, max_delay=max_delay)
        if due is None:
            continue
        key = dispatch_guard_key(organization.pk, due.iso_year, due.iso_week)
        if not cache.add(key, 1, timeout=settings.WEEKLY_EMAIL_CLAIM_STALE_SECONDS):
            continue
        participant_ids, admin_ids = weekly_recipients(organization, due.iso_year, due.iso_week)
        for start in range(0, len(participant_ids), batch):
            enqueue_participants(organization.pk, due.iso_year, due.iso_week, participant_ids[start:start + batch])
            enqueued += 1
        if admin_ids:
            enqueue_admins(organization.pk, due.iso_year, due.iso_week, admin_ids)
            enqueued += 1
    return enqueued
