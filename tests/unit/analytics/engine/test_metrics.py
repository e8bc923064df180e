"""Hand-checked per-night metrics (shared/science.md §1) on hypnograms small enough to count.

Codes: 0 Wake, 1 N1, 2 N2, 3 N3, 4 REM, 5 Light, -1 no data. At 30-s epochs one epoch is
0.5 min, so every expected value below is "epochs / 2".
"""

import math

import numpy as np
import pandas as pd
import pytest

from analytics.engine import metrics
from analytics.engine.metrics import (
    METRIC_COLUMNS,
    night_metrics,
    night_metrics_from_list,
    single_night_metrics,
)

NAN = math.nan
W, A, B, C, R, L, X = 0, 1, 2, 3, 4, 5, -1  # Wake, N1, N2, N3, REM, Light, no data


def assert_metrics(actual: dict, **expected):
    """Compare the named metrics; NaN must be NaN (undefined), never 0."""
    for name, want in expected.items():
        got = actual[name]
        if isinstance(want, float) and math.isnan(want):
            assert math.isnan(got), f"{name}: expected NaN, got {got}"
        else:
            assert got == pytest.approx(want, rel=1e-12, abs=1e-12), f"{name}: {got} != {want}"


UNDEFINED_WITHOUT_SLEEP = {
    "waso_min": NAN,
    "sme_pct": NAN,
    "sol_min": NAN,
    "sol_persistent_min": NAN,
    "lat_n1_min": NAN,
    "lat_n2_min": NAN,
    "lat_n3_min": NAN,
    "lat_rem_min": NAN,
    "rem_latency_min": NAN,
    "n1_pct": NAN,
    "n2_pct": NAN,
    "n3_pct": NAN,
    "rem_pct": NAN,
    "light_pct": NAN,
    "deep_pct": NAN,
    "nrem_pct": NAN,
    "fragmentation_index": NAN,
    "sleep_onset_offset_min": NAN,
    "sleep_offset_offset_min": NAN,
    "midsleep_offset_min": NAN,
}


class ScienceExamplesTests:
    def test_it_matches_the_30_second_worked_example(self):
        hypno = [0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 2, 3, 3, 4, 4, 4, 4, 0, 0]
        assert_metrics(
            single_night_metrics(hypno, 30),
            tib_min=10.0,
            spt_min=8.0,
            waso_min=0.0,
            tst_min=8.0,
            n1_min=1.5,
            n2_min=2.0,
            n3_min=2.5,
            rem_min=2.0,
            sol_min=1.0,
            lat_n1_min=1.0,
            lat_n2_min=2.5,
            lat_n3_min=4.0,
            lat_rem_min=7.0,
            rem_latency_min=6.0,
            n1_pct=18.75,
            n2_pct=25.0,
            n3_pct=31.25,
            rem_pct=25.0,
            se_pct=80.0,
            sme_pct=100.0,
            awakenings=0,
        )

    def test_it_matches_the_15_second_worked_example(self):
        hypno = [W] * 10 + [B] * 40 + [W] * 5 + [B] * 40 + [W] * 9
        got = single_night_metrics(hypno, 15)
        assert_metrics(
            got,
            tib_min=26.0,
            spt_min=21.25,
            waso_min=1.25,
            tst_min=20.0,
            sol_min=2.5,
            awakenings=1,
            fragmentation_index=6.0,
        )
        assert round(got["se_pct"], 4) == 76.9231
        assert round(got["sme_pct"], 4) == 94.1176

    def test_it_gives_the_same_15_second_example_with_wearable_light_sleep(self):
        hypno = [W] * 10 + [L] * 40 + [W] * 5 + [L] * 40 + [W] * 9
        assert_metrics(
            single_night_metrics(hypno, 15),
            tst_min=20.0,
            lt_min=20.0,
            light_min=20.0,
            nrem_min=20.0,
            n2_min=0.0,
            light_pct=100.0,
            lat_n2_min=NAN,
            fragmentation_index=6.0,
        )


