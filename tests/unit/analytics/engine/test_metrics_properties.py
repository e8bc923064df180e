"""Property-based checks of analytics.engine.metrics on random hypnograms (hypothesis).

Besides the invariants of shared/science.md §1, every batch is compared with a deliberately
naive one-night-at-a-time oracle written from the science.md table, so the vectorized code
cannot leak across nights or blocks without a test noticing.
"""

import math

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics.engine import metrics
from analytics.engine.metrics import METRIC_COLUMNS, night_metrics, night_metrics_from_list

EXAMPLES = settings(max_examples=150, deadline=None)

# A night is a list of (stage, run length) pairs: runs make realistic structure and reach the
# 10-epoch thresholds often enough; -1 is no data.
runs = st.lists(st.tuples(st.integers(-1, 5), st.integers(1, 14)), max_size=14)
nights_st = st.lists(runs.map(lambda rs: [v for v, n in rs for _ in range(n)]), max_size=8)
epoch_st = st.sampled_from([15.0, 20.0, 30.0, 60.0])


def oracle(h: list[int], e: float) -> dict:
    """science.md §1 for one night, written plainly with Python lists."""
    n = len(h)
    sleep = [i for i, v in enumerate(h) if v > 0]
    mins = lambda k: k * e / 60.0
    count = lambda code: sum(1 for v in h if v == code)
    st_ = {c: count(c) for c in range(6)}
    tst = sum(st_[c] for c in range(1, 6))
    out = {
        "tib_min": mins(n),
        "tst_min": mins(tst),
        "wake_min": mins(st_[0]),
        "n1_min": mins(st_[1]),
        "n2_min": mins(st_[2]),
        "n3_min": mins(st_[3]),
        "rem_min": mins(st_[4]),
        "lt_min": mins(st_[5]),
        "light_min": mins(st_[1] + st_[2] + st_[5]),
        "deep_min": mins(st_[3]),
        "nrem_min": mins(st_[1] + st_[2] + st_[3] + st_[5]),
        "nodata_min": mins(sum(1 for v in h if v < 0)),
        "se_pct": 100.0 * tst / n if n else math.nan,
    }
    for name, code in (("n1", 1), ("n2", 2), ("n3", 3), ("rem", 4)):
        out[f"lat_{name}_min"] = mins(h.index(code)) if code in h else math.nan
        out[f"{name}_pct"] = 100.0 * st_[code] / tst if tst else math.nan
    for name, k in (("light", st_[1] + st_[2] + st_[5]), ("deep", st_[3]), ("nrem", tst - st_[4])):
        out[f"{name}_pct"] = 100.0 * k / tst if tst else math.nan
    transitions = sum(1 for i in range(n - 1) if h[i] > 0 and h[i + 1] == 0)
    out["fragmentation_index"] = transitions / (mins(tst) / 60.0) if tst else math.nan
    if not sleep:
        out.update(spt_min=0.0, awakenings=0, awakenings_5min=0)
        for k in (
            "waso_min",
            "sme_pct",
            "sol_min",
            "sol_persistent_min",
            "rem_latency_min",
            "sleep_onset_offset_min",
            "sleep_offset_offset_min",
            "midsleep_offset_min",
        ):
            out[k] = math.nan
        return out
    first, last = sleep[0], sleep[-1]
    period = h[first : last + 1]
    out["spt_min"] = mins(last - first + 1)
    out["waso_min"] = mins(sum(1 for v in period if v == 0))
    out["sme_pct"] = 100.0 * tst / (last - first + 1)
    out["sol_min"] = mins(first)
    out["rem_latency_min"] = out["lat_rem_min"] - out["sol_min"]
    out["sleep_onset_offset_min"] = mins(first)
    out["sleep_offset_offset_min"] = mins(last + 1)
    out["midsleep_offset_min"] = (mins(first) + mins(last + 1)) / 2
    wake_runs, run = [], 0
    for v in period + [None]:
        if v == 0:
            run += 1
        elif run:
            wake_runs.append(run)
            run = 0
    out["awakenings"] = len(wake_runs)
    out["awakenings_5min"] = sum(1 for r in wake_runs if r * e >= 300 - 1e-9)
    persistent, run = math.nan, 0
    for i, v in enumerate(h):
        run = run + 1 if v > 0 else 0
        if run == metrics.PERSISTENT_SLEEP_EPOCHS:
            persistent = mins(i - run + 1)
            break
    out["sol_persistent_min"] = persistent
    return out


