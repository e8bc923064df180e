"""Tests for analytics.engine.scores (science.md §5-6)."""

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from analytics.engine import scores
from analytics.engine.regularity import circular_median_rows

COMPONENT_COLS = [f"score_{c}" for c in scores.COMPONENTS]


def _night(**overrides):
    base = {
        "participant_id": "p",
        "night_date": pd.Timestamp("2024-05-20"),
        "tst_min": 480.0,
        "se_pct": 95.0,
        "waso_min": 10.0,
        "awakenings_5min": 0,
        "n3_min": 100.0,
        "rem_min": 100.0,
        "bedtime_local": 23 * 60.0,
        "midsleep_local": 3 * 60.0,
    }
    base.update(overrides)
    return base


def _history(nights=14, bedtime=23 * 60.0, midsleep=3 * 60.0, last="2024-05-19"):
    dates = pd.date_range(end=last, periods=nights)
    return [_night(night_date=d, bedtime_local=bedtime, midsleep_local=midsleep) for d in dates]


class TestComponents:
    def test_it_gives_100_inside_the_band_and_the_documented_shoulders(self):
        tst = np.array([420, 480, 540, 360, 300, 240, 600, 660, 900, 0, np.nan]) * 1.0
        got = scores.duration_component(tst, 7, 9)
        expected = [100, 100, 100, 84.0896, 50, 21.0224, 92.0448, 75, 50 + 50 * 2**-9, 0, np.nan]
        np.testing.assert_allclose(got, expected, atol=1e-3)

    def test_it_uses_the_nsf_band_for_the_age(self):
        lo, hi = scores.recommended_band(np.array([15, 30, 70, np.nan, 20, 8]))
        np.testing.assert_array_equal(lo, [8, 7, 7, 7, 7, 9])
        np.testing.assert_array_equal(hi, [10, 9, 8, 9, 9, 11])

    def test_it_scores_efficiency_linearly_between_60_and_90(self):
        got = scores.efficiency_component(np.array([95, 90, 82.5, 60, 40, np.nan]))
        np.testing.assert_allclose(got, [100, 100, 75, 0, 0, np.nan])

    def test_it_scores_continuity_from_waso_and_long_awakenings(self):
        np.testing.assert_allclose(
            scores.continuity_component(np.array([10, 20, 55, 90, 120])), [100, 100, 50, 0, 0]
        )
        got = scores.continuity_component(
            np.array([10.0, 10.0, 10.0, 55.0, np.nan]), np.array([0, 1, 3.5, np.nan, 0])
        )
        # 0.75 * waso_part + 0.25 * awakening_part; the count alone never decides.
        np.testing.assert_allclose(got, [100, 100, 0.75 * 100 + 0.25 * 50, 50, np.nan])

    def test_it_scores_depth_against_90_minute_targets(self):
        got = scores.depth_component(
            np.array([90, 45, 0, 200, np.nan]), np.array([90, 90, 45, 0, 90])
        )
        np.testing.assert_allclose(got, [100, 75, 25, 50, np.nan])

    def test_it_maps_sri_between_50_and_90(self):
        np.testing.assert_allclose(
            scores.sri_component(np.array([95, 90, 70, 50, 10])), [100, 100, 50, 0, 0]
        )

    def test_it_gives_timing_15_minutes_grace_and_zero_at_two_hours(self):
        np.testing.assert_allclose(
            scores.timing_deviation_component(np.array([0, 15, -15, 67.5, 120, -200])),
            [100, 100, 100, 50, 0, 0],
        )


class TestWeights:
    def test_it_normalizes_weights_and_fills_missing_names_with_zero(self):
        w = scores.validate_weights({"duration": 2, "efficiency": 2})
        assert w == {
            "duration": 0.5,
            "efficiency": 0.5,
            "continuity": 0.0,
            "depth": 0.0,
            "regularity": 0.0,
        }
        assert sum(scores.validate_weights().values()) == pytest.approx(1.0)

    @pytest.mark.parametrize(
        "weights",
        [
            {"duration": -1},
            {"duration": 0, "efficiency": 0},
            {"mood": 1},
            {"duration": float("nan")},
            {"duration": "x"},
        ],
    )
    def test_it_rejects_invalid_weights(self, weights):
        with pytest.raises(ValueError):
            scores.validate_weights(weights)


