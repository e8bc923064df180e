"""Which calendar date a sleep belongs to, naps, and the main sleep of a date.

Pure functions over pandas/numpy objects; no Django import (shared/design.md).

Rule (shared/science.md §2, as Fitbit, Oura and Junction do): a sleep belongs to the
**wake-up date** in the participant's local time zone; the UI shows it as "night of" the
previous date. A sleep shorter than ``NAP_MAX_HOURS`` that starts between
``NAP_WINDOW_START_HOUR`` and ``NAP_WINDOW_END_HOUR`` local time is a nap: stored, flagged
and left out of nightly averages. When one person has several non-nap sleeps on one date,
the longest (by time in bed) is the main sleep; ties go to the later start.

Time zones are applied with the IANA database through pandas, so a night across a DST
change gets the right wake-up date and its true duration (a 23- or 25-hour local day does
not stretch or shrink the night).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# A daytime sleep this short is a nap, not a night (our choice; common in consumer apps).
NAP_MAX_HOURS = 3.0
NAP_WINDOW_START_HOUR = 10
NAP_WINDOW_END_HOUR = 18

_NAT = np.iinfo(np.int64).min  # NaT as int64 nanoseconds
_SECOND_NS = 1_000_000_000
_HOUR_NS = 3600 * _SECOND_NS
_DAY_NS = 24 * _HOUR_NS


def assign_night_dates(start: pd.Series, end: pd.Series, tz: pd.Series) -> pd.DataFrame:
    """Night date and nap flag for many sleeps in one call.

    Parameters
    ----------
    start, end : Series of tz-aware datetimes (any zone; UTC in the store)
    tz : Series of IANA zone names, one per sleep (same index as ``start``)

    Returns a DataFrame on the same index with columns:
      night_date (datetime.date, wake-up date in local time), is_nap (bool),
      local_start, local_end (naive local datetimes), duration_h (float hours).
    """
    start = pd.to_datetime(start, utc=True)
    end = pd.to_datetime(end, utc=True)
    if not tz.index.equals(start.index):
        tz = tz.reindex(start.index)
    local_start = _local_ns(start, tz)
    local_end = _local_ns(end, tz)
    duration_h = (end - start).dt.total_seconds() / 3600.0
    known = local_start != _NAT
    start_hour = np.floor_divide(local_start, _HOUR_NS) % 24
    is_nap = (
        (duration_h.to_numpy() < NAP_MAX_HOURS)
        & known
        & (start_hour >= NAP_WINDOW_START_HOUR)
        & (start_hour < NAP_WINDOW_END_HOUR)
    )
    # datetime64[D] -> object gives datetime.date; a sleep without a zone keeps NaT.
    night_date = local_end.view("datetime64[ns]").astype("datetime64[D]").astype(object)
    night_date[local_end == _NAT] = pd.NaT
    return pd.DataFrame(
        {
            "night_date": night_date,
            "is_nap": is_nap,
            "local_start": local_start.view("datetime64[ns]"),
            "local_end": local_end.view("datetime64[ns]"),
            "duration_h": duration_h,
        },
        index=start.index,
    )


def _local_ns(utc: pd.Series, tz: pd.Series) -> np.ndarray:
    """Naive local datetimes as int64 nanoseconds (NaT where the zone is missing)."""
    utc_ns = utc.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")
    out = np.full(utc_ns.size, _NAT, dtype=np.int64)
    codes, zones = pd.factorize(tz.to_numpy(dtype=object))
    # One conversion per distinct zone (an organization has few), not one per row.
    for code, zone in enumerate(zones):
        rows = codes == code
        local = pd.DatetimeIndex(utc_ns[rows]).tz_localize("UTC").tz_convert(zone).tz_localize(None)
        out[rows] = local.to_numpy(dtype="datetime64[ns]").view(np.int64)
    return out


def clock_seconds(local, offset_min) -> np.ndarray:
    """Clock time ``offset_min`` minutes after naive local datetimes, as seconds past midnight.

    ``local``: naive local datetimes (datetime64 array or Series); ``offset_min``: minutes
    (scalar or one per row; NaN allowed). Seconds are truncated, as a clock shows them.
    Returns float64 seconds in ``[0, 86400)``, NaN where ``local`` is NaT or the offset NaN.
    """
    local_ns = np.asarray(local, dtype="datetime64[ns]").view(np.int64)
    offsets = np.broadcast_to(np.asarray(offset_min, dtype=float), local_ns.shape)
    if np.ndim(offset_min) == 0 and offset_min == 0:
        offset_ns = np.zeros(local_ns.shape, dtype=np.int64)
    else:
        # pandas' own float minutes -> nanoseconds conversion (its rounding, e.g. 1/3 min).
        offset_ns = pd.to_timedelta(offsets, unit="min").to_numpy(dtype="timedelta64[ns]")
        offset_ns = offset_ns.view(np.int64)
    known = (local_ns != _NAT) & (offset_ns != _NAT)
    seconds = np.floor_divide(np.mod(local_ns + offset_ns, _DAY_NS), _SECOND_NS)
    return np.where(known, seconds, np.nan)


def mark_main_sleep(frame: pd.DataFrame) -> pd.Series:
    """True for the main sleep of each (participant_id, night_date).

    ``frame`` needs columns participant_id, night_date, is_nap, tib_min, start. Naps are
    never main; among the rest the longest time in bed wins, ties to the later start
    (then to the later row). A row without a participant or a night date is never main.
    """
    flags = main_sleep_flags(
        pd.to_numeric(frame["participant_id"]).to_numpy(dtype=float, na_value=np.nan),
        pd.to_datetime(frame["night_date"]).to_numpy(dtype="datetime64[D]"),
        frame["is_nap"].astype(bool).to_numpy(),
        frame["tib_min"].to_numpy(dtype=float, na_value=np.nan),
        pd.to_datetime(frame["start"], utc=True).dt.tz_localize(None).to_numpy(),
    )
    return pd.Series(frame.index.isin(frame.index[flags]), index=frame.index)


def main_sleep_flags(participant_id, night_date, is_nap, tib_min, start) -> np.ndarray:
    """``mark_main_sleep`` over arrays, one entry per sleep; returns a boolean array.

    participant_id: numbers (NaN: unknown); night_date: datetime64[D] (NaT: unknown);
    is_nap: bool; tib_min: float minutes; start: datetime64 (UTC, naive).
    """
    participant = np.asarray(participant_id, dtype=float)
    night = np.asarray(night_date, dtype="datetime64[D]")
    out = np.zeros(participant.size, dtype=bool)
    known = ~np.isnan(participant) & ~np.isnat(night)
    rows = np.flatnonzero(known & ~np.asarray(is_nap, dtype=bool))
    if rows.size == 0:
        return out
    tib = np.asarray(tib_min, dtype=float)[rows]
    first_to_last = np.asarray(start)[rows]
    # A stable sort on (participant, date, time in bed, start), NaN/NaT last: the last row
    # of each (participant, date) wins.
    order = rows[np.lexsort((first_to_last, tib, night[rows], participant[rows]))]
    person, day = participant[order], night[order]
    last = np.ones(order.size, dtype=bool)
    last[:-1] = (person[1:] != person[:-1]) | (day[1:] != day[:-1])
    out[order[last]] = True
    return out
