"""Weekly summaries per participant and per organization, with plain-language insights.

Pure module (no Django). A week is an ISO week (Monday to Sunday) of wake-up dates
(``night_date``, science.md §2): the night of Sunday to Monday belongs to Monday's week.
Only main sleeps count (naps are left out). Clock times are minutes past local midnight,
averaged as vectors (circular), never linearly.

Insights (README source)
=======================

Each participant gets up to ``MAX_INSIGHTS`` (4) short sentences, chosen by fixed rules
in a fixed priority order (``INSIGHT_RULES``); if fewer than ``MIN_INSIGHTS`` (2) fire,
neutral facts (``FALLBACK_RULES``) fill up to 2. A week with no night gets one or two
facts only. The text is deterministic (same figures, same sentences). Insights describe
the week and compare it with reference ranges and with the person's own history; they
never diagnose or give medical advice. Every threshold is a named constant with its
reason, and pattern rules need at least ``MIN_NIGHTS_FOR_PATTERNS`` (3) nights.

Rules, in priority order (week means over main sleeps):

=====================  ==========================================================
``short_sleep``        mean TST < NSF band lower bound - 15 min (science.md §5)
``low_efficiency``     mean SE < 85 % (PSQI best band)
``irregular_timing``   bedtime circular SD > 60 min
``social_jet_lag``     |free - work night midsleep| >= 60 min (free = wake Sat/Sun)
``late_timing``        circular mean bedtime in [01:00, 12:00)
``long_wake``          mean WASO > 30 min (science.md §7)
``improvement_streak`` weekly mean score rose 3 weeks running (>= 3 nights a week)
``improved_vs_baseline`` / ``declined_vs_baseline``
                       mean score >= 5 points above / below the 4-week baseline
``long_sleep``         mean TST > band upper bound + 30 min
``duration_in_range``  mean TST inside the band
``consistent_timing``  bedtime circular SD <= 30 min over >= 4 nights
=====================  ==========================================================

Facts used to reach 2 sentences: ``no_nights``, ``few_nights`` (1-2 nights),
``nights_recorded``, ``average_score``, ``average_duration``, ``baseline_average``
(empty weeks only).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analytics.engine.regularity import (
    MINUTES_PER_DAY,
    circular_difference_minutes,
    circular_mean_minutes,
    circular_stats_by,
    main_sleep_rows,
    social_jet_lag,
)
from analytics.engine.scores import recommended_band

MIN_INSIGHTS = 2
MAX_INSIGHTS = 4
# Patterns from one or two nights are anecdotes: rules need 3 nights in the week.
MIN_NIGHTS_FOR_PATTERNS = 3
# The 4-week baseline needs at least 7 nights (a quarter of its 28) to be a baseline.
BASELINE_WEEKS = 4
BASELINE_MIN_NIGHTS = 7
# A weekly mean in the improvement streak needs this many nights.
STREAK_MIN_NIGHTS_PER_WEEK = 3

# --- Rule thresholds (each with its reason) ---------------------------------------------------
# Short sleep: below the NSF band (science.md §5) by more than 15 min, so a few minutes
# under 7 h is not flagged.
SHORT_SLEEP_TOLERANCE_MIN = 15.0
# Long sleep: above the band by more than 30 min (long sleep is mentioned, gently, later).
LONG_SLEEP_TOLERANCE_MIN = 30.0
# Efficiency: PSQI's best band is habitual efficiency >= 85 % (science.md §6, §7).
LOW_EFFICIENCY_PCT = 85.0
# WASO: <= 30 min is the normal display band (science.md §7).
LONG_WASO_MIN = 30.0
# Irregular: bedtime circular SD over an hour; about an hour of night-to-night variability
# separates regular from irregular sleepers in actigraphy studies (our round number).
IRREGULAR_BEDTIME_SD_MIN = 60.0
# Consistent: bedtime circular SD within half an hour, over at least 4 nights.
CONSISTENT_BEDTIME_SD_MIN = 30.0
CONSISTENT_MIN_NIGHTS = 4
# Late: mean bedtime from 01:00 up to noon (a typical adult bedtime is before midnight).
LATE_BEDTIME_FROM_MIN = 60.0
LATE_BEDTIME_UNTIL_MIN = 720.0
# Social jet lag of 1 h or more (Roenneberg 2012 reports most workers above 1 h as affected).
SOCIAL_JET_LAG_MIN = 60.0
# Within one week there are at most 2 free nights: one free and one work night suffice here.
WEEKLY_SJL_MIN_NIGHTS_PER_KIND = 1
# Score change worth mentioning: 5 points on the 0-100 scale.
SCORE_CHANGE_POINTS = 5.0
# Improvement streak: the weekly mean score rose 3 weeks in a row (4 weekly means).
IMPROVEMENT_STREAK_WEEKS = 3


@dataclass(frozen=True)
class InsightRule:
    """A named insight rule: stable ``code`` (for templates, tests) and why it exists."""

    code: str
    reason: str


SHORT_SLEEP = InsightRule("short_sleep", "mean sleep below the NSF band for the age (§5)")
LOW_EFFICIENCY = InsightRule("low_efficiency", "mean efficiency below 85 % (PSQI, §7)")
IRREGULAR_TIMING = InsightRule("irregular_timing", "bedtime circular SD over 60 min (§4)")
SOCIAL_JET_LAG_RULE = InsightRule("social_jet_lag", "free vs work midsleep 1 h apart (§4)")
LATE_TIMING = InsightRule("late_timing", "mean bedtime from 01:00 (circular mean)")
LONG_WAKE = InsightRule("long_wake", "mean WASO over 30 min (§7)")
IMPROVEMENT_STREAK = InsightRule("improvement_streak", "weekly mean score rose 3 weeks running")
IMPROVED_VS_BASELINE = InsightRule("improved_vs_baseline", "score 5+ points above 4-week mean")
DECLINED_VS_BASELINE = InsightRule("declined_vs_baseline", "score 5+ points below 4-week mean")
LONG_SLEEP = InsightRule("long_sleep", "mean sleep above the NSF band by 30+ min (§5)")
DURATION_IN_RANGE = InsightRule("duration_in_range", "mean sleep inside the NSF band (§5)")
CONSISTENT_TIMING = InsightRule("consistent_timing", "bedtime circular SD within 30 min")
INSIGHT_RULES = (
    SHORT_SLEEP,
    LOW_EFFICIENCY,
    IRREGULAR_TIMING,
    SOCIAL_JET_LAG_RULE,
    LATE_TIMING,
    LONG_WAKE,
    IMPROVEMENT_STREAK,
    IMPROVED_VS_BASELINE,
    DECLINED_VS_BASELINE,
    LONG_SLEEP,
    DURATION_IN_RANGE,
    CONSISTENT_TIMING,
)

NO_NIGHTS = InsightRule("no_nights", "fact: nothing recorded this week")
FEW_NIGHTS = InsightRule("few_nights", "fact: fewer nights than the pattern rules need")
NIGHTS_RECORDED = InsightRule("nights_recorded", "fact: number of nights")
AVERAGE_SCORE = InsightRule("average_score", "fact: mean score")
AVERAGE_DURATION = InsightRule("average_duration", "fact: mean sleep")
BASELINE_AVERAGE = InsightRule("baseline_average", "fact: previous 4 weeks' mean sleep")
FALLBACK_RULES = (
    NO_NIGHTS,
    FEW_NIGHTS,
    NIGHTS_RECORDED,
    AVERAGE_SCORE,
    AVERAGE_DURATION,
    BASELINE_AVERAGE,
)

_WINDOW_COLUMNS = (
    "nights",
    "score_mean",
    "tst_mean_min",
    "se_mean_pct",
    "waso_mean_min",
    "bedtime_mean_min",
    "waketime_mean_min",
    "midsleep_mean_min",
    "bedtime_sd_min",
    "midsleep_sd_min",
)


def iso_week_bounds(iso_year: int, iso_week: int) -> tuple[pd.Timestamp, pd.Timestamp]:
    """Monday and Sunday (wake-up dates) of an ISO week."""
    monday = pd.Timestamp(dt.date.fromisocalendar(int(iso_year), int(iso_week), 1))
    return monday, monday + pd.Timedelta(days=6)


def _prepare(nights: pd.DataFrame) -> pd.DataFrame:
    main = main_sleep_rows(nights).copy()
    main["night_date"] = pd.to_datetime(main["night_date"]).dt.normalize()
    for col in ("score", "tst_min", "se_pct", "waso_min"):
        if col not in main.columns:
            main[col] = np.nan
        else:  # e.g. Decimal values from the ORM
            main[col] = pd.to_numeric(main[col], errors="coerce").astype(float)
    for col in ("bedtime_local", "waketime_local", "midsleep_local"):
        if col not in main.columns:
            main[col] = np.nan
    return main


def _window_stats(main: pd.DataFrame, start, end, pids: pd.Index) -> pd.DataFrame:
    """Per-participant means over nights with ``start <= night_date <= end``."""
    w = main[(main["night_date"] >= start) & (main["night_date"] <= end)]
    g = w.groupby("participant_id", sort=True)
    out = pd.DataFrame(
        {
            "nights": g.size(),
            "score_mean": g["score"].mean(),
            "tst_mean_min": g["tst_min"].mean(),
            "se_mean_pct": g["se_pct"].mean(),
            "waso_mean_min": g["waso_min"].mean(),
        }
    )
    for col, name in (
        ("bedtime_local", "bedtime"),
        ("waketime_local", "waketime"),
        ("midsleep_local", "midsleep"),
    ):
        stats = circular_stats_by(w, "participant_id", col)
        out[f"{name}_mean_min"] = stats["mean"]
        if name != "waketime":
            # A spread needs at least two nights.
            out[f"{name}_sd_min"] = stats["sd"].where(stats["n"] >= 2)
    out = out.reindex(pids)
    out["nights"] = out["nights"].fillna(0).astype(np.int64)
    return out[list(_WINDOW_COLUMNS)]


def _fmt_hm(minutes: pd.Series) -> pd.Series:
    """'7 h 05 min' / '45 min' from minutes (rounded half up to the minute)."""
    m = np.floor(minutes.astype(float) + 0.5)
    ok = m.notna()
    mi = m.fillna(0).astype(np.int64)
    h = mi // 60
    r = mi % 60
    text = np.where(
        h > 0,
        h.astype(str) + " h " + r.astype(str).str.zfill(2) + " min",
        r.astype(str) + " min",
    )
    return pd.Series(text, index=minutes.index).where(ok)


def _fmt_clock(minutes: pd.Series) -> pd.Series:
    """'23:40' from minutes past midnight (rounded to the minute)."""
    m = np.mod(np.floor(minutes.astype(float) + 0.5), MINUTES_PER_DAY)
    ok = m.notna()
    mi = m.fillna(0).astype(np.int64)
    text = (mi // 60).astype(str).str.zfill(2) + ":" + (mi % 60).astype(str).str.zfill(2)
    return text.where(ok)


def _fmt_int(values: pd.Series) -> pd.Series:
    v = np.floor(values.astype(float).abs() + 0.5)
    return v.fillna(0).astype(np.int64).astype(str).where(values.notna())


def _fmt_hours(values: np.ndarray) -> pd.Series:
    s = pd.Series(values, dtype=float)
    whole = s.round().astype(np.int64).astype(str)
    return whole.where(s == s.round(), s.round(1).astype(str))


def _select_insights(summary: pd.DataFrame) -> pd.DataFrame:
    """Fire the rules (vectorized) and pick 2-4 sentences per row."""
    s = summary
    n = s["nights"]
    enough = n >= MIN_NIGHTS_FOR_PATTERNS
    lo_min = s["recommended_min_h"] * 60
    hi_min = s["recommended_max_h"] * 60
    band = (
        _fmt_hours(s["recommended_min_h"].to_numpy()).set_axis(s.index)
        + "\u2013"
        + (_fmt_hours(s["recommended_max_h"].to_numpy()).set_axis(s.index) + " h")
    )
    tst = _fmt_hm(s["tst_mean_min"])
    sd = _fmt_int(s["bedtime_sd_min"])
    sjl = s["sjl_signed_min"]
    delta = s["score_delta_baseline"]
    bed = s["bedtime_mean_min"]

    main = {
        SHORT_SLEEP.code: (
            enough & (s["tst_mean_min"] < lo_min - SHORT_SLEEP_TOLERANCE_MIN),
            "You slept "
            + tst
            + " a night on average, below the "
            + band
            + " range recommended for your age group.",
        ),
        LOW_EFFICIENCY.code: (
            enough & (s["se_mean_pct"] < LOW_EFFICIENCY_PCT),
            "You were asleep for "
            + _fmt_int(s["se_mean_pct"])
            + "% of your time in bed; 85% or more is typical.",
        ),
        IRREGULAR_TIMING.code: (
            enough & (s["bedtime_sd_min"] > IRREGULAR_BEDTIME_SD_MIN),
            "Your bedtime varied by about " + sd + " min from night to night.",
        ),
        SOCIAL_JET_LAG_RULE.code: (
            enough & (sjl.abs() >= SOCIAL_JET_LAG_MIN),
            "Your mid-sleep time was "
            + _fmt_hm(sjl.abs())
            + pd.Series(np.where(sjl >= 0, " later", " earlier"), index=s.index)
            + " on weekend nights than on weekday nights.",
        ),
        LATE_TIMING.code: (
            enough & (bed >= LATE_BEDTIME_FROM_MIN) & (bed < LATE_BEDTIME_UNTIL_MIN),
            "Your average bedtime was " + _fmt_clock(bed) + ", after 01:00.",
        ),
        LONG_WAKE.code: (
            enough & (s["waso_mean_min"] > LONG_WASO_MIN),
            "You were awake for "
            + _fmt_hm(s["waso_mean_min"])
            + " a night on average after first falling asleep; 30 min or less is typical.",
        ),
        IMPROVEMENT_STREAK.code: (
            enough & (s["score_rising_weeks"] >= IMPROVEMENT_STREAK_WEEKS),
            "Your weekly average sleep score has risen "
            + s["score_rising_weeks"].astype(str)
            + " weeks in a row.",
        ),
        IMPROVED_VS_BASELINE.code: (
            enough & (delta >= SCORE_CHANGE_POINTS),
            "Your average sleep score was "
            + _fmt_int(delta)
            + " points higher than over the previous 4 weeks.",
        ),
        DECLINED_VS_BASELINE.code: (
            enough & (delta <= -SCORE_CHANGE_POINTS),
            "Your average sleep score was "
            + _fmt_int(delta)
            + " points lower than over the previous 4 weeks.",
        ),
        LONG_SLEEP.code: (
            enough & (s["tst_mean_min"] > hi_min + LONG_SLEEP_TOLERANCE_MIN),
            "You slept "
            + tst
            + " a night on average, above the "
            + band
            + " range recommended for your age group.",
        ),
        DURATION_IN_RANGE.code: (
            enough & (s["tst_mean_min"] >= lo_min) & (s["tst_mean_min"] <= hi_min),
            "You slept " + tst + " a night on average, within the recommended " + band + ".",
        ),
        CONSISTENT_TIMING.code: (
            (n >= CONSISTENT_MIN_NIGHTS) & (s["bedtime_sd_min"] <= CONSISTENT_BEDTIME_SD_MIN),
            "Your bedtime stayed within about " + sd + " min from night to night.",
        ),
    }
    nights_word = pd.Series(np.where(n == 1, " night was", " nights were"), index=s.index)
    fallback = {
        NO_NIGHTS.code: (n == 0, pd.Series("No nights were recorded this week.", index=s.index)),
        FEW_NIGHTS.code: (
            (n > 0) & ~enough,
            "Only "
            + n.astype(str)
            + nights_word
            + " recorded this week, too few to spot patterns.",
        ),
        NIGHTS_RECORDED.code: (enough, n.astype(str) + nights_word + " recorded this week."),
        AVERAGE_SCORE.code: (
            (n > 0) & s["score_mean"].notna(),
            "Your average sleep score was " + _fmt_int(s["score_mean"]) + ".",
        ),
        AVERAGE_DURATION.code: (
            (n > 0) & s["tst_mean_min"].notna(),
            "You slept " + tst + " a night on average.",
        ),
        BASELINE_AVERAGE.code: (
            (n == 0) & s["tst_baseline_min"].notna(),
            "Over the previous 4 weeks you slept "
            + _fmt_hm(s["tst_baseline_min"])
            + " a night on average.",
        ),
    }

    def stacked(rules: dict, offset: int) -> pd.DataFrame:
        frames = []
        for priority, (code, (fire, text)) in enumerate(rules.items()):
            fire = pd.Series(np.asarray(fire, dtype=bool), index=s.index) & text.notna()
            frames.append(
                pd.DataFrame(
                    {
                        "row": np.flatnonzero(fire.to_numpy()),
                        "priority": offset + priority,
                        "code": code,
                        "text": text[fire].to_numpy(dtype=object),
                    }
                )
            )
        return pd.concat(frames, ignore_index=True).sort_values(["row", "priority"])

    chosen = stacked(main, 0).groupby("row").head(MAX_INSIGHTS)
    have = np.bincount(chosen["row"].to_numpy(), minlength=len(s))
    extra = stacked(fallback, len(main))
    extra = extra[extra.groupby("row").cumcount().to_numpy() < (MIN_INSIGHTS - have)[extra["row"]]]
    picked = pd.concat([chosen, extra]).sort_values(["row", "priority"], kind="stable")
    grouped = picked.groupby("row")
    # Every row has at least one fact (no_nights, few_nights or nights_recorded always fire).
    return pd.DataFrame(
        {
            "insight_codes": grouped["code"].agg(list).to_numpy(),
            "insights": grouped["text"].agg(list).to_numpy(),
        },
        index=s.index[grouped["code"].agg(list).index.to_numpy()],
    ).reindex(s.index)


def weekly_participant_summary(
    nights: pd.DataFrame,
    *,
    iso_year: int,
    iso_week: int,
    participant_ids=None,
    age_years=None,
) -> pd.DataFrame:
    """One row per participant: the ISO week's figures, changes and insights.

    Input ``nights`` (one row per night; pass at least the 4 weeks before the week too):
    ``participant_id``, ``night_date`` (wake-up date, local), ``score`` (0-100),
    ``tst_min``, ``se_pct`` (%), ``waso_min``, ``bedtime_local``, ``waketime_local``,
    ``midsleep_local`` (naive local datetimes or minutes past local midnight), optional
    ``is_main_sleep`` / ``is_nap`` (naps left out), ``age_years`` (NSF band; else the
    ``age_years`` argument; else adults' 7-9 h). ``participant_ids`` (optional) lists who
    should get a row even without nights; default: everyone in ``nights``.

    Returns a frame indexed by ``participant_id`` with:

    - ``iso_year``, ``iso_week``, ``week_start`` (Monday)
    - ``nights`` (int), ``score_mean``, ``tst_mean_min``, ``se_mean_pct``,
      ``waso_mean_min``, ``bedtime_mean_min``, ``waketime_mean_min``,
      ``midsleep_mean_min`` (circular means, minutes past midnight), ``bedtime_sd_min``,
      ``midsleep_sd_min`` (consistency: circular SD in minutes, >= 2 nights)
    - ``best_night_date``, ``best_night_score``, ``worst_night_date``,
      ``worst_night_score`` (by score; ties to the earliest night)
    - vs the previous week (``_prev_week``) and the 4-week baseline (``_baseline``, the
      28 days before the week, at least 7 nights): ``score_delta_*``, ``tst_delta_*_min``,
      ``se_delta_*_pct``, ``waso_delta_*_min``, ``bedtime_shift_*_min`` and
      ``midsleep_shift_*_min`` (signed shorter-arc minutes, positive = later);
      ``tst_baseline_min``
    - ``score_rising_weeks`` (int: consecutive weekly rises of the mean score ending this
      week), ``sjl_signed_min`` (weekend minus weekday midsleep within the week)
    - ``recommended_min_h``, ``recommended_max_h`` (the NSF band used)
    - ``insight_codes``, ``insights`` (lists of rule codes and sentences, same order).
    """
    start, end = iso_week_bounds(iso_year, iso_week)
    main = _prepare(nights)
    if participant_ids is None:
        pids = pd.Index(pd.unique(nights["participant_id"]), name="participant_id")
    else:
        pids = pd.Index(list(participant_ids), name="participant_id")
    pids = pids.sort_values()

    cur = _window_stats(main, start, end, pids)
    prev = _window_stats(main, start - pd.Timedelta(days=7), start - pd.Timedelta(days=1), pids)
    base = _window_stats(
        main, start - pd.Timedelta(days=7 * BASELINE_WEEKS), start - pd.Timedelta(days=1), pids
    )
    base = base.astype(float)
    base.loc[(base["nights"] < BASELINE_MIN_NIGHTS).to_numpy(), :] = np.nan

    out = pd.DataFrame(index=pids)
    out["iso_year"] = int(iso_year)
    out["iso_week"] = int(iso_week)
    out["week_start"] = start
    out = out.join(cur)

    week = main[(main["night_date"] >= start) & (main["night_date"] <= end)]
    scored = week[week["score"].notna()]
    best = (
        scored.sort_values(["participant_id", "score", "night_date"], ascending=[True, False, True])
        .drop_duplicates("participant_id")
        .set_index("participant_id")
    )
    worst = (
        scored.sort_values(["participant_id", "score", "night_date"], ascending=[True, True, True])
        .drop_duplicates("participant_id")
        .set_index("participant_id")
    )
    out["best_night_date"] = best["night_date"].reindex(pids)
    out["best_night_score"] = best["score"].reindex(pids).astype(float)
    out["worst_night_date"] = worst["night_date"].reindex(pids)
    out["worst_night_score"] = worst["score"].reindex(pids).astype(float)

    for ref, suffix in ((prev, "prev_week"), (base, "baseline")):
        out[f"score_delta_{suffix}"] = cur["score_mean"] - ref["score_mean"]
        out[f"tst_delta_{suffix}_min"] = cur["tst_mean_min"] - ref["tst_mean_min"]
        out[f"se_delta_{suffix}_pct"] = cur["se_mean_pct"] - ref["se_mean_pct"]
        out[f"waso_delta_{suffix}_min"] = cur["waso_mean_min"] - ref["waso_mean_min"]
        out[f"bedtime_shift_{suffix}_min"] = circular_difference_minutes(
            cur["bedtime_mean_min"].to_numpy(), ref["bedtime_mean_min"].to_numpy()
        )
        out[f"midsleep_shift_{suffix}_min"] = circular_difference_minutes(
            cur["midsleep_mean_min"].to_numpy(), ref["midsleep_mean_min"].to_numpy()
        )
    out["tst_baseline_min"] = base["tst_mean_min"]

    # Improvement streak: weekly mean scores of this week and the 3 before it.
    weekly_means = []
    for k in range(IMPROVEMENT_STREAK_WEEKS, -1, -1):  # fixed 4 windows, vectorized inside
        ws = start - pd.Timedelta(days=7 * k)
        stats = _window_stats(main, ws, ws + pd.Timedelta(days=6), pids)
        weekly_means.append(
            stats["score_mean"].where(stats["nights"] >= STREAK_MIN_NIGHTS_PER_WEEK).to_numpy()
        )
    wm = np.column_stack(weekly_means)  # oldest .. this week
    rises = wm[:, 1:] > wm[:, :-1]  # NaN comparisons are False
    # Consecutive rises ending at this week: count trailing True values.
    trailing = np.cumprod(rises[:, ::-1], axis=1).sum(axis=1)
    out["score_rising_weeks"] = trailing.astype(np.int64)

    if len(week):
        sjl = social_jet_lag(week, min_nights_per_kind=WEEKLY_SJL_MIN_NIGHTS_PER_KIND)
        out["sjl_signed_min"] = (sjl["sjl_signed_h"] * 60.0).reindex(pids)
    else:
        out["sjl_signed_min"] = np.nan

    if age_years is None and "age_years" in main.columns:
        ages = main.groupby("participant_id")["age_years"].last().reindex(pids)
        lo, hi = recommended_band(ages.to_numpy(dtype=float))
    else:
        lo, hi = recommended_band(age_years, n=len(pids))
    out["recommended_min_h"] = lo[: len(pids)] if len(pids) else np.zeros(0)
    out["recommended_max_h"] = hi[: len(pids)] if len(pids) else np.zeros(0)

    return out.join(_select_insights(out))


def weekly_organization_summary(
    nights: pd.DataFrame,
    *,
    iso_year: int,
    iso_week: int,
    min_group_size: int,
    participant_ids=None,
    age_years=None,
) -> pd.DataFrame:
    """One-row organization summary of an ISO week, aggregated over participants.

    Same input as ``weekly_participant_summary``. Each participant counts once (the mean
    of participant means), so people who record more nights do not weigh more. Nothing
    about any one person appears (no best/worst participant, no lists).

    Returns one row with: ``iso_year``, ``iso_week``, ``week_start``,
    ``participants_total`` (rows considered), ``participants_with_data`` (>= 1 night),
    ``nights``, ``score_mean``, ``score_median``, ``tst_mean_min``, ``tst_median_min``,
    ``se_mean_pct``, ``waso_mean_min``, ``bedtime_mean_min`` (circular mean of the
    participants' mean bedtimes), ``midsleep_sd_mean_min`` (mean of participants' circular
    midsleep SDs), ``short_sleep_pct`` (% of participants whose mean sleep is below their
    NSF band), ``score_delta_prev_week``, ``tst_delta_prev_week_min``,
    ``score_delta_baseline``, ``tst_delta_baseline_min`` (mean of participants' changes,
    over those with both figures), ``suppressed`` (True when fewer than
    ``min_group_size`` participants have data: every figure but the counts is then NaN).
    """
    per = weekly_participant_summary(
        nights,
        iso_year=iso_year,
        iso_week=iso_week,
        participant_ids=participant_ids,
        age_years=age_years,
    )
    start, _ = iso_week_bounds(iso_year, iso_week)
    active = per[per["nights"] > 0]
    short = active["tst_mean_min"] < active["recommended_min_h"] * 60
    figures = {
        "score_mean": active["score_mean"].mean(),
        "score_median": active["score_mean"].median(),
        "tst_mean_min": active["tst_mean_min"].mean(),
        "tst_median_min": active["tst_mean_min"].median(),
        "se_mean_pct": active["se_mean_pct"].mean(),
        "waso_mean_min": active["waso_mean_min"].mean(),
        "bedtime_mean_min": float(circular_mean_minutes(active["bedtime_mean_min"].to_numpy()))
        if len(active)
        else np.nan,
        "midsleep_sd_mean_min": active["midsleep_sd_min"].mean(),
        "short_sleep_pct": 100.0 * short[active["tst_mean_min"].notna()].mean()
        if active["tst_mean_min"].notna().any()
        else np.nan,
        "score_delta_prev_week": active["score_delta_prev_week"].mean(),
        "tst_delta_prev_week_min": active["tst_delta_prev_week_min"].mean(),
        "score_delta_baseline": active["score_delta_baseline"].mean(),
        "tst_delta_baseline_min": active["tst_delta_baseline_min"].mean(),
    }
    suppressed = len(active) < int(min_group_size)
    row = {
        "iso_year": int(iso_year),
        "iso_week": int(iso_week),
        "week_start": start,
        "participants_total": len(per),
        "participants_with_data": len(active),
        "nights": int(per["nights"].sum()),
        **{k: (np.nan if suppressed else float(v)) for k, v in figures.items()},
        "suppressed": suppressed,
    }
    return pd.DataFrame([row])
