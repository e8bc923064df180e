"""Cohort reports with small-group suppression (primary and complementary).

Pure module (no Django). Figures per group of participants (department, site, age band,
any attribute), over a period, with the change against the previous period, and the
privacy rules of shared/reliability.md §4: no cell describes fewer participants than the
organization's minimum group size, and no hidden cell can be recovered by subtraction
(CMS cell-suppression policy; Viva Glint "also hides the next-smallest group").

Suppression algorithm (README source)
====================================

The report is a tree of additive cells: the total, the groups of the first column, and
(with two columns) the sub-groups of each first-level group. Every participant belongs to
exactly one leaf (their attributes on their latest night in the period), so every
additive figure (participants, nights, sums behind the means) of a parent equals the sum
over its children. Each parent with its children is one *equation*.

1. *Primary*: a cell with fewer distinct participants than ``min_group_size`` is
   suppressed (reason ``below_min_group_size``). Cells with no participants do not exist
   (a 0 reveals nothing; CMS allows 0).
2. *Complementary*: repeat until nothing changes: in every equation holding exactly one
   suppressed cell, suppress one more cell: the visible child with the fewest participants
   (ties: fewest nights, then label order), or the parent if no child is visible (reason
   ``complementary``).

Then every equation has 0 or at least 2 hidden cells. In a tree of sums that is enough
to stop exact disclosure: for any hidden cell one can move its value up or down and
compensate with another hidden cell in each equation it sits in, walking up or down the
tree without ever closing a loop, so the published figures never pin a hidden cell down.
What subtraction does give is the sum of two or more hidden cells, never one group.
This covers counts and every mean, because a mean times its count is additive over the
same tree.

The trend (change of means against the previous period) publishes previous-period means
implicitly (current mean - delta). The previous period gets the same treatment on its own
figures, starting from its own primary suppressions plus every cell hidden in the current
report or absent from it; a delta is shown only when its cell is visible in both.

Each participant is filed under their attributes on their latest night *in that period*.
Statistics: participants (distinct), nights, and mean / median / 25th / 75th percentile
of score, TST, efficiency and WASO over the group's nights (each night one observation);
regularity (e.g. SRI) over the group's participants (one value each).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

# Values of a grouping column that are missing become this label (group labels are strings).
MISSING_GROUP_LABEL = "(not set)"
REASON_BELOW_MIN = "below_min_group_size"
REASON_COMPLEMENTARY = "complementary"
# Viva Insights / Glint floor (reliability.md §4): a minimum group size below 2 protects nobody.
MIN_ALLOWED_GROUP_SIZE = 2

# Report metric -> input column (minutes unless noted).
NIGHT_METRICS = {
    "score": "score",
    "tst": "tst_min",
    "se": "se_pct",
    "waso": "waso_min",
}
_STATS = ("mean", "median", "p25", "p75")


def apply_small_group_suppression(
    cells: pd.DataFrame, *, min_group_size: int, initially_hidden=None
) -> pd.DataFrame:
    """Primary plus complementary suppression on a tree of additive cells.

    ``cells`` (one row per cell; any index): ``cell`` (unique hashable id), ``parent``
    (id of the parent cell, or None / NaN for the root), ``participants`` (int),
    ``nights`` (int), ``label`` (str, for deterministic tie-breaking).
    ``initially_hidden`` (optional bool array): cells hidden for another reason (e.g.
    hidden in a related table); they count as suppressed with reason ``complementary``.

    Returns a frame on ``cells.index`` with ``suppressed`` (bool) and
    ``suppression_reason`` (``below_min_group_size``, ``complementary`` or None).
    See the module docstring for the algorithm and why it is sufficient.
    """
    n = len(cells)
    participants = cells["participants"].to_numpy(dtype=np.int64)
    hidden = participants < min_group_size
    reason = np.where(hidden, REASON_BELOW_MIN, None).astype(object)
    if initially_hidden is not None:
        extra = np.asarray(initially_hidden, dtype=bool) & ~hidden
        hidden = hidden | extra
        reason[extra] = REASON_COMPLEMENTARY

    ids = pd.Index(cells["cell"].to_numpy())
    if not ids.is_unique:
        raise ValueError("cell ids must be unique")
    parent_pos = ids.get_indexer(cells["parent"].to_numpy())  # -1 for the root
    has_parent = parent_pos >= 0
    child_pos = np.flatnonzero(has_parent)
    # Equation of a child = its parent's position; the parent sits in its own equation too.
    internal = np.unique(parent_pos[has_parent])
    member_pos = np.concatenate([child_pos, internal])
    member_eq = np.concatenate([parent_pos[child_pos], internal])
    member_is_parent = np.concatenate(
        [np.zeros(child_pos.size, bool), np.ones(internal.size, bool)]
    )
    # Candidate order: fewest participants, then nights, then label (deterministic).
    order_key = pd.DataFrame(
        {
            "eq": member_eq,
            "is_parent": member_is_parent,  # children before the parent
            "participants": participants[member_pos],
            "nights": cells["nights"].to_numpy(dtype=np.int64)[member_pos],
            "label": cells["label"].astype(str).to_numpy()[member_pos],
            "pos": member_pos,
        }
    ).sort_values(["eq", "is_parent", "participants", "nights", "label"], kind="stable")
    eq_sorted = order_key["eq"].to_numpy()
    pos_sorted = order_key["pos"].to_numpy()

    for _ in range(n + 1):  # each pass hides at least one more cell, so this ends
        hidden_count = np.bincount(eq_sorted, weights=hidden[pos_sorted], minlength=n)
        bad = hidden_count == 1
        candidate = bad[eq_sorted] & ~hidden[pos_sorted]
        if not candidate.any():
            break
        # First visible member of each bad equation, in candidate order.
        eqs, first = np.unique(eq_sorted[candidate], return_index=True)
        pick = pos_sorted[candidate][first]
        hidden[pick] = True
        reason[pick] = REASON_COMPLEMENTARY
    return pd.DataFrame(
        {
            "suppressed": hidden,
            # object dtype keeps None (pandas 3 would otherwise infer str with NaN).
            "suppression_reason": pd.Series(reason, index=cells.index, dtype=object),
        },
        index=cells.index,
    )


def _normalize_groups(frame: pd.DataFrame, group_cols: Sequence[str]) -> pd.DataFrame:
    out = frame.copy()
    for col in group_cols:
        values = out[col].astype(object)
        out[col] = values.where(values.notna(), MISSING_GROUP_LABEL).astype(str)
    return out


def _assign_latest_groups(df: pd.DataFrame, group_cols: Sequence[str]) -> pd.DataFrame:
    """Give every night its participant's group on their latest night in the period."""
    latest = df.sort_values(["participant_id", "night_date"], kind="stable").drop_duplicates(
        "participant_id", keep="last"
    )
    mapping = latest.set_index("participant_id")[list(group_cols)]
    return df.drop(columns=list(group_cols)).join(mapping, on="participant_id")


