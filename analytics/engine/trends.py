"""Monthly trends of one nightly metric over an organization, with small-group suppression.

Pure module (no Django). Each calendar month (of wake-up dates, science.md §2) is one
cell: its distinct participants, nights, and the mean / median of the metric over the
month's nights (each night one observation, as in cohorts.py). A month with fewer
participants than the organization's minimum group size is suppressed (shared/
reliability.md §4). Months are not summed into a published total, so no hidden month can
be recovered by subtraction and complementary suppression is not needed here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analytics.engine.cohorts import NIGHT_METRICS, REASON_BELOW_MIN


def monthly_trends(
    nights: pd.DataFrame, *, metric: str, min_group_size: int, start, end, include_naps: bool = False
) -> pd.DataFrame:
    """Monthly figures of ``metric`` for every month overlapping ``[start, end]``.

    Parameters
    ----------
    nights : DataFrame
        ``participant_id``, ``night_date`` and the metric's column (``NIGHT_METRICS``:
        score 0-100, tst minutes, se %, waso minutes); optional ``is_nap`` (left out
        unless ``include_naps``). Rows outside ``[start, end]`` are ignored.
    metric : one of ``NIGHT_METRICS``
    min_group_size : int
        Months with fewer distinct participants are suppressed.

    Returns
    -------
    DataFrame, one row per month in order (months without nights included, with 0
    counts): ``month`` (``YYYY-MM``), ``participants``, ``nights`` (Int64, NA when
    suppressed), ``mean``, ``median`` (float, NA when suppressed or no value),
    ``suppressed`` (bool), ``suppression_reason`` (``below_min_group_size`` or None).
    A month with no participants is not suppressed: a 0 reveals nobody.
    """
    if metric not in NIGHT_METRICS:
        raise ValueError(f"unknown metric {metric!r}")
    column = NIGHT_METRICS[metric]
    start, end = pd.Timestamp(start).normalize(), pd.Timestamp(end).normalize()
    frame = nights
    if not include_naps and "is_nap" in frame.columns:
        frame = frame[~frame["is_nap"].fillna(False).astype(bool)]
    dates = pd.to_datetime(frame["night_date"]).dt.normalize()
    frame = frame.assign(_date=dates)[(dates >= start) & (dates <= end)]
    months = pd.period_range(start.to_period("M"), end.to_period("M"), freq="M")
    values = pd.to_numeric(frame[column], errors="coerce").astype(float)
    grouped = pd.DataFrame(
        {"participant_id": frame["participant_id"], "value": values, "month": frame["_date"].dt.to_period("M")}
    ).groupby("month")
    out = pd.DataFrame(
        {
            "participants": grouped["participant_id"].nunique(),
            "nights": grouped.size(),
            "mean": grouped["value"].mean(),
            "median": grouped["value"].median(),
        }
    ).reindex(months)
    participants = out["participants"].fillna(0).to_numpy(dtype=np.int64)
    suppressed = (participants > 0) & (participants < int(min_group_size))
    result = pd.DataFrame(
        {
            "month": [str(m) for m in months],
            "participants": pd.array(participants, dtype="Int64"),
            "nights": pd.array(out["nights"].fillna(0).to_numpy(dtype=np.int64), dtype="Int64"),
            "mean": out["mean"].to_numpy(dtype=float),
            "median": out["median"].to_numpy(dtype=float),
            "suppressed": suppressed,
            "suppression_reason": pd.Series(np.where(suppressed, REASON_BELOW_MIN, None), dtype=object),
        }
    )
    result[["participants", "nights"]] = result[["participants", "nights"]].mask(
        np.repeat(suppressed[:, None], 2, axis=1)
    )
    result[["mean", "median"]] = result[["mean", "median"]].mask(np.repeat(suppressed[:, None], 2, axis=1))
    return result
