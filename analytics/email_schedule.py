"""When an organization's weekly emails are due (pure: no Django).

Rule: each ISO week, an organization's emails go out at its ``weekly_email_weekday`` and
``weekly_email_hour`` in its own time zone, and may still go out until ``max_delay`` later
(a beat or worker that was down for a while still sends; after that the week is skipped,
not sent days late). They cover the last complete ISO week at that moment: the week
before the one the send time falls in. Local times come from the IANA database: a send
hour that does not exist on a spring-forward day is taken with the offset before the
change (zoneinfo's fold=0, an hour later on the wall clock); one that occurs twice on a
fall-back day is its first occurrence. The window of the previous week is checked too, so
a window that crosses midnight into a new ISO week (Sunday 23:00 + 24 h) is honoured.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass


@dataclass(frozen=True)
class DueWeek:
    iso_year: int  # the week the emails describe
    iso_week: int
    send_at: dt.datetime  # UTC moment the window opened


def send_moment(week_monday: dt.date, *, tz: str, weekday: int, hour: int) -> dt.datetime:
    """UTC instant of ``weekday`` (0 = Monday) at ``hour``:00 local in the week of ``week_monday``."""
    zone = zoneinfo.ZoneInfo(tz)
    local = dt.datetime.combine(week_monday + dt.timedelta(days=weekday), dt.time(hour), tzinfo=zone)
    return local.astimezone(dt.UTC)


def due_week(
    *, now: dt.datetime, tz: str, weekday: int, hour: int, max_delay: dt.timedelta
) -> DueWeek | None:
    """The week whose emails are due at ``now`` (aware), or None outside every window."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    local_today = now.astimezone(zoneinfo.ZoneInfo(tz)).date()
    monday = local_today - dt.timedelta(days=local_today.weekday())
    for week_monday in (monday, monday - dt.timedelta(days=7)):
        opens = send_moment(week_monday, tz=tz, weekday=weekday, hour=hour)
        if opens <= now < opens + max_delay:
            iso_year, iso_week, _ = (week_monday - dt.timedelta(days=7)).isocalendar()
            return DueWeek(iso_year, iso_week, opens)
    return None