def _stats_for(values: pd.DataFrame, keys: list[str], cols: dict[str, str]) -> pd.DataFrame:
    """mean/median/p25/p75 per group for each ``cols`` metric (name -> column)."""
    if keys:
        grouped = values.groupby(keys, sort=True, observed=True)
    else:
        grouped = values.assign(_all=0).groupby("_all")
    frames = []
    for name, col in cols.items():
        g = grouped[col]
        q = g.quantile([0.25, 0.5, 0.75]).unstack()
        frames.append(
            pd.DataFrame(
                {
                    f"{name}_mean": g.mean(),
                    f"{name}_median": q[0.5],
                    f"{name}_p25": q[0.25],
                    f"{name}_p75": q[0.75],
                }
            )
        )
    return pd.concat(frames, axis=1)


def _level_table(
    nights: pd.DataFrame,
    people: pd.DataFrame,
    keys: list[str],
    group_cols: Sequence[str],
    has_regularity: bool,
) -> pd.DataFrame:
    """Stats of one level (``keys`` = the first k group columns; [] = total)."""
    if keys:
        g = nights.groupby(keys, sort=True, observed=True)
    else:
        g = nights.assign(_all=0).groupby("_all")
    base = pd.DataFrame({"participants": g["participant_id"].nunique(), "nights": g.size()})
    metric_cols = {k: v for k, v in NIGHT_METRICS.items() if v in nights.columns}
    stats = _stats_for(nights, keys, metric_cols)
    parts = [base, stats]
    if has_regularity:
        parts.append(_stats_for(people, keys, {"regularity": "regularity"}))
    table = pd.concat(parts, axis=1).reset_index()
    if not keys:
        table = table.drop(columns="_all")
    for col in group_cols:
        if col not in table.columns:
            table[col] = None
    table["level"] = len(keys)
    return table


