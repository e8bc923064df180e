"""Night sleep score: an open, explainable 0-100 weighted mean of five components.

Pure module (no Django). Implements shared/science.md §6 (score) with the recommended
durations of §5; timing statistics come from ``analytics.engine.regularity``.

Sleep score (README source)
===========================

``score = sum(w_c * C_c) / sum(w_c)`` over the components ``c`` that are *available* for
the night (not NaN) and have a positive weight. Each component ``C_c`` is 0-100. Weights
default to duration 0.35, efficiency 0.20, continuity 0.15, depth 0.15, regularity 0.15;
an organization may change them (non-negative, sum > 0; they are normalized). Missing
components are left out and the remaining weights renormalized; the output names the
components used and the effective weight of each. A night with no sleep (TST = 0) scores 0.
Naps are not scored (NaN) unless asked for: every component describes a main night.

Components (``h`` = hours, TST = total sleep time, band = recommended range ``[lo, hi]``):

1. **Duration** (``duration_component``), against the NSF recommended band for the
   participant's age (Hirshkowitz et al. 2015; science.md §5; adults 7-9 h when the age is
   unknown)::

       TST inside [lo, hi]          -> 100
       short = lo - TST  (> 0)      -> 100 * 2 ** (-(short / 2 h) ** 2)
                                       (84.1 at 1 h short, 50 at 2 h, 21.0 at 3 h, 6.25 at 4 h)
       over  = TST - hi  (> 0)      -> 50 + 50 * 2 ** (-(over / 2 h) ** 2)
                                       (92.0 at 1 h over, 75 at 2 h, floor 50)
       TST = 0                      -> 0

   A Gaussian shoulder: flat (zero slope) at the band edge, so a few minutes outside
   the band cost almost nothing, and monotone towards the band from either side. Above
   the band it is gentler with a floor of 50 because long sleep is weaker evidence of a
   problem than short sleep (AASM/SRS consensus, Watson et al. 2015, only sets a lower
   bound for adults).

2. **Efficiency** (``efficiency_component``): ``100 * clip((SE - 60) / (90 - 60), 0, 1)``;
   100 at SE >= 90 %, 0 at SE <= 60 %, linear between (PSQI: habitual efficiency >= 85 %
   is its best band; science.md §6).

3. **Continuity** (``continuity_component``)::

       waso_part  = 100 * clip((90 - WASO) / (90 - 20), 0, 1)   (full at <= 20 min, 0 at >= 90)
       awake_part = 100 * clip((6 - A5) / (6 - 1), 0, 1)        (A5 = awakenings >= 5 min;
                                                                 full at <= 1, 0 at >= 6)
       continuity = 0.75 * waso_part + 0.25 * awake_part

   WASO carries most of the weight because it already sums all wake after onset; the
   count of long awakenings adds fragmentation (as Oura's "restfulness"). One long
   awakening a night is common and free. Without ``awakenings_5min`` the WASO part alone
   is used; without WASO (no sleep) the component is missing.

4. **Depth** (``depth_component``): ``50 * min(N3 / 90 min, 1) + 50 * min(REM / 90 min, 1)``.
   N3 is ``n3_min`` (PSG-style staging) or ``deep_min`` (wearables: light/deep/REM); REM
   is ``rem_min``. Missing when either is NaN, or when ``stages_resolved`` is False (a
   device that reports only asleep/awake must not score 0 depth).

5. **Regularity** (``regularity_component``), one of two sources:

   - *SRI* (when an ``sri`` value is given for the night, e.g. the person's SRI over the
     window): ``100 * clip((SRI - 50) / (90 - 50), 0, 1)``. 90 is the top of the typical
     adult range (science.md §7, ~70-90), 50 means one epoch in four differs from one day
     to the next.
   - *Timing* otherwise: the night's bedtime and midsleep are compared with the person's
     circular median bedtime and midsleep over the 14 calendar nights before it (main
     sleeps only, at least 3 of them, else missing)::

         dev  = |clock time - 14-night circular median| on the shorter arc, in minutes
         part = 100 * clip((120 - dev) / (120 - 15), 0, 1)   (15-min grace, 0 at 2 h off)
         regularity = (bedtime part + midsleep part) / 2

Limits: the bands and targets are population guides, not personal needs; NSF ages are
per 24 h (children's naps are not added here); N3 falls with age while the depth target
does not; regularity from timing needs history, so a person's first nights have no
regularity component. The score is a wellness summary, never a diagnosis.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from analytics.engine.regularity import (
    circular_difference_minutes,
    circular_median_rows,
    clock_minutes,
    main_sleep_rows,
)

COMPONENTS = ("duration", "efficiency", "continuity", "depth", "regularity")
# science.md §6 defaults (our choice; duration heaviest as in Open Wearables' 40 %).
DEFAULT_WEIGHTS = {
    "duration": 0.35,
    "efficiency": 0.20,
    "continuity": 0.15,
    "depth": 0.15,
    "regularity": 0.15,
}

# --- Duration: NSF recommended bands (Hirshkowitz et al. 2015, Sleep Health 1:40) ------------
# (min age inclusive, max age exclusive, lower h, upper h); ages in years.
NSF_BANDS = (
    (0.0, 0.25, 14.0, 17.0),  # newborns 0-3 months
    (0.25, 1.0, 12.0, 15.0),  # infants 4-11 months
    (1.0, 3.0, 11.0, 14.0),  # toddlers 1-2 y
    (3.0, 6.0, 10.0, 13.0),  # preschoolers 3-5 y
    (6.0, 14.0, 9.0, 11.0),  # school-age 6-13 y
    (14.0, 18.0, 8.0, 10.0),  # teenagers 14-17 y
    (18.0, 26.0, 7.0, 9.0),  # young adults 18-25 y
    (26.0, 65.0, 7.0, 9.0),  # adults 26-64 y
    (65.0, np.inf, 7.0, 8.0),  # older adults 65+ y
)
# science.md §5: adults' band when the age is unknown.
DEFAULT_BAND_H = (7.0, 9.0)
# Shortfall (h) at which the duration component is halved: 50 at 2 h short (science.md §6).
DURATION_SHORT_HALF_H = 2.0
# Excess (h) at which the above-band drop is halved: 75 at 2 h over.
DURATION_LONG_HALF_H = 2.0
# Long sleep never scores below this (science.md §6 "gentler above the band, floor 50").
DURATION_LONG_FLOOR = 50.0

# --- Efficiency (science.md §6) ---------------------------------------------------------------
EFFICIENCY_ZERO_PCT = 60.0
EFFICIENCY_FULL_PCT = 90.0

# --- Continuity (science.md §6; §7 WASO <= 30 min is the normal band) ------------------------
CONTINUITY_WASO_FULL_MIN = 20.0
CONTINUITY_WASO_ZERO_MIN = 90.0
# One awakening >= 5 min a night is common (e.g. a bathroom visit): free.
CONTINUITY_AWAKENINGS_FREE = 1
# Six or more long awakenings: the awakening part is 0.
CONTINUITY_AWAKENINGS_ZERO = 6
# WASO already sums all wake after onset, so it dominates; the count adds fragmentation.
CONTINUITY_WASO_SHARE = 0.75

# --- Depth (science.md §6 "e.g. 90 min each") ------------------------------------------------
# ~90 min of N3 and of REM is roughly 20 % of a 7.5-h night each in healthy adults.
DEPTH_DEEP_TARGET_MIN = 90.0
DEPTH_REM_TARGET_MIN = 90.0

# --- Regularity (science.md §6) ---------------------------------------------------------------
REGULARITY_HISTORY_NIGHTS = 14
# A median of fewer than 3 nights is too noisy to be "the person's usual time".
REGULARITY_MIN_HISTORY_NIGHTS = 3
REGULARITY_GRACE_MIN = 15.0
# Two hours off the usual time scores 0 (a large shift in a daily rhythm).
REGULARITY_ZERO_AT_MIN = 120.0
# SRI mapping: 90 = top of the typical adult range (science.md §7), 50 = 25 % epoch mismatch.
REGULARITY_SRI_FULL = 90.0
REGULARITY_SRI_ZERO = 50.0

_BITMASK_LABELS = tuple(
    ",".join(c for i, c in enumerate(COMPONENTS) if mask >> i & 1)
    for mask in range(2 ** len(COMPONENTS))
)


def validate_weights(weights: Mapping[str, float] | None = None) -> dict[str, float]:
    """Check and normalize component weights; returns all five, summing to 1.

    ``None`` gives ``DEFAULT_WEIGHTS``. Unknown names, negative, non-finite values or an
    all-zero set raise ``ValueError``; names left out get weight 0.
    """
    if weights is None:
        weights = DEFAULT_WEIGHTS
    unknown = set(weights) - set(COMPONENTS)
    if unknown:
        raise ValueError(f"unknown score components: {sorted(unknown)}")
    values = {}
    for name in COMPONENTS:
        raw = weights.get(name, 0.0)
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise ValueError(f"weight for {name} is not a number") from None
        if not np.isfinite(value) or value < 0:
            raise ValueError(f"weight for {name} must be a finite number >= 0")
        values[name] = value
    total = sum(values.values())
    if total <= 0:
        raise ValueError("score weights must sum to more than 0")
    return {name: value / total for name, value in values.items()}


def recommended_band(age_years=None, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """NSF recommended sleep band (lower, upper hours) for each age in years.

    ``age_years`` is a scalar or an array; NaN / None gives the adults' 7-9 h. With a
    scalar and ``n``, the band is broadcast to ``n`` rows.
    """
    if age_years is None:
        age = np.full(1 if n is None else n, np.nan)
    else:
        age = np.asarray(
            pd.to_numeric(pd.Series(np.atleast_1d(age_years)), errors="coerce"), dtype=float
        )
        if n is not None and age.size == 1:
            age = np.full(n, age[0])
    conds = [(age >= a0) & (age < a1) for a0, a1, _, _ in NSF_BANDS]
    lo = np.select(conds, [b[2] for b in NSF_BANDS], default=DEFAULT_BAND_H[0])
    hi = np.select(conds, [b[3] for b in NSF_BANDS], default=DEFAULT_BAND_H[1])
    return lo, hi


def duration_component(tst_min, lo_h=DEFAULT_BAND_H[0], hi_h=DEFAULT_BAND_H[1]) -> np.ndarray:
    """Duration component (0-100) of TST in minutes against the band ``[lo_h, hi_h]`` hours.

    100 inside the band; ``100 * 2**(-(short/2 h)**2)`` below; ``50 + 50 * 2**(-(over/2 h)**2)``
    above; 0 for no sleep; NaN when TST is NaN.
    """
    tst_h = np.asarray(tst_min, dtype=float) / 60.0
    lo = np.asarray(lo_h, dtype=float)
    hi = np.asarray(hi_h, dtype=float)
    short = np.clip(lo - tst_h, 0.0, None)
    over = np.clip(tst_h - hi, 0.0, None)
    below = 100.0 * np.exp2(-((short / DURATION_SHORT_HALF_H) ** 2))
    above = DURATION_LONG_FLOOR + (100.0 - DURATION_LONG_FLOOR) * np.exp2(
        -((over / DURATION_LONG_HALF_H) ** 2)
    )
    out = np.where(short > 0, below, np.where(over > 0, above, 100.0))
    out = np.where(tst_h <= 0, 0.0, out)
    return np.where(np.isnan(tst_h), np.nan, out)


def efficiency_component(se_pct) -> np.ndarray:
    """Efficiency component: 100 at SE >= 90 %, 0 at SE <= 60 %, linear between; NaN kept."""
    se = np.asarray(se_pct, dtype=float)
    return 100.0 * np.clip(
        (se - EFFICIENCY_ZERO_PCT) / (EFFICIENCY_FULL_PCT - EFFICIENCY_ZERO_PCT), 0.0, 1.0
    )


def continuity_component(waso_min, awakenings_5min=None) -> np.ndarray:
    """Continuity component from WASO (minutes) and the count of awakenings >= 5 min.

    ``0.75 * waso_part + 0.25 * awakening_part`` (see module docstring); the WASO part
    alone when the count is NaN or not given; NaN when WASO is NaN.
    """
    waso = np.asarray(waso_min, dtype=float)
    waso_part = 100.0 * np.clip(
        (CONTINUITY_WASO_ZERO_MIN - waso) / (CONTINUITY_WASO_ZERO_MIN - CONTINUITY_WASO_FULL_MIN),
        0.0,
        1.0,
    )
    if awakenings_5min is None:
        return waso_part
    awak = np.broadcast_to(np.asarray(awakenings_5min, dtype=float), waso.shape)
    awak_part = 100.0 * np.clip(
        (CONTINUITY_AWAKENINGS_ZERO - awak)
        / (CONTINUITY_AWAKENINGS_ZERO - CONTINUITY_AWAKENINGS_FREE),
        0.0,
        1.0,
    )
    combined = CONTINUITY_WASO_SHARE * waso_part + (1 - CONTINUITY_WASO_SHARE) * awak_part
    return np.where(np.isnan(awak), waso_part, combined)


def depth_component(deep_min, rem_min) -> np.ndarray:
    """Depth component: ``50 * min(deep / 90, 1) + 50 * min(REM / 90, 1)``; NaN if either is NaN."""
    deep = np.asarray(deep_min, dtype=float)
    rem = np.asarray(rem_min, dtype=float)
    return 50.0 * np.clip(deep / DEPTH_DEEP_TARGET_MIN, 0.0, 1.0) + 50.0 * np.clip(
        rem / DEPTH_REM_TARGET_MIN, 0.0, 1.0
    )


def timing_deviation_component(deviation_min) -> np.ndarray:
    """Part score of one clock-time deviation (minutes): 100 within 15 min, 0 at >= 120 min."""
    dev = np.abs(np.asarray(deviation_min, dtype=float))
    return 100.0 * np.clip(
        (REGULARITY_ZERO_AT_MIN - dev) / (REGULARITY_ZERO_AT_MIN - REGULARITY_GRACE_MIN), 0.0, 1.0
    )


def sri_component(sri) -> np.ndarray:
    """Regularity from SRI: 100 at SRI >= 90, 0 at SRI <= 50, linear between; NaN kept."""
    sri = np.asarray(sri, dtype=float)
    return 100.0 * np.clip(
        (sri - REGULARITY_SRI_ZERO) / (REGULARITY_SRI_FULL - REGULARITY_SRI_ZERO), 0.0, 1.0
    )


_DAY_KEY = 1 << 21  # day numbers per participant key (shifted to be >= 0 below)
_DAY_SHIFT = 1 << 20


def _day_numbers(values) -> np.ndarray:
    return pd.to_datetime(values).to_numpy(dtype="datetime64[D]").astype(np.int64) + _DAY_SHIFT


def timing_history_medians(
    nights: pd.DataFrame,
    *,
    columns=("bedtime_local", "midsleep_local"),
    history_nights: int = REGULARITY_HISTORY_NIGHTS,
    min_history: int = REGULARITY_MIN_HISTORY_NIGHTS,
) -> pd.DataFrame:
    """Per row: the person's circular median of each clock column over prior nights.

    ``nights`` needs ``participant_id``, ``night_date`` and the clock ``columns`` (naive
    local datetimes or minutes past midnight). History = main sleeps (``is_main_sleep``,
    else not ``is_nap``) of the ``history_nights`` calendar nights before the row's
    ``night_date`` (the row itself excluded). Returns a frame on ``nights.index`` with, per
    column ``c``, ``<c>_median_min`` (minutes past midnight, NaN with fewer than
    ``min_history`` nights) and ``history_nights`` (count of nights used).
    """
    medians = _timing_history(nights, tuple(columns), history_nights, min_history)
    return pd.DataFrame(medians, index=nights.index)


def _main_sleep_mask(nights: pd.DataFrame) -> np.ndarray:
    """regularity.main_sleep_rows as a mask: ``is_main_sleep`` if given, else not ``is_nap``."""
    if "is_main_sleep" in nights.columns:
        return nights["is_main_sleep"].fillna(False).astype(bool).to_numpy()
    if "is_nap" in nights.columns:
        return ~nights["is_nap"].fillna(False).astype(bool).to_numpy()
    return np.ones(len(nights), dtype=bool)


def _timing_history(
    nights: pd.DataFrame, columns: tuple, history_nights: int, min_history: int
) -> dict[str, np.ndarray]:
    """``timing_history_medians`` as a dict of arrays.

    numpy over positions rather than pandas frames: a small batch's scoring cost was the
    fixed cost of pandas calls (filter, sort, drop_duplicates, one lookup per offset).
    """
    days = _day_numbers(pd.to_datetime(nights["night_date"]).dt.normalize())
    people, _ = pd.factorize(nights["participant_id"].to_numpy())
    # (participant, day) as one integer key.
    row_keys = people.astype(np.int64) * _DAY_KEY + days
    main = np.flatnonzero(_main_sleep_mask(nights))
    # One main sleep per date: the longest when there are several (science.md §2). A
    # stable sort, longest first, NaN last; then the first row of each (participant, day).
    if "tst_min" in nights.columns:
        tst = nights["tst_min"].to_numpy(dtype=float, na_value=np.nan)[main]
        main = main[np.argsort(-tst, kind="stable")]
    _, first = np.unique(row_keys[main], return_index=True)
    main = main[np.sort(first)]
    keys = row_keys[main]
    # For each row and each of the history_nights days before it: the main sleep's position
    # in ``main``, or -1 (one sorted lookup for the whole matrix).
    wanted = row_keys[:, None] - np.arange(1, history_nights + 1, dtype=np.int64)[None, :]
    if keys.size:
        sorter = np.argsort(keys)
        at = np.minimum(np.searchsorted(keys[sorter], wanted), keys.size - 1)
        positions = np.where(keys[sorter][at] == wanted, sorter[at], -1)
    else:
        positions = np.full(wanted.shape, -1, dtype=np.intp)
    out, count = {}, None
    for column in columns:
        values = np.append(clock_minutes(nights[column].iloc[main]), np.nan)  # position -1: NaN
        hist = values[positions]
        n = (~np.isnan(hist)).sum(axis=1)
        med = circular_median_rows(hist) if len(nights) else np.zeros(0)
        out[f"{column}_median_min"] = np.where(n >= min_history, med, np.nan)
        count = n if count is None else np.maximum(count, n)
    out["history_nights"] = count if count is not None else 0
    return out


def regularity_component(
    nights: pd.DataFrame,
    *,
    source: str = "auto",
    bedtime_col: str = "bedtime_local",
    midsleep_col: str = "midsleep_local",
    sri_col: str = "sri",
) -> pd.DataFrame:
    """Regularity component per row of ``nights`` and its basis.

    ``source``: ``"auto"`` (SRI where the row has one, timing otherwise), ``"sri"`` or
    ``"timing"``. Returns a frame on ``nights.index`` with ``score_regularity`` (0-100 or
    NaN), ``regularity_basis`` (``"sri"``, ``"timing"`` or ``""``),
    ``bedtime_deviation_min`` and ``midsleep_deviation_min`` (signed shorter-arc minutes
    from the 14-night circular median; positive = later).
    """
    parts = _regularity(nights, source, bedtime_col, midsleep_col, sri_col)
    return pd.DataFrame(parts, index=nights.index)


def _regularity(
    nights: pd.DataFrame, source: str, bedtime_col: str, midsleep_col: str, sri_col: str
) -> dict[str, np.ndarray]:
    """``regularity_component`` as a dict of arrays."""
    if source not in ("auto", "sri", "timing"):
        raise ValueError("source must be 'auto', 'sri' or 'timing'")
    n = len(nights)
    timing = np.full(n, np.nan)
    bed_dev = np.full(n, np.nan)
    mid_dev = np.full(n, np.nan)
    has_timing_cols = {bedtime_col, midsleep_col, "night_date"} <= set(nights.columns)
    if source != "sri" and has_timing_cols:
        med = _timing_history(nights, (bedtime_col, midsleep_col), REGULARITY_HISTORY_NIGHTS,
                              REGULARITY_MIN_HISTORY_NIGHTS)
        bed_dev = circular_difference_minutes(
            clock_minutes(nights[bedtime_col]), med[f"{bedtime_col}_median_min"]
        )
        mid_dev = circular_difference_minutes(
            clock_minutes(nights[midsleep_col]), med[f"{midsleep_col}_median_min"]
        )
        timing = (timing_deviation_component(bed_dev) + timing_deviation_component(mid_dev)) / 2
    sri = (
        sri_component(nights[sri_col].to_numpy(dtype=float, na_value=np.nan))
        if (source != "timing" and sri_col in nights.columns)
        else np.full(n, np.nan)
    )
    if source == "sri":
        value, basis = sri, np.where(np.isnan(sri), "", "sri")
    elif source == "timing":
        value, basis = timing, np.where(np.isnan(timing), "", "timing")
    else:
        use_sri = ~np.isnan(sri)
        value = np.where(use_sri, sri, timing)
        basis = np.where(use_sri, "sri", np.where(np.isnan(timing), "", "timing"))
    return {
        "score_regularity": value,
        "regularity_basis": basis,
        "bedtime_deviation_min": bed_dev,
        "midsleep_deviation_min": mid_dev,
    }


def _column(frame: pd.DataFrame, name: str) -> np.ndarray:
    if name not in frame.columns:
        return np.full(len(frame), np.nan)
    column = frame[name]
    if pd.api.types.is_numeric_dtype(column.dtype):  # to_numeric would return it unchanged
        return column.to_numpy(dtype=float, na_value=np.nan)
    return pd.to_numeric(column, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def combine_components(components: pd.DataFrame, weights: Mapping[str, float] | None = None):
    """Weighted mean of the component columns ``score_<c>`` with renormalization.

    Returns ``(score, used_mask, effective_weights)``: score (NaN when no component is
    available), a boolean (rows, 5) array of components used, and the normalized weights
    actually applied (rows, 5; 0 for unused).
    """
    comp = np.column_stack([components[f"score_{c}"].to_numpy(dtype=float) for c in COMPONENTS])
    return _combine(comp, weights)


def _combine(comp: np.ndarray, weights: Mapping[str, float] | None):
    """``combine_components`` over a (rows, 5) matrix of components in ``COMPONENTS`` order."""
    w = validate_weights(weights)
    wvec = np.array([w[c] for c in COMPONENTS])
    used = ~np.isnan(comp) & (wvec > 0)
    wmat = np.where(used, wvec, 0.0)
    wsum = wmat.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        # Normalize first, then weight: robust even for tiny (subnormal) weights.
        eff = np.where(wsum[:, None] > 0, wmat / wsum[:, None], 0.0)
    score = (np.where(used, comp, 0.0) * eff).sum(axis=1)
    score = np.where(wsum > 0, np.clip(score, 0.0, 100.0), np.nan)
    return score, used, eff


def sleep_scores(
    nights: pd.DataFrame,
    *,
    weights: Mapping[str, float] | None = None,
    age_years=None,
    regularity_source: str = "auto",
    score_naps: bool = False,
) -> pd.DataFrame:
    """Score nights 0-100 (science.md §6); see the module docstring for every curve.

    Input ``nights`` (one row per sleep; per-night metrics as produced by
    ``analytics.engine.metrics``; minutes unless noted; NaN when undefined):

    - ``tst_min`` (required), ``se_pct`` (%), ``waso_min``, ``awakenings_5min`` (count)
    - ``n3_min`` and/or ``deep_min`` (N3 / wearable deep), ``rem_min``
    - ``stages_resolved`` (optional bool; False -> no depth component)
    - ``participant_id``, ``night_date`` (wake-up date), ``bedtime_local`` and
      ``midsleep_local`` (naive local datetimes or minutes past midnight): for the timing
      regularity; the 14-night history is taken from the rows passed, so pass the 14 nights
      before the first night to score as well
    - ``sri`` (optional, Phillips scale): regularity from SRI where present
    - ``is_nap`` / ``is_main_sleep`` (optional): naps are not scored unless ``score_naps``
    - ``age_years`` (optional column) or the ``age_years`` argument: NSF band; adults'
      7-9 h when unknown.

    Parameters: ``weights`` (mapping component -> weight, see ``validate_weights``;
    default ``DEFAULT_WEIGHTS``), ``regularity_source`` (``auto`` / ``sri`` / ``timing``).

    Returns a frame on ``nights.index`` with: ``score`` (0-100; 0 when TST = 0; NaN for
    unscored naps or when no component is available), ``score_duration``,
    ``score_efficiency``, ``score_continuity``, ``score_depth``, ``score_regularity``
    (each 0-100 or NaN), ``score_components_used`` (comma-separated names in the fixed
    order duration, efficiency, continuity, depth, regularity; "" when none),
    ``score_weight_<c>`` for each component (normalized weight applied, 0 if unused),
    ``regularity_basis`` (``sri`` / ``timing`` / ""), ``bedtime_deviation_min``,
    ``midsleep_deviation_min`` (signed minutes from the 14-night median),
    ``recommended_min_h`` and ``recommended_max_h`` (the band used).
    """
    validated = validate_weights(weights)
    n = len(nights)
    tst = _column(nights, "tst_min")
    if age_years is None and "age_years" in nights.columns:
        lo, hi = recommended_band(_column(nights, "age_years"))
    else:
        lo, hi = recommended_band(age_years, n=n)
    if n == 0:
        lo, hi = np.zeros(0), np.zeros(0)

    deep = _column(nights, "n3_min")
    deep = np.where(np.isnan(deep), _column(nights, "deep_min"), deep)
    depth = depth_component(deep, _column(nights, "rem_min"))
    if "stages_resolved" in nights.columns:
        resolved = nights["stages_resolved"].fillna(True).to_numpy(dtype=bool)
        depth = np.where(resolved, depth, np.nan)

    reg = _regularity(nights, regularity_source, "bedtime_local", "midsleep_local", "sri")

    duration = duration_component(tst, lo, hi)
    efficiency = efficiency_component(_column(nights, "se_pct"))
    awak = _column(nights, "awakenings_5min") if "awakenings_5min" in nights.columns else None
    continuity = continuity_component(_column(nights, "waso_min"), awak)
    regularity = reg["score_regularity"]

    no_sleep = tst == 0
    # No sleep: nothing to be regular or deep about; the score is 0 by definition.
    continuity, depth, regularity = (
        np.where(no_sleep, np.nan, c) for c in (continuity, depth, regularity)
    )
    duration, efficiency = (np.where(no_sleep, 0.0, c) for c in (duration, efficiency))
    components = {"duration": duration, "efficiency": efficiency, "continuity": continuity,
                  "depth": depth, "regularity": regularity}

    score, used, eff = _combine(np.column_stack([components[c] for c in COMPONENTS]), validated)
    score = np.where(no_sleep, 0.0, score)
    used = np.where(no_sleep[:, None], False, used)
    eff = np.where(no_sleep[:, None], 0.0, eff)

    if not score_naps and "is_nap" in nights.columns:
        nap = nights["is_nap"].fillna(False).to_numpy(dtype=bool)
        score = np.where(nap, np.nan, score)
        used = np.where(nap[:, None], False, used)
        eff = np.where(nap[:, None], 0.0, eff)

    mask = (used * (1 << np.arange(len(COMPONENTS)))).sum(axis=1)
    out = {
        "score": score,
        **{f"score_{c}": components[c] for c in COMPONENTS},
        "score_components_used": np.asarray(_BITMASK_LABELS, dtype=object)[mask],
        **{f"score_weight_{c}": eff[:, i] for i, c in enumerate(COMPONENTS)},
        "regularity_basis": np.where(
            used[:, COMPONENTS.index("regularity")], reg["regularity_basis"].astype(object), ""
        ),
        "bedtime_deviation_min": reg["bedtime_deviation_min"],
        "midsleep_deviation_min": reg["midsleep_deviation_min"],
        "recommended_min_h": lo,
        "recommended_max_h": hi,
    }
    return pd.DataFrame(out, index=nights.index)
