"""The night-date rule: wake-up date in local time, naps, main sleep, DST."""

import warnings
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from analytics.engine.nights import assign_night_dates, clock_seconds, mark_main_sleep


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


# --- against row-by-row oracles (seeded random cases) --------------------------------------

def test_it_dates_nights_as_zoneinfo_does_row_by_row():
    rng = np.random.default_rng(7)
    n = 400
    zones = ["Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe", "UTC"]
    # Starts spread over two years (both DST changes of each zone), to the microsecond.
    starts = [datetime(2025, 1, 1, tzinfo=UTC) + timedelta(seconds=int(s), microseconds=int(us))
              for s, us in zip(rng.integers(0, 730 * 86400, n), rng.integers(0, 10**6, n), strict=True)]
    ends = [s + timedelta(minutes=int(m)) for s, m in zip(starts, rng.integers(20, 14 * 60, n), strict=True)]
    tz = [zones[i] for i in rng.integers(0, len(zones), n)]
    index = pd.Index(rng.permutation(10 * n)[:n])
    out = assign_night_dates(pd.Series(starts, index=index), pd.Series(ends, index=index), pd.Series(tz, index=index))
    assert list(out.index) == list(index)
    for row, start, end, zone in zip(out.itertuples(), starts, ends, tz, strict=True):
        local_start = start.astimezone(ZoneInfo(zone)).replace(tzinfo=None)
        local_end = end.astimezone(ZoneInfo(zone)).replace(tzinfo=None)
        hours = (end - start).total_seconds() / 3600
        assert row.night_date == local_end.date()
        assert row.local_start == pd.Timestamp(local_start) and row.local_end == pd.Timestamp(local_end)
        assert row.duration_h == hours
        assert row.is_nap == (hours < 3 and 10 <= local_start.hour < 18)


def test_it_reads_clock_times_as_the_datetime_of_each_row_does():
    rng = np.random.default_rng(8)
    n = 500
    # Mostly whole seconds, as upstreams report starts; some with microseconds.
    micros = rng.integers(0, 10**9, n) * 10**6 + np.where(rng.random(n) < 0.2, rng.integers(0, 10**6, n), 0)
    local = pd.Series(pd.Timestamp("2026-01-01") + pd.to_timedelta(micros, unit="us"))
    local[rng.random(n) < 0.05] = pd.NaT
    # Offsets as the metrics give them: whole epochs of 30, 20 (1/3 min) or 15 s, halved for midsleep.
    offsets = pd.Series(rng.integers(0, 2000, n) * rng.choice([0.5, 1 / 3, 0.25, 1 / 6], n))
    offsets[rng.random(n) < 0.1] = np.nan
    # The per-row conversion clock_seconds replaced, kept as the oracle.
    stamps = local + pd.to_timedelta(offsets, unit="min")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # to_pydatetime drops nanoseconds
        expected = [None if pd.isna(t) else t.to_pydatetime().time() for t in stamps]
    for offset, clocks in ((offsets.to_numpy(), expected), (0.0, list(local))):
        for seconds, clock in zip(clock_seconds(local, offset), clocks, strict=True):
            if clock is None or clock is pd.NaT:
                assert np.isnan(seconds)
            else:
                assert seconds == clock.hour * 3600 + clock.minute * 60 + clock.second


def test_it_picks_main_sleeps_as_sorting_each_date_does():
    rng = np.random.default_rng(9)
    for _ in range(200):
        n = int(rng.integers(1, 40))
        frame = pd.DataFrame({
            "participant_id": rng.integers(0, 3, n),
            "night_date": [date(2026, 3, 1) + timedelta(days=int(d)) for d in rng.integers(0, 3, n)],
            "is_nap": rng.random(n) < 0.2,
            "tib_min": rng.choice([300.0, 420.0, 480.0], n),  # ties on purpose
            "start": pd.Timestamp("2026-03-01", tz="UTC") + pd.to_timedelta(rng.choice([0, 60], n), unit="min"),
        }, index=rng.permutation(5 * n)[:n])
        expected = set()
        for _, group in frame[~frame["is_nap"]].groupby(["participant_id", "night_date"]):
            # Longest in bed, then the later start, then the later row.
            rows = sorted(range(len(group)), key=lambda i: (group["tib_min"].iloc[i], group["start"].iloc[i], i))
            expected.add(group.index[rows[-1]])
        assert set(frame.index[mark_main_sleep(frame).to_numpy()]) == expected
