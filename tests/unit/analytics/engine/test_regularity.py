"""Tests for analytics.engine.regularity: SRI, midsleep SD, social jet lag, MSFsc.

Worked examples are from shared/science.md §3-4.
"""

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics.engine import regularity as reg

EPOCHS_PER_DAY = 2880  # 30-s epochs


def _day(sleep_from_h: float, sleep_to_h: float, width: int = EPOCHS_PER_DAY) -> np.ndarray:
    """One noon-to-noon day: 1 between the given hours past noon, else 0."""
    row = np.zeros(width)
    row[int(sleep_from_h * 120) : int(sleep_to_h * 120)] = 1
    return row


def _session(pid, start, hours, stage=2, epoch_s=30, **extra):
    n = int(round(hours * 3600 / epoch_s))
    return {
        "participant_id": pid,
        "start_local": pd.Timestamp(start),
        "stages": np.full(n, stage, dtype=np.int8),
        "epoch_s": epoch_s,
        **extra,
    }


class TestCircularHelpers:
    def test_it_averages_clock_times_across_midnight(self):
        assert reg.circular_mean_minutes(np.array([1380.0, 60.0])) == pytest.approx(0.0, abs=1e-9)
        assert reg.circular_mean_minutes(np.array([1410.0, 30.0, 0.0])) == pytest.approx(
            0.0, abs=1e-9
        )

    def test_it_gives_the_circular_sd_close_to_the_linear_sd_for_small_spreads(self):
        # 23:30, 00:30, 00:00: linear population SD of (-30, 30, 0) is 24.49 min.
        sd = reg.circular_sd_minutes(np.array([1410.0, 30.0, 0.0]))
        assert sd == pytest.approx(24.49, abs=0.05)
        assert reg.circular_sd_minutes(np.array([600.0])) == 0.0
        assert math.isnan(reg.circular_sd_minutes(np.array([np.nan])))

    def test_it_takes_the_shorter_arc_for_differences(self):
        assert reg.circular_difference_minutes(30.0, 1410.0) == pytest.approx(60.0)
        assert reg.circular_difference_minutes(1410.0, 30.0) == pytest.approx(-60.0)

    def test_it_reads_datetimes_and_minutes_as_clock_minutes(self):
        dts = pd.Series(pd.to_datetime(["2024-01-01 23:30:00", "2024-01-02 00:15:30"]))
        np.testing.assert_allclose(reg.clock_minutes(dts), [1410.0, 15.5])
        np.testing.assert_allclose(reg.clock_minutes(pd.Series([-30.0, 1500.0])), [1410.0, 60.0])

    def test_it_takes_the_circular_median_around_midnight(self):
        rows = np.array([[1430.0, 10.0, 0.0, np.nan], [1380.0, 1390.0, 20.0, 30.0]])
        np.testing.assert_allclose(reg.circular_median_rows(rows), [0.0, 1425.0])