class TestSleepScores:
    def test_it_scores_a_perfect_night_100_with_every_component(self):
        frame = pd.DataFrame(_history() + [_night()])
        out = scores.sleep_scores(frame).iloc[-1]
        assert out["score"] == pytest.approx(100.0)
        assert out["score_components_used"] == "duration,efficiency,continuity,depth,regularity"
        assert out["regularity_basis"] == "timing"
        assert out["score_weight_duration"] == pytest.approx(0.35)

    def test_it_computes_a_hand_checked_night(self):
        night = _night(
            tst_min=360.0,  # 1 h short: 84.0896
            se_pct=82.5,  # 75
            waso_min=55.0,  # waso part 50, no long awakening: 0.75*50 + 0.25*100 = 62.5
            n3_min=45.0,
            rem_min=90.0,  # 75
            bedtime_local=24 * 60.0,  # 60 min late: (120 - 60) / 105 * 100 = 57.142857
            midsleep_local=4 * 60.0,  # 60 min late as well
        )
        out = scores.sleep_scores(pd.DataFrame(_history() + [night])).iloc[-1]
        parts = {
            "duration": 100 * 2**-0.25,
            "efficiency": 75.0,
            "continuity": 62.5,
            "depth": 75.0,
            "regularity": 100 * 60 / 105,
        }
        for name, value in parts.items():
            assert out[f"score_{name}"] == pytest.approx(value)
        expected = sum(scores.DEFAULT_WEIGHTS[n] * v for n, v in parts.items())
        assert out["score"] == pytest.approx(expected)
        assert out["bedtime_deviation_min"] == pytest.approx(60.0)

    def test_it_leaves_regularity_out_without_history_and_renormalizes(self):
        out = scores.sleep_scores(pd.DataFrame([_night(se_pct=75.0)])).iloc[0]
        assert math.isnan(out["score_regularity"])
        assert out["score_components_used"] == "duration,efficiency,continuity,depth"
        weights = out[[f"score_weight_{c}" for c in scores.COMPONENTS]].to_numpy(dtype=float)
        np.testing.assert_allclose(weights, np.array([0.35, 0.20, 0.15, 0.15, 0.0]) / 0.85)
        assert out["score"] == pytest.approx((0.35 * 100 + 0.20 * 50 + 0.30 * 100) / 0.85)

    def test_it_needs_three_nights_of_history_within_14_days(self):
        few = _history(nights=2) + [_night()]
        assert math.isnan(scores.sleep_scores(pd.DataFrame(few)).iloc[-1]["score_regularity"])
        old = _history(nights=5, last="2024-05-01") + [_night()]  # older than 14 nights
        assert math.isnan(scores.sleep_scores(pd.DataFrame(old)).iloc[-1]["score_regularity"])
        enough = _history(nights=3) + [_night()]
        assert scores.sleep_scores(pd.DataFrame(enough)).iloc[-1]["score_regularity"] == 100.0

    def test_it_compares_bedtimes_circularly_across_midnight(self):
        hist = [
            _night(night_date=d, bedtime_local=b, midsleep_local=m)
            for d, b, m in zip(
                pd.date_range(end="2024-05-19", periods=4),
                [1430.0, 10.0, 0.0, 1435.0],
                [230.0, 250.0, 240.0, 235.0],
                strict=True,
            )
        ]
        tonight = _night(bedtime_local=15.0, midsleep_local=250.0)
        out = scores.sleep_scores(pd.DataFrame(hist + [tonight])).iloc[-1]
        # Median bedtime 23:57.5 -> 00:15 is 17.5 min later, not 1422.5 min.
        assert out["bedtime_deviation_min"] == pytest.approx(17.5)
        assert out["midsleep_deviation_min"] == pytest.approx(12.5)

    def test_it_uses_sri_when_given(self):
        frame = pd.DataFrame(_history() + [_night(bedtime_local=3 * 60.0)]).assign(sri=70.0)
        out = scores.sleep_scores(frame).iloc[-1]
        assert out["score_regularity"] == pytest.approx(50.0)
        assert out["regularity_basis"] == "sri"
        timing = scores.sleep_scores(frame, regularity_source="timing").iloc[-1]
        assert timing["regularity_basis"] == "timing"

    def test_it_scores_a_night_without_sleep_zero(self):
        night = _night(tst_min=0.0, se_pct=0.0, waso_min=np.nan, n3_min=0.0, rem_min=0.0)
        out = scores.sleep_scores(pd.DataFrame(_history() + [night])).iloc[-1]
        assert out["score"] == 0.0
        assert out["score_duration"] == 0.0 and out["score_efficiency"] == 0.0
        assert out["score_components_used"] == ""

    def test_it_does_not_score_naps_unless_asked(self):
        frame = pd.DataFrame(_history() + [_night(tst_min=40.0, is_nap=True)])
        frame["is_nap"] = frame["is_nap"].fillna(False).astype(bool)
        assert math.isnan(scores.sleep_scores(frame).iloc[-1]["score"])
        assert not math.isnan(scores.sleep_scores(frame, score_naps=True).iloc[-1]["score"])

    def test_it_leaves_naps_out_of_the_timing_history(self):
        hist = _history(nights=4)
        naps = [
            _night(
                night_date=h["night_date"],
                bedtime_local=15 * 60.0,
                midsleep_local=15.5 * 60,
                tst_min=30.0,
                is_nap=True,
            )
            for h in hist
        ]
        frame = pd.DataFrame(hist + naps + [_night()])
        frame["is_nap"] = frame["is_nap"].fillna(False).astype(bool)
        assert scores.sleep_scores(frame).iloc[-1]["score_regularity"] == 100.0

    def test_it_drops_depth_for_devices_without_stages(self):
        frame = pd.DataFrame([_night(n3_min=0.0, rem_min=0.0, stages_resolved=False)])
        out = scores.sleep_scores(frame).iloc[0]
        assert math.isnan(out["score_depth"])
        assert "depth" not in out["score_components_used"]

    def test_it_uses_deep_minutes_when_n3_is_absent(self):
        frame = pd.DataFrame([_night()]).drop(columns="n3_min").assign(deep_min=45.0, rem_min=90.0)
        assert scores.sleep_scores(frame).iloc[0]["score_depth"] == pytest.approx(75.0)

    def test_it_uses_the_age_band(self):
        frame = pd.DataFrame([_night(tst_min=450.0)])
        assert scores.sleep_scores(frame).iloc[0]["score_duration"] == 100.0
        teen = scores.sleep_scores(frame, age_years=16).iloc[0]
        assert teen["score_duration"] == pytest.approx(100 * 2 ** -(0.25**2))
        assert teen["recommended_min_h"] == 8.0

    def test_it_applies_organization_weights(self):
        frame = pd.DataFrame([_night(se_pct=75.0)])
        out = scores.sleep_scores(frame, weights={"efficiency": 1.0}).iloc[0]
        assert out["score"] == pytest.approx(50.0)
        assert out["score_components_used"] == "efficiency"


