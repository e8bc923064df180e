from datetime import UTC, date, datetime

import numpy as np
import pandas as pd
import pytest

from analytics import selectors
from analytics.models import NightlyMetrics
from analytics.services import sleep_sessions_upsert

from ...factories import DepartmentFactory, OrganizationFactory, ParticipantFactory
from .nights import Record, days, store_nights


@pytest.fixture
def org(db):
    org = OrganizationFactory()
    sales = DepartmentFactory(organization=org, name="Sales")
    alice = ParticipantFactory(organization=org, department=sales, attributes={"site": "Lisbon"})
    bob = ParticipantFactory(organization=org, department=None, attributes={})
    store_nights(org, alice, days(date(2026, 3, 1), 3), wake_inside=20)
    store_nights(org, bob, days(date(2026, 3, 2), 2))
    no_sleep = Record.night("awake", datetime(2026, 3, 4, 22, tzinfo=UTC), [0] * 600)  # WASO, score... NULL
    nap = Record.night("nap", datetime(2026, 3, 2, 13, tzinfo=UTC), [2] * 120)
    sleep_sessions_upsert(organization=org, records=[(bob.pk, no_sleep, "x"), (bob.pk, nap, "y")])
    other = OrganizationFactory()
    store_nights(other, ParticipantFactory(organization=other), days(date(2026, 3, 1), 3))
    return org


def _orm_frame(org, include_naps):
    """The rows straight from the ORM, as the selector documents them."""
    queryset = NightlyMetrics.objects.filter(organization=org, night_date__gte=date(2026, 3, 1),
                                             night_date__lte=date(2026, 3, 31))
    if not include_naps:
        queryset = queryset.filter(is_main_sleep=True, is_nap=False)
    frame = pd.DataFrame(list(queryset.values(
        "participant_id", "night_date", "is_nap", "is_main_sleep", "score", "tst_min", "se_pct", "waso_min")))
    frame["night_date"] = pd.to_datetime(frame["night_date"]).astype("datetime64[ns]")
    for column in ("score", "tst_min", "se_pct", "waso_min"):
        frame[column] = frame[column].astype(float)
    return frame


def _sorted(frame):
    return frame.sort_values(["participant_id", "night_date", "tst_min"]).reset_index(drop=True)


class NightlyMetricsFrameTests:
    @pytest.mark.parametrize("include_naps", [False, True])
    def test_it_reads_the_organizations_nights_in_range_with_nulls_as_nan(self, org, include_naps):
        frame = selectors.nightly_metrics_frame(organization=org, start=date(2026, 3, 1), end=date(2026, 3, 31),
                                                include_naps=include_naps)
        expected = _orm_frame(org, include_naps)
        # On PostgreSQL this is the binary-array path; on SQLite values_list: the same frame.
        pd.testing.assert_frame_equal(_sorted(frame)[expected.columns], _sorted(expected), check_dtype=False)
        assert frame["participant_id"].dtype == np.int64 and frame["night_date"].dtype == "datetime64[ns]"
        assert frame["waso_min"].isna().sum() == 1  # the night without sleep
        assert frame["is_nap"].sum() == (1 if include_naps else 0)

    def test_it_answers_an_empty_range_with_an_empty_frame(self, org):
        frame = selectors.nightly_metrics_frame(organization=org, start=date(2025, 1, 1), end=date(2025, 1, 31))
        assert len(frame) == 0 and "tst_min" in frame.columns

    def test_it_reads_clock_times_as_minutes_past_midnight(self, org):
        frame = selectors.nightly_metrics_frame(organization=org, start=date(2026, 3, 1), end=date(2026, 3, 1),
                                                with_clock=True)
        assert frame["bedtime_local"].tolist() == [23 * 60.0]  # 22:00 UTC in Berlin

    def test_the_cohort_frame_carries_each_persons_groups(self, org):
        frame = selectors.cohort_frame(organization=org, start=date(2026, 3, 1), end=date(2026, 3, 31),
                                       group_by=["department", "attr:site"])
        by_person = frame.drop_duplicates("participant_id").set_index("participant_id")
        assert sorted(by_person["department"].fillna("-")) == ["-", "Sales"]
        assert sorted(by_person["attr:site"].fillna("-")) == ["-", "Lisbon"]

    def test_it_bounds_stage_windows(self, org):
        frame = selectors.session_stages_frame(organization=org, start=date(2026, 3, 1), end=date(2026, 3, 31))
        assert len(frame) == 7 and frame["is_nap"].sum() == 1
        with pytest.raises(ValueError):
            selectors.session_stages_frame(organization=org, start=date(2026, 3, 1), end=date(2026, 4, 1))

