"""The overview's aggregates against hand-computed values, and a query-count guard."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from analytics import dashboard
from integrations import selectors as integration_selectors
from integrations.models import SyncRunStatus

from ...factories import (
    ConnectionFactory,
    DepartmentFactory,
    OrganizationFactory,
    ParticipantFactory,
    ParticipantLinkFactory,
    QuarantinedRecordFactory,
    SyncRunFactory,
)
from .nights import night

PERIOD = dashboard.DateRange(date(2026, 3, 2), date(2026, 3, 15))  # Monday 2 March to Sunday 15 March


@pytest.fixture
def org(db):
    org = OrganizationFactory(timezone="Europe/Berlin")
    sales, ops = DepartmentFactory(organization=org, name="Sales"), DepartmentFactory(organization=org, name="Ops")
    ann = ParticipantFactory(organization=org, department=sales)
    ben = ParticipantFactory(organization=org, department=sales)
    cid = ParticipantFactory(organization=org, department=ops)
    dee = ParticipantFactory(organization=org, department=None)
    night(ann, date(2026, 3, 3), score=45, tst=420, se=90, regularity=60)
    night(ann, date(2026, 3, 10), score=55, tst=480, se=80, regularity=80)
    night(ben, date(2026, 3, 11), score=100, tst=360, se=95)
    night(cid, date(2026, 3, 15), score=72, tst=420, se=85, regularity=90)
    night(cid, date(2026, 3, 12), score=10, tst=60, se=50, nap=True)  # a nap: left out everywhere
    night(dee, date(2026, 3, 1), score=99, tst=600, se=99)  # the day before the period
    other = OrganizationFactory()
    night(ParticipantFactory(organization=other), date(2026, 3, 10), score=1, tst=30, se=10)
    org.people = {"ann": ann, "ben": ben, "cid": cid, "dee": dee}
    return org


class DateRangeTests:
    def test_it_defaults_to_the_last_four_weeks(self):
        period = dashboard.date_range_from_params({}, today=date(2026, 3, 28))
        assert (period.start, period.end, period.days) == (date(2026, 3, 1), date(2026, 3, 28), 28)

    def test_it_reads_iso_dates(self):
        period = dashboard.date_range_from_params({"start": "2026-01-01", "end": "2026-01-31"}, today=date(2026, 3, 1))
        assert (period.start, period.end) == (date(2026, 1, 1), date(2026, 1, 31))

    @pytest.mark.parametrize(
        "params, message",
        [
            ({"start": "yesterday"}, "is not a date"),
            ({"end": "2026-02-30"}, "is not a date"),
            ({"start": "2026-03-10", "end": "2026-03-01"}, "is after the end date"),
            ({"start": "2024-01-01", "end": "2026-01-01"}, "choose at most 366"),
        ],
    )
    def test_it_refuses_unusable_ranges_with_a_readable_message(self, params, message):
        with pytest.raises(dashboard.InvalidRange, match=message):
            dashboard.date_range_from_params(params, today=date(2026, 3, 1))


class RangeSummaryTests:
    def test_it_counts_main_sleeps_of_the_period_and_averages_them(self, org):
        summary = dashboard.range_summary(org, PERIOD)
        assert summary["nights"] == 4
        assert summary["participants"] == 3
        assert summary["score_mean"] == (45 + 55 + 100 + 72) / 4  # 68.0
        assert summary["tst_mean_h"] == (420 + 480 + 360 + 420) / 4 / 60  # 7.0
        assert summary["se_mean_pct"] == 87.5

    def test_it_bins_scores_by_ten_with_100_in_the_last_bin(self, org):
        histogram = dashboard.range_summary(org, PERIOD)["chart_histogram"]
        assert histogram["labels"][0] == "0–9" and histogram["labels"][-1] == "90–100"
        assert histogram["values"] == [0, 0, 0, 0, 1, 1, 0, 1, 0, 1]

    def test_it_reports_an_empty_period_without_figures(self, org):
        summary = dashboard.range_summary(org, dashboard.DateRange(date(2025, 1, 1), date(2025, 1, 31)))
        assert (summary["nights"], summary["score_mean"], summary["tst_mean_h"]) == (0, None, None)
        assert summary["chart_histogram"]["values"] == [0] * 10


class WeeklyTrendTests:
    def test_it_gives_weekly_means_with_gaps_for_empty_weeks(self, org):
        trends = dashboard.weekly_trends(org, end=date(2026, 3, 15), weeks=3)
        assert trends["weeks"] == ["2026-02-23", "2026-03-02", "2026-03-09"]
        assert trends["nights"] == [1, 1, 3]  # Dee's night of 1 March falls in the week of 23 February
        score = trends["series"]["score"]["values"]
        assert score == [99.0, 45.0, round((55 + 100 + 72) / 3, 2)]
        assert trends["series"]["tst"]["values"] == [10.0, 7.0, round((480 + 360 + 420) / 3 / 60, 2)]
        # Regularity is averaged over the nights that have it (Ben's has none).
        assert trends["series"]["regularity"]["values"] == [None, 60.0, 85.0]

    def test_it_leaves_weeks_without_nights_empty(self, org):
        trends = dashboard.weekly_trends(org, end=date(2026, 4, 5), weeks=2)
        assert trends["nights"] == [0, 0]
        assert trends["series"]["score"]["values"] == [None, None]


class DepartmentTests:
    def test_it_compares_departments_including_people_without_one(self, org):
        night(org.people["dee"], date(2026, 3, 5), score=80, tst=450, se=88)
        rows = {r["department"]: r for r in dashboard.department_comparison(org, PERIOD)}
        assert set(rows) == {"Sales", "Ops", dashboard.NO_DEPARTMENT}
        assert (rows["Sales"]["participants"], rows["Sales"]["nights"]) == (2, 3)
        assert rows["Sales"]["score_mean"] == round((45 + 55 + 100) / 3, 1)
        assert rows["Ops"]["score_mean"] == 72.0
        assert rows[dashboard.NO_DEPARTMENT]["tst_mean_h"] == 7.5


class NightsThisWeekTests:
    def test_it_counts_from_monday_to_today(self, org):
        assert dashboard.nights_this_week(org, today=date(2026, 3, 12)) == 2  # 10 and 11 March (the nap is out)
        assert dashboard.nights_this_week(org, today=date(2026, 3, 9)) == 0


class EnrollmentAndSyncTests:
    def test_it_counts_linked_and_recently_synced_participants(self, org):
        now = timezone.now()
        connection_ = ConnectionFactory(organization=org)
        ParticipantLinkFactory(connection=connection_, participant=org.people["ann"], last_synced_at=now)
        ParticipantLinkFactory(connection=connection_, participant=org.people["ben"],
                               last_synced_at=now - timedelta(days=10))
        ParticipantLinkFactory(connection=ConnectionFactory(organization=org), participant=org.people["ann"],
                               last_synced_at=now)
        counts = integration_selectors.enrollment_counts(org)
        assert (counts["enrolled"], counts["linked"], counts["syncing"]) == (4, 2, 1)

    def test_it_flags_connections_whose_last_sync_failed(self, org):
        now = timezone.now()
        healthy = ConnectionFactory(organization=org, name="A healthy")
        broken = ConnectionFactory(organization=org, name="B broken")
        SyncRunFactory(connection=healthy, status=SyncRunStatus.FAILED, started_at=now - timedelta(days=2))
        SyncRunFactory(connection=healthy, status=SyncRunStatus.SUCCEEDED, started_at=now - timedelta(hours=1))
        SyncRunFactory(connection=broken, status=SyncRunStatus.FAILED, started_at=now - timedelta(days=20))
        SyncRunFactory(connection=broken, status=SyncRunStatus.FAILED, started_at=now - timedelta(hours=1),
                       error="upstream_unavailable")
        QuarantinedRecordFactory(connection=broken)
        QuarantinedRecordFactory(connection=broken)
        ParticipantLinkFactory(connection=broken, participant=org.people["cid"])
        ConnectionFactory(organization=OrganizationFactory(), name="C foreign")
        rows = {r["name"]: r for r in integration_selectors.sync_health(org)}
        assert set(rows) == {"A healthy", "B broken"}
        assert (rows["A healthy"]["needs_attention"], rows["A healthy"]["failures"]) == (False, 1)
        assert rows["A healthy"]["last_run_status"] == SyncRunStatus.SUCCEEDED
        assert (rows["B broken"]["needs_attention"], rows["B broken"]["failures"]) == (True, 1)
        assert (rows["B broken"]["quarantined"], rows["B broken"]["linked_people"]) == (2, 1)
        assert any("upstream_unavailable" in reason for reason in rows["B broken"]["reasons"])


def _queries_for_page(client, user, url) -> int:
    client.force_login(user)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200
    return len(queries)


@pytest.mark.django_db
class QueryCountTests:
    def _grow(self, world, people: int, connections: int = 2):
        departments = [DepartmentFactory(organization=world.org) for _ in range(3)]
        for i in range(people):
            person = ParticipantFactory(organization=world.org, department=departments[i % 3])
            night(person, date(2026, 3, 3), score=50 + i % 40)
            night(person, date(2026, 3, 4), score=60)
        for _ in range(connections):
            connection_ = ConnectionFactory(organization=world.org)
            SyncRunFactory(connection=connection_)
            QuarantinedRecordFactory(connection=connection_)

    @pytest.mark.parametrize("path", ["", "participants/"])
    def test_it_reads_a_constant_number_of_queries_whatever_the_size(self, client, world_a, path):
        from tenants.roles import Role

        url = f"/o/{world_a.org.slug}/{path}?start=2026-03-01&end=2026-03-28" if not path else \
            f"/o/{world_a.org.slug}/{path}"
        self._grow(world_a, 3, connections=1)
        small = _queries_for_page(client, world_a.users[Role.ADMIN], url)
        self._grow(world_a, 30, connections=4)
        large = _queries_for_page(client, world_a.users[Role.ADMIN], url)
        assert small == large
        assert large <= 20, large


class OverviewDataTests:
    def test_it_builds_the_page_from_one_read_with_the_same_figures(self, org):
        data = dashboard.overview_data(org, PERIOD, today=date(2026, 3, 12))
        assert data["summary"] == dashboard.range_summary(org, PERIOD)
        assert data["departments"] == dashboard.department_comparison(org, PERIOD)
        assert data["trends"] == dashboard.weekly_trends(org, end=PERIOD.end)
        assert data["nights_this_week"] == 2
        assert data["charts"]["departments"]["labels"] == ["Ops", "Sales"]