def _period_cells(
    frame: pd.DataFrame,
    group_cols: Sequence[str],
    regularity: pd.Series | None,
) -> pd.DataFrame:
    """All cells (total, level 1, level 2) of one period, with ``cell`` / ``parent`` ids."""
    if frame.empty:
        return pd.DataFrame(
            columns=["level", *group_cols, "participants", "nights", "cell", "parent", "label"]
        )
    nights = _assign_latest_groups(frame, group_cols)
    people = nights.drop_duplicates("participant_id")[["participant_id", *group_cols]]
    has_regularity = regularity is not None
    if has_regularity:
        people = people.assign(regularity=people["participant_id"].map(regularity).astype(float))
    levels = [
        _level_table(nights, people, list(group_cols[:k]), group_cols, has_regularity)
        for k in range(len(group_cols) + 1)
    ]
    cells = pd.concat(levels, ignore_index=True)
    key_cols = list(group_cols)
    # Cell id: repr of the tuple of labels down to its level (unique for any labels);
    # parent = the id one level up. A loop over cells (groups), not over people.
    label_arrays = [cells[c].astype(object).to_numpy() for c in key_cols]
    paths = [
        tuple(label_arrays[j][i] for j in range(level))
        for i, level in enumerate(cells["level"].to_numpy())
    ]
    cells["cell"] = [repr(path) for path in paths]
    cells["parent"] = [repr(path[:-1]) if path else None for path in paths]
    cells["label"] = [" / ".join(path) for path in paths]
    return cells


def _period_bounds(period) -> tuple[pd.Timestamp, pd.Timestamp]:
    start, end = (pd.Timestamp(x).normalize() for x in period)
    if end < start:
        raise ValueError("period end is before its start")
    return start, end