# --- properties --------------------------------------------------------------------------------

finite_minutes = st.floats(0, 16 * 60, allow_nan=False)


@settings(max_examples=150, deadline=None)
@given(a=finite_minutes, b=finite_minutes, age=st.sampled_from([np.nan, 10, 16, 30, 70]))
def test_it_never_lowers_duration_when_sleep_moves_toward_the_band(a, b, age):
    lo, hi = scores.recommended_band(age)
    lo_m, hi_m = lo[0] * 60, hi[0] * 60
    d = scores.duration_component(np.array([a, b]), lo[0], hi[0])

    # On the same side of the band, closer to it (a) is never worse than farther (b).
    below_closer = b <= a <= lo_m
    above_closer = hi_m <= a <= b
    if below_closer or above_closer:
        assert d[0] >= d[1]
    if lo_m <= a <= hi_m:
        assert d[0] == 100.0
    if a > hi_m:
        assert d[0] >= scores.DURATION_LONG_FLOOR


@settings(max_examples=100, deadline=None)
@given(x=st.floats(7 * 60, 9 * 60), y=st.floats(7 * 60, 9 * 60))
def test_it_never_lowers_duration_for_more_sleep_inside_the_band(x, y):
    lo, hi = sorted([x, y])
    got = scores.duration_component(np.array([lo, hi]))
    assert got[1] >= got[0]


night_strategy = st.fixed_dictionaries(
    {
        "tst_min": st.floats(0, 900),
        "se_pct": st.one_of(st.floats(0, 100), st.just(np.nan)),
        "waso_min": st.one_of(st.floats(0, 300), st.just(np.nan)),
        "awakenings_5min": st.one_of(st.integers(0, 20), st.just(np.nan)),
        "n3_min": st.one_of(st.floats(0, 300), st.just(np.nan)),
        "rem_min": st.one_of(st.floats(0, 300), st.just(np.nan)),
        "sri": st.one_of(st.floats(-100, 100), st.just(np.nan)),
    }
)
weights_strategy = st.fixed_dictionaries(
    {c: st.floats(0, 10, allow_nan=False) for c in scores.COMPONENTS}
).filter(lambda w: sum(w.values()) > 1e-6)