class TestSriFromDays:
    def test_it_reproduces_the_science_md_example(self):
        # Asleep 23:00-07:00 then 23:00-08:00: 23:00 is 11 h past noon.
        days = np.vstack([_day(11, 19), _day(11, 20)])
        result = reg.sri_from_days(days, min_pairs=1)
        assert result.sri == pytest.approx(-100 + 200 * (2880 - 120) / 2880)
        assert result.sri == pytest.approx(91.667, abs=1e-3)
        assert (result.pairs_used, result.pairs_total) == (1, 1)

    def test_it_scores_identical_days_100_and_reversed_days_minus_100(self):
        same = np.vstack([_day(11, 19)] * 6)
        assert reg.sri_from_days(same).sri == pytest.approx(100.0)
        flip = np.vstack([_day(11, 19), 1 - _day(11, 19)] * 3)
        assert reg.sri_from_days(flip).sri == pytest.approx(-100.0)

    def test_it_needs_five_day_pairs(self):
        assert math.isnan(reg.sri_from_days(np.vstack([_day(11, 19)] * 5)).sri)
        assert reg.sri_from_days(np.vstack([_day(11, 19)] * 6)).sri == pytest.approx(100.0)

    def test_it_skips_epochs_missing_on_either_day(self):
        a = _day(11, 19)
        b = _day(11, 20)
        b[2280:2400] = np.nan  # the mismatching hour is missing: only matches remain
        result = reg.sri_from_days(np.vstack([a, b]), min_pairs=1)
        assert result.sri == pytest.approx(100.0)

    def test_it_drops_pairs_with_less_than_70_percent_valid_epochs(self):
        days = np.vstack([_day(11, 19)] * 7)
        days[3, : int(0.31 * EPOCHS_PER_DAY)] = np.nan  # day 3: 69 % valid -> 2 pairs dropped
        result = reg.sri_from_days(days)
        assert result.pairs_used == 4 and result.pairs_total == 6
        assert math.isnan(result.sri)
        days[3, :] = _day(11, 19)
        days[3, : int(0.30 * EPOCHS_PER_DAY)] = np.nan  # exactly 70 % valid: kept
        assert reg.sri_from_days(days).pairs_used == 6

    def test_it_compares_short_days_on_their_common_length(self):
        days = np.vstack([_day(11, 19), _day(11, 19)])
        days[1, 2760:] = 0  # would mismatch if compared, but the day is only 23 h long
        days[0, 2760:] = 1
        result = reg.sri_from_days(days, day_epochs=[2880, 2760], min_pairs=1)
        assert result.sri == pytest.approx(100.0)


class TestSleepWakeGrid:
    def test_it_lays_sessions_on_noon_to_noon_days_with_wake_between(self):
        sessions = pd.DataFrame(
            [_session("a", "2024-03-04 23:00", 8), _session("a", "2024-03-05 23:00", 9)]
        )
        grid = reg.sleep_wake_grid(sessions)
        assert grid.values.shape == (2, EPOCHS_PER_DAY)
        assert list(grid.days["day"].dt.strftime("%Y-%m-%d")) == ["2024-03-04", "2024-03-05"]
        assert grid.days["observed"].all()
        np.testing.assert_array_equal(grid.values[0], _day(11, 19).astype(np.int8))
        np.testing.assert_array_equal(grid.values[1], _day(11, 20).astype(np.int8))

    def test_it_treats_no_data_epochs_as_missing_not_wake(self):
        s = _session("a", "2024-03-04 23:00", 8)
        s["stages"][:120] = -1
        grid = reg.sleep_wake_grid(pd.DataFrame([s]))
        assert (grid.values[0, 1320:1440] == -1).all()
        assert (grid.values[0, :1320] == 0).all()

    def test_it_leaves_days_without_a_main_sleep_missing(self):
        sessions = pd.DataFrame(
            [
                _session("a", "2024-03-04 23:00", 8),
                _session("a", "2024-03-05 14:00", 1, is_nap=True),  # nap only on day 2
                _session("a", "2024-03-06 23:00", 8),
            ]
        ).assign(is_nap=lambda f: f["is_nap"].fillna(False).astype(bool))
        grid = reg.sleep_wake_grid(sessions)
        assert list(grid.days["observed"]) == [True, False, True]
        day2 = grid.values[1]
        assert (day2[240:360] == 1).all()  # the nap is laid out
        assert (day2[:240] == -1).all() and (day2[360:] == -1).all()

    def test_it_lets_sleep_win_where_sessions_overlap(self):
        wake = _session("a", "2024-03-04 23:00", 2, stage=0)
        sleep = _session("a", "2024-03-05 00:00", 2, stage=3)
        grid = reg.sleep_wake_grid(pd.DataFrame([wake, sleep]))
        assert (grid.values[0, 1320:1440] == 0).all()
        assert (grid.values[0, 1440:1680] == 1).all()

    def test_it_resamples_other_epoch_lengths_onto_the_30_s_grid(self):
        s15 = _session("a", "2024-03-04 23:00", 8, epoch_s=15)
        s60 = _session("b", "2024-03-04 23:00", 8, epoch_s=60)
        grid = reg.sleep_wake_grid(pd.DataFrame([s15, s60]))
        for row in grid.values:
            np.testing.assert_array_equal(row, _day(11, 19).astype(np.int8))

    def test_it_aligns_sessions_starting_between_grid_epochs(self):
        s = _session("a", "2024-03-04 23:00:15", 1)
        grid = reg.sleep_wake_grid(pd.DataFrame([s]))
        # Grid epochs whose start lies inside [23:00:15, 00:00:15): 23:00:30 .. 00:00:00.
        asleep = np.flatnonzero(grid.values[0] == 1)
        assert asleep[0] == 1321 and asleep[-1] == 1440

    def test_it_makes_dst_days_23_and_25_hours_long(self):
        rows = []
        for day in ["2024-03-29", "2024-03-30", "2024-03-31", "2024-10-26", "2024-10-27"]:
            start = pd.Timestamp(f"{day} 23:00").tz_localize("Europe/Berlin")
            rows.append(
                {
                    "participant_id": "a",
                    "start": start,
                    "timezone": "Europe/Berlin",
                    "stages": np.full(960, 2, dtype=np.int8),
                }
            )
        grid = reg.sleep_wake_grid(pd.DataFrame(rows))
        epochs = grid.days.set_index(grid.days["day"].dt.strftime("%Y-%m-%d"))["epochs"]
        assert epochs["2024-03-30"] == 2760  # spring forward: 23 h
        assert epochs["2024-10-26"] == 3000  # fall back: 25 h
        assert epochs["2024-03-29"] == 2880