def cohort_report(
    nights: pd.DataFrame,
    *,
    group_by: str | Sequence[str],
    min_group_size: int,
    period,
    previous_period=None,
    regularity: pd.DataFrame | pd.Series | None = None,
    previous_regularity: pd.DataFrame | pd.Series | None = None,
    regularity_col: str = "sri",
    include_naps: bool = False,
) -> pd.DataFrame:
    """Cohort figures per group with small-group suppression and trend.

    Parameters
    ----------
    nights : DataFrame
        One row per night (NightlyMetrics-like): ``participant_id``, ``night_date``
        (wake-up date, local), ``score`` (0-100), ``tst_min`` (min), ``se_pct`` (%),
        ``waso_min`` (min), the grouping columns (participant attributes, e.g.
        ``department``), optional ``is_nap`` (naps left out unless ``include_naps``).
        Metric columns that are absent are left out of the report. Rows of both the
        period and the previous period may be passed.
    group_by : one or two column names
        Two columns give a two-level report (first column = parent groups).
    min_group_size : int
        The organization's minimum group size (>= 2).
    period, previous_period : (start, end) dates, inclusive, by ``night_date``
        ``previous_period`` defaults to the same number of days just before ``period``.
    regularity, previous_regularity : per-participant regularity (optional)
        A Series indexed by ``participant_id``, or a frame with ``participant_id`` (column
        or index) and ``regularity_col`` (default ``sri``). Each participant counts once.

    Returns
    -------
    DataFrame, one row per cell, total first, then groups in label order:
        ``level`` (0 total, 1 first column, 2 second column), the group columns (labels as
        strings; None above the cell's level), ``participants`` and ``nights`` (Int64),
        ``suppressed`` (bool), ``suppression_reason`` (``below_min_group_size``,
        ``complementary`` or None), for each metric ``m`` in score, tst (min), se (%),
        waso (min), regularity: ``m_mean``, ``m_median``, ``m_p25``, ``m_p75`` (float) and
        ``m_mean_delta`` (current mean - previous-period mean), plus ``trend_available``
        (bool). Suppressed cells have every figure NA; deltas are NA unless the cell is
        visible in both periods. Empty (no rows) when no night falls in the period.
    """
    group_cols = [group_by] if isinstance(group_by, str) else list(group_by)
    if not 1 <= len(group_cols) <= 2:
        raise ValueError("group_by takes one or two columns")
    if int(min_group_size) < MIN_ALLOWED_GROUP_SIZE:
        raise ValueError(f"min_group_size must be at least {MIN_ALLOWED_GROUP_SIZE}")
    missing = {"participant_id", "night_date", *group_cols} - set(nights.columns)
    if missing:
        raise ValueError(f"nights lack columns: {sorted(missing)}")

    start, end = _period_bounds(period)
    if previous_period is None:
        length = end - start + pd.Timedelta(days=1)
        prev_start, prev_end = start - length, start - pd.Timedelta(days=1)
    else:
        prev_start, prev_end = _period_bounds(previous_period)

    frame = nights.copy()
    frame["night_date"] = pd.to_datetime(frame["night_date"]).dt.normalize()
    if not include_naps and "is_nap" in frame.columns:
        frame = frame[~frame["is_nap"].fillna(False).astype(bool)]
    frame = _normalize_groups(frame, group_cols)
    for col in NIGHT_METRICS.values():
        if col in frame.columns:  # e.g. Decimal values from the ORM
            frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
    current = frame[(frame["night_date"] >= start) & (frame["night_date"] <= end)]
    previous = frame[(frame["night_date"] >= prev_start) & (frame["night_date"] <= prev_end)]

    reg_cur = _regularity_series(regularity, regularity_col)
    reg_prev = _regularity_series(previous_regularity, regularity_col)
    metric_names = [k for k, v in NIGHT_METRICS.items() if v in frame.columns]
    if reg_cur is not None:
        metric_names.append("regularity")

    cells = _period_cells(current, group_cols, reg_cur)
    prev_cells = _period_cells(previous, group_cols, reg_prev if reg_cur is not None else None)
    return _assemble(cells, prev_cells, group_cols=group_cols, metric_names=metric_names,
                     min_group_size=int(min_group_size))


def _assemble(
    cells: pd.DataFrame, prev_cells: pd.DataFrame, *, group_cols: Sequence[str], metric_names: list[str],
    min_group_size: int,
) -> pd.DataFrame:
    """Suppression, trend and layout of both periods' cells (shared by both report paths)."""
    supp = apply_small_group_suppression(cells, min_group_size=int(min_group_size))
    cells = cells.join(supp)

    # Previous period: its own cells, hidden where hidden now or absent now.
    if len(prev_cells):
        visible_now = dict(zip(cells["cell"], ~cells["suppressed"].to_numpy(), strict=True))
        # A cell absent now counts as hidden (isin, not map+fillna: no float/bool mixing).
        shown_now = [cell for cell, visible in visible_now.items() if visible]
        hidden_here = ~prev_cells["cell"].isin(shown_now).to_numpy()
        prev_supp = apply_small_group_suppression(
            prev_cells, min_group_size=int(min_group_size), initially_hidden=hidden_here
        )
        prev_cells = prev_cells[~prev_supp["suppressed"].to_numpy()]
    prev_means = (
        prev_cells.set_index("cell")[
            [f"{m}_mean" for m in metric_names if f"{m}_mean" in prev_cells.columns]
        ]
        if len(prev_cells)
        else pd.DataFrame()
    )

    stat_cols = [f"{m}_{s}" for m in metric_names for s in _STATS]
    for col in stat_cols:
        if col not in cells.columns:
            cells[col] = np.nan
    trend = cells["cell"].isin(prev_means.index) & ~cells["suppressed"]
    for m in metric_names:
        prev = (
            cells["cell"].map(prev_means[f"{m}_mean"])
            if f"{m}_mean" in prev_means.columns
            else pd.Series(np.nan, index=cells.index)
        )
        cells[f"{m}_mean_delta"] = (cells[f"{m}_mean"] - prev.astype(float)).where(trend)
    cells["trend_available"] = trend.to_numpy()

    hidden = cells["suppressed"].to_numpy()
    for col in ["participants", "nights"]:
        cells[col] = cells[col].astype("Int64").mask(hidden)
    value_cols = stat_cols + [f"{m}_mean_delta" for m in metric_names]
    cells[value_cols] = (
        cells[value_cols].astype(float).mask(np.repeat(hidden[:, None], len(value_cols), axis=1))
    )

    order = ["level", *group_cols, "participants", "nights", "suppressed", "suppression_reason"]
    out = cells[order + value_cols + ["trend_available"]]
    return _sort_cells(out, group_cols).reset_index(drop=True)