@settings(max_examples=150, deadline=None)
@given(nights=st.lists(night_strategy, min_size=1, max_size=8), weights=weights_strategy)
def test_it_keeps_components_in_range_and_score_between_them(nights, weights):
    out = scores.sleep_scores(pd.DataFrame(nights), weights=weights)
    comps = out[COMPONENT_COLS].to_numpy(dtype=float)
    assert np.all(np.isnan(comps) | ((comps >= 0) & (comps <= 100)))
    score = out["score"].to_numpy(dtype=float)
    tst = pd.DataFrame(nights)["tst_min"].to_numpy()
    assert np.all(score[tst == 0] == 0)
    eff = out[[f"score_weight_{c}" for c in scores.COMPONENTS]].to_numpy(dtype=float)
    for i in np.flatnonzero(tst > 0):  # check per row against its own used components
        used = eff[i] > 0
        if not used.any():
            assert math.isnan(score[i])
            continue
        assert eff[i].sum() == pytest.approx(1.0)
        assert comps[i][used].min() - 1e-9 <= score[i] <= comps[i][used].max() + 1e-9


@settings(max_examples=100, deadline=None)
@given(
    night=night_strategy,
    weights=weights_strategy,
    which=st.sampled_from(scores.COMPONENTS),
    bump=st.floats(0.1, 5),
)
def test_it_moves_the_score_toward_a_component_whose_weight_grows(night, weights, which, bump):
    assume(night["tst_min"] > 0)
    frame = pd.DataFrame([night])
    before = scores.sleep_scores(frame, weights=weights).iloc[0]
    heavier = dict(weights, **{which: weights[which] + bump})
    after = scores.sleep_scores(frame, weights=heavier).iloc[0]
    comp = before[f"score_{which}"]
    assume(not math.isnan(comp) and not math.isnan(before["score"]))
    if comp > before["score"] + 1e-9:
        assert after["score"] >= before["score"] - 1e-9
    elif comp < before["score"] - 1e-9:
        assert after["score"] <= before["score"] + 1e-9
    else:
        assert after["score"] == pytest.approx(before["score"])


def test_it_gathers_each_nights_history_as_a_loop_over_prior_days_does():
    rng = np.random.default_rng(10)
    for trial in range(40):
        n = int(rng.integers(1, 60))
        nights = pd.DataFrame({
            "participant_id": rng.integers(0, 3, n),
            "night_date": pd.Timestamp("2024-05-01") + pd.to_timedelta(rng.integers(0, 30, n), unit="D"),
            "is_nap": rng.random(n) < 0.15,
            "tst_min": rng.choice([300.0, 420.0, 480.0, np.nan], n),  # ties and unknowns on purpose
            "bedtime_local": rng.normal(23 * 60, 90, n) % 1440,
            "midsleep_local": np.where(rng.random(n) < 0.1, np.nan, rng.normal(180, 60, n) % 1440),
        }, index=rng.permutation(4 * n)[:n])
        if trial % 2:
            nights["is_main_sleep"] = rng.random(n) < 0.8
        main = nights["is_main_sleep"] if "is_main_sleep" in nights else ~nights["is_nap"]
        person, day, tst = (nights[c].to_numpy() for c in ("participant_id", "night_date", "tst_min"))

        def oracle(column):
            """Per row and prior day: that day's main sleep, the longest (first on ties, unknown last)."""
            values = nights[column].to_numpy()
            rows = []
            for i in range(n):
                row = []
                for k in range(1, scores.REGULARITY_HISTORY_NIGHTS + 1):
                    same = [j for j in range(n) if main.iloc[j] and person[j] == person[i]
                            and day[j] == day[i] - np.timedelta64(k, "D")]
                    same.sort(key=lambda j: (np.isnan(tst[j]), -np.nan_to_num(tst[j])))
                    row.append(values[same[0]] if same else np.nan)
                rows.append(row)
            return np.array(rows).reshape(n, scores.REGULARITY_HISTORY_NIGHTS)

        got = scores.timing_history_medians(nights)
        counts = []
        for column in ("bedtime_local", "midsleep_local"):
            hist = oracle(column)
            used = (~np.isnan(hist)).sum(axis=1)
            expected = np.where(used >= 3, circular_median_rows(hist), np.nan)
            np.testing.assert_array_equal(got[f"{column}_median_min"].to_numpy(), expected)
            counts.append(used)
        np.testing.assert_array_equal(got["history_nights"].to_numpy(), np.maximum(*counts))
        assert list(got.index) == list(nights.index)