class TestSleepRegularityIndex:
    def test_it_reproduces_the_science_md_example_from_sessions(self):
        sessions = pd.DataFrame(
            [_session("a", "2024-03-04 23:00", 8), _session("a", "2024-03-05 23:00", 9)]
        )
        out = reg.sleep_regularity_index(sessions, min_pairs=1)
        assert out.loc["a", "sri"] == pytest.approx(91.667, abs=1e-3)

    def test_it_reports_sri_per_participant_only_with_five_pairs(self):
        rows = [
            _session("b", f"2024-03-{4 + i:02d} 23:00", 8 if i % 2 == 0 else 9) for i in range(7)
        ]
        rows += [_session("c", f"2024-03-{4 + i:02d} 23:00", 8) for i in range(5)]
        out = reg.sleep_regularity_index(pd.DataFrame(rows))
        assert out.loc["b", "sri"] == pytest.approx(91.667, abs=1e-3)
        assert out.loc["b", "sri_pairs_used"] == 6
        assert math.isnan(out.loc["c", "sri"]) and out.loc["c", "sri_pairs_used"] == 4

    def test_it_skips_pairs_around_a_night_without_data(self):
        rows = [_session("a", f"2024-03-{4 + i:02d} 23:00", 8) for i in range(9) if i != 4]
        out = reg.sleep_regularity_index(pd.DataFrame(rows))
        # No main sleep starts in day 4 (noon to noon) and nothing spills into it, so the
        # whole day is missing and both of its pairs are dropped.
        assert out.loc["a", "sri_pairs_total"] == 8
        assert out.loc["a", "sri_pairs_used"] == 6
        assert out.loc["a", "sri"] == pytest.approx(100.0)

    def test_it_compares_dst_days_on_their_common_length(self):
        # Asleep 23:00-07:00 local every night across the spring change (2024-03-31).
        rows = []
        for d in pd.date_range("2024-03-27", "2024-04-02"):
            start = pd.Timestamp(f"{d:%Y-%m-%d} 23:00").tz_localize("Europe/Berlin")
            end = pd.Timestamp(f"{d + pd.Timedelta(days=1):%Y-%m-%d} 07:00").tz_localize(
                "Europe/Berlin"
            )
            n = int((end - start).total_seconds() // 30)
            rows.append(
                {
                    "participant_id": "a",
                    "start": start,
                    "timezone": "Europe/Berlin",
                    "stages": np.full(n, 2, dtype=np.int8),
                }
            )
        out = reg.sleep_regularity_index(pd.DataFrame(rows))
        # Days are laid out in elapsed time from local noon; the 23-h day (Mar 30) is
        # compared with each neighbour on 2,760 epochs, and its wake-up at 07:00 CEST is
        # one real hour earlier than the neighbours' in elapsed time: 120 mismatches each.
        compared = 4 * 2880 + 2 * 2760
        matches = 4 * 2880 + 2 * (2760 - 120)
        assert out.loc["a", "sri_pairs_used"] == 6
        assert out.loc["a", "sri"] == pytest.approx(-100 + 200 * matches / compared)

    def test_it_matches_the_naive_layout_when_no_dst_change_occurs(self):
        naive, aware = [], []
        for i, d in enumerate(pd.date_range("2024-06-01", "2024-06-08")):
            hours = 7.5 + (i % 3) * 0.5
            naive.append(_session("a", f"{d:%Y-%m-%d} 23:00", hours))
            aware.append(
                {
                    "participant_id": "a",
                    "start": pd.Timestamp(f"{d:%Y-%m-%d} 23:00").tz_localize("Europe/Berlin"),
                    "timezone": "Europe/Berlin",
                    "stages": naive[-1]["stages"],
                }
            )
        a = reg.sleep_regularity_index(pd.DataFrame(naive))
        b = reg.sleep_regularity_index(pd.DataFrame(aware))
        assert a.loc["a", "sri"] == pytest.approx(b.loc["a", "sri"])

    def test_it_agrees_with_the_matrix_form_on_random_nights(self):
        rng = np.random.default_rng(7)
        rows, days = [], []
        for i in range(10):
            onset_h = 10.5 + rng.integers(0, 5) * 0.5  # 22:30 .. 00:30
            hours = 6 + rng.integers(0, 7) * 0.5
            start = pd.Timestamp("2024-02-01 12:00") + pd.Timedelta(days=i, hours=onset_h)
            rows.append(_session("a", start, hours))
            days.append(_day(onset_h, onset_h + hours))
        out = reg.sleep_regularity_index(pd.DataFrame(rows))
        expected = reg.sri_from_days(np.vstack(days))
        assert out.loc["a", "sri"] == pytest.approx(expected.sri)

    def test_it_gives_the_same_result_in_small_batches(self, monkeypatch):
        rng = np.random.default_rng(11)
        rows = [
            _session(
                pid,
                pd.Timestamp("2024-02-01 22:00")
                + pd.Timedelta(days=i, minutes=int(rng.integers(0, 120))),
                float(rng.integers(12, 18)) / 2,
            )
            for pid in "abcdefg"
            for i in range(8)
        ]
        frame = pd.DataFrame(rows)
        whole = reg.sleep_regularity_index(frame)
        monkeypatch.setattr(reg, "SRI_BATCH_SESSIONS", 10)
        pd.testing.assert_frame_equal(reg.sleep_regularity_index(frame), whole)

    @settings(max_examples=25, deadline=None)
    @given(
        shifts=st.lists(st.integers(-8, 8), min_size=6, max_size=10),
        lengths=st.lists(st.integers(10, 18), min_size=10, max_size=10),
    )
    def test_it_stays_between_minus_100_and_100(self, shifts, lengths):
        rows = [
            _session(
                "a",
                pd.Timestamp("2024-02-01 23:00") + pd.Timedelta(days=i, minutes=15 * s),
                lengths[i] / 2,
            )
            for i, s in enumerate(shifts)
        ]
        sri = reg.sleep_regularity_index(pd.DataFrame(rows)).loc["a", "sri"]
        assert math.isnan(sri) or -100.0 <= sri <= 100.0


class TestTiming:
    def _nights(self, msw="03:30", msf="05:00", sd_work_h=6.0, sd_free_h=7.0):
        rows = []
        for d in pd.date_range("2024-04-01", "2024-04-14"):  # two full weeks
            free = d.weekday() >= 5
            mid = msf if free else msw
            rows.append(
                {
                    "participant_id": "p",
                    "night_date": d,
                    "midsleep_local": pd.Timestamp(f"{d:%Y-%m-%d} {mid}"),
                    "spt_min": (sd_free_h if free else sd_work_h) * 60,
                }
            )
        return pd.DataFrame(rows)

    def test_it_computes_the_science_md_social_jet_lag_examples(self):
        assert reg.social_jet_lag_hours(3.5 * 60, 5 * 60) == pytest.approx(1.5)
        assert reg.social_jet_lag_hours(4.5 * 60, 23.5 * 60) == pytest.approx(5.0)

    def test_it_computes_the_science_md_msfsc_example(self):
        # §4 rounds SD_week to 6.29 h: 4 - (7 - 6.29) / 2 = 3.645 h = 03:38:42.
        msf_sc = reg.msf_sc_hours(4.0, 6.0, 7.0, sd_week_h=6.29)
        assert round(msf_sc * 3600) == 3 * 3600 + 38 * 60 + 42
        # Unrounded SD_week = 44/7 h gives 03:38:34.
        assert round(reg.msf_sc_hours(4.0, 6.0, 7.0) * 3600) == 3 * 3600 + 38 * 60 + 34

    def test_it_keeps_msf_when_free_sleep_is_not_longer(self):
        assert reg.msf_sc_hours(4.0, 7.0, 7.0) == pytest.approx(4.0)
        assert reg.msf_sc_hours(0.5, 7.0, 9.0) == pytest.approx(0.5 - (9 - 53 / 7) / 2 + 24)

    def test_it_computes_social_jet_lag_per_participant(self):
        out = reg.social_jet_lag(self._nights()).loc["p"]
        assert out["nights_work"] == 10 and out["nights_free"] == 4
        assert out["msw_min"] == pytest.approx(210.0)
        assert out["msf_min"] == pytest.approx(300.0)
        assert out["sjl_h"] == pytest.approx(1.5)
        assert out["sjl_signed_h"] == pytest.approx(1.5)
        assert out["msf_sc_min"] == pytest.approx(reg.msf_sc_hours(5.0, 6.0, 7.0) * 60)

    def test_it_takes_the_shorter_arc_across_midnight(self):
        out = reg.social_jet_lag(self._nights(msw="04:30", msf="23:30")).loc["p"]
        assert out["sjl_h"] == pytest.approx(5.0)
        assert out["sjl_signed_h"] == pytest.approx(-5.0)

    def test_it_uses_a_workday_calendar_when_given(self):
        nights = self._nights()
        # This person works weekends and is free on the nights ending Monday and Tuesday.
        dates = pd.date_range("2024-04-01", "2024-04-14")
        calendar = pd.DataFrame(
            {"participant_id": "p", "date": dates, "is_free": dates.day_of_week.isin([0, 1])}
        )
        out = reg.social_jet_lag(nights, calendar=calendar).loc["p"]
        assert out["nights_free"] == 4 and out["nights_work"] == 10
        # Free nights are now workday-timed (03:30) and the weekend ones are work nights.
        assert out["msf_min"] == pytest.approx(210.0)

    def test_it_needs_two_nights_of_each_kind(self):
        nights = self._nights()
        nights = nights[~nights["night_date"].isin(pd.to_datetime(["2024-04-13", "2024-04-14"]))]
        nights = nights[nights["night_date"] != pd.Timestamp("2024-04-07")]
        out = reg.social_jet_lag(nights).loc["p"]
        assert out["nights_free"] == 1
        assert math.isnan(out["sjl_h"]) and math.isnan(out["msf_sc_min"])

    def test_it_leaves_naps_out_of_timing(self):
        nights = self._nights()
        nap = nights.iloc[[0]].assign(midsleep_local=pd.Timestamp("2024-04-01 15:00"), is_nap=True)
        nights = pd.concat([nights.assign(is_nap=False), nap], ignore_index=True)
        assert reg.social_jet_lag(nights).loc["p", "msw_min"] == pytest.approx(210.0)

    def test_it_computes_midsleep_variability(self):
        nights = pd.DataFrame(
            {
                "participant_id": ["p", "p", "p", "q"],
                "midsleep_local": [1410.0, 30.0, 0.0, 200.0],
            }
        )
        out = reg.midsleep_variability(nights)
        assert out.loc["p", "midsleep_mean_min"] == pytest.approx(0.0, abs=1e-9)
        assert out.loc["p", "midsleep_sd_min"] == pytest.approx(24.49, abs=0.05)
        assert out.loc["q", "midsleep_nights"] == 1
        assert math.isnan(out.loc["q", "midsleep_sd_min"])