def _sort_cells(cells: pd.DataFrame, group_cols: Sequence[str]) -> pd.DataFrame:
    """Total first, then each parent followed by its children, labels ascending."""
    keys = pd.DataFrame(index=cells.index)
    for i, col in enumerate(group_cols):
        present = cells[col].notna()
        keys[f"_p{i}"] = present.astype(int)
        keys[f"_v{i}"] = cells[col].where(present, "")
    return cells.loc[keys.sort_values(list(keys.columns), kind="stable").index]


def _regularity_series(regularity, col: str) -> pd.Series | None:
    if regularity is None:
        return None
    if isinstance(regularity, pd.Series):
        return regularity.astype(float)
    frame = regularity
    if "participant_id" in frame.columns:
        frame = frame.set_index("participant_id")
    return frame[col].astype(float)


# --- the same report from nights grouped by participant (the database path) ------------------------
def cohort_report_by_participant(
    nights: pd.DataFrame,
    people: pd.DataFrame,
    *,
    group_by: str | Sequence[str],
    min_group_size: int,
    period,
    previous_period=None,
    regularity: pd.DataFrame | pd.Series | None = None,
    previous_regularity: pd.DataFrame | pd.Series | None = None,
    regularity_col: str = "sri",
) -> pd.DataFrame:
    """``cohort_report`` when every participant has one set of group labels (``people``).

    Returns exactly ``cohort_report(nights.join(people[group_by], on="participant_id"), ...)``
    (same rows, columns and figures; tested), without a label column per night: a report
    over 900,000 nights then needs no string work per night and no per-night sort.

    ``nights``: ``participant_id``, ``night_date``, the metric columns of ``NIGHT_METRICS``
    (absent ones left out), optional ``is_nap`` (naps dropped). Fastest when each
    participant's nights are contiguous (as ``analytics.selectors.cohort_nights`` returns
    them); any order is accepted. ``people``: indexed by ``participant_id``, one column per
    ``group_by`` entry (a participant missing from it gets ``MISSING_GROUP_LABEL``).

    How: participants are ranked by (labels, id) and nights put in rank order, so every
    cell of every level is one contiguous slice; counts and sums are ``np.add.reduceat``
    over the slices. Percentiles: a partial sort (``np.partition``) of each short slice; a
    long one is first counted into equal-width value bins, and only the bins holding the
    needed order statistics are partially sorted. Either way the exact order statistics,
    combined with pandas' linear interpolation formula: bit for bit the engine's figures.
    """
    group_cols = [group_by] if isinstance(group_by, str) else list(group_by)
    if not 1 <= len(group_cols) <= 2:
        raise ValueError("group_by takes one or two columns")
    if int(min_group_size) < MIN_ALLOWED_GROUP_SIZE:
        raise ValueError(f"min_group_size must be at least {MIN_ALLOWED_GROUP_SIZE}")
    missing = {"participant_id", "night_date"} - set(nights.columns)
    if missing:
        raise ValueError(f"nights lack columns: {sorted(missing)}")
    missing = set(group_cols) - set(people.columns)
    if missing:
        raise ValueError(f"people lack columns: {sorted(missing)}")
    start, end = _period_bounds(period)
    if previous_period is None:
        length = end - start + pd.Timedelta(days=1)
        prev_start, prev_end = start - length, start - pd.Timedelta(days=1)
    else:
        prev_start, prev_end = _period_bounds(previous_period)

    if "is_nap" in nights.columns:
        nights = nights[~nights["is_nap"].fillna(False).astype(bool).to_numpy()]
    metric_cols = {k: v for k, v in NIGHT_METRICS.items() if v in nights.columns}
    ranked = _RankedNights(nights, people, group_cols, metric_cols)

    reg_cur = _regularity_series(regularity, regularity_col)
    reg_prev = _regularity_series(previous_regularity, regularity_col)
    metric_names = list(metric_cols)
    if reg_cur is not None:
        metric_names.append("regularity")
    cells = ranked.period_cells(start, end, reg_cur)
    prev_cells = ranked.period_cells(prev_start, prev_end, reg_prev if reg_cur is not None else None)
    return _assemble(cells, prev_cells, group_cols=group_cols, metric_names=metric_names,
                     min_group_size=int(min_group_size))


