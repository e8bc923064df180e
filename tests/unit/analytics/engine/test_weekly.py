"""Tests for analytics.engine.weekly: weekly figures, insights, organization summary."""

import math

import numpy as np
import pandas as pd
import pytest

from analytics.engine import weekly

WEEK = {"iso_year": 2024, "iso_week": 24}  # Monday 2024-06-10 .. Sunday 2024-06-16
MONDAY = pd.Timestamp("2024-06-10")


def _night(pid, date, *, tst=450.0, score=80.0, se=92.0, waso=15.0, bed=23 * 60.0, **extra):
    date = pd.Timestamp(date)
    return {
        "participant_id": pid,
        "night_date": date,
        "score": score,
        "tst_min": tst,
        "se_pct": se,
        "waso_min": waso,
        "bedtime_local": bed,
        "waketime_local": (bed + tst + waso) % 1440,
        "midsleep_local": (bed + (tst + waso) / 2) % 1440,
        **extra,
    }


def _week(pid, monday=MONDAY, days=range(7), **kw):
    return [_night(pid, monday + pd.Timedelta(days=d), **kw) for d in days]


class TestWeekBounds:
    def test_it_uses_iso_weeks(self):
        assert weekly.iso_week_bounds(2024, 1) == (
            pd.Timestamp("2024-01-01"),
            pd.Timestamp("2024-01-07"),
        )
        assert weekly.iso_week_bounds(2020, 53)[0] == pd.Timestamp("2020-12-28")


class TestParticipantSummary:
    def test_it_averages_the_week_and_clock_times_circularly(self):
        beds = [23.5 * 60, 0.5 * 60] * 3 + [0.0]
        rows = [
            _night("p", MONDAY + pd.Timedelta(days=i), tst=420.0 + 10 * i, bed=b)
            for i, b in enumerate(beds)
        ]
        out = weekly.weekly_participant_summary(pd.DataFrame(rows), **WEEK).loc["p"]
        assert out["nights"] == 7
        assert out["week_start"] == MONDAY
        assert out["tst_mean_min"] == pytest.approx(450.0)
        assert out["bedtime_mean_min"] == pytest.approx(0.0, abs=1e-6)
        # Offsets -30, +30 (x3) and 0 minutes: population SD 27.8 min.
        assert out["bedtime_sd_min"] == pytest.approx(np.std([-30, 30] * 3 + [0]), rel=0.01)

    def test_it_leaves_out_nights_of_other_weeks_and_naps(self):
        rows = _week("p", tst=420.0)
        rows.append(_night("p", "2024-06-17", tst=60.0))  # next Monday: next week
        rows.append(_night("p", "2024-06-12", tst=30.0, is_nap=True))
        frame = pd.DataFrame(rows)
        frame["is_nap"] = frame["is_nap"].fillna(False).astype(bool)
        out = weekly.weekly_participant_summary(frame, **WEEK).loc["p"]
        assert out["nights"] == 7
        assert out["tst_mean_min"] == pytest.approx(420.0)

    def test_it_picks_best_and_worst_nights_with_ties_to_the_earliest(self):
        scores = [70, 90, 60, 90, 60, 75, 80]
        rows = [_night("p", MONDAY + pd.Timedelta(days=i), score=s) for i, s in enumerate(scores)]
        out = weekly.weekly_participant_summary(pd.DataFrame(rows), **WEEK).loc["p"]
        assert out["best_night_date"] == pd.Timestamp("2024-06-11")
        assert out["best_night_score"] == 90
        assert out["worst_night_date"] == pd.Timestamp("2024-06-12")
        assert out["worst_night_score"] == 60

    def test_it_compares_with_the_previous_week_and_the_4_week_baseline(self):
        rows = _week("p", tst=480.0, score=85.0, bed=0.0)
        rows += _week("p", MONDAY - pd.Timedelta(days=7), tst=450.0, score=80.0, bed=1420.0)
        for k in (2, 3, 4):
            rows += _week("p", MONDAY - pd.Timedelta(days=7 * k), tst=420.0, score=70.0, bed=1410.0)
        out = weekly.weekly_participant_summary(pd.DataFrame(rows), **WEEK).loc["p"]
        assert out["tst_delta_prev_week_min"] == pytest.approx(30.0)
        assert out["score_delta_prev_week"] == pytest.approx(5.0)
        assert out["bedtime_shift_prev_week_min"] == pytest.approx(20.0)
        assert out["tst_baseline_min"] == pytest.approx((450 + 3 * 420) / 4)
        assert out["tst_delta_baseline_min"] == pytest.approx(480 - 427.5)
        assert out["score_delta_baseline"] == pytest.approx(85 - 72.5)

    def test_it_needs_seven_nights_for_a_baseline(self):
        rows = _week("p") + _week("p", MONDAY - pd.Timedelta(days=7), days=range(6))
        out = weekly.weekly_participant_summary(pd.DataFrame(rows), **WEEK).loc["p"]
        assert math.isnan(out["score_delta_baseline"])
        assert not math.isnan(out["score_delta_prev_week"])

    def test_it_counts_rising_weeks(self):
        rows = []
        for k, score in zip((3, 2, 1, 0), (60.0, 65.0, 70.0, 78.0), strict=True):
            rows += _week("p", MONDAY - pd.Timedelta(days=7 * k), score=score)
        out = weekly.weekly_participant_summary(pd.DataFrame(rows), **WEEK).loc["p"]
        assert out["score_rising_weeks"] == 3
        assert "improvement_streak" in out["insight_codes"]

    def test_it_gives_every_listed_participant_a_row(self):
        out = weekly.weekly_participant_summary(
            pd.DataFrame(_week("p")), participant_ids=["p", "q"], **WEEK
        )
        assert list(out.index) == ["p", "q"]
        assert out.loc["q", "nights"] == 0
        assert out.loc["q", "insight_codes"] == ["no_nights"]


