"""Sleep regularity and timing: SRI, midsleep variability, social jet lag, chronotype.

Pure module (no Django): arrays / DataFrames and explicit parameters in, DataFrames out.
Everything here follows shared/science.md §3 (Sleep Regularity Index, Phillips et al. 2017,
Sci Rep 7:3216) and §4 (MCTQ timing: Roenneberg et al. 2003, 2012). Our own choices are
named constants below, each with its reason.

Clock times are circular. Every clock time in this module is expressed as *minutes past
local midnight* in ``[0, 1440)``; averages are vector (circular) means and spreads are
circular standard deviations (Mardia: ``sqrt(-2 ln R)``), never linear statistics across
midnight.

Public functions
----------------
Circular helpers (shared with ``scores`` and ``weekly``):
    ``clock_minutes``, ``circular_mean_minutes``, ``circular_sd_minutes``,
    ``circular_difference_minutes``, ``circular_stats_by``.
SRI:
    ``sri_from_days`` (a days x epochs matrix of one person), ``sleep_wake_grid`` (sessions
    laid onto noon-to-noon days, all participants at once), ``sleep_regularity_index``.
Timing:
    ``midsleep_variability``, ``social_jet_lag_hours``, ``msf_sc_hours``, ``social_jet_lag``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd

MINUTES_PER_DAY = 1440
_RAD_PER_MIN = 2.0 * np.pi / MINUTES_PER_DAY
_NS_PER_S = 1_000_000_000
_NOON_NS = 12 * 3600 * _NS_PER_S
_DAY_NS = 24 * 3600 * _NS_PER_S

# --- SRI tunables ----------------------------------------------------------------------------
# Phillips et al. score 30-s epochs (2,880 per day); sessions with other epoch lengths are
# resampled onto this grid (each grid epoch takes the stage of the session epoch it starts in).
SRI_GRID_EPOCH_S = 30
# science.md §3 (our choice, after GGIR's per-pair ``frac_valid``): a day pair counts only when
# at least 70 % of the epochs of its common length are valid (non-missing on both days)...
SRI_MIN_VALID_FRACTION = 0.70
# ...and an SRI is reported only when at least 5 such day pairs exist; otherwise NaN.
SRI_MIN_PAIRS = 5
# Participants are processed in batches of about this many sessions: bounds the peak memory
# of the epoch-level arrays (~100 MB) whatever the organization's size.
SRI_BATCH_SESSIONS = 2000

# Canonical hypnogram codes (design.md): 0 Wake, 1 N1, 2 N2, 3 N3, 4 REM, 5 Light, -1 no data.
# Lookup from canonical code (clipped to -2..6, offset by 2) to 1 sleep / 0 wake / -1 missing:
# -2 and below, -1 (no data) and unknown codes >= 6 are missing.
_CODE_TO_SLEEP = np.array([-1, -1, 0, 1, 1, 1, 1, 1, -1], dtype=np.int8)

# --- MCTQ tunables ---------------------------------------------------------------------------
# science.md §4: without a calendar, the nights before Saturday and Sunday are free nights.
# A night is keyed by its wake-up date (science.md §2), so free nights are those whose
# wake-up date is a Saturday (5) or a Sunday (6).
FREE_WAKE_WEEKDAYS = (5, 6)
# MCTQ week: SD_week = (5 SD_work + 2 SD_free) / 7 (Roenneberg 2012), fixed 5/2 as in §4.
MCTQ_WORKDAYS_PER_WEEK = 5
MCTQ_FREE_DAYS_PER_WEEK = 2
# One night of each kind is an anecdote: need two work nights and two free nights before
# reporting MSW/MSF, social jet lag or MSFsc (our choice).
SJL_MIN_NIGHTS_PER_KIND = 2
# Midsleep SD needs a spread: at least 3 main-sleep nights (our choice).
MIDSLEEP_SD_MIN_NIGHTS = 3


# =============================================================================================
# Circular helpers
# =============================================================================================


def clock_minutes(values) -> np.ndarray:
    """Minutes past local midnight, in ``[0, 1440)``, as a float array (NaN kept).

    ``values`` is anything Series-like holding either naive local datetimes (a tz-aware
    datetime uses its own wall clock) or numbers already in minutes past midnight (taken
    modulo 1440, so ``-30`` and ``1410`` both mean 23:30).
    """
    s = values if isinstance(values, pd.Series) else pd.Series(values)
    if not pd.api.types.is_datetime64_any_dtype(s) and not pd.api.types.is_numeric_dtype(s):
        kind = pd.api.types.infer_dtype(s, skipna=True)
        if kind in ("datetime", "datetime64", "date", "string"):
            # Python datetimes / Timestamps / ISO strings in an object column.
            s = pd.to_datetime(s, errors="coerce", format="mixed" if kind == "string" else None)
        else:
            s = pd.to_numeric(s, errors="coerce")
    if pd.api.types.is_datetime64_any_dtype(s):
        minutes = (
            s.dt.hour * 60.0 + s.dt.minute + s.dt.second / 60.0 + s.dt.microsecond / 60_000_000.0
        )
        return minutes.to_numpy(dtype=float, na_value=np.nan)
    return np.mod(s.to_numpy(dtype=float, na_value=np.nan), MINUTES_PER_DAY)


def _resultant(minutes: np.ndarray, axis=None):
    """Mean cosine, mean sine and count of non-NaN clock minutes along ``axis``."""
    x = np.asarray(minutes, dtype=float)
    ok = ~np.isnan(x)
    ang = np.where(ok, x, 0.0) * _RAD_PER_MIN
    n = ok.sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        c = np.where(ok, np.cos(ang), 0.0).sum(axis=axis) / n
        s = np.where(ok, np.sin(ang), 0.0).sum(axis=axis) / n
    return c, s, n


def _wrap_minutes(x):
    """Minutes modulo a day, with round-off just below 1440 folded to 0."""
    m = np.mod(x, MINUTES_PER_DAY)
    return np.where(m > MINUTES_PER_DAY - 1e-9, 0.0, m)


def _mean_from_resultant(c, s):
    with np.errstate(invalid="ignore"):
        return _wrap_minutes(np.arctan2(s, c) / _RAD_PER_MIN)


def _sd_from_resultant(c, s):
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.clip(np.hypot(c, s), 0.0, 1.0)
        return np.sqrt(-2.0 * np.log(r)) / _RAD_PER_MIN


def circular_mean_minutes(minutes, axis=None):
    """Circular (vector) mean of clock times in minutes past midnight; NaN ignored.

    Returns minutes in ``[0, 1440)``; NaN when there is no value. Example: the mean of
    23:00 (1380) and 01:00 (60) is 00:00 (0), not 12:00.
    """
    c, s, n = _resultant(minutes, axis=axis)
    out = _mean_from_resultant(c, s)
    return np.where(n > 0, out, np.nan) if np.ndim(out) else (out if n > 0 else np.nan)


def circular_sd_minutes(minutes, axis=None):
    """Circular standard deviation (Mardia, ``sqrt(-2 ln R)``) of clock times, in minutes.

    For spreads of an hour or two it equals the ordinary population SD to within a few
    percent; it grows without bound as the times spread round the clock. NaN ignored;
    NaN when there is no value; 0 for a single value.
    """
    c, s, n = _resultant(minutes, axis=axis)
    out = _sd_from_resultant(c, s)
    return np.where(n > 0, out, np.nan) if np.ndim(out) else (out if n > 0 else np.nan)


def circular_difference_minutes(a, b):
    """Signed shorter-arc difference ``a - b`` of clock times, in minutes, in ``[-720, 720)``."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    return np.mod(a - b + MINUTES_PER_DAY / 2, MINUTES_PER_DAY) - MINUTES_PER_DAY / 2