def _floats(values: pd.Series) -> np.ndarray:
    if values.dtype == np.float64:
        return values.to_numpy()
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)  # e.g. Decimal from the ORM


def _days(values) -> np.ndarray:
    """Dates (datetime64, date objects or strings) as int64 days since 1970-01-01."""
    return pd.to_datetime(values).to_numpy().astype("datetime64[D]").astype(np.int64)


def participant_order(people: pd.DataFrame, group_by: str | Sequence[str]) -> np.ndarray:
    """Participant ids (``people``'s index) in the order ``cohort_report_by_participant``
    ranks them: group labels, then id. Nights handed over in this order need no reordering."""
    group_cols = [group_by] if isinstance(group_by, str) else list(group_by)
    return _ranked_labels(people[group_cols], group_cols).index.to_numpy()


def _ranked_labels(labels: pd.DataFrame, group_cols: list[str]) -> pd.DataFrame:
    """Normalized labels indexed by participant id, sorted by (labels, id)."""
    out = _normalize_groups(labels, group_cols)
    out["_id"] = out.index.to_numpy(dtype=np.int64)
    out = out.sort_values([*group_cols, "_id"], kind="stable")
    return out.set_index("_id")


class _RankedNights:
    """Nights in (group labels, participant, input) order, with each participant's rank."""

    def __init__(self, nights: pd.DataFrame, people: pd.DataFrame, group_cols: list[str], metric_cols: dict):
        self.group_cols = group_cols
        pid = nights["participant_id"].to_numpy(dtype=np.int64)
        n = pid.size
        # Runs of one participant (the store hands each person's nights together).
        run_start = np.flatnonzero(np.r_[True, pid[1:] != pid[:-1]]) if n else np.zeros(0, np.int64)
        run_len = np.diff(np.r_[run_start, n])
        run_pid = pid[run_start]
        ids = np.unique(run_pid)
        labels = _ranked_labels(people.reindex(pd.Index(ids, name=people.index.name))[group_cols], group_cols)
        self.participant_ids = labels.index.to_numpy()
        self.labels = [labels[c].to_numpy(dtype=object) for c in group_cols]
        rank_of_id = np.empty(ids.size, dtype=np.int64)
        rank_of_id[np.searchsorted(ids, self.participant_ids)] = np.arange(ids.size)
        run_rank = rank_of_id[np.searchsorted(ids, run_pid)]
        order = np.argsort(run_rank, kind="stable")
        lengths = run_len[order]
        if np.all(order == np.arange(order.size)):
            take = None
        else:  # gather the runs in rank order
            offsets = np.cumsum(lengths) - lengths
            take = np.repeat(run_start[order] - offsets, lengths) + np.arange(n)
        self.rank = np.repeat(run_rank[order], lengths)

        def column(values):
            values = np.asarray(values)
            return values if take is None else values[take]

        self.days = column(_days(nights["night_date"]))
        self.values = {name: column(_floats(nights[col])) for name, col in metric_cols.items()}
        # Group code of each ranked participant at each level (labels sorted, so codes ascend).
        self.codes = [np.zeros(ids.size, dtype=np.int64)]
        changed = np.zeros(max(ids.size - 1, 0), dtype=bool)
        for values in self.labels:
            changed = changed | (values[1:] != values[:-1])
            self.codes.append(np.r_[0, np.cumsum(changed)].astype(np.int64) if ids.size else np.zeros(0, np.int64))

    def period_cells(self, start: pd.Timestamp, end: pd.Timestamp, regularity: pd.Series | None) -> pd.DataFrame:
        group_cols = self.group_cols
        first, last = _days([start])[0], _days([end])[0]
        keep = (self.days >= first) & (self.days <= last)
        rank = self.rank[keep]
        if rank.size == 0:
            return pd.DataFrame(columns=["level", *group_cols, "participants", "nights", "cell", "parent", "label"])
        everything = bool(keep.all())
        metrics = {name: _Metric(v if everything else v[keep]) for name, v in self.values.items()}
        person_starts = np.flatnonzero(np.r_[True, rank[1:] != rank[:-1]])
        present = rank[person_starts]  # ranks of the period's participants, ascending
        reg = None
        if regularity is not None:
            reg = _Metric(regularity.reindex(self.participant_ids[present]).to_numpy(dtype=float))
        levels = []
        for level in range(len(group_cols) + 1):
            code = self.codes[level][rank]
            starts = np.flatnonzero(np.r_[True, code[1:] != code[:-1]])
            ends = np.r_[starts[1:], rank.size]
            first_rank = rank[starts]
            table = {
                "level": np.full(starts.size, level, dtype=np.int64),
                **{
                    col: (self.labels[j][first_rank] if j < level else np.full(starts.size, None, dtype=object))
                    for j, col in enumerate(group_cols)
                },
                "participants": np.diff(np.searchsorted(person_starts, np.r_[starts, rank.size])),
                "nights": ends - starts,
            }
            for name, metric in metrics.items():
                table.update(metric.stats(name, starts, ends))
            if reg is not None:
                person_code = self.codes[level][present]
                first_people = np.flatnonzero(np.r_[True, person_code[1:] != person_code[:-1]])
                table.update(reg.stats("regularity", first_people, np.r_[first_people[1:], present.size]))
            levels.append(pd.DataFrame(table))
        cells = pd.concat(levels, ignore_index=True)
        label_arrays = [cells[c].to_numpy(dtype=object) for c in group_cols]
        paths = [tuple(label_arrays[j][i] for j in range(level)) for i, level in enumerate(cells["level"].to_numpy())]
        cells["cell"] = [repr(path) for path in paths]
        cells["parent"] = [repr(path[:-1]) if path else None for path in paths]
        cells["label"] = [" / ".join(path) for path in paths]
        return cells


