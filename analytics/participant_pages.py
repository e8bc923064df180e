"""Reads behind the participant pages: the searchable list and one person's nights.

The list pages through participants in the database and reads the figures of one page's
people in one grouped query (constant in the organization's size). The detail page reads
one person's last nights, one night's hypnogram, the weekly summary of the engine
(``analytics.engine.weekly``, as the API's weekly participant report) and the upstream's
average stats beside our own figures for the same period.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import uuid as uuid_module

import numpy as np
import pandas as pd
from django.core.paginator import Paginator
from django.db.models import Avg, Count, Max, Q

from analytics import selectors
from analytics.engine import regularity, weekly
from analytics.models import NightlyMetrics, SleepSession, Stage, UpstreamAverageStats
from tenants.models import Organization, Participant
from tenants.roles import MANAGERS, Role

PAGE_SIZE = 50
# The list's figures and the participant page's table cover this many days.
RECENT_DAYS = 30
SEARCH_MAX_LENGTH = 100
WEEK_RE = re.compile(r"^(\d{4})-W(\d{2})$")

# Hypnogram rows, top to bottom as sleep clinicians draw them (Wake on top, N3 at the bottom).
# "Light" is a wearable's N1-or-N2, drawn between them; no data is a gap.
HYPNOGRAM_LEVELS = {
    Stage.WAKE: 5, Stage.REM: 4, Stage.N1: 3, Stage.LIGHT: 2.5, Stage.N2: 2, Stage.N3: 1,
}
HYPNOGRAM_LABELS = {5: "Wake", 4: "REM", 3: "N1", 2.5: "Light", 2: "N2", 1: "N3"}


class BadParameter(ValueError):
    """A query parameter that cannot be used; the message is for people."""


# --- list ----------------------------------------------------------------------------------------
def participant_list_page(organization: Organization, *, query: str, page_number, today: dt.date):
    """One page of participants (name or department matching ``query``) with their recent figures.

    Three queries: count, the page, and the page's figures over the last RECENT_DAYS.
    """
    people = Participant.objects.for_org(organization)
    query = query.strip()[:SEARCH_MAX_LENGTH]
    if query:
        people = people.filter(Q(name__icontains=query) | Q(department__name__icontains=query))
    people = people.order_by("name", "pk").values("pk", "uuid", "name", "department__name", "user_id")
    page = Paginator(people, PAGE_SIZE).get_page(page_number)
    ids = [row["pk"] for row in page.object_list]
    since = today - dt.timedelta(days=RECENT_DAYS - 1)
    figures = {
        row["participant_id"]: row
        for row in NightlyMetrics.objects.for_org(organization)
        .filter(participant_id__in=ids, is_main_sleep=True, is_nap=False)
        .order_by()
        .values("participant_id")
        .annotate(
            last_night=Max("night_date"),
            recent_nights=Count("pk", filter=Q(night_date__gte=since, night_date__lte=today)),
            recent_score=Avg("score", filter=Q(night_date__gte=since, night_date__lte=today)),
        )
    }
    page.object_list = [
        {
            "uuid": row["uuid"],
            "name": row["name"],
            "department": row["department__name"] or "",
            "has_login": row["user_id"] is not None,
            "last_night": figures.get(row["pk"], {}).get("last_night"),
            "recent_nights": figures.get(row["pk"], {}).get("recent_nights", 0),
            "recent_score": _round(figures.get(row["pk"], {}).get("recent_score")),
        }
        for row in page.object_list
    ]
    return page


# --- detail --------------------------------------------------------------------------------------
def participant_for(organization: Organization, membership, user, participant_uuid) -> Participant | None:
    """The participant a caller may open, or None (missing, foreign, or not theirs: same answer).

    Managers open anyone of the organization; a member only the record linked to their login.
    """
    people = Participant.objects.for_org(organization).select_related("department", "organization")
    if membership.role in MANAGERS:
        return people.filter(uuid=participant_uuid).first()
    if membership.role == Role.MEMBER:
        return people.filter(uuid=participant_uuid, user=user).first()
    return None


def _round(value, digits: int = 1):
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else round(value, digits)


def _whole(value):
    """A figure shown as a whole number (minutes, score points)."""
    value = _round(value, 0)
    return None if value is None else int(value)


def _clock(value) -> str:
    return value.strftime("%H:%M") if value is not None else "–"


def recent_nights(participant: Participant, *, end: dt.date, days: int = RECENT_DAYS) -> list[dict]:
    """Main sleeps of the last ``days`` days up to ``end``, newest first. One query."""
    rows = (
        NightlyMetrics.objects.for_org(participant.organization)
        .filter(participant=participant, is_main_sleep=True, is_nap=False,
                night_date__gt=end - dt.timedelta(days=days), night_date__lte=end)
        .order_by("-night_date", "-session__start")
        .values("session__uuid", "night_date", "bedtime_local", "wake_time_local", "tst_min", "se_pct",
                "waso_min", "sol_min", "deep_min", "rem_min", "score")
    )
    return [
        {
            "session": row["session__uuid"],
            "night_date": row["night_date"],
            "night_of": row["night_date"] - dt.timedelta(days=1),
            "bedtime": _clock(row["bedtime_local"]),
            "wake_time": _clock(row["wake_time_local"]),
            "tst_h": _round(row["tst_min"] / 60, 2),
            "tst_hm": f"{int(row['tst_min'] // 60)} h {int(row['tst_min'] % 60):02d} min",
            "se_pct": _round(row["se_pct"]),
            "waso_min": _whole(row["waso_min"]),
            "sol_min": _whole(row["sol_min"]),
            "deep_min": _whole(row["deep_min"]),
            "rem_min": _whole(row["rem_min"]),
            "score": _whole(row["score"]),
        }
        for row in rows
    ]


def recent_chart(nights: list[dict]) -> dict:
    """Score and sleep hours per night, oldest first, for the small chart."""
    ordered = list(reversed(nights))
    return {
        "labels": [n["night_date"].isoformat() for n in ordered],
        "score": [n["score"] for n in ordered],
        "tst_h": [n["tst_h"] for n in ordered],
    }


def chosen_session(participant: Participant, night_param: str) -> SleepSession | None:
    """The night ``?night=<session uuid>`` names (of this participant only), else the latest main sleep.

    Raises BadParameter for a value that is not a UUID; a UUID of someone else's night (or
    of nothing) gives None, exactly like no night at all.
    """
    sessions = SleepSession.objects.for_org(participant.organization).filter(
        participant=participant, metrics__isnull=False
    ).select_related("metrics")
    night_param = (night_param or "").strip()
    if night_param:
        try:
            wanted = uuid_module.UUID(night_param)
        except ValueError:
            raise BadParameter(f"{night_param[:40]!r} does not name a night.") from None
        return sessions.filter(uuid=wanted).first()
    return sessions.filter(metrics__is_main_sleep=True, metrics__is_nap=False).order_by(
        "-metrics__night_date", "-start"
    ).first()


def night_of(session: SleepSession) -> dt.date:
    """The evening a night began, as people name it ("the night of Saturday"): wake-up date - 1."""
    return session.metrics.night_date - dt.timedelta(days=1)


def hypnogram_chart(session: SleepSession) -> dict:
    """The night as a stepped chart: one point per epoch (local clock label, level or None)."""
    stages = session.hypnogram
    zone = session.timezone
    start = pd.Timestamp(session.start).tz_convert(zone)
    times = start + pd.to_timedelta(np.arange(stages.size + 1) * session.epoch_seconds, unit="s")
    levels = [HYPNOGRAM_LEVELS.get(int(code)) for code in stages]
    # One more point at the end so the last epoch has a width.
    levels.append(levels[-1] if levels else None)
    present = {int(code) for code in np.unique(stages)}
    return {
        "labels": [t.strftime("%H:%M") for t in times],
        "values": levels,
        "levels": {str(level): HYPNOGRAM_LABELS[level] for level in sorted(HYPNOGRAM_LABELS)
                   if level != 2.5 or Stage.LIGHT in present},
        "epoch_seconds": session.epoch_seconds,
    }


def stage_minutes(session: SleepSession) -> list[dict]:
    """Minutes per stage of the chosen night (for the table under the hypnogram)."""
    m = session.metrics
    rows = [("Wake", m.wake_min), ("REM", m.rem_min), ("N1", m.n1_min), ("Light", m.lt_min),
            ("N2", m.n2_min), ("N3 (deep)", m.n3_min), ("No data", m.nodata_min)]
    return [{"stage": name, "minutes": _whole(value)} for name, value in rows if value]


# --- weekly summary ------------------------------------------------------------------------------
def iso_week_from_param(value: str, *, today: dt.date) -> tuple[int, int]:
    """``?week=YYYY-Www`` or, when empty, the last full ISO week before ``today``."""
    value = (value or "").strip()
    if not value:
        year, week, _ = (today - dt.timedelta(days=7)).isocalendar()
        return year, week
    match = WEEK_RE.match(value)
    if not match:
        raise BadParameter(f"{value[:20]!r} is not a week: use YYYY-Www, e.g. 2026-W47.")
    year, week = int(match.group(1)), int(match.group(2))
    try:
        dt.date.fromisocalendar(year, week, 1)
    except ValueError:
        raise BadParameter(f"{year} has no week {week}.") from None
    return year, week


def weekly_summary(participant: Participant, *, iso_year: int, iso_week: int) -> dict:
    """The engine's weekly summary and insights for one person (as the weekly report API)."""
    week_start, week_end = weekly.iso_week_bounds(iso_year, iso_week)
    start = (week_start - pd.Timedelta(days=7 * weekly.BASELINE_WEEKS)).date()
    organization = participant.organization
    nights = selectors.nightly_metrics_frame(
        organization=organization, start=start, end=week_end.date(), participant_ids=[participant.pk],
        with_clock=True,
    )
    if participant.birth_year:
        nights["age_years"] = float(iso_year - participant.birth_year)
    row = weekly.weekly_participant_summary(
        nights, iso_year=iso_year, iso_week=iso_week, participant_ids=[participant.pk]
    ).loc[participant.pk]

    def clock(minutes):
        value = _round(minutes, 6)
        if value is None:
            return "–"
        total = int(round(value)) % (24 * 60)
        return f"{total // 60:02d}:{total % 60:02d}"

    return {
        "week": f"{iso_year}-W{iso_week:02d}",
        "week_start": week_start.date(),
        "week_end": week_end.date(),
        "nights": int(row["nights"]) if not pd.isna(row["nights"]) else 0,
        "score_mean": _whole(row["score_mean"]),
        "tst_mean_hm": _hours_minutes(row["tst_mean_min"]),
        "se_mean_pct": _round(row["se_mean_pct"]),
        "bedtime_mean": clock(row["bedtime_mean_min"]),
        "waketime_mean": clock(row["waketime_mean_min"]),
        "score_delta_prev_week": _whole(row["score_delta_prev_week"]),
        "insights": list(row["insights"]),
    }