def circular_stats_by(frame: pd.DataFrame, by, column: str) -> pd.DataFrame:
    """Grouped circular mean, SD and count of a clock-minutes column (vectorized groupby).

    Returns a frame indexed by the group keys with columns ``mean`` (minutes past midnight),
    ``sd`` (minutes, Mardia circular SD) and ``n`` (non-NaN values).
    """
    minutes = clock_minutes(frame[column])
    ok = ~np.isnan(minutes)
    ang = np.where(ok, minutes, 0.0) * _RAD_PER_MIN
    tmp = pd.DataFrame(
        {
            "_c": np.where(ok, np.cos(ang), 0.0),
            "_s": np.where(ok, np.sin(ang), 0.0),
            "_n": ok.astype(np.int64),
        },
        index=frame.index,
    )
    keys = [frame[k] for k in ([by] if isinstance(by, str) else list(by))]
    sums = tmp.groupby(keys, sort=True, observed=True).sum()
    n = sums["_n"].to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        c = sums["_c"].to_numpy() / n
        s = sums["_s"].to_numpy() / n
    mean = np.where(n > 0, _mean_from_resultant(c, s), np.nan)
    sd = np.where(n > 0, _sd_from_resultant(c, s), np.nan)
    return pd.DataFrame({"mean": mean, "sd": sd, "n": n}, index=sums.index)