_QUANTILES = (0.25, 0.5, 0.75)
# Equal-width bins over a metric's range, and the slice length above which they pay off.
_BINS = 2048
_SMALL_SLICE = 4096


class _Metric:
    """One metric's values in ranked order: NaN dropped once, bins computed once, then
    mean / median / p25 / p75 of any slice of the original positions, as pandas' groupby
    computes them (NaN ignored)."""

    def __init__(self, values: np.ndarray):
        valid = ~np.isnan(values)
        if valid.all():
            self.values, self.before = values, None
        else:  # position i of the input -> number of valid values before it
            self.values, self.before = values[valid], np.r_[0, np.cumsum(valid)]
        self.bins = _value_bins(self.values)

    def stats(self, name: str, starts: np.ndarray, ends: np.ndarray) -> dict:
        lo, hi = (starts, ends) if self.before is None else (self.before[starts], self.before[ends])
        count = hi - lo
        mean = np.full(starts.size, np.nan)
        filled = count > 0
        if filled.any():  # slices of the non-empty groups tile the values: reduceat sums each one
            mean[filled] = np.add.reduceat(self.values, lo[filled]) / count[filled]
        quantiles = np.full((starts.size, 3), np.nan)
        for i, (a, b) in enumerate(zip(lo, hi, strict=True)):
            if b - a > _SMALL_SLICE:
                quantiles[i] = _binned_quantiles(self.values[a:b], self.bins[a:b])
            elif b > a:
                quantiles[i] = _quantiles(self.values[a:b])
        return {f"{name}_mean": mean, f"{name}_median": quantiles[:, 1], f"{name}_p25": quantiles[:, 0],
                f"{name}_p75": quantiles[:, 2]}


