"""The weekly emails: their data, their text and HTML, and the built messages.

A participant's email: the week's averages, best and worst night, change vs the previous
week, the engine's plain-language insights (analytics/engine/weekly.py), a PNG chart
inline (multipart/related, ``cid:``), a link to the dashboard and a one-click unsubscribe
link (signed token, RFC 8058 headers). An admin's digest: the organization summary
(weekly_organization_summary, suppressed below the minimum group size). Every image is
inline and every link points at the platform itself (``SITE_URL``).

Sending, claims and scheduling live in analytics/email_delivery.py and email_tasks.py.
"""

from __future__ import annotations

import base64
import datetime as dt
import math
import uuid
from dataclasses import dataclass
from email.mime.image import MIMEImage
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
from django.conf import settings
from django.core import signing
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import EmailMultiAlternatives
from django.core.mail.message import SafeMIMEMultipart
from django.template.loader import render_to_string
from django.urls import reverse

from analytics import selectors
from analytics.engine import weekly

UNSUBSCRIBE_SALT = "analytics.weekly-email.unsubscribe"
CHART_CID = "weekly-chart@sleep-platform"
CHART_FILENAME = "weekly-sleep.png"


# --- weeks ---------------------------------------------------------------------------------------
def week_label(iso_year: int, iso_week: int) -> str:
    return f"{iso_year}-W{iso_week:02d}"


def week_title(iso_year: int, iso_week: int) -> str:
    """'week 47 (16–22 November 2026)'."""
    monday = dt.date.fromisocalendar(iso_year, iso_week, 1)
    sunday = monday + dt.timedelta(days=6)
    if monday.month == sunday.month:
        span = f"{monday.day}\u2013{sunday.day} {sunday:%B %Y}"
    elif monday.year == sunday.year:
        span = f"{monday.day} {monday:%B} \u2013 {sunday.day} {sunday:%B %Y}"
    else:
        span = f"{monday.day} {monday:%B %Y} \u2013 {sunday.day} {sunday:%B %Y}"
    return f"week {iso_week} ({span})"


def last_complete_week(local_date: dt.date) -> tuple[int, int]:
    """The ISO week before the one containing ``local_date``."""
    year, week, _ = (local_date - dt.timedelta(days=7)).isocalendar()
    return year, week


# --- links and tokens -------------------------------------------------------------------------------
def site_url(path: str = "") -> str:
    """Absolute URL on the platform (SITE_URL, env PLATFORM_SITE_URL)."""
    base = settings.SITE_URL.rstrip("/")
    if urlsplit(base).scheme not in ("http", "https"):
        raise ImproperlyConfigured("SITE_URL (PLATFORM_SITE_URL) must be an absolute http(s) URL.")
    return base + path


class InvalidUnsubscribeToken(Exception):
    """The token was tampered with, expired, or is not ours."""


def unsubscribe_token(participant_uuid) -> str:
    return signing.dumps({"p": str(participant_uuid)}, salt=UNSUBSCRIBE_SALT, compress=False)


def participant_uuid_from_token(token: str) -> uuid.UUID:
    max_age = dt.timedelta(days=settings.WEEKLY_EMAIL_UNSUBSCRIBE_MAX_AGE_DAYS)
    try:
        payload = signing.loads(token, salt=UNSUBSCRIBE_SALT, max_age=max_age)
        return uuid.UUID(payload["p"])
    except (signing.BadSignature, KeyError, TypeError, ValueError, AttributeError):
        raise InvalidUnsubscribeToken from None


def unsubscribe_url(participant_uuid) -> str:
    return site_url(reverse("dashboard:weekly-email-unsubscribe", args=[unsubscribe_token(participant_uuid)]))


def dashboard_url(organization) -> str:
    return site_url(f"/o/{organization.slug}/")


def message_id(kind: str, recipient_uuid, iso_year: int, iso_week: int) -> str:
    """Deterministic per recipient and week: a rare re-send shares it, so mail systems that
    de-duplicate by Message-ID keep one copy (reliability.md T17)."""
    domain = urlsplit(site_url()).hostname or "localhost"
    return f"<weekly.{kind}.{week_label(iso_year, iso_week)}.{recipient_uuid}@{domain}>"


