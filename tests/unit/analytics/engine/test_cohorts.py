"""Tests for analytics.engine.cohorts: figures, trend and small-group suppression."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics.engine import cohorts

PERIOD = ("2024-03-01", "2024-03-14")
PREVIOUS_DAY = pd.Timestamp("2024-02-20")


def _people(spec, start_id=0):
    """spec: list of (department, site, count) -> rows of (participant_id, department, site)."""
    rows, pid = [], start_id
    for dept, site, count in spec:
        for _ in range(count):
            rows.append((f"p{pid}", dept, site))
            pid += 1
    return rows


def _nights(people, dates=("2024-03-02", "2024-03-03"), tst=lambda i: 400.0 + i):
    rows = []
    for i, (pid, dept, site) in enumerate(people):
        for d in dates:
            rows.append(
                {
                    "participant_id": pid,
                    "night_date": pd.Timestamp(d),
                    "department": dept,
                    "site": site,
                    "score": 70.0,
                    "tst_min": tst(i),
                    "se_pct": 90.0,
                    "waso_min": 20.0,
                }
            )
    return pd.DataFrame(rows)


def _row(report, department=None, site=None):
    m = report["department"].isna() if department is None else report["department"] == department
    if "site" in report.columns:
        m &= report["site"].isna() if site is None else report["site"] == site
    (idx,) = np.flatnonzero(m.to_numpy())
    return report.iloc[idx]


class TestSuppression:
    def test_it_hides_small_groups_and_the_next_smallest_sibling(self):
        people = _people([("A", "x", 6), ("B", "x", 5), ("C", "x", 2)])
        report = cohorts.cohort_report(
            _nights(people), group_by="department", min_group_size=5, period=PERIOD
        )
        assert list(report["level"]) == [0, 1, 1, 1]
        total = _row(report)
        assert (total["participants"], total["nights"]) == (13, 26)
        assert not total["suppressed"]
        c = _row(report, "C")
        assert c["suppressed"] and c["suppression_reason"] == "below_min_group_size"
        assert pd.isna(c["participants"]) and np.isnan(c["tst_mean"])
        b = _row(report, "B")
        assert b["suppressed"] and b["suppression_reason"] == "complementary"
        a = _row(report, "A")
        assert not a["suppressed"] and a["participants"] == 6

    def test_it_hides_nothing_else_when_two_groups_are_already_hidden(self):
        people = _people([("A", "x", 6), ("B", "x", 2), ("C", "x", 1)])
        report = cohorts.cohort_report(
            _nights(people), group_by="department", min_group_size=5, period=PERIOD
        )
        assert not _row(report, "A")["suppressed"]
        assert set(report.loc[report["suppressed"], "department"]) == {"B", "C"}

    def test_it_hides_everything_when_the_whole_organization_is_too_small(self):
        people = _people([("A", "x", 2), ("B", "x", 2)])
        report = cohorts.cohort_report(
            _nights(people), group_by="department", min_group_size=5, period=PERIOD
        )
        assert report["suppressed"].all()

    def test_it_cascades_into_children_of_a_complementary_parent(self):
        people = _people(
            [("A", "x", 3), ("A", "y", 3), ("B", "u", 4), ("B", "v", 3), ("C", "x", 1)]
        )
        report = cohorts.cohort_report(
            _nights(people), group_by=["department", "site"], min_group_size=3, period=PERIOD
        )
        assert _row(report, "C")["suppression_reason"] == "below_min_group_size"
        assert _row(report, "A")["suppression_reason"] == "complementary"
        # A is hidden but both of its children were visible: A = x + y would give it away.
        assert _row(report, "A", "x")["suppression_reason"] == "complementary"
        assert not _row(report, "A", "y")["suppressed"]
        assert not _row(report, "B")["suppressed"]
        assert not _row(report, "B", "u")["suppressed"]
        assert not _row(report, "B", "v")["suppressed"]

    def test_it_hides_a_sibling_inside_a_visible_parent(self):
        people = _people([("A", "x", 8), ("A", "y", 6), ("A", "z", 2), ("B", "x", 9)])
        report = cohorts.cohort_report(
            _nights(people), group_by=["department", "site"], min_group_size=5, period=PERIOD
        )
        assert _row(report, "A", "z")["suppression_reason"] == "below_min_group_size"
        assert _row(report, "A", "y")["suppression_reason"] == "complementary"
        assert not _row(report, "A", "x")["suppressed"]
        assert not _row(report, "A")["suppressed"]

    def test_it_suppresses_a_tree_of_cells_directly(self):
        cells = pd.DataFrame(
            {
                "cell": ["T", "A", "B", "C"],
                "parent": [None, "T", "T", "T"],
                "participants": [20, 10, 7, 3],
                "nights": [100, 50, 35, 15],
                "label": ["", "A", "B", "C"],
            }
        )
        out = cohorts.apply_small_group_suppression(cells, min_group_size=5)
        assert list(out["suppressed"]) == [False, False, True, True]
        assert list(out["suppression_reason"]) == [
            None,
            None,
            "complementary",
            "below_min_group_size",
        ]


class TestPreviousPeriodGroups:
    def test_it_hides_the_trend_of_a_group_absent_now_without_mixing_types(self):
        import warnings

        # Department B existed only in the previous period: absent now, so hidden there too.
        now = _nights(_people([("A", "x", 5)]), dates=("2024-03-02",))
        before = _nights(_people([("A", "x", 5), ("B", "x", 5)]), dates=("2024-02-27",))
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # pandas warns on fillna(False) over a float column
            report = cohorts.cohort_report(pd.concat([now, before]), group_by="department", min_group_size=5,
                                           period=PERIOD)
        assert list(report["department"]) == [None, "A"]
        # B counts as hidden in the previous period, so A is hidden there as its complement:
        # the total keeps its trend (two hidden cells below it), A gets none.
        assert report["trend_available"].tolist() == [True, False]

    def test_it_answers_a_period_without_nights_after_a_previous_one_with_nights(self):
        import warnings

        before = _nights(_people([("A", "x", 5)]), dates=("2024-02-27",))
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # every previous cell is absent now: no NaN/bool fillna
            report = cohorts.cohort_report(before, group_by="department", min_group_size=5, period=PERIOD)
        assert report.empty


class TestFigures:
    def test_it_computes_night_level_statistics(self):
        people = _people([("A", "x", 5)])
        report = cohorts.cohort_report(
            _nights(people, dates=("2024-03-02",), tst=lambda i: 300.0 + 60 * i),
            group_by="department",
            min_group_size=5,
            period=PERIOD,
        )
        a = _row(report, "A")
        # TST 300, 360, 420, 480, 540
        assert a["tst_mean"] == pytest.approx(420.0)
        assert a["tst_median"] == pytest.approx(420.0)
        assert a["tst_p25"] == pytest.approx(360.0)
        assert a["tst_p75"] == pytest.approx(480.0)
        assert a["score_mean"] == pytest.approx(70.0)

    def test_it_counts_regularity_once_per_participant(self):
        people = _people([("A", "x", 5)])
        regularity = pd.DataFrame(
            {"participant_id": [f"p{i}" for i in range(5)], "sri": [60, 70, 80, 90, np.nan]}
        )
        report = cohorts.cohort_report(
            _nights(people),
            group_by="department",
            min_group_size=5,
            period=PERIOD,
            regularity=regularity,
        )
        assert _row(report, "A")["regularity_mean"] == pytest.approx(75.0)
        assert _row(report, "A")["regularity_median"] == pytest.approx(75.0)

    def test_it_files_a_participant_under_their_latest_group(self):
        people = _people([("A", "x", 5), ("B", "x", 5)])
        nights = _nights(people)
        moved = (nights["participant_id"] == "p0") & (nights["night_date"] == "2024-03-03")
        nights.loc[moved, "department"] = "B"
        report = cohorts.cohort_report(
            nights, group_by="department", min_group_size=3, period=PERIOD
        )
        assert _row(report, "A")["participants"] == 4
        assert _row(report, "B")["participants"] == 6
        assert _row(report, "B")["nights"] == 12

    def test_it_labels_missing_attributes(self):
        people = _people([("A", "x", 5), (None, "x", 5)])
        report = cohorts.cohort_report(
            _nights(people), group_by="department", min_group_size=3, period=PERIOD
        )
        assert set(report["department"].dropna()) == {"A", cohorts.MISSING_GROUP_LABEL}

    def test_it_leaves_naps_and_other_periods_out(self):
        people = _people([("A", "x", 5)])
        nights = _nights(people)
        extra = nights.iloc[:2].assign(tst_min=30.0, is_nap=True)
        outside = nights.iloc[:2].assign(night_date=pd.Timestamp("2024-04-01"), tst_min=10.0)
        frame = pd.concat([nights.assign(is_nap=False), extra, outside.assign(is_nap=False)])
        report = cohorts.cohort_report(
            frame, group_by="department", min_group_size=3, period=PERIOD
        )
        assert _row(report, "A")["nights"] == 10
        assert _row(report, "A")["tst_mean"] == pytest.approx(402.0)

    def test_it_reports_the_change_against_the_previous_period(self):
        people = _people([("A", "x", 5), ("B", "x", 5)])
        now = _nights(people)
        before = _nights(people, dates=("2024-02-20",), tst=lambda i: 380.0 + i)
        report = cohorts.cohort_report(
            pd.concat([now, before]), group_by="department", min_group_size=5, period=PERIOD
        )
        a = _row(report, "A")
        assert a["trend_available"]
        assert a["tst_mean_delta"] == pytest.approx(20.0)
        assert _row(report)["tst_mean_delta"] == pytest.approx(20.0)

    def test_it_withholds_the_trend_when_the_previous_group_was_too_small(self):
        people = _people([("A", "x", 5), ("B", "x", 5), ("C", "x", 6)])
        now = _nights(people)
        # Last period only 2 people of A and everyone of B, C had nights.
        before = _nights(people[3:], dates=("2024-02-20",), tst=lambda i: 380.0)
        report = cohorts.cohort_report(
            pd.concat([now, before]), group_by="department", min_group_size=5, period=PERIOD
        )
        assert not _row(report, "A")["trend_available"]
        assert np.isnan(_row(report, "A")["tst_mean_delta"])
        # B's previous mean would give A's away via the total: it is withheld too.
        assert not _row(report, "B")["trend_available"]
        assert _row(report, "C")["trend_available"]

    def test_it_rejects_bad_parameters(self):
        nights = _nights(_people([("A", "x", 5)]))
        with pytest.raises(ValueError):
            cohorts.cohort_report(nights, group_by="department", min_group_size=1, period=PERIOD)
        with pytest.raises(ValueError):
            cohorts.cohort_report(
                nights.assign(team="t"),
                group_by=["department", "site", "team"],
                min_group_size=5,
                period=PERIOD,
            )
        with pytest.raises(ValueError):
            cohorts.cohort_report(nights, group_by="nope", min_group_size=5, period=PERIOD)


# --- properties --------------------------------------------------------------------------------


@st.composite
def organizations(draw, two_levels):
    min_size = draw(st.integers(3, 10))
    sizes = draw(st.lists(st.integers(1, 40), min_size=1, max_size=6))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    dept = np.repeat(np.arange(len(sizes)), sizes)  # one entry per participant
    site = rng.integers(0, 3, dept.size) if two_levels else np.zeros(dept.size, dtype=int)
    per_person = rng.integers(1, 5, dept.size)  # nights each
    pid = np.repeat(np.arange(dept.size), per_person)
    day = np.arange(pid.size) - np.repeat(np.cumsum(per_person) - per_person, per_person)
    nights = pd.DataFrame(
        {
            "participant_id": pid,
            "night_date": pd.Timestamp("2024-03-01") + pd.to_timedelta(day, unit="D"),
            "department": np.char.add("d", dept[pid].astype(str)),
            "site": np.char.add("s", site[pid].astype(str)),
            "tst_min": rng.integers(200, 600, pid.size).astype(float),
            "score": rng.integers(20, 100, pid.size).astype(float),
        }
    )
    # About two thirds of the participants also have one night in the previous period.
    before = np.flatnonzero(rng.random(dept.size) < 0.67)
    previous = pd.DataFrame(
        {
            "participant_id": before,
            "night_date": pd.Timestamp("2024-02-20"),
            "department": np.char.add("d", dept[before].astype(str)),
            "site": np.char.add("s", site[before].astype(str)),
            "tst_min": rng.integers(200, 600, before.size).astype(float),
            "score": rng.integers(20, 100, before.size).astype(float),
        }
    )
    return pd.concat([nights, previous], ignore_index=True), min_size


def _truth(nights, group_cols):
    """Oracle figures per cell, computed independently of the module."""
    out = {}
    for level in range(len(group_cols) + 1):
        keys = group_cols[:level]
        grouped = nights.groupby(keys) if keys else nights.assign(_t=0).groupby("_t")
        stats = grouped.agg(
            participants=("participant_id", "nunique"),
            nights=("participant_id", "size"),
            tst_sum=("tst_min", "sum"),
        )
        for row in stats.reset_index().to_dict("records"):
            out[tuple(row[k] for k in keys)] = row
    return out


def _path(row, group_cols):
    return tuple(row[c] for c in group_cols if isinstance(row[c], str))


def _assert_no_hidden_cell_is_determined(paths, hidden):
    """Linear algebra: no hidden cell is fixed by the published parent = sum(children)."""
    index = {p: i for i, p in enumerate(paths)}
    parents = {p[:-1] for p in paths if p}
    equations = []
    for parent in parents:
        eq = np.zeros(len(paths))
        eq[index[parent]] = 1
        for p in paths:
            if len(p) == len(parent) + 1 and p[:-1] == parent:
                eq[index[p]] = -1
        equations.append(eq)
    unknown = [index[p] for p in paths if hidden[p]]
    if not unknown or not equations:
        return
    a = np.array(equations)[:, unknown]
    rank = np.linalg.matrix_rank(a)
    for j in range(len(unknown)):
        e = np.zeros(len(unknown))
        e[j] = 1
        assert np.linalg.matrix_rank(np.vstack([a, e])) > rank


def _check_report(nights, min_size, group_cols):
    report = cohorts.cohort_report(
        nights, group_by=group_cols, min_group_size=min_size, period=PERIOD
    )
    current = nights[nights["night_date"] >= pd.Timestamp(PERIOD[0])]
    truth = _truth(current, group_cols)
    records = report.to_dict("records")
    paths = [_path(r, group_cols) for r in records]
    assert set(paths) == set(truth)
    hidden = dict(zip(paths, report["suppressed"], strict=True))
    visible = report[~report["suppressed"]]

    # 1. No visible cell describes fewer than min_size participants.
    assert (visible["participants"] >= min_size).all()
    # Published figures are the true ones.
    for path, row in zip(paths, records, strict=True):
        if not row["suppressed"]:
            assert row["participants"] == truth[path]["participants"]
            assert row["tst_mean"] * row["nights"] == pytest.approx(truth[path]["tst_sum"])

    # 2. Subtraction: a visible parent minus its visible children never equals one hidden
    #    child's participants, nights or TST sum (the mean times nights).
    parents = {p[:-1] for p in paths if p}
    for parent in parents:
        children = [p for p in paths if len(p) == len(parent) + 1 and p[:-1] == parent]
        hidden_children = [c for c in children if hidden[c]]
        if hidden[parent] or not hidden_children:
            continue
        assert len(hidden_children) >= 2
        for measure in ("participants", "nights", "tst_sum"):
            rest = truth[parent][measure] - sum(
                truth[c][measure] for c in children if not hidden[c]
            )
            for c in hidden_children:
                assert rest != pytest.approx(truth[c][measure])

    # 3. No hidden cell is determined by all the published sums.
    _assert_no_hidden_cell_is_determined(paths, hidden)

    # 4. Trend: current mean - delta publishes the previous mean. The previous period's
    #    cells (including ones absent now) obey the same rules.
    previous = nights[nights["night_date"] < pd.Timestamp(PERIOD[0])]
    prev_truth = _truth(previous, group_cols)
    with_trend = {p for p, r in zip(paths, records, strict=True) if r["trend_available"]}
    for p in with_trend:
        assert prev_truth[p]["participants"] >= min_size
    prev_paths = list(prev_truth)
    _assert_no_hidden_cell_is_determined(prev_paths, {p: p not in with_trend for p in prev_paths})


@settings(max_examples=75, deadline=None)
@given(case=organizations(two_levels=False))
def test_it_never_reveals_a_small_department(case):
    nights, min_size = case
    _check_report(nights, min_size, ["department"])


@settings(max_examples=75, deadline=None)
@given(case=organizations(two_levels=True))
def test_it_never_reveals_a_small_site_within_departments(case):
    nights, min_size = case
    _check_report(nights, min_size, ["department", "site"])