def _value_bins(values: np.ndarray) -> np.ndarray:
    """Bin of each (non-NaN) value: a non-decreasing function of the value, so the k-th
    smallest of a slice sits in the bin where the slice's cumulative bin count passes k."""
    if values.size == 0:
        return np.zeros(0, dtype=np.intp)
    low, high = values.min(), values.max()
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        scale = (_BINS - 1) / (high - low) if high > low else 0.0
    if not (np.isfinite(low) and np.isfinite(high) and np.isfinite(scale)):
        scale = 0.0  # one bin: exact still, just no faster than a partition of the slice
        low = 0.0 if not np.isfinite(low) else low
    with np.errstate(invalid="ignore"):
        scaled = values - low
        scaled *= scale
        bins = scaled.astype(np.intp)  # values >= low: truncation is floor
    np.clip(bins, 0, _BINS - 1, out=bins)
    return bins


def _binned_quantiles(values: np.ndarray, bins: np.ndarray) -> np.ndarray:
    """``_quantiles`` of a long slice: count per bin, then partial-sort only the (one or
    few) bins holding the needed order statistics instead of the whole slice."""
    n = values.size
    cumulative = np.cumsum(np.bincount(bins, minlength=_BINS))
    positions = [q * (n - 1) for q in _QUANTILES]
    ranks = sorted({int(p) for p in positions} | {min(int(p) + 1, n - 1) for p in positions})
    order_stat = {}
    bin_of = np.searchsorted(cumulative, ranks, side="right")
    needed = np.zeros(_BINS, dtype=bool)
    needed[bin_of] = True
    chosen = needed[bins]  # one pass over the slice for all the needed bins
    near, near_bins = values[chosen], bins[chosen]
    for bin_id in np.unique(bin_of):
        below = int(cumulative[bin_id - 1]) if bin_id else 0
        wanted = [r for r, b in zip(ranks, bin_of, strict=True) if b == bin_id]
        part = np.partition(near[near_bins == bin_id], [r - below for r in wanted])
        order_stat.update({r: part[r - below] for r in wanted})
    out = np.empty(len(_QUANTILES))
    for i, p in enumerate(positions):
        idx, frac = int(p), p % 1
        out[i] = order_stat[idx] if frac == 0 else order_stat[idx] + (order_stat[idx + 1] - order_stat[idx]) * frac
    return out


def _quantiles(values: np.ndarray) -> np.ndarray:
    """25th, 50th, 75th percentiles, linear interpolation written as pandas' groupby writes it
    (``x[i] + (x[i+1] - x[i]) * frac``; numpy's own formula can differ in the last bit)."""
    n = values.size
    positions = [q * (n - 1) for q in _QUANTILES]
    kth = sorted({int(p) for p in positions} | {min(int(p) + 1, n - 1) for p in positions})
    part = np.partition(values, kth)
    out = np.empty(len(_QUANTILES))
    for i, p in enumerate(positions):
        idx, frac = int(p), p % 1
        out[i] = part[idx] if frac == 0 else part[idx] + (part[idx + 1] - part[idx]) * frac
    return out