class TestInsights:
    def _codes(self, rows, **kw):
        out = weekly.weekly_participant_summary(pd.DataFrame(rows), **WEEK, **kw)
        return out.loc["p", "insight_codes"], out.loc["p", "insights"]

    def test_it_flags_short_sleep_against_the_age_band(self):
        codes, texts = self._codes(_week("p", tst=360.0))
        assert codes[0] == "short_sleep"
        assert texts[0] == (
            "You slept 6 h 00 min a night on average, below the 7\u20139 h range "
            "recommended for your age group."
        )
        codes, _ = self._codes(_week("p", tst=460.0), age_years=16)
        assert codes[0] == "short_sleep"  # teens: 8-10 h
        codes, _ = self._codes(_week("p", tst=410.0))
        assert "short_sleep" not in codes  # within the 15-min tolerance

    def test_it_flags_low_efficiency_and_long_wake(self):
        codes, texts = self._codes(_week("p", se=80.0, waso=45.0))
        assert codes[:2] == ["low_efficiency", "long_wake"]
        assert texts[0] == "You were asleep for 80% of your time in bed; 85% or more is typical."
        assert texts[1].startswith("You were awake for 45 min a night on average")

    def test_it_flags_late_and_irregular_bedtimes(self):
        beds = [30.0, 180.0, 40.0, 200.0, 60.0, 210.0, 90.0]
        rows = [_night("p", MONDAY + pd.Timedelta(days=i), bed=b) for i, b in enumerate(beds)]
        codes, texts = self._codes(rows)
        assert "irregular_timing" in codes and "late_timing" in codes
        # Circular mean 115.5 min (the linear mean is 115.7) rounds to 01:56.
        assert "Your average bedtime was 01:56, after 01:00." in texts

    def test_it_flags_social_jet_lag(self):
        rows = [
            _night("p", d, bed=(23 * 60.0 if d.day_of_week < 5 else 0.5 * 60))
            for d in pd.date_range(MONDAY, periods=7)
        ]
        codes, texts = self._codes(rows)
        assert "social_jet_lag" in codes
        i = codes.index("social_jet_lag")
        assert texts[i] == (
            "Your mid-sleep time was 1 h 30 min later on weekend nights than on weekday nights."
        )

    def test_it_mentions_good_weeks_with_facts_when_little_fires(self):
        codes, texts = self._codes(_week("p"))
        assert codes == ["duration_in_range", "consistent_timing"]
        assert texts[0] == (
            "You slept 7 h 30 min a night on average, within the recommended 7\u20139 h."
        )

    def test_it_falls_back_to_facts_for_a_week_with_few_nights(self):
        codes, texts = self._codes(_week("p", days=[0, 1], tst=300.0, score=61.4))
        assert codes == ["few_nights", "average_score"]
        assert texts == [
            "Only 2 nights were recorded this week, too few to spot patterns.",
            "Your average sleep score was 61.",
        ]

    def test_it_reports_an_empty_week_with_the_baseline(self):
        rows = []
        for k in (1, 2):
            rows += _week("p", MONDAY - pd.Timedelta(days=7 * k), tst=400.0)
        codes, texts = self._codes(rows)
        assert codes == ["no_nights", "baseline_average"]
        assert texts[1] == "Over the previous 4 weeks you slept 6 h 40 min a night on average."

    def test_it_gives_two_to_four_deterministic_insights(self):
        rng = np.random.default_rng(3)
        rows = []
        for pid in range(40):
            for d in pd.date_range(MONDAY - pd.Timedelta(days=35), MONDAY + pd.Timedelta(days=6)):
                if rng.random() < 0.7:
                    rows.append(
                        _night(
                            pid,
                            d,
                            tst=float(rng.normal(420, 60)),
                            score=float(rng.uniform(40, 95)),
                            se=float(rng.uniform(70, 98)),
                            waso=float(rng.uniform(0, 70)),
                            bed=float((23 * 60 + rng.normal(0, 30 + pid * 3)) % 1440),
                        )
                    )
        frame = pd.DataFrame(rows)
        out = weekly.weekly_participant_summary(frame, **WEEK)
        counts = out["insights"].map(len)
        assert (counts[out["nights"] > 0].between(2, 4)).all()
        assert (out["insights"].map(len) == out["insight_codes"].map(len)).all()
        shuffled = frame.sample(frac=1.0, random_state=1)
        again = weekly.weekly_participant_summary(shuffled, **WEEK)
        pd.testing.assert_frame_equal(out, again)
        advice = ("should", "must", "consult", "doctor", "disorder", "insomnia", "apnea")
        text = " ".join(sum(out["insights"].tolist(), [])).lower()
        assert not any(word in text for word in advice)

    def test_it_names_each_rule_with_a_reason(self):
        codes = [r.code for r in weekly.INSIGHT_RULES + weekly.FALLBACK_RULES]
        assert len(codes) == len(set(codes))
        assert all(r.reason for r in weekly.INSIGHT_RULES + weekly.FALLBACK_RULES)


class TestOrganizationSummary:
    def test_it_averages_participant_means_without_individual_data(self):
        rows = _week("a", tst=420.0) + _week("b", days=[0], tst=480.0)
        rows += [r for pid in "cde" for r in _week(pid, tst=450.0)]
        out = weekly.weekly_organization_summary(pd.DataFrame(rows), min_group_size=5, **WEEK)
        assert len(out) == 1
        row = out.iloc[0]
        assert row["participants_with_data"] == 5
        assert row["nights"] == 7 * 4 + 1
        assert row["tst_mean_min"] == pytest.approx((420 + 480 + 3 * 450) / 5)
        assert not row["suppressed"]
        assert not {"participant_id", "best_night_date", "insights"} & set(out.columns)

    def test_it_withholds_figures_below_the_minimum_group_size(self):
        rows = _week("a") + _week("b")
        out = weekly.weekly_organization_summary(pd.DataFrame(rows), min_group_size=5, **WEEK).iloc[
            0
        ]
        assert out["suppressed"]
        assert math.isnan(out["tst_mean_min"]) and math.isnan(out["score_mean"])
        assert out["participants_with_data"] == 2