class NoSleepTests:
    def test_it_reports_all_wake_as_no_sleep_with_undefined_latencies(self):
        assert_metrics(
            single_night_metrics([W] * 6),
            tib_min=3.0,
            spt_min=0.0,
            tst_min=0.0,
            se_pct=0.0,
            wake_min=3.0,
            nodata_min=0.0,
            awakenings=0,
            awakenings_5min=0,
            **UNDEFINED_WITHOUT_SLEEP,
        )

    def test_it_reports_all_no_data_as_no_sleep_and_not_as_wake(self):
        assert_metrics(
            single_night_metrics([X] * 4),
            tib_min=2.0,
            spt_min=0.0,
            tst_min=0.0,
            se_pct=0.0,
            wake_min=0.0,
            nodata_min=2.0,
            awakenings=0,
            **UNDEFINED_WITHOUT_SLEEP,
        )

    def test_it_handles_wake_and_no_data_without_sleep(self):
        assert_metrics(
            single_night_metrics([W, X, W, W, X]),
            tib_min=2.5,
            wake_min=1.5,
            nodata_min=1.0,
            spt_min=0.0,
            se_pct=0.0,
            **UNDEFINED_WITHOUT_SLEEP,
        )

    def test_it_returns_a_row_for_an_empty_night(self):
        got = night_metrics(np.array([], np.int8), [0])
        row = got.iloc[0]
        assert row["tib_min"] == 0.0 and row["tst_min"] == 0.0 and row["spt_min"] == 0.0
        assert math.isnan(row["se_pct"])  # 0 / 0: undefined
        assert row["awakenings"] == 0
        assert all(math.isnan(row[c]) for c in UNDEFINED_WITHOUT_SLEEP)


class SleepPeriodTests:
    def test_it_starts_the_sleep_period_at_the_first_epoch(self):
        got = single_night_metrics([B] * 12 + [W, W])
        assert_metrics(
            got,
            sol_min=0.0,
            sol_persistent_min=0.0,
            spt_min=6.0,
            tst_min=6.0,
            waso_min=0.0,
            sleep_onset_offset_min=0.0,
            sleep_offset_offset_min=6.0,
            midsleep_offset_min=3.0,
        )

    def test_it_counts_artefacts_inside_the_sleep_period_in_spt_but_not_tst_or_waso(self):
        got = single_night_metrics([W, B, B, X, X, B, W, B, W])
        # first sleep = 1, last sleep = 7: SPT 7 epochs, of which 4 sleep, 2 no data, 1 wake
        assert_metrics(
            got,
            tib_min=4.5,
            spt_min=3.5,
            tst_min=2.0,
            waso_min=0.5,
            nodata_min=1.0,
            wake_min=1.5,
            se_pct=100 * 4 / 9,
            sme_pct=100 * 4 / 7,
            awakenings=1,
        )

    def test_it_leaves_trailing_wake_out_of_waso_and_awakenings(self):
        got = single_night_metrics([B, B, W, B, W, W, W])
        assert_metrics(
            got,
            spt_min=2.0,
            waso_min=0.5,
            wake_min=2.0,
            awakenings=1,
            sleep_offset_offset_min=2.0,
        )

    def test_it_counts_leading_no_data_in_tib_and_sleep_onset_latency(self):
        got = single_night_metrics([X, X, W, B, B, C])
        assert_metrics(
            got,
            tib_min=3.0,
            sol_min=1.5,
            spt_min=1.5,
            tst_min=1.5,
            nodata_min=1.0,
            wake_min=0.5,
            se_pct=50.0,
            sme_pct=100.0,
            lat_n2_min=1.5,
            lat_n3_min=2.5,
            sleep_onset_offset_min=1.5,
            sleep_offset_offset_min=3.0,
            midsleep_offset_min=2.25,
        )

    @pytest.mark.parametrize(
        "hypno, expected",
        [
            (
                [B],
                {
                    "tib_min": 0.5,
                    "spt_min": 0.5,
                    "tst_min": 0.5,
                    "se_pct": 100.0,
                    "sme_pct": 100.0,
                    "sol_min": 0.0,
                    "waso_min": 0.0,
                    "n2_pct": 100.0,
                    "fragmentation_index": 0.0,
                    "sol_persistent_min": NAN,
                    "midsleep_offset_min": 0.25,
                },
            ),
            (
                [W],
                dict(tib_min=0.5, wake_min=0.5, tst_min=0.0, se_pct=0.0, **UNDEFINED_WITHOUT_SLEEP),
            ),
            (
                [X],
                dict(
                    tib_min=0.5, nodata_min=0.5, tst_min=0.0, se_pct=0.0, **UNDEFINED_WITHOUT_SLEEP
                ),
            ),
            (
                [R],
                {
                    "tst_min": 0.5,
                    "rem_min": 0.5,
                    "lat_rem_min": 0.0,
                    "rem_latency_min": 0.0,
                    "rem_pct": 100.0,
                    "nrem_pct": 0.0,
                },
            ),
        ],
    )
    def test_it_handles_one_epoch_nights(self, hypno, expected):
        assert_metrics(single_night_metrics(hypno), **expected)