# --- data -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ParticipantWeeks:
    """The engine's summary rows (indexed by participant id) and each week's nightly values."""

    iso_year: int
    iso_week: int
    summary: pd.DataFrame
    daily_tst_min: pd.DataFrame  # participant_id x 0..6 (Monday..Sunday), NaN: no night
    daily_score: pd.DataFrame


def _week_input(organization, iso_year: int, iso_week: int, participant_ids=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Nights of the week and the 4 weeks before (baseline, streak), with clock minutes and age."""
    week_start, week_end = weekly.iso_week_bounds(iso_year, iso_week)
    start = (week_start - pd.Timedelta(days=7 * weekly.BASELINE_WEEKS)).date()
    nights = selectors.nightly_metrics_frame(
        organization=organization, start=start, end=week_end.date(), participant_ids=participant_ids,
        with_clock=True,
    )
    people = selectors.participants_frame(organization=organization, participant_ids=participant_ids)
    ages = (iso_year - people["birth_year"]).astype(float)
    nights["age_years"] = nights["participant_id"].map(ages).astype(float)
    return nights, people


def participant_weeks(*, organization, iso_year: int, iso_week: int, participant_ids) -> ParticipantWeeks:
    """Summaries of one ISO week for a batch of participants: two queries, one engine call."""
    ids = sorted(int(i) for i in participant_ids)
    nights, _ = _week_input(organization, iso_year, iso_week, participant_ids=ids)
    summary = weekly.weekly_participant_summary(nights, iso_year=iso_year, iso_week=iso_week, participant_ids=ids)
    start, end = weekly.iso_week_bounds(iso_year, iso_week)
    week = nights[(nights["night_date"] >= start) & (nights["night_date"] <= end)]
    week = week.assign(day=(week["night_date"] - start).dt.days)
    # Main sleeps only (selector default): at most one per wake-up date.
    grouped = week.groupby(["participant_id", "day"])
    days = pd.Index(range(7), name="day")

    def table(column: str) -> pd.DataFrame:
        return grouped[column].first().unstack("day").reindex(index=ids, columns=days)

    return ParticipantWeeks(iso_year, iso_week, summary, table("tst_min"), table("score"))


def organization_week(*, organization, iso_year: int, iso_week: int) -> pd.Series:
    nights, people = _week_input(organization, iso_year, iso_week)
    return weekly.weekly_organization_summary(
        nights, iso_year=iso_year, iso_week=iso_week, min_group_size=organization.min_group_size,
        participant_ids=people.index,
    ).iloc[0]


# --- formatting -------------------------------------------------------------------------------------
def _value(value) -> float | None:
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def duration(minutes) -> str | None:
    """'7 h 05 min' / '45 min'."""
    value = _value(minutes)
    if value is None:
        return None
    total = int(math.floor(abs(value) + 0.5))
    hours, rest = divmod(total, 60)
    return f"{hours} h {rest:02d} min" if hours else f"{rest} min"


def signed_duration(minutes) -> str | None:
    value = _value(minutes)
    if value is None:
        return None
    if round(value) == 0:
        return "no change"
    return ("+" if value > 0 else "\u2212") + duration(value)


def signed_points(value) -> str | None:
    value = _value(value)
    if value is None:
        return None
    points = int(math.floor(abs(value) + 0.5))
    if points == 0:
        return "no change"
    return f"{'+' if value > 0 else chr(0x2212)}{points} point{'s' if points != 1 else ''}"


def whole(value) -> str | None:
    value = _value(value)
    return None if value is None else str(int(math.floor(value + 0.5)))


def clock(minutes) -> str | None:
    value = _value(minutes)
    if value is None:
        return None
    total = int(math.floor(value + 0.5)) % (24 * 60)
    return f"{total // 60:02d}:{total % 60:02d}"


def night_of(wake_date) -> str | None:
    """A night is shown as 'night of' the evening before its wake-up date (README)."""
    if wake_date is None or (not isinstance(wake_date, str) and pd.isna(wake_date)):
        return None
    evening = pd.Timestamp(wake_date).date() - dt.timedelta(days=1)
    return f"{evening:%A} {evening.day} {evening:%B}"


# --- participant email --------------------------------------------------------------------------------
# Previews and test sends carry this instead of the participant's real unsubscribe link:
# an admin clicking it (or their mail client's unsubscribe button) must not opt them out.
INERT_UNSUBSCRIBE_TOKEN = "example"


def participant_context(*, organization, participant, weeks: ParticipantWeeks, chart_src: str,
                        live: bool = True) -> dict:
    row = weeks.summary.loc[participant.pk]
    figures = [
        ("Nights recorded", str(int(row["nights"]))),
        ("Average sleep score", whole(row["score_mean"])),
        ("Average sleep", duration(row["tst_mean_min"])),
        ("Time in bed spent asleep", f"{whole(row['se_mean_pct'])}%" if whole(row["se_mean_pct"]) else None),
        ("Awake after falling asleep", duration(row["waso_mean_min"])),
        ("Average bedtime", clock(row["bedtime_mean_min"])),
        ("Average wake-up time", clock(row["waketime_mean_min"])),
    ]
    changes = [
        ("Sleep score", signed_points(row["score_delta_prev_week"])),
        ("Sleep", signed_duration(row["tst_delta_prev_week_min"])),
    ]
    return {
        "organization_name": organization.name,
        "name": participant.name,
        "week": week_label(weeks.iso_year, weeks.iso_week),
        "week_title": week_title(weeks.iso_year, weeks.iso_week),
        "nights": int(row["nights"]),
        "figures": [(label, value) for label, value in figures if value is not None],
        "changes": [(label, value) for label, value in changes if value is not None],
        "best_night": night_of(row["best_night_date"]),
        "best_score": whole(row["best_night_score"]),
        "worst_night": night_of(row["worst_night_date"]),
        "worst_score": whole(row["worst_night_score"]),
        # Best and worst are the same night when only one night has a score.
        "show_worst": _value(row["best_night_score"]) is not None
        and row["best_night_date"] != row["worst_night_date"],
        "insights": list(row["insights"]) if isinstance(row["insights"], (list, tuple, np.ndarray)) else [],
        "chart_src": chart_src,
        "dashboard_url": dashboard_url(organization),
        "unsubscribe_url": unsubscribe_url(participant.uuid) if live else site_url(
            reverse("dashboard:weekly-email-unsubscribe", args=[INERT_UNSUBSCRIBE_TOKEN])
        ),
    }


def participant_chart(*, participant_id: int, weeks: ParticipantWeeks) -> bytes:
    # matplotlib loads in about half a second: only the processes that draw pay for it.
    from analytics.email_charts import weekly_chart_png

    row = weeks.summary.loc[participant_id]
    return weekly_chart_png(
        week_start=dt.date.fromisocalendar(weeks.iso_year, weeks.iso_week, 1),
        tst_min=weeks.daily_tst_min.loc[participant_id].tolist(),
        scores=weeks.daily_score.loc[participant_id].tolist(),
        baseline_tst_min=_value(row["tst_baseline_min"]),
    )


def participant_subject(weeks: ParticipantWeeks) -> str:
    return f"Your sleep this {week_title(weeks.iso_year, weeks.iso_week)}"


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


def render_participant_email(context: dict, *, subject: str) -> RenderedEmail:
    return RenderedEmail(
        subject=subject,
        text=render_to_string("analytics/emails/weekly_participant.txt", context),
        html=render_to_string("analytics/emails/weekly_participant.html", context),
    )


class InlineImageEmail(EmailMultiAlternatives):
    """multipart/alternative [text/plain, multipart/related [text/html, image/png...]].

    The HTML part and its ``cid:`` images travel together in one multipart/related
    (RFC 2387), the layout mail clients expect for inline images.
    """

    def __init__(self, *args, inline_images: list[MIMEImage] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.inline_images = inline_images or []

    def _create_mime_attachment(self, content, mimetype):
        part = super()._create_mime_attachment(content, mimetype)
        if mimetype != "text/html" or not self.inline_images:
            return part
        related = SafeMIMEMultipart(_subtype="related", encoding=self.encoding or settings.DEFAULT_CHARSET)
        related.attach(part)
        for image in self.inline_images:
            related.attach(image)
        return related


def _chart_part(png: bytes) -> MIMEImage:
    image = MIMEImage(png, "png")
    image.add_header("Content-ID", f"<{CHART_CID}>")
    image.add_header("Content-Disposition", "inline", filename=CHART_FILENAME)
    return image


def build_participant_message(
    *, organization, participant, weeks: ParticipantWeeks, to: str | None = None, connection=None
) -> InlineImageEmail:
    """The participant's weekly email; with ``to``, a test copy to that address (no
    unsubscribe header, an inert unsubscribe link, a random Message-ID)."""
    live = to is None
    context = participant_context(
        organization=organization, participant=participant, weeks=weeks, chart_src=f"cid:{CHART_CID}", live=live
    )
    rendered = render_participant_email(context, subject=participant_subject(weeks))
    headers = {"Auto-Submitted": "auto-generated"}
    if live:
        # RFC 2369 / RFC 8058: mail clients show an unsubscribe button that POSTs here.
        headers["List-Unsubscribe"] = f"<{context['unsubscribe_url']}>"
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        headers["Message-ID"] = message_id("participant", participant.uuid, weeks.iso_year, weeks.iso_week)
    message = InlineImageEmail(
        subject=rendered.subject,
        body=rendered.text,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[to or participant.email],
        headers=headers,
        connection=connection,
        inline_images=[_chart_part(participant_chart(participant_id=participant.pk, weeks=weeks))],
    )
    message.attach_alternative(rendered.html, "text/html")
    return message


def participant_preview_html(*, organization, participant, weeks: ParticipantWeeks) -> str:
    """The email's HTML with the chart as a data: URI (for the admin preview page)."""
    png = participant_chart(participant_id=participant.pk, weeks=weeks)
    context = participant_context(
        organization=organization, participant=participant, weeks=weeks,
        chart_src="data:image/png;base64," + base64.b64encode(png).decode("ascii"), live=False,
    )
    return render_participant_email(context, subject=participant_subject(weeks)).html


