"""Services behind the admin "Emails" pages: previews, test sends, delivery status.

Previews and test sends are recorded as AuditEvents (target: the participant's uuid, or
"admin-digest"); a test goes to the requesting admin's own address, never to the
participant, and creates no WeeklyDigest row (the real email of that week still goes out).
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo

from django.conf import settings
from django.core.cache import cache
from django.core.mail import get_connection
from django.db.models import Count, Q
from django.utils import timezone

from analytics import emails
from analytics.audit import audit_record
from analytics.email_delivery import MAX_ATTEMPTS, TRANSIENT_PREFIX, eligible_participants, participants_with_nights
from analytics.models import WeeklyDigest
from tenants.models import Organization, Participant, Weekday

PREVIEWED = "weekly_email.previewed"
TEST_SENT = "weekly_email.test_sent"
UNSUBSCRIBED = "weekly_email.unsubscribed"
ADMIN_DIGEST_TARGET = "admin-digest"
SEARCH_LIMIT = 50
STATUS_WEEKS = 4
WEEK_RE = re.compile(r"^(\d{4})-W(\d{2})$")


class InvalidWeek(ValueError):
    pass


class TestSendRefused(Exception):
    """A test send that cannot go out (no address of one's own, rate limit)."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


def organization_today(organization: Organization) -> dt.date:
    return timezone.now().astimezone(zoneinfo.ZoneInfo(organization.timezone)).date()


def parse_week(value: str | None, organization: Organization) -> tuple[int, int]:
    """'2026-W47' (as an <input type=week> sends it); empty: the last complete week."""
    if not value:
        return emails.last_complete_week(organization_today(organization))
    match = WEEK_RE.match(value.strip())
    if not match:
        raise InvalidWeek(f"{value[:20]!r} is not an ISO week: use YYYY-Www, e.g. 2026-W47.")
    year, week = int(match.group(1)), int(match.group(2))
    try:
        dt.date.fromisocalendar(year, week, 1)
    except ValueError:
        raise InvalidWeek(f"{year} has no ISO week {week}.") from None
    return year, week


def schedule_text(organization: Organization) -> str:
    return (
        f"{Weekday(organization.weekly_email_weekday).label}s at {organization.weekly_email_hour:02d}:00 "
        f"({organization.timezone}), covering the previous ISO week (Monday to Sunday); a late run still sends "
        f"up to {settings.WEEKLY_EMAIL_MAX_DELAY_HOURS} h after that time."
    )


def find_participants(organization: Organization, query: str) -> list[Participant]:
    queryset = Participant.objects.for_org(organization).order_by("name", "pk")
    query = (query or "").strip()[:100]
    if query:
        queryset = queryset.filter(Q(name__icontains=query) | Q(email__icontains=query))
    return list(queryset[:SEARCH_LIMIT])


def recipient_status(organization: Organization, participant: Participant, iso_year: int, iso_week: int) -> dict:
    """Would this participant get the week's email, and did they?"""
    digest = WeeklyDigest.objects.for_org(organization).filter(
        participant=participant, iso_year=iso_year, iso_week=iso_week
    ).first()
    return {
        "opted_in": participant.weekly_email_opt_in,
        "has_email": bool(participant.email),
        "has_nights": participants_with_nights(organization, iso_year, iso_week)
        .filter(participant_id=participant.pk).exists(),
        "eligible": eligible_participants(organization).filter(pk=participant.pk).exists(),
        "digest": _digest_state(digest) if digest else None,
    }


def _digest_state(digest: WeeklyDigest) -> str:
    if digest.sent_at:
        return f"sent {digest.sent_at:%Y-%m-%d %H:%M} UTC"
    if digest.sending_at:
        return "outcome unknown (not resent)"
    if digest.error and not digest.error.startswith(TRANSIENT_PREFIX):
        return f"refused by the mail server ({digest.error})"
    if digest.attempts >= MAX_ATTEMPTS:
        return "given up after retries"
    return "in progress"


def delivery_status(organization: Organization) -> list[dict]:
    """Counts per recent week: sent, unknown, failed, in progress (participants and admins)."""
    year, week = emails.last_complete_week(organization_today(organization))
    monday = dt.date.fromisocalendar(year, week, 1)
    weeks = [(monday - dt.timedelta(days=7 * k)).isocalendar()[:2] for k in range(STATUS_WEEKS)]
    rows = (
        WeeklyDigest.objects.for_org(organization)
        .filter(Q(*[Q(iso_year=y, iso_week=w) for y, w in weeks], _connector=Q.OR))
        .values("iso_year", "iso_week")
        .annotate(
            sent=Count("pk", filter=Q(sent_at__isnull=False)),
            unknown=Count("pk", filter=Q(sent_at__isnull=True, sending_at__isnull=False)),
            failed=Count("pk", filter=Q(sent_at__isnull=True, sending_at__isnull=True) & ~Q(error="")
                         & ~Q(error__startswith=TRANSIENT_PREFIX)),
            admins=Count("pk", filter=Q(membership__isnull=False, sent_at__isnull=False)),
            total=Count("pk"),
        )
    )
    by_week = {(r["iso_year"], r["iso_week"]): r for r in rows}
    status = []
    for y, w in weeks:
        r = by_week.get((y, w), {})
        sent, unknown, failed, total = (r.get(k, 0) for k in ("sent", "unknown", "failed", "total"))
        status.append({
            "week": emails.week_label(y, w), "title": emails.week_title(y, w), "sent": sent,
            "admins": r.get("admins", 0), "unknown": unknown, "failed": failed,
            "pending": total - sent - unknown - failed,
        })
    return status


def participant_preview(*, organization, participant, iso_year: int, iso_week: int, actor) -> str:
    weeks = emails.participant_weeks(organization=organization, iso_year=iso_year, iso_week=iso_week,
                                     participant_ids=[participant.pk])
    html = emails.participant_preview_html(organization=organization, participant=participant, weeks=weeks)
    audit_record(organization=organization, actor=actor, action=PREVIEWED, target=str(participant.uuid),
                 params={"week": emails.week_label(iso_year, iso_week)})
    return html


def admin_digest_preview(*, organization, iso_year: int, iso_week: int, actor) -> str:
    row = emails.organization_week(organization=organization, iso_year=iso_year, iso_week=iso_week)
    html = emails.render_admin_email(emails.admin_context(organization=organization, row=row)).html
    audit_record(organization=organization, actor=actor, action=PREVIEWED, target=ADMIN_DIGEST_TARGET,
                 params={"week": emails.week_label(iso_year, iso_week)})
    return html


def _take_test_slot(user) -> bool:
    """At most WEEKLY_EMAIL_TESTS_PER_HOUR test sends per admin per clock hour (shared cache)."""
    key = f"analytics:weekly-email:tests:{user.pk}:{timezone.now():%Y%m%d%H}"
    cache.add(key, 0, timeout=3600)
    try:
        count = cache.incr(key)
    except ValueError:  # evicted between add and incr
        cache.set(key, 1, timeout=3600)
        count = 1
    return count <= settings.WEEKLY_EMAIL_TESTS_PER_HOUR


def test_send(*, organization, membership, participant: Participant | None, iso_year: int, iso_week: int) -> str:
    """Send the participant's email (or, without one, the admin digest) to the admin's own
    address; returns that address. Raises TestSendRefused."""
    user = membership.user
    if not user.email:
        raise TestSendRefused("Your account has no email address to send the test to.", 400)
    if not _take_test_slot(user):
        raise TestSendRefused(
            f"You can send {settings.WEEKLY_EMAIL_TESTS_PER_HOUR} test emails an hour; try again later.", 429
        )
    connection = get_connection(fail_silently=False)
    if participant is not None:
        weeks = emails.participant_weeks(organization=organization, iso_year=iso_year, iso_week=iso_week,
                                         participant_ids=[participant.pk])
        message = emails.build_participant_message(organization=organization, participant=participant, weeks=weeks,
                                                   to=user.email, connection=connection)
        target = str(participant.uuid)
    else:
        row = emails.organization_week(organization=organization, iso_year=iso_year, iso_week=iso_week)
        message = emails.build_admin_message(organization=organization, membership=membership, email=user.email,
                                             row=row, connection=connection, test=True)
        target = ADMIN_DIGEST_TARGET
    message.subject = f"[Test] {message.subject}"
    message.send()
    audit_record(organization=organization, actor=user, action=TEST_SENT, target=target,
                 params={"week": emails.week_label(iso_year, iso_week)})
    return user.email


def participant_unsubscribe(*, participant_uuid) -> None:
    """Opt the participant out of the weekly emails (idempotent; unknown uuid: nothing)."""
    # Unscoped on purpose: the signed token, not a membership, is the authority here.
    participant = Participant.objects.filter(uuid=participant_uuid).select_related("organization").first()
    if participant is None:
        return
    if Participant.objects.filter(pk=participant.pk, weekly_email_opt_in=True).update(weekly_email_opt_in=False):
        audit_record(organization=participant.organization, actor=None, action=UNSUBSCRIBED,
                     target=str(participant.uuid))
