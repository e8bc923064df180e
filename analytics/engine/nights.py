"""Which calendar date a sleep belongs to, naps, and the main sleep of a date.

Pure functions over pandas objects; no Django import (shared/design.md).

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

import pandas as pd

# A daytime sleep this short is a nap, not a night (our choice; common in consumer apps).
NAP_MAX_HOURS = 3.0
NAP_WINDOW_START_HOUR = 10
NAP_WINDOW_END_HOUR = 18


def assign_night_dates(start: pd.Series, end: pd.Series, tz: pd.Series) -> pd.DataFrame:
    """Night date and nap flag for many sleeps in one call.

    Parameters
    ----------
    start, end : Series of tz-aware datetimes (any zone; UTC in the store)
    tz : Series of IANA zone names, one per sleep

    Returns a DataFrame on the same index with columns:
      night_date (datetime.date, wake-up date in local time), is_nap (bool),
      local_start, local_end (naive local datetimes), duration_h (float hours).
    """
    start = pd.to_datetime(start, utc=True)
    end = pd.to_datetime(end, utc=True)
    local_start = pd.Series(pd.NaT, index=start.index, dtype="datetime64[ns]")
    local_end = pd.Series(pd.NaT, index=start.index, dtype="datetime64[ns]")
    # One conversion per distinct zone (an organization has few), not one per row.
    for zone, rows in tz.groupby(tz, sort=False).groups.items():
        local_start.loc[rows] = start.loc[rows].dt.tz_convert(zone).dt.tz_localize(None).astype("datetime64[ns]")
        local_end.loc[rows] = end.loc[rows].dt.tz_convert(zone).dt.tz_localize(None).astype("datetime64[ns]")
    duration_h = (end - start).dt.total_seconds() / 3600.0
    start_hour = local_start.dt.hour
    is_nap = (
        (duration_h < NAP_MAX_HOURS)
        & (start_hour >= NAP_WINDOW_START_HOUR)
        & (start_hour < NAP_WINDOW_END_HOUR)
    )
    return pd.DataFrame(
        {
            "night_date": local_end.dt.date,
            "is_nap": is_nap.astype(bool),
            "local_start": local_start,
            "local_end": local_end,
            "duration_h": duration_h,
        },
        index=start.index,
    )


def mark_main_sleep(frame: pd.DataFrame) -> pd.Series:
    """True for the main sleep of each (participant_id, night_date).

    ``frame`` needs columns participant_id, night_date, is_nap, tib_min, start. Naps are
    never main; among the rest the longest time in bed wins, ties to the later start.
    """
    candidates = frame.loc[~frame["is_nap"].astype(bool)]
    if candidates.empty:
        return pd.Series(False, index=frame.index)
    ordered = candidates.sort_values(["participant_id", "night_date", "tib_min", "start"])
    winners = ordered.groupby(["participant_id", "night_date"], sort=False).tail(1).index
    return pd.Series(frame.index.isin(winners), index=frame.index)