# --- admin digest ---------------------------------------------------------------------------------------
def admin_context(*, organization, row: pd.Series) -> dict:
    iso_year, iso_week = int(row["iso_year"]), int(row["iso_week"])
    suppressed = bool(row["suppressed"])
    figures = [
        ("Participants", str(int(row["participants_total"]))),
        ("Participants with nights", None if suppressed else str(int(row["participants_with_data"]))),
        ("Nights recorded", None if suppressed else str(int(row["nights"]))),
        ("Average sleep score", whole(row["score_mean"])),
        ("Median sleep score", whole(row["score_median"])),
        ("Average sleep", duration(row["tst_mean_min"])),
        ("Time in bed spent asleep", f"{whole(row['se_mean_pct'])}%" if whole(row["se_mean_pct"]) else None),
        ("Awake after falling asleep", duration(row["waso_mean_min"])),
        ("Average bedtime", clock(row["bedtime_mean_min"])),
        ("Sleeping less than recommended", f"{whole(row['short_sleep_pct'])}% of participants"
         if whole(row["short_sleep_pct"]) else None),
    ]
    changes = [
        ("Sleep score vs previous week", signed_points(row["score_delta_prev_week"])),
        ("Sleep vs previous week", signed_duration(row["tst_delta_prev_week_min"])),
        ("Sleep score vs 4-week average", signed_points(row["score_delta_baseline"])),
    ]
    return {
        "organization_name": organization.name,
        "week": week_label(iso_year, iso_week),
        "week_title": week_title(iso_year, iso_week),
        "suppressed": suppressed,
        "min_group_size": organization.min_group_size,
        "figures": [(label, value) for label, value in figures if value is not None],
        "changes": [(label, value) for label, value in changes if value is not None],
        "dashboard_url": dashboard_url(organization),
    }


def render_admin_email(context: dict) -> RenderedEmail:
    return RenderedEmail(
        subject=f"{context['organization_name']}: sleep programme summary, {context['week_title']}",
        text=render_to_string("analytics/emails/weekly_admin.txt", context),
        html=render_to_string("analytics/emails/weekly_admin.html", context),
    )


def build_admin_message(*, organization, membership, email: str, row: pd.Series, connection=None,
                        test: bool = False) -> EmailMultiAlternatives:
    rendered = render_admin_email(admin_context(organization=organization, row=row))
    headers = {"Auto-Submitted": "auto-generated"}
    if not test:
        headers["Message-ID"] = message_id("admin", membership.uuid, int(row["iso_year"]), int(row["iso_week"]))
    message = EmailMultiAlternatives(
        subject=rendered.subject, body=rendered.text, from_email=settings.DEFAULT_FROM_EMAIL, to=[email],
        headers=headers, connection=connection,
    )
    message.attach_alternative(rendered.html, "text/html")
    return message
