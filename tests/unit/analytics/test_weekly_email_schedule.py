"""When an organization's weekly emails are due: its weekday and hour in its own zone."""

from __future__ import annotations

import datetime as dt

import pytest

from analytics.email_schedule import due_week

DAY = dt.timedelta(hours=24)
MONDAY, SUNDAY = 0, 6


def _utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def _due(now: str, tz: str, weekday: int = MONDAY, hour: int = 8, max_delay: dt.timedelta = DAY):
    return due_week(now=_utc(now), tz=tz, weekday=weekday, hour=hour, max_delay=max_delay)


class DueWeekTests:
    def test_it_opens_at_the_local_weekday_and_hour_for_the_previous_iso_week(self):
        # Monday 2026-11-23 08:00 in Auckland (NZDT, UTC+13) is Sunday 19:00 UTC.
        assert _due("2026-11-22 18:59:59", "Pacific/Auckland") is None
        due = _due("2026-11-22 19:00:00", "Pacific/Auckland")
        assert (due.iso_year, due.iso_week) == (2026, 47)  # 16-22 November, complete in Auckland
        assert due.send_at == _utc("2026-11-22 19:00")

    def test_the_same_instant_is_due_in_one_zone_and_not_in_another(self):
        six_hours = dt.timedelta(hours=6)
        # Monday 2026-11-23 16:00 UTC: 08:00 in Los Angeles (PST); Tuesday 05:00 in Auckland,
        # whose window (Sunday 19:00 UTC + 6 h) has closed.
        los_angeles = _due("2026-11-23 16:00", "America/Los_Angeles", max_delay=six_hours)
        assert (los_angeles.iso_year, los_angeles.iso_week) == (2026, 47)
        assert _due("2026-11-23 16:00", "Pacific/Auckland", max_delay=six_hours) is None
        # Sunday 19:00 UTC: Auckland's window opens while Los Angeles is on Sunday 11:00.
        assert _due("2026-11-22 19:00", "Pacific/Auckland", max_delay=six_hours).iso_week == 47
        assert _due("2026-11-22 19:00", "America/Los_Angeles", max_delay=six_hours) is None

    def test_a_late_run_still_sends_until_the_maximum_delay(self):
        assert _due("2026-11-23 15:59", "America/Los_Angeles") is None
        assert _due("2026-11-24 15:59:59", "America/Los_Angeles").iso_week == 47
        assert _due("2026-11-24 16:00", "America/Los_Angeles") is None
        assert _due("2026-11-23 17:00", "America/Los_Angeles", max_delay=dt.timedelta(hours=1)) is None

    def test_it_follows_daylight_saving_time(self):
        # Los Angeles: PST (UTC-8) until Sunday 2026-03-08, PDT (UTC-7) after.
        assert _due("2026-03-02 16:00", "America/Los_Angeles").send_at == _utc("2026-03-02 16:00")
        assert _due("2026-03-09 15:00", "America/Los_Angeles").send_at == _utc("2026-03-09 15:00")
        assert _due("2026-03-09 14:59", "America/Los_Angeles") is None
        # Auckland: NZDT (UTC+13) until Sunday 2026-04-05, NZST (UTC+12) after.
        assert _due("2026-03-29 19:00", "Pacific/Auckland").iso_week == 13
        assert _due("2026-04-05 19:59", "Pacific/Auckland") is None
        assert _due("2026-04-05 20:00", "Pacific/Auckland").iso_week == 14

    def test_a_send_hour_skipped_by_the_clock_change_goes_out_an_hour_later(self):
        # 02:00 does not exist in Los Angeles on 2026-03-08: 02:00 PST is 10:00 UTC (03:00 PDT).
        due = _due("2026-03-08 10:00", "America/Los_Angeles", weekday=SUNDAY, hour=2)
        assert due.send_at == _utc("2026-03-08 10:00") and due.iso_week == 9
        assert _due("2026-03-08 09:59", "America/Los_Angeles", weekday=SUNDAY, hour=2) is None

    def test_a_send_hour_that_happens_twice_opens_at_the_first(self):
        # 01:00 happens twice in Los Angeles on 2026-11-01: first in PDT (08:00 UTC).
        due = _due("2026-11-01 08:00", "America/Los_Angeles", weekday=SUNDAY, hour=1)
        assert due.send_at == _utc("2026-11-01 08:00")
        assert _due("2026-11-01 07:59", "America/Los_Angeles", weekday=SUNDAY, hour=1) is None

    def test_a_window_reaching_into_the_next_week_keeps_its_week(self):
        # Sunday 23:00 UTC + 24 h: on Monday 05:00 the new ISO week has begun, but the emails
        # still due are those of the week before Sunday's.
        due = _due("2026-11-23 05:00", "UTC", weekday=SUNDAY, hour=23)
        assert (due.iso_week, due.send_at) == (46, _utc("2026-11-22 23:00"))

    def test_it_handles_the_year_boundary(self):
        # Monday 2027-01-04 08:00 UTC: the last complete week is 2026-W53 (28 Dec - 3 Jan).
        due = _due("2027-01-04 08:00", "UTC")
        assert (due.iso_year, due.iso_week) == (2026, 53)

    def test_it_refuses_a_naive_time(self):
        with pytest.raises(ValueError):
            due_week(now=dt.datetime(2026, 1, 1), tz="UTC", weekday=0, hour=8, max_delay=DAY)