def circular_median_rows(values: np.ndarray) -> np.ndarray:
    """Circular median of each row of a (rows, k) clock-minutes matrix (NaN ignored).

    Values are unwrapped onto the half-circle centred on the row's circular mean and the
    ordinary median is taken there: exact whenever a row's times span less than 12 h, which
    is always the case for one person's bedtimes in a fortnight.
    """
    mean = circular_mean_minutes(values, axis=1)
    unwrapped = mean[:, None] + circular_difference_minutes(values, mean[:, None])
    with warnings.catch_warnings():
        # All-NaN rows (no history) are expected and give NaN.
        warnings.simplefilter("ignore", category=RuntimeWarning)
        med = np.nanmedian(unwrapped, axis=1)
    return _wrap_minutes(med)


# =============================================================================================
# Sleep Regularity Index
# =============================================================================================


class SriResult(NamedTuple):
    """SRI of one person: value on the Phillips scale (-100..100, NaN if not reportable)."""

    sri: float
    pairs_used: int
    pairs_total: int


def _sri_from_matrix(
    values: np.ndarray,
    day_epochs: np.ndarray,
    group: np.ndarray,
    n_groups: int,
    min_pairs: int,
    min_valid_fraction: float,
):
    """SRI per group from an int8 (rows, M) matrix of 1 sleep / 0 wake / -1 missing.

    Rows of a group are consecutive days in order. Returns arrays (sri, used, total).
    """
    if values.shape[0] < 2:
        zeros = np.zeros(n_groups, dtype=np.int64)
        return np.full(n_groups, np.nan), zeros, zeros.copy()
    a = values[:-1]
    b = values[1:]
    same = group[:-1] == group[1:]
    valid = (a >= 0) & (b >= 0)
    n_valid = valid.sum(axis=1)
    n_match = ((a == b) & valid).sum(axis=1)
    common = np.minimum(day_epochs[:-1], day_epochs[1:])
    # Integer-safe "n_valid / common >= fraction" (avoids 0.7 float round-off at the edge).
    enough = n_valid >= np.ceil(min_valid_fraction * common - 1e-9)
    ok = same & enough & (n_valid > 0)
    g = group[:-1]
    used = np.bincount(g[ok], minlength=n_groups)
    total = np.bincount(g[same], minlength=n_groups)
    matches = np.bincount(g[ok], weights=n_match[ok], minlength=n_groups)
    compared = np.bincount(g[ok], weights=n_valid[ok], minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        sri = -100.0 + 200.0 * matches / compared
    sri = np.where((used >= min_pairs) & (compared > 0), sri, np.nan)
    return sri, used, total


def sri_from_days(
    days,
    *,
    day_epochs=None,
    min_pairs: int = SRI_MIN_PAIRS,
    min_valid_fraction: float = SRI_MIN_VALID_FRACTION,
) -> SriResult:
    """Sleep Regularity Index of one person from a days x epochs sleep/wake matrix.

    Parameters
    ----------
    days : array (N, M)
        Day ``j`` (noon to noon, local) as ``M`` epochs: 1 (or True) asleep, 0 awake,
        NaN (or -1) missing. Rows are consecutive days.
    day_epochs : array (N,), optional
        Real length of each day in epochs (DST days are 23 h or 25 h); a pair compares its
        common length ``min(len_j, len_j+1)`` from noon. Defaults to ``M`` for every day.
    min_pairs, min_valid_fraction
        Reportability rule (science.md §3): at least ``min_pairs`` day pairs each with at
        least ``min_valid_fraction`` of the common length valid on both days.

    Returns
    -------
    SriResult(sri, pairs_used, pairs_total)
        ``sri = -100 + 200 * sum(matching epochs) / sum(compared epochs)`` over the eligible
        consecutive day pairs, skipping epochs missing on either day (Phillips et al. 2017;
        100 identical days, 0 random, -100 reversed). NaN when not reportable.

    Example (science.md §3): asleep 23:00-07:00 then 23:00-08:00 at 30-s epochs, one pair,
    120 mismatches of 2,880 epochs -> 91.667 (with ``min_pairs=1``).
    """
    arr = np.asarray(days, dtype=float)
    if arr.ndim != 2:
        raise ValueError("days must be a 2-D (days x epochs) array")
    coded = np.where(np.isnan(arr) | (arr < 0), -1, (arr > 0).astype(np.int8)).astype(np.int8)
    n = arr.shape[0]
    lengths = (
        np.full(n, arr.shape[1], dtype=np.int64)
        if day_epochs is None
        else np.asarray(day_epochs, dtype=np.int64)
    )
    if lengths.shape != (n,) or (lengths > arr.shape[1]).any():
        raise ValueError("day_epochs must have one length per day, each <= the row width")
    # Epochs past a short day's real end are not part of that day.
    coded[np.arange(arr.shape[1])[None, :] >= lengths[:, None]] = -1
    sri, used, total = _sri_from_matrix(
        coded, lengths, np.zeros(n, dtype=np.int64), 1, min_pairs, min_valid_fraction
    )
    return SriResult(float(sri[0]), int(used[0]), int(total[0]))


@dataclass(frozen=True)
class SleepWakeGrid:
    """Sessions laid out on noon-to-noon local days, all participants stacked.

    ``values``: int8 array (rows, M) with 1 sleep, 0 wake, -1 missing (and -1 past the
    real end of a short day). ``days``: one row per matrix row with columns
    ``participant_id``, ``day`` (datetime64, the local date whose noon starts the row),
    ``epochs`` (real length of the day in grid epochs: 2,880 at 30 s, 2,760 / 3,000 on DST
    days), ``observed`` (a main sleep starts in that day). Rows of one participant are
    consecutive, in date order.
    """

    values: np.ndarray
    days: pd.DataFrame
    epoch_s: int


def _stage_arrays(stages: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate ragged per-session stage arrays (arrays, lists or int8 bytes)."""
    arrays = [
        np.frombuffer(x, dtype=np.int8)
        if isinstance(x, (bytes, bytearray, memoryview))
        else np.asarray(x, dtype=np.int8).ravel()
        for x in stages.tolist()
    ]
    lengths = np.fromiter((a.size for a in arrays), dtype=np.int64, count=len(arrays))
    flat = np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int8)
    return flat, lengths


def _to_ns(values: pd.Series) -> np.ndarray:
    return pd.to_datetime(values).astype("datetime64[ns]").astype(np.int64).to_numpy()


def sleep_wake_grid(
    sessions: pd.DataFrame,
    *,
    grid_epoch_s: int = SRI_GRID_EPOCH_S,
    default_epoch_s: int = 30,
    fill_wake_between_sessions: bool = True,
) -> SleepWakeGrid:
    """Lay sleep sessions onto noon-to-noon local days at ``grid_epoch_s`` resolution.

    Input ``sessions`` (one row per recorded sleep, naps included):

    - ``participant_id``
    - either ``start_local``: naive local datetime of the first epoch (every day is then
      24 h; DST is ignored), or ``start``: tz-aware datetime of the first epoch together
      with ``timezone`` (IANA name, one per participant): days are then real local
      noon-to-noon intervals, 23 h or 25 h long on DST changes.
    - ``stages``: 1-D canonical hypnogram per session (numpy array, list or int8 ``bytes``):
      sleep = 1..5, wake = 0, no data = -1 (design.md "Canonical hypnogram").
    - ``epoch_s`` (optional, default ``default_epoch_s``): seconds per stage epoch.
    - ``is_nap`` (optional bool): a nap's epochs are laid out, but a nap alone does not make
      the day observed.

    Missing versus wake (our choice; science.md §3 says no-data is missing, never wake):
    a wearable records only the sleep itself. With ``fill_wake_between_sessions`` (default),
    a noon-to-noon day in which a main sleep *starts* is "observed" and its epochs outside
    every session count as wake; a day in which no main sleep starts is missing except for
    the epochs of sessions that spill into it. Epochs coded -1 inside a session are always
    missing. With ``False``, only session epochs are valid (for 24-h actigraphy-like input).
    Overlapping sessions: sleep beats wake beats missing.
    """
    required = {"participant_id", "stages"}
    missing_cols = required - set(sessions.columns)
    if missing_cols:
        raise ValueError(f"sessions lack columns: {sorted(missing_cols)}")
    grid_ns = int(grid_epoch_s) * _NS_PER_S
    empty = SleepWakeGrid(
        np.zeros((0, 0), dtype=np.int8),
        pd.DataFrame(
            {
                "participant_id": pd.Series(dtype=object),
                "day": pd.Series(dtype="datetime64[ns]"),
                "epochs": pd.Series(dtype=np.int64),
                "observed": pd.Series(dtype=bool),
            }
        ),
        grid_epoch_s,
    )
    if sessions.empty:
        return empty

    pid_codes, pid_uniques = pd.factorize(sessions["participant_id"], sort=True)
    n_part = len(pid_uniques)
    flat_stages, n_epochs = _stage_arrays(sessions["stages"])
    epoch_s = (
        sessions["epoch_s"].fillna(default_epoch_s).to_numpy(dtype=np.int64)
        if "epoch_s" in sessions.columns
        else np.full(len(sessions), default_epoch_s, dtype=np.int64)
    )
    epoch_ns = epoch_s * _NS_PER_S
    is_nap = (
        sessions["is_nap"].fillna(False).to_numpy(dtype=bool)
        if "is_nap" in sessions.columns
        else np.zeros(len(sessions), dtype=bool)
    )

    use_tz = "start" in sessions.columns and "timezone" in sessions.columns
    if not use_tz and "start_local" not in sessions.columns:
        raise ValueError("sessions need start_local, or start + timezone")

    if use_tz:
        # One timezone per participant: the first one seen.
        tz_of_part = (
            pd.Series(sessions["timezone"].to_numpy(), index=pid_codes)
            .groupby(level=0)
            .first()
            .reindex(range(n_part))
            .to_numpy()
        )
        start_utc = pd.to_datetime(sessions["start"], utc=True)
        abs_start = start_utc.astype("datetime64[ns, UTC]").astype(np.int64).to_numpy()
        abs_end = abs_start + n_epochs * epoch_ns
        local_start = np.empty(len(sessions), dtype=np.int64)
        local_end = np.empty(len(sessions), dtype=np.int64)
        sess_tz = tz_of_part[pid_codes]
        for tz in pd.unique(sess_tz):  # a handful of zones, not a per-person loop
            m = sess_tz == tz
            for src, dst in ((abs_start, local_start), (abs_end, local_end)):
                loc = pd.DatetimeIndex(src[m].astype("datetime64[ns]"), tz="UTC").tz_convert(tz)
                dst[m] = loc.tz_localize(None).asi8
    else:
        abs_start = _to_ns(sessions["start_local"])
        abs_end = abs_start + n_epochs * epoch_ns
        local_start, local_end = abs_start, abs_end

    # Day number (days since 1970-01-01) of the noon that opens each session's first/last day.
    first_day_s = np.floor_divide(local_start - _NOON_NS, _DAY_NS)
    last_day_s = np.floor_divide(np.maximum(local_end - 1, local_start) - _NOON_NS, _DAY_NS)
    first_day = np.full(n_part, np.iinfo(np.int64).max)
    last_day = np.full(n_part, np.iinfo(np.int64).min)
    np.minimum.at(first_day, pid_codes, first_day_s)
    np.maximum.at(last_day, pid_codes, last_day_s)
    n_days = last_day - first_day + 1

    # Rows: one per participant-day, plus the boundary noons (one more per participant).
    row_part = np.repeat(np.arange(n_part), n_days)
    part_row0 = np.concatenate([[0], np.cumsum(n_days)[:-1]])
    row_day = first_day[row_part] + (np.arange(row_part.size) - part_row0[row_part])
    next_noon_naive = (row_day + 1) * _DAY_NS + _NOON_NS
    noon_naive = row_day * _DAY_NS + _NOON_NS
    if use_tz:
        noon_abs = np.empty_like(noon_naive)
        next_noon_abs = np.empty_like(next_noon_naive)
        row_tz = tz_of_part[row_part]
        for tz in pd.unique(row_tz):
            m = row_tz == tz
            for src, dst in ((noon_naive, noon_abs), (next_noon_naive, next_noon_abs)):
                idx = pd.DatetimeIndex(src[m].astype("datetime64[ns]")).tz_localize(
                    tz, ambiguous=False, nonexistent="shift_forward"
                )
                dst[m] = idx.tz_convert("UTC").tz_localize(None).asi8
    else:
        noon_abs, next_noon_abs = noon_naive, next_noon_naive
    day_epochs = ((next_noon_abs - noon_abs) // grid_ns).astype(np.int64)
    row_flat0 = np.concatenate([[0], np.cumsum(day_epochs)[:-1]]).astype(np.int64)
    total_flat = int(day_epochs.sum())
    part_origin = noon_abs[part_row0]  # participant's first noon (absolute)
    part_flat0 = row_flat0[part_row0]
    part_flat_end = np.append(part_flat0[1:], total_flat)

    # Grid epochs covered by each session: those whose start lies in [start, end).
    origin = part_origin[pid_codes]
    g0 = -np.floor_divide(-(abs_start - origin), grid_ns)  # ceil
    g1 = np.minimum(
        -np.floor_divide(-(abs_end - origin), grid_ns),
        (part_flat_end - part_flat0)[pid_codes],  # never past the participant's last day
    )
    counts = np.maximum(g1 - g0, 0)
    sess = np.repeat(np.arange(len(sessions)), counts)
    g = np.arange(sess.size) - np.repeat(np.cumsum(counts) - counts - g0, counts)
    # Stage epoch under the start of each grid epoch.
    offset_ns = (origin - abs_start)[sess] + g * grid_ns
    stage_idx = np.minimum(offset_ns // epoch_ns[sess], (n_epochs - 1)[sess])
    del offset_ns
    stage_off = np.cumsum(n_epochs) - n_epochs
    codes = flat_stages[stage_off[sess] + stage_idx]
    del stage_idx
    val = _CODE_TO_SLEEP[np.clip(codes, -2, 6).astype(np.int64) + 2]
    del codes
    flat = part_flat0[pid_codes][sess] + g
    del sess, g

    width = int(day_epochs.max()) if day_epochs.size else 0
    n_rows = row_part.size
    if (day_epochs == width).all():  # no DST day: the flat index is the cell
        cell = flat
    else:
        row = np.searchsorted(row_flat0, flat, side="right") - 1
        cell = row * width + (flat - row_flat0[row])
        del row
    del flat
    session_layer = np.full(n_rows * width, -2, dtype=np.int8)  # -2 = no session here
    np.maximum.at(session_layer, cell, val)
    del cell, val

    # A day is observed when a main sleep starts in it.
    start_flat = part_flat0[pid_codes] + np.clip(g0, 0, None)
    start_row = np.searchsorted(row_flat0, start_flat, side="right") - 1
    observed = np.zeros(n_rows, dtype=bool)
    observed[start_row[(~is_nap) & (counts > 0)]] = True

    values = session_layer.reshape(n_rows, width)
    background_row = np.where(observed & fill_wake_between_sessions, 0, -1).astype(np.int8)
    no_session = values == -2
    values[no_session] = np.broadcast_to(background_row[:, None], values.shape)[no_session]
    del no_session
    # Epochs past the real end of a short (DST) day do not exist.
    values[np.arange(width)[None, :] >= day_epochs[:, None]] = -1

    days = pd.DataFrame(
        {
            "participant_id": pid_uniques.take(row_part),
            "day": (row_day * _DAY_NS).astype("datetime64[ns]"),
            "epochs": day_epochs,
            "observed": observed,
        }
    )
    return SleepWakeGrid(values, days, grid_epoch_s)


def sleep_regularity_index(
    sessions: pd.DataFrame,
    *,
    grid_epoch_s: int = SRI_GRID_EPOCH_S,
    default_epoch_s: int = 30,
    fill_wake_between_sessions: bool = True,
    min_pairs: int = SRI_MIN_PAIRS,
    min_valid_fraction: float = SRI_MIN_VALID_FRACTION,
) -> pd.DataFrame:
    """Sleep Regularity Index per participant (Phillips et al. 2017; science.md §3).

    ``sessions``: see ``sleep_wake_grid`` (columns ``participant_id``, ``start_local`` or
    ``start`` + ``timezone``, ``stages``, optional ``epoch_s``, ``is_nap``). Pass every
    session of the window (naps included); the window is the caller's choice.

    Method: binarize epochs (sleep 1, wake 0, no-data missing), lay them onto local
    noon-to-noon days on a 30-s grid, compare each day with the next epoch by epoch on
    their common length (DST days), skip epochs missing on either day, and keep day pairs
    with at least 70 % of epochs valid. ``SRI = -100 + 200 * matches / compared`` pooled
    over the kept pairs; NaN unless at least ``min_pairs`` (5) pairs are kept. Scale:
    100 identical days, 0 random, -100 reversed (the Phillips scale, not the 50..100
    "agreement percentage" some apps show: agreement = (SRI + 100) / 2).

    Returns a frame indexed by ``participant_id`` with columns ``sri`` (float, NaN if not
    reportable), ``sri_pairs_used`` (int), ``sri_pairs_total`` (int, consecutive day pairs
    in the grid) and ``sri_days`` (int, days in the grid).
    """
    columns = ["sri", "sri_pairs_used", "sri_pairs_total", "sri_days"]
    if sessions.empty:
        return pd.DataFrame(columns=columns, index=pd.Index([], name="participant_id"))
    # Whole participants per batch, about SRI_BATCH_SESSIONS sessions each: a few batches,
    # each fully vectorized, keep the epoch-level temporaries small.
    part_codes, _ = pd.factorize(sessions["participant_id"], sort=True)
    per_part = np.bincount(part_codes)
    part_batch = (np.cumsum(per_part) - per_part) // SRI_BATCH_SESSIONS
    frames = []
    for _, chunk in sessions.groupby(part_batch[part_codes], sort=True):
        grid = sleep_wake_grid(
            chunk,
            grid_epoch_s=grid_epoch_s,
            default_epoch_s=default_epoch_s,
            fill_wake_between_sessions=fill_wake_between_sessions,
        )
        codes, uniques = pd.factorize(grid.days["participant_id"], sort=False)
        sri, used, total = _sri_from_matrix(
            grid.values,
            grid.days["epochs"].to_numpy(),
            codes,
            len(uniques),
            min_pairs,
            min_valid_fraction,
        )
        frames.append(
            pd.DataFrame(
                {
                    "sri": sri,
                    "sri_pairs_used": used.astype(np.int64),
                    "sri_pairs_total": total.astype(np.int64),
                    "sri_days": np.bincount(codes, minlength=len(uniques)).astype(np.int64),
                },
                index=pd.Index(uniques, name="participant_id"),
            )
        )
    return pd.concat(frames)[columns]


# =============================================================================================
# Timing: midsleep variability, social jet lag, chronotype
# =============================================================================================


def main_sleep_rows(nights: pd.DataFrame) -> pd.DataFrame:
    """Main sleeps only: ``is_main_sleep`` when given, else not ``is_nap``, else all rows."""
    if "is_main_sleep" in nights.columns:
        return nights[nights["is_main_sleep"].fillna(False).astype(bool)]
    if "is_nap" in nights.columns:
        return nights[~nights["is_nap"].fillna(False).astype(bool)]
    return nights


def midsleep_variability(
    nights: pd.DataFrame,
    *,
    midsleep_col: str = "midsleep_local",
    min_nights: int = MIDSLEEP_SD_MIN_NIGHTS,
) -> pd.DataFrame:
    """Circular mean and SD of midsleep per participant (science.md §4).

    ``nights``: one row per night with ``participant_id``, ``midsleep_local`` (naive local
    datetime or minutes past local midnight) and optionally ``is_main_sleep`` / ``is_nap``
    (naps are left out). The window is whatever rows are passed.

    Returns a frame indexed by ``participant_id``: ``midsleep_mean_min`` (circular mean,
    minutes past midnight), ``midsleep_sd_min`` (circular SD in minutes, NaN with fewer
    than ``min_nights`` nights), ``midsleep_nights`` (int).
    """
    main = main_sleep_rows(nights)
    stats = circular_stats_by(main, "participant_id", midsleep_col)
    out = pd.DataFrame(
        {
            "midsleep_mean_min": stats["mean"],
            "midsleep_sd_min": stats["sd"].where(stats["n"] >= min_nights),
            "midsleep_nights": stats["n"].astype(np.int64),
        }
    )
    out.index.name = "participant_id"
    return out


def social_jet_lag_hours(msw_min, msf_min):
    """Social jet lag in hours: ``|MSF - MSW|`` on the shorter arc of the 24-h clock.

    Inputs are midsleep clock times in minutes past midnight (scalars or arrays).
    Examples (science.md §4): MSW 03:30, MSF 05:00 -> 1.5 h; MSW 04:30, MSF 23:30 -> 5 h.
    """
    return np.abs(circular_difference_minutes(msf_min, msw_min)) / 60.0


def msf_sc_hours(msf_h, sd_work_h, sd_free_h, sd_week_h=None):
    """Chronotype MSFsc (MCTQ; Roenneberg 2003, 2012), in clock hours in ``[0, 24)``.

    ``MSFsc = MSF`` if ``SD_free <= SD_work``, else ``MSF - (SD_free - SD_week) / 2`` with
    ``SD_week = (5 SD_work + 2 SD_free) / 7`` unless ``sd_week_h`` is given. ``MSF`` is the
    free-day midsleep clock time in hours, ``SD_*`` sleep durations in hours.

    science.md §4 example: MSF 04:00, SD_work 6 h, SD_free 7 h, with SD_week rounded to
    6.29 h -> 3.645 h = 03:38:42. With the unrounded SD_week (6.2857 h) the exact value is
    03:38:34.
    """
    msf = np.asarray(msf_h, dtype=float)
    sdw = np.asarray(sd_work_h, dtype=float)
    sdf = np.asarray(sd_free_h, dtype=float)
    week = (
        (MCTQ_WORKDAYS_PER_WEEK * sdw + MCTQ_FREE_DAYS_PER_WEEK * sdf)
        / (MCTQ_WORKDAYS_PER_WEEK + MCTQ_FREE_DAYS_PER_WEEK)
        if sd_week_h is None
        else np.asarray(sd_week_h, dtype=float)
    )
    corrected = np.where(sdf > sdw, msf - (sdf - week) / 2.0, msf)
    out = np.mod(corrected, 24.0)
    return float(out) if out.ndim == 0 else out


def social_jet_lag(
    nights: pd.DataFrame,
    *,
    calendar: pd.DataFrame | None = None,
    free_wake_weekdays: Sequence[int] = FREE_WAKE_WEEKDAYS,
    midsleep_col: str = "midsleep_local",
    duration_col: str = "spt_min",
    min_nights_per_kind: int = SJL_MIN_NIGHTS_PER_KIND,
) -> pd.DataFrame:
    """Workday/free-day midsleep, social jet lag and chronotype MSFsc per participant.

    ``nights``: one row per night with ``participant_id``, ``night_date`` (wake-up date,
    local), ``midsleep_local`` (naive local datetime or minutes past midnight), the sleep
    duration ``spt_min`` (MCTQ "sleep duration" runs from sleep onset to sleep end, i.e. the
    sleep period time of science.md §1; without it MSFsc is NaN), optional
    ``is_main_sleep`` / ``is_nap`` (naps are left out).

    Free versus work nights: a night is free when the day it ends on (its ``night_date``)
    is free. ``calendar`` (optional) has ``participant_id``, ``date``, ``is_free`` (bool)
    and overrides the default for the dates it lists; otherwise nights ending on a weekday
    in ``free_wake_weekdays`` (Saturday, Sunday: the nights before Saturday and Sunday)
    are free (science.md §4).

    Returns a frame indexed by ``participant_id``:
    ``msw_min`` / ``msf_min`` (circular mean midsleep on work / free nights, minutes past
    midnight), ``nights_work`` / ``nights_free`` (int), ``sd_work_h`` / ``sd_free_h`` /
    ``sd_week_h`` (mean sleep duration, hours; week = (5 work + 2 free) / 7),
    ``sjl_h`` (|MSF - MSW| on the shorter arc, hours), ``sjl_signed_h`` (MSF - MSW on the
    shorter arc, positive when free-night sleep is later), ``msf_sc_min`` (MSFsc, minutes
    past midnight). Figures are NaN unless both kinds have ``min_nights_per_kind`` nights.
    """
    main = main_sleep_rows(nights).copy()
    main["night_date"] = pd.to_datetime(main["night_date"]).dt.normalize()
    is_free = main["night_date"].dt.day_of_week.isin(list(free_wake_weekdays))
    if calendar is not None and len(calendar):
        cal = calendar.assign(date=pd.to_datetime(calendar["date"]).dt.normalize())
        cal = cal.drop_duplicates(["participant_id", "date"], keep="last")
        override = pd.MultiIndex.from_frame(main[["participant_id", "night_date"]])
        looked_up = cal.set_index(["participant_id", "date"])["is_free"].reindex(override)
        is_free = pd.Series(
            np.where(looked_up.notna().to_numpy(), looked_up.to_numpy(), is_free.to_numpy()),
            index=main.index,
        ).astype(bool)
    main["_kind"] = np.where(is_free, "free", "work")
    timing = circular_stats_by(main, ["participant_id", "_kind"], midsleep_col)
    if duration_col in main.columns:
        duration = main.groupby(["participant_id", "_kind"], sort=True)[duration_col].mean() / 60.0
    else:  # no duration: MSW/MSF/SJL still defined, MSFsc is not
        duration = pd.Series(np.nan, index=timing.index)
    wide = pd.concat({"mean": timing["mean"], "n": timing["n"], "sd": duration}, axis=1).unstack(
        "_kind"
    )
    pids = pd.Index(pd.unique(main["participant_id"]), name="participant_id").sort_values()
    wide = wide.reindex(pids)

    def col(name, kind):
        key = (name, kind)
        if key in wide.columns:
            return wide[key].to_numpy(dtype=float)
        return np.full(len(wide), np.nan)

    n_work = np.nan_to_num(col("n", "work")).astype(np.int64)
    n_free = np.nan_to_num(col("n", "free")).astype(np.int64)
    ok = (n_work >= min_nights_per_kind) & (n_free >= min_nights_per_kind)
    msw = np.where(ok, col("mean", "work"), np.nan)
    msf = np.where(ok, col("mean", "free"), np.nan)
    sd_work = np.where(ok, col("sd", "work"), np.nan)
    sd_free = np.where(ok, col("sd", "free"), np.nan)
    sd_week = (MCTQ_WORKDAYS_PER_WEEK * sd_work + MCTQ_FREE_DAYS_PER_WEEK * sd_free) / (
        MCTQ_WORKDAYS_PER_WEEK + MCTQ_FREE_DAYS_PER_WEEK
    )
    signed = circular_difference_minutes(msf, msw) / 60.0
    msf_sc = np.asarray(msf_sc_hours(msf / 60.0, sd_work, sd_free, sd_week)) * 60.0
    return pd.DataFrame(
        {
            "msw_min": msw,
            "msf_min": msf,
            "nights_work": n_work,
            "nights_free": n_free,
            "sd_work_h": sd_work,
            "sd_free_h": sd_free,
            "sd_week_h": sd_week,
            "sjl_h": np.abs(signed),
            "sjl_signed_h": signed,
            "msf_sc_min": msf_sc,
        },
        index=pids,
    )