class StageTests:
    def test_it_counts_stage_minutes_over_the_whole_night(self):
        hypno = [W, A, B, B, C, C, C, R, R, W, L, L, X, W]
        assert_metrics(
            single_night_metrics(hypno),
            wake_min=1.5,
            n1_min=0.5,
            n2_min=1.0,
            n3_min=1.5,
            rem_min=1.0,
            lt_min=1.0,
            light_min=2.5,
            deep_min=1.5,
            nrem_min=4.0,
            nodata_min=0.5,
            tst_min=5.0,
            n1_pct=10.0,
            n2_pct=20.0,
            n3_pct=30.0,
            rem_pct=20.0,
            light_pct=50.0,
            deep_pct=30.0,
            nrem_pct=80.0,
        )

    def test_it_measures_stage_latencies_from_the_recording_start(self):
        hypno = [W, W, W, W, B, B, A, C, W, R]
        assert_metrics(
            single_night_metrics(hypno),
            sol_min=2.0,
            lat_n2_min=2.0,
            lat_n1_min=3.0,
            lat_n3_min=3.5,
            lat_rem_min=4.5,
            rem_latency_min=2.5,  # AASM: from sleep onset
        )

    def test_it_leaves_absent_stage_latencies_undefined(self):
        assert_metrics(
            single_night_metrics([W, L, L, C, L]),
            lat_n1_min=NAN,
            lat_n2_min=NAN,
            lat_rem_min=NAN,
            rem_latency_min=NAN,
            lat_n3_min=1.5,
            sol_min=0.5,
        )


class PersistentSleepTests:
    def test_it_needs_ten_consecutive_sleep_epochs_of_any_stages(self):
        hypno = [W] * 3 + [B] * 9 + [W] + [B, B, C, C, R, R, A, B, B, B] + [W]
        assert_metrics(single_night_metrics(hypno), sol_min=1.5, sol_persistent_min=6.5)

    def test_it_breaks_a_sleep_run_at_no_data(self):
        hypno = [B] * 5 + [X] + [B] * 5 + [W]
        assert_metrics(single_night_metrics(hypno), sol_persistent_min=NAN, sol_min=0.0)

    def test_it_counts_epochs_not_minutes_for_persistent_sleep(self):
        # 10 epochs of 15 s = 2.5 min is persistent under science.md's "10 epochs" rule.
        hypno = [W] * 4 + [B] * 10 + [W]
        assert_metrics(single_night_metrics(hypno, 15), sol_persistent_min=1.0)


class AwakeningTests:
    def test_it_counts_each_wake_run_inside_the_sleep_period(self):
        hypno = [W, W, B, W, B, B, W, W, C, R, W, W]
        got = single_night_metrics(hypno)
        assert_metrics(got, awakenings=2, waso_min=1.5, awakenings_5min=0)

    def test_it_splits_a_wake_run_interrupted_by_no_data(self):
        got = single_night_metrics([B, W, X, W, B])
        assert_metrics(got, awakenings=2, waso_min=1.0, spt_min=2.5)

    @pytest.mark.parametrize(
        "epoch_seconds, wake_epochs, long_ones",
        [(30, 10, 1), (30, 9, 0), (60, 5, 1), (60, 4, 0), (20, 15, 1), (20, 14, 0), (15, 20, 1)],
    )
    def test_it_counts_awakenings_of_at_least_five_minutes(
        self, epoch_seconds, wake_epochs, long_ones
    ):
        hypno = [B, B] + [W] * wake_epochs + [B, W, B] + [W] * 30
        got = single_night_metrics(hypno, epoch_seconds)
        assert got["awakenings"] == 2
        assert got["awakenings_5min"] == long_ones

    def test_it_does_not_count_a_long_final_wake_as_an_awakening(self):
        got = single_night_metrics([B] * 4 + [W] * 20)
        assert_metrics(got, awakenings=0, awakenings_5min=0)


class FragmentationTests:
    def test_it_counts_sleep_to_wake_transitions_including_the_final_one(self):
        # transitions: B->W at 2, R->W at 6; TST 5 epochs = 2.5 min = 1/24 h
        got = single_night_metrics([W, B, B, W, B, B, R, W])
        assert_metrics(got, fragmentation_index=2 / (2.5 / 60), awakenings=1)

    def test_it_ignores_sleep_to_no_data_to_wake(self):
        got = single_night_metrics([B, B, X, W, B, B])
        assert_metrics(got, fragmentation_index=0.0, awakenings=1)