def _hours_minutes(minutes) -> str:
    value = _round(minutes, 0)
    if value is None:
        return "–"
    return f"{int(value // 60)} h {int(value % 60):02d} min"


# --- upstream comparison -------------------------------------------------------------------------
# (label, upstream key, how to show the upstream value, our aggregate key)
UPSTREAM_ROWS = (
    ("Time in bed", "time_in_bed", "seconds", "tib_min"),
    ("Total sleep time", "time_in_sleep", "seconds", "tst_min"),
    ("Sleep efficiency", "sleep_efficiency", "ratio", "se_pct"),
    ("Time to fall asleep", "sleep_latency", "seconds", "sol_min"),
    ("Bedtime", "start_time", "clock", "bedtime_local"),
    ("Wake-up time", "end_time", "clock", "wake_time_local"),
)


def upstream_comparison(participant: Participant) -> dict | None:
    """The latest upstream average-stats snapshot beside our figures for the same dates.

    Two queries (the snapshot; our nights of its period). None when the upstream sent none.
    """
    snapshot = (
        UpstreamAverageStats.objects.for_org(participant.organization)
        .filter(participant=participant)
        .order_by("-end_date", "-start_date")
        .first()
    )
    if snapshot is None:
        return None
    ours = list(
        NightlyMetrics.objects.for_org(participant.organization)
        .filter(participant=participant, is_main_sleep=True, is_nap=False,
                night_date__gte=snapshot.start_date, night_date__lte=snapshot.end_date)
        .values_list("tib_min", "tst_min", "se_pct", "sol_min", "bedtime_local", "wake_time_local")
    )
    columns = dict(zip(("tib_min", "tst_min", "se_pct", "sol_min", "bedtime_local", "wake_time_local"),
                       zip(*ours, strict=True) if ours else [()] * 6, strict=True))
    stats = snapshot.stats or {}
    rows = []
    for label, key, kind, our_key in UPSTREAM_ROWS:
        rows.append({"label": label, "upstream": _upstream_value(stats.get(key), kind),
                     "ours": _our_value(columns[our_key], kind)})
    return {
        "provider": snapshot.get_provider_display(),
        "start_date": snapshot.start_date,
        "end_date": snapshot.end_date,
        "upstream_nights": snapshot.nights,
        "our_nights": len(ours),
        "rows": rows,
        "no_sleep": snapshot.stats is None,
    }


def _upstream_value(value, kind: str) -> str:
    if value is None or isinstance(value, (dict, list)):
        return "–"
    try:
        if kind == "seconds":
            return _hours_minutes(float(value) / 60)
        if kind == "ratio":
            return f"{float(value) * 100:.1f} %"
    except (TypeError, ValueError):
        return "–"
    return str(value)[:5]  # hh:mm of "hh:mm:ss"


def _our_value(values, kind: str) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    if kind == "clock":
        minutes = regularity.circular_mean_minutes(
            np.array([v.hour * 60 + v.minute + v.second / 60 for v in values], dtype=float)
        )
        total = int(round(float(minutes))) % (24 * 60)
        return f"{total // 60:02d}:{total % 60:02d}"
    mean = float(np.mean(values))
    if kind == "ratio":
        return f"{mean:.1f} %"
    return _hours_minutes(mean)
