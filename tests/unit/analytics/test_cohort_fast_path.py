"""The cohort report's fast path gives the engine's report on the raw frame, figure for figure.

``cohorts.cohort_report_by_participant`` (groups per participant, nights in slices) against
``cohorts.cohort_report`` (a label column per night, pandas groupby) on random data; then the
whole database path (``selectors.cohort_report_frame``: on PostgreSQL the
``analytics_cohortnights`` table kept by triggers, elsewhere NightlyMetrics) against the
engine on a frame read independently, after inserts, updates, deletes and a department move.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest
from django.db import connection

from analytics import selectors
from analytics.engine import cohorts
from analytics.models import NightlyMetrics, SleepSession
from analytics.services import nightly_metrics_compute

from ...factories import DepartmentFactory, ParticipantFactory
from .nights import days, store_nights

QUANTILE_SUFFIXES = ("_median", "_p25", "_p75")
PERIOD = (date(2026, 3, 1), date(2026, 3, 14))
PREVIOUS = (date(2026, 2, 15), date(2026, 2, 28))


def assert_same_report(fast: pd.DataFrame, reference: pd.DataFrame) -> None:
    """Same rows, columns, labels, counts, suppression; percentiles bit for bit; means to
    1e-12 relative or 1e-9 absolute (pandas sums a group with Kahan compensation, the fast
    path straight; a delta of two close means keeps only the absolute bound)."""
    pd.testing.assert_frame_equal(fast, reference, check_exact=False, rtol=1e-12, atol=1e-9)
    quantiles = [c for c in reference.columns if c.endswith(QUANTILE_SUFFIXES)]
    pd.testing.assert_frame_equal(fast[quantiles], reference[quantiles], check_exact=True)


def random_cohort(seed: int, *, people: int = 120, nights: int = 30, nan_share: float = 0.05):
    """Nights (shuffled, some naps) and people with a department and a site, some unset."""
    rng = np.random.default_rng(seed)
    ids = np.sort(rng.choice(np.arange(1, 10 * people), size=people, replace=False))
    frame_people = pd.DataFrame(
        {
            "department": rng.choice(np.array(["Ops", "Sales", "Lab", "Legal", None], dtype=object), people,
                                     p=[0.4, 0.3, 0.15, 0.05, 0.1]),
            "attr:site": rng.choice(np.array(["north", "south", None], dtype=object), people),
        },
        index=pd.Index(ids, name="participant_id"),
    )
    pid = np.repeat(ids, nights)
    day = np.tile(np.arange(nights), people)
    keep = rng.random(pid.size) < 0.85
    pid, day = pid[keep], day[keep]
    frame = pd.DataFrame({"participant_id": pid, "night_date": pd.Timestamp("2026-02-13") + pd.to_timedelta(day, "D")})
    for col, scale in (("score", 100), ("tst_min", 500), ("se_pct", 100), ("waso_min", 60)):
        values = np.round(rng.random(pid.size) * scale, int(rng.integers(0, 4)))  # ties too
        values[rng.random(pid.size) < nan_share] = np.nan
        frame[col] = values
    frame["is_nap"] = rng.random(pid.size) < 0.03
    return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True), frame_people


def engine_on_joined(nights, people, group_by, **kwargs):
    return cohorts.cohort_report(nights.join(people[group_by], on="participant_id"), group_by=group_by, **kwargs)


class FastEngineTests:
    @pytest.mark.parametrize("seed", [1, 2, 3])
    @pytest.mark.parametrize("group_by", [["department"], ["attr:site"], ["department", "attr:site"],
                                          ["attr:site", "department"]])
    @pytest.mark.parametrize("min_group_size", [2, 5, 15])
    def test_it_equals_the_engine_on_the_joined_frame(self, seed, group_by, min_group_size):
        nights, people = random_cohort(seed)
        kwargs = {"min_group_size": min_group_size, "period": PERIOD, "previous_period": PREVIOUS}
        fast = cohorts.cohort_report_by_participant(nights, people[group_by], group_by=group_by, **kwargs)
        assert_same_report(fast, engine_on_joined(nights, people, group_by, **kwargs))
        assert len(fast) > 1 and fast["trend_available"].any()

    def test_long_slices_take_the_binned_percentiles_and_stay_exact(self, monkeypatch):
        nights, people = random_cohort(4, people=200, nights=40, nan_share=0.2)
        monkeypatch.setattr(cohorts, "_SMALL_SLICE", 3)  # every group through the bins
        kwargs = {"min_group_size": 3, "period": PERIOD, "previous_period": PREVIOUS}
        group_by = ["department", "attr:site"]
        fast = cohorts.cohort_report_by_participant(nights, people[group_by], group_by=group_by, **kwargs)
        assert_same_report(fast, engine_on_joined(nights, people, group_by, **kwargs))

    @pytest.mark.parametrize("values", [
        np.full(500, 7.5),  # one value: every bin edge case at once
        np.r_[np.full(499, 1.0), 1e300],  # one outlier: all others in the first bin
        np.r_[np.full(250, np.nan), np.arange(250.0)],
        np.full(500, np.nan),  # no value at all: figures NaN, counts still there
    ])
    def test_degenerate_value_sets_match(self, values, monkeypatch):
        monkeypatch.setattr(cohorts, "_SMALL_SLICE", 3)
        people = pd.DataFrame({"department": ["A"] * 50}, index=pd.Index(np.arange(50), name="participant_id"))
        nights = pd.DataFrame({
            "participant_id": np.repeat(np.arange(50), 10),
            "night_date": np.tile(pd.date_range("2026-03-01", periods=10), 50),
            "score": values,
        })
        kwargs = {"group_by": ["department"], "min_group_size": 5, "period": PERIOD}
        fast = cohorts.cohort_report_by_participant(nights, people, **kwargs)
        assert_same_report(fast, cohorts.cohort_report(nights.join(people, on="participant_id"), **kwargs))

    def test_regularity_people_absent_from_people_and_empty_periods(self):
        nights, people = random_cohort(5)
        ids = people.index.to_numpy()
        regularity = pd.Series(np.linspace(-20, 95, ids.size), index=ids)
        regularity.iloc[::7] = np.nan
        missing = people.drop(index=ids[:10])  # their nights count under "(not set)"
        kwargs = {"min_group_size": 3, "period": PERIOD, "previous_period": PREVIOUS,
                  "regularity": regularity, "previous_regularity": regularity * 0.9}
        fast = cohorts.cohort_report_by_participant(nights, missing[["department"]], group_by="department", **kwargs)
        joined = nights.join(missing[["department"]], on="participant_id")
        assert_same_report(fast, cohorts.cohort_report(joined, group_by="department", **kwargs))
        assert "regularity_median" in fast.columns

        before = nights[nights["night_date"] < pd.Timestamp(PERIOD[0])]
        empty = cohorts.cohort_report_by_participant(before, people[["department"]], group_by="department",
                                                     min_group_size=3, period=PERIOD)
        reference = cohorts.cohort_report(before.join(people[["department"]], on="participant_id"),
                                          group_by="department", min_group_size=3, period=PERIOD)
        assert empty.empty and reference.empty
        assert list(empty.columns) == list(reference.columns)

    def test_participant_order_is_the_order_the_engine_uses(self):
        people = pd.DataFrame({"department": ["b", None, "a", "b"]}, index=pd.Index([4, 3, 2, 1]))
        # Labels sort as strings ("(not set)" < "a" < "b"), then ids.
        assert cohorts.participant_order(people, "department").tolist() == [3, 2, 1, 4]


# --- the database path -------------------------------------------------------------------------------
@pytest.fixture
def stored(world_a):
    """Three departments (one below the minimum), a site each; nights in both periods."""
    org = world_a.org
    people = []
    for name, size in (("Sales", 6), ("Ops", 7), ("Lab", 2)):
        department = DepartmentFactory(organization=org, name=name)
        for i in range(size):
            person = ParticipantFactory(organization=org, department=department,
                                        attributes={"site": ["Berlin", "Lisbon", 3][i % 3]})
            store_nights(org, person, days(date(2026, 3, 1), 5), sleep_epochs=780 + 15 * i, wake_inside=10 * i)
            store_nights(org, person, days(date(2026, 2, 20), 3), sleep_epochs=840, prefix="prev")
            people.append(person)
    unassigned = ParticipantFactory(organization=org, department=None, attributes={})
    store_nights(org, unassigned, days(date(2026, 3, 2), 2))
    return world_a, people


def raw_report(org, group_by, **kwargs):
    """The engine on NightlyMetrics read with the ORM, independently of the selectors."""
    rows = list(
        NightlyMetrics.objects.filter(organization=org, is_main_sleep=True, is_nap=False).values(
            "participant_id", "night_date", "score", "tst_min", "se_pct", "waso_min",
            "participant__department__name", "participant__attributes",
        )
    )
    frame = pd.DataFrame(rows)
    frame["department"] = frame.pop("participant__department__name")
    site = frame.pop("participant__attributes").map(lambda a: a.get("site") if isinstance(a, dict) else None)
    frame["attr:site"] = site.map(lambda v: None if v is None else str(v))
    return cohorts.cohort_report(frame, group_by=group_by, min_group_size=org.min_group_size, period=PERIOD,
                                 previous_period=PREVIOUS, **kwargs)


def fast_report(org, group_by, **kwargs):
    return selectors.cohort_report_frame(organization=org, period=PERIOD, previous_period=PREVIOUS,
                                         group_by=group_by, **kwargs)


def assert_store_follows(org):
    """Same report both ways, for both groupings; on PostgreSQL also the packed nights."""
    for group_by in (["department"], ["department", "attr:site"]):
        assert_same_report(fast_report(org, group_by), raw_report(org, group_by))
    if connection.vendor == "postgresql":
        packed = selectors.cohort_nights(organization=org, start=date(2026, 1, 1), end=date(2026, 12, 31))
        direct = selectors.nightly_metrics_frame(organization=org, start=date(2026, 1, 1), end=date(2026, 12, 31))
        key = ["participant_id", "night_date"]
        pd.testing.assert_frame_equal(
            packed.sort_values(key).reset_index(drop=True),
            direct[packed.columns].sort_values(key).reset_index(drop=True),
        )


class DatabasePathTests:
    def test_it_gives_the_engines_report_on_the_raw_frame(self, stored):
        world, _ = stored
        assert_store_follows(world.org)
        report = fast_report(world.org, ["department"])
        lab = report[report["department"] == "Lab"].iloc[0]
        assert lab["suppressed"] and pd.isna(lab["score_median"])
        assert report["trend_available"].any()

    def test_it_follows_updates_deletes_recomputes_and_moves(self, stored):
        world, people = stored
        org = world.org
        # Undefined figures and an outlier (NULL in the store, ignored by every statistic).
        NightlyMetrics.objects.filter(participant=people[0], night_date=date(2026, 3, 2)).update(score=None)
        NightlyMetrics.objects.filter(participant=people[1], night_date=date(2026, 3, 3)).update(tst_min=12.5)
        assert_store_follows(org)
        # A night deleted, a person deleted, a recompute of someone's nights (upsert path).
        SleepSession.objects.filter(participant=people[2], metrics__night_date=date(2026, 3, 4)).delete()
        people[3].delete()
        sessions = SleepSession.objects.filter(participant=people[4]).values_list("pk", flat=True)
        nightly_metrics_compute(organization=org, session_ids=list(sessions))
        assert_store_follows(org)
        # A move to another department changes the groups, not the stored nights.
        people[5].department = people[8].department  # Sales -> Ops
        people[5].save()
        store_nights(org, people[6], days(date(2026, 3, 10), 3), sleep_epochs=700, prefix="late")  # new month rows
        assert_store_follows(org)

    def test_regularity_passes_through(self, stored):
        world, people = stored
        regularity = pd.Series({p.pk: 60.0 + i for i, p in enumerate(people)})
        kwargs = {"regularity": regularity, "previous_regularity": regularity - 5}
        assert_same_report(fast_report(world.org, ["department"], **kwargs),
                           raw_report(world.org, ["department"], **kwargs))

    def test_another_organizations_nights_never_count(self, stored, world_b):
        world, _ = stored
        other = ParticipantFactory(organization=world_b.org, department=DepartmentFactory(organization=world_b.org,
                                                                                          name="Sales"))
        store_nights(world_b.org, other, days(date(2026, 3, 1), 5), sleep_epochs=500)
        assert_store_follows(world.org)
        assert fast_report(world_b.org, ["department"])["nights"].iloc[0] is pd.NA  # 1 person: suppressed
