"""The night-date rule: wake-up date in local time, naps, main sleep, DST."""

from datetime import date

import pandas as pd

from analytics.engine.nights import assign_night_dates, mark_main_sleep


def _assign(rows):
    frame = pd.DataFrame(rows, columns=["start", "end", "tz"])
    return assign_night_dates(pd.to_datetime(frame["start"], utc=True), pd.to_datetime(frame["end"], utc=True), frame["tz"])


def test_it_dates_a_night_by_its_local_wake_up_date():
    out = _assign([("2026-03-01T22:30:00Z", "2026-03-02T06:30:00Z", "Europe/Berlin")])
    assert out.loc[0, "night_date"] == date(2026, 3, 2)
    assert not out.loc[0, "is_nap"]


def test_it_uses_the_local_zone_not_utc():
    # 23:00-05:30 UTC is 08:00-14:30 in Tokyo the next day: a day sleep dated by local wake-up.
    out = _assign([("2026-03-01T23:00:00Z", "2026-03-02T05:30:00Z", "Asia/Tokyo"),
                   ("2026-03-02T04:00:00Z", "2026-03-02T12:00:00Z", "America/Los_Angeles")])
    assert list(out["night_date"]) == [date(2026, 3, 2), date(2026, 3, 2)]
    assert str(out.loc[1, "local_start"]) == "2026-03-01 20:00:00"


def test_it_flags_short_daytime_sleeps_as_naps():
    out = _assign([
        ("2026-03-02T12:00:00Z", "2026-03-02T13:00:00Z", "UTC"),   # 12:00, 1 h: nap
        ("2026-03-02T12:00:00Z", "2026-03-02T16:00:00Z", "UTC"),   # 4 h: not a nap
        ("2026-03-02T09:00:00Z", "2026-03-02T10:00:00Z", "UTC"),   # starts before 10:00: not a nap
        ("2026-03-02T18:00:00Z", "2026-03-02T19:00:00Z", "UTC"),   # starts at 18:00: not a nap
    ])
    assert list(out["is_nap"]) == [True, False, False, False]


def test_it_keeps_true_duration_and_wake_date_across_dst_changes():
    # Europe/Berlin springs forward on 2026-03-29 02:00 -> 03:00; falls back 2026-10-25 03:00 -> 02:00.
    out = _assign([
        ("2026-03-28T22:00:00Z", "2026-03-29T05:00:00Z", "Europe/Berlin"),  # 23:00 CET -> 07:00 CEST
        ("2026-10-24T21:00:00Z", "2026-10-25T06:00:00Z", "Europe/Berlin"),  # 23:00 CEST -> 07:00 CET
    ])
    assert list(out["night_date"]) == [date(2026, 3, 29), date(2026, 10, 25)]
    assert list(out["duration_h"]) == [7.0, 9.0]
    assert [str(t.time()) for t in out["local_start"]] == ["23:00:00", "23:00:00"]
    assert [str(t.time()) for t in out["local_end"]] == ["07:00:00", "07:00:00"]


def test_it_picks_the_longest_non_nap_sleep_as_main():
    frame = pd.DataFrame({
        "participant_id": [1, 1, 1, 2],
        "night_date": [date(2026, 3, 2)] * 4,
        "is_nap": [False, False, True, True],
        "tib_min": [300.0, 420.0, 600.0, 60.0],
        "start": pd.to_datetime(["2026-03-01T22:00Z", "2026-03-02T00:00Z", "2026-03-02T12:00Z", "2026-03-02T13:00Z"]),
    })
    assert list(mark_main_sleep(frame)) == [False, True, False, False]
