from datetime import date

import pandas as pd
import pytest

from analytics.models import NightlyMetrics
from tenants.roles import Role

from ...factories import ParticipantFactory
from .nights import days, store_nights


def _url(world):
    return f"/api/v1/orgs/{world.org.slug}/reports/trends/"


@pytest.fixture
def seasons(world_a):
    """January: 6 people; February: 2 people (below the minimum of 5); March: nobody."""
    for i in range(6):
        person = ParticipantFactory(organization=world_a.org)
        store_nights(world_a.org, person, days(date(2026, 1, 10), 5), sleep_epochs=700 + 40 * i, wake_inside=5 * i)
        if i < 2:
            store_nights(world_a.org, person, days(date(2026, 2, 10), 3), prefix="feb")
    return world_a


class TrendReportTests:
    @pytest.mark.parametrize("metric, column", [("score", "score"), ("tst", "tst_min"), ("se", "se_pct"),
                                                ("waso", "waso_min")])
    def test_it_returns_monthly_means_and_hides_small_months(self, seasons, metric, column):
        response = seasons.client(Role.HR).get(
            _url(seasons), {"start": "2026-01-01", "end": "2026-03-31", "metric": metric}
        )
        assert response.status_code == 200
        body = response.json()
        values = pd.Series(
            NightlyMetrics.objects.filter(organization=seasons.org, night_date__month=1).values_list(column, flat=True)
        ).astype(float)
        january, february, march = body["months"]
        assert january == {"month": "2026-01", "participants": 6, "nights": 30,
                           "mean": round(values.mean(), 2), "median": round(values.median(), 2),
                           "suppressed": False, "suppression_note": None}
        assert february["suppressed"] and february["participants"] is None and february["mean"] is None
        assert february["suppression_note"] == "fewer than 5 people"
        assert march == {"month": "2026-03", "participants": 0, "nights": 0, "mean": None, "median": None,
                         "suppressed": False, "suppression_note": None}
        assert body["metric"] == metric and body["min_group_size"] == 5

    def test_it_defaults_to_twelve_months_of_scores(self, seasons):
        body = seasons.client(Role.ADMIN).get(_url(seasons)).json()
        assert body["metric"] == "score" and len(body["months"]) == 12

    @pytest.mark.parametrize(
        "params, message",
        [({"metric": "rem"}, 'metric: "rem" is not a valid choice.'),
         ({"start": "2026-05-01", "end": "2026-01-01"}, "start (2026-05-01) is after end (2026-01-01)."),
         ({"start": "2024-01-01", "end": "2026-01-01"}, "The range 2024-01-01 to 2026-01-01 spans 732 days")],
    )
    def test_it_rejects_bad_parameters_with_a_clear_400(self, world_a, params, message):
        response = world_a.client(Role.HR).get(_url(world_a), params)
        assert response.status_code == 400 and response.json()["detail"].startswith(message)

    def test_it_reads_in_a_fixed_number_of_queries(self, seasons, django_assert_max_num_queries):
        client = seasons.client(Role.HR)
        with django_assert_max_num_queries(2):
            assert client.get(_url(seasons), {"start": "2026-01-01", "end": "2026-03-31"}).status_code == 200