def assert_same(frame: pd.DataFrame, expected: list[dict]):
    assert len(frame) == len(expected)
    for i, want in enumerate(expected):
        row = frame.iloc[i]
        for column in METRIC_COLUMNS:
            got, exp = row[column], want[column]
            if isinstance(exp, float) and math.isnan(exp):
                assert math.isnan(got), (i, column, got)
            else:
                assert math.isclose(got, exp, rel_tol=1e-12, abs_tol=1e-12), (i, column, got, exp)


@EXAMPLES
@given(nights=nights_st, e=epoch_st)
def test_it_agrees_with_a_naive_per_night_oracle(nights, e):
    assert_same(night_metrics_from_list(nights, e), [oracle(h, e) for h in nights])


@EXAMPLES
@given(nights=nights_st, data=st.data())
def test_it_matches_per_night_results_when_batched(nights, data):
    seconds = data.draw(st.lists(epoch_st, min_size=len(nights), max_size=len(nights)))
    batch = night_metrics_from_list(nights, np.array(seconds))
    singles = [night_metrics_from_list([h], s) for h, s in zip(nights, seconds)]
    expected = pd.concat(singles, ignore_index=True) if singles else batch.iloc[:0]
    pd.testing.assert_frame_equal(batch, expected, check_index_type=False)


@EXAMPLES
@given(nights=nights_st, e=epoch_st)
def test_it_keeps_durations_consistent(nights, e):
    m = night_metrics_from_list(nights, e)
    stage_sum = m[["n1_min", "n2_min", "n3_min", "rem_min", "lt_min"]].sum(axis=1)
    np.testing.assert_allclose(stage_sum, m["tst_min"], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        m["wake_min"] + m["tst_min"] + m["nodata_min"], m["tib_min"], atol=1e-9
    )
    np.testing.assert_allclose(
        m["light_min"] + m["deep_min"] + m["rem_min"], m["tst_min"], atol=1e-9
    )
    assert (m["tst_min"] <= m["spt_min"] + 1e-9).all()
    assert (m["spt_min"] <= m["tib_min"] + 1e-9).all()
    has_sleep = m["tst_min"] > 0
    assert (m.loc[has_sleep, "waso_min"] <= m.loc[has_sleep, "wake_min"] + 1e-9).all()
    assert (m["awakenings_5min"] <= m["awakenings"]).all()
    persistent = m["sol_persistent_min"].notna()
    assert (m.loc[persistent, "sol_min"] <= m.loc[persistent, "sol_persistent_min"]).all()
    assert m.loc[~has_sleep, "sol_min"].isna().all()


@EXAMPLES
@given(nights=nights_st, e=epoch_st)
def test_it_keeps_percentages_between_0_and_100(nights, e):
    m = night_metrics_from_list(nights, e)
    pct = m[[c for c in METRIC_COLUMNS if c.endswith("_pct")]]
    values = pct.to_numpy()
    defined = ~np.isnan(values)
    assert ((values[defined] >= 0) & (values[defined] <= 100 + 1e-9)).all()
    # Stage percentages are undefined exactly when there is no sleep.
    no_sleep = (m["tst_min"] == 0).to_numpy()
    stage_pct = m[["n1_pct", "n2_pct", "n3_pct", "rem_pct", "nrem_pct"]].to_numpy()
    assert np.isnan(stage_pct[no_sleep]).all() and not np.isnan(stage_pct[~no_sleep]).any()


@settings(max_examples=60, deadline=None)
@given(nights=nights_st, block=st.integers(1, 40))
def test_it_does_not_depend_on_block_size(nights, block):
    lengths = np.array([len(h) for h in nights], dtype=np.int64)
    flat = np.array([v for h in nights for v in h], dtype=np.int8)
    reference = night_metrics(flat, lengths)
    saved = metrics.BLOCK_EPOCHS
    metrics.BLOCK_EPOCHS = block
    try:
        blocked = night_metrics(flat, lengths, threads=2)
    finally:
        metrics.BLOCK_EPOCHS = saved
    pd.testing.assert_frame_equal(reference, blocked)