class BatchTests:
    def test_it_keeps_nights_apart_at_their_boundaries(self):
        # Night 0 ends asleep (6 epochs), night 1 starts asleep (6 epochs): glued together they
        # would make one 12-epoch persistent run; night 1 then ends awake and night 2 starts
        # awake then sleeps, which must not turn into an awakening or a transition of night 1.
        nights = [
            [W, W] + [B] * 6,
            [B] * 6 + [W, W],
            [W, W, R, R],
        ]
        got = night_metrics_from_list(nights, [30, 60, 15])
        assert got["sol_persistent_min"].isna().all()
        assert list(got["sol_min"]) == [1.0, 0.0, 0.5]
        assert list(got["spt_min"]) == [3.0, 6.0, 0.5]
        assert list(got["sleep_offset_offset_min"]) == [4.0, 6.0, 1.0]
        assert list(got["awakenings"]) == [0, 0, 0]
        assert list(got["waso_min"]) == [0.0, 0.0, 0.0]
        assert got["fragmentation_index"].tolist() == [0.0, 1 / (6 / 60), 0.0]
        assert list(got["tib_min"]) == [4.0, 8.0, 1.0]
        assert list(got["lat_rem_min"].fillna(-1)) == [-1, -1, 0.5]

    def test_it_takes_a_flat_array_with_lengths_and_per_night_epochs(self):
        flat = np.array([W, B, B, W, X, C, C, R, W], dtype=np.int8)
        got = night_metrics(flat, np.array([4, 0, 5]), np.array([30.0, 30.0, 20.0]))
        assert got.shape == (3, len(METRIC_COLUMNS))
        assert list(got["tib_min"]) == [2.0, 0.0, 5 / 3]
        assert list(got["tst_min"]) == [1.0, 0.0, 1.0]
        assert list(got["nodata_min"]) == [0.0, 0.0, 1 / 3]
        assert list(got["lat_n3_min"].fillna(-1)) == [-1, -1, 1 / 3]

    def test_it_returns_the_documented_columns_and_dtypes(self):
        got = night_metrics_from_list([[W, B], [C]], index=pd.Index(["s1", "s2"], name="session"))
        assert tuple(got.columns) == METRIC_COLUMNS
        assert list(got.index) == ["s1", "s2"]
        for column in METRIC_COLUMNS:
            expected = np.int64 if column in metrics.INT_COLUMNS else np.float64
            assert got[column].dtype == expected, column

    def test_it_returns_an_empty_frame_for_no_nights(self):
        got = night_metrics_from_list([])
        assert got.empty and tuple(got.columns) == METRIC_COLUMNS

    def test_it_gives_the_same_answer_in_one_block_as_in_many(self, monkeypatch):
        rng = np.random.default_rng(7)
        nights = [rng.choice([W, A, B, C, R, L, X], size=rng.integers(0, 80)) for _ in range(300)]
        seconds = rng.choice([15.0, 20.0, 30.0, 60.0], size=len(nights))
        one_block = night_metrics_from_list(nights, seconds)
        monkeypatch.setattr(metrics, "BLOCK_EPOCHS", 50)
        many_blocks = night_metrics_from_list(nights, seconds)
        threaded = night_metrics_from_list(nights, seconds, threads=2)
        pd.testing.assert_frame_equal(one_block, many_blocks)
        pd.testing.assert_frame_equal(one_block, threaded)

    def test_it_accepts_other_integer_dtypes_and_yasa_unscored(self):
        got = single_night_metrics(np.array([-2, 0, 2, 2, -2, 0], dtype=np.int64))
        assert_metrics(got, nodata_min=1.0, wake_min=1.0, tst_min=1.0, spt_min=1.0, sol_min=1.0)


class InputValidationTests:
    def test_it_rejects_codes_outside_the_encoding(self):
        with pytest.raises(ValueError, match="stage code 6 at epoch 2"):
            single_night_metrics([0, 2, 6])
        with pytest.raises(ValueError, match="stage code -3"):
            single_night_metrics([-3])

    def test_it_rejects_lengths_that_do_not_add_up(self):
        with pytest.raises(ValueError, match="add up to 3"):
            night_metrics(np.zeros(4, np.int8), [1, 2])
        with pytest.raises(ValueError, match="non-negative"):
            night_metrics(np.zeros(4, np.int8), [5, -1])

    def test_it_rejects_non_positive_or_mismatched_epoch_seconds(self):
        with pytest.raises(ValueError, match="> 0"):
            single_night_metrics([0, 2], 0)
        with pytest.raises(ValueError, match="one value per night"):
            night_metrics(np.zeros(4, np.int8), [2, 2], [30.0])

    def test_it_rejects_non_integer_or_multidimensional_stages(self):
        with pytest.raises(TypeError):
            single_night_metrics(np.array([0.0, 2.0]))
        with pytest.raises(ValueError, match="1-D"):
            single_night_metrics(np.zeros((2, 2), np.int8))
