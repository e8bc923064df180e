from datetime import date

import pandas as pd
import pytest

from analytics.engine import weekly
from analytics.models import NightlyMetrics
from tenants.models import Participant
from tenants.roles import Role

from ...factories import ParticipantFactory
from .nights import days, store_nights

WEEK = "2026-W10"  # Monday 2026-03-02 .. Sunday 2026-03-08
BASELINE_FROM = date(2026, 2, 2)


def _org_url(world):
    return f"/api/v1/orgs/{world.org.slug}/reports/weekly/"


def _people_url(world):
    return f"/api/v1/orgs/{world.org.slug}/reports/weekly/participants/"


def _staff(world, count, *, first=BASELINE_FROM, nights=35):
    people = []
    for i in range(count):
        person = ParticipantFactory(organization=world.org, birth_year=1990)
        store_nights(world.org, person, days(first, nights), sleep_epochs=760 + 30 * i, wake_inside=10 * i)
        people.append(person)
    return people


def _engine_frame(org):
    """The week's input read independently of analytics.selectors."""
    rows = list(NightlyMetrics.objects.filter(organization=org).values(
        "participant_id", "night_date", "is_main_sleep", "is_nap", "score", "tst_min", "se_pct", "waso_min",
        "bedtime_local", "midsleep_local", "wake_time_local", "participant__birth_year",
    ))
    frame = pd.DataFrame(rows)
    for column in ("bedtime_local", "midsleep_local", "wake_time_local"):
        frame[column] = frame[column].map(lambda t: t.hour * 60 + t.minute + t.second / 60)
    frame["waketime_local"] = frame.pop("wake_time_local")
    frame["age_years"] = 2026 - frame.pop("participant__birth_year").astype(float)
    return frame


class OrganizationWeeklyTests:
    def test_it_returns_the_engines_organization_summary(self, world_a):
        _staff(world_a, 6)
        response = world_a.client(Role.HR).get(_org_url(world_a), {"week": WEEK})
        assert response.status_code == 200
        body = response.json()
        ids = list(Participant.objects.filter(organization=world_a.org).values_list("pk", flat=True))
        expected = weekly.weekly_organization_summary(
            _engine_frame(world_a.org), iso_year=2026, iso_week=10, min_group_size=5, participant_ids=ids
        ).iloc[0]
        assert body["week"] == WEEK and body["week_start"] == "2026-03-02"
        assert body["participants_total"] == 7  # six staff and the world's member (no nights)
        assert body["participants_with_data"] == 6 and body["nights"] == 42
        for name in ("score_mean", "tst_mean_min", "se_mean_pct", "waso_mean_min", "short_sleep_pct",
                     "score_delta_prev_week", "tst_delta_baseline_min"):
            assert body[name] == pytest.approx(round(float(expected[name]), 2)), name
        assert body["suppressed"] is False and body["bedtime_mean"] == "23:00"

    def test_it_hides_a_week_with_fewer_people_than_the_minimum(self, world_a):
        people = _staff(world_a, 4)
        body = world_a.client(Role.HR).get(_org_url(world_a), {"week": WEEK}).json()
        assert body["suppressed"] is True
        assert body["suppression_note"] == "fewer than 5 people"
        assert body["participants_with_data"] is None and body["nights"] is None
        assert body["score_mean"] is None and body["tst_mean_min"] is None and body["bedtime_mean"] is None
        text = str(body)
        assert not any(str(p.uuid) in text or p.name in text for p in people)

    @pytest.mark.parametrize(
        "week, message",
        [("2026-47", "week: '2026-47' is not an ISO week"), ("2026-W54", "week: 2026 has no ISO week 54."),
         ("2026-W00", "week: 2026 has no ISO week 0.")],
    )
    def test_it_rejects_a_bad_week_with_a_clear_400(self, world_a, week, message):
        response = world_a.client(Role.HR).get(_org_url(world_a), {"week": week})
        assert response.status_code == 400
        assert response.json()["detail"].startswith(message)

    def test_it_reads_in_a_fixed_number_of_queries(self, world_a, django_assert_max_num_queries):
        _staff(world_a, 5, nights=10)
        client = world_a.client(Role.HR)
        with django_assert_max_num_queries(3):
            assert client.get(_org_url(world_a), {"week": WEEK}).status_code == 200


class ParticipantWeeklyTests:
    def test_it_returns_each_persons_engine_summary_to_managers(self, world_a):
        people = _staff(world_a, 2)
        response = world_a.client(Role.ADMIN).get(_people_url(world_a), {"week": WEEK})
        assert response.status_code == 200
        body = response.json()
        assert body["count"] == 3  # two staff and the member
        expected = weekly.weekly_participant_summary(
            _engine_frame(world_a.org), iso_year=2026, iso_week=10, participant_ids=[p.pk for p in people]
        )
        by_uuid = {r["participant"]: r for r in body["results"]}
        for person in people:
            row, want = by_uuid[str(person.uuid)], expected.loc[person.pk]
            assert row["nights"] == 7
            for name in ("score_mean", "tst_mean_min", "se_mean_pct", "waso_mean_min", "score_delta_baseline"):
                assert row[name] == pytest.approx(round(float(want[name]), 2)), name
            assert row["insight_codes"] == list(want["insight_codes"])
            assert row["insights"] == list(want["insights"])
        member = by_uuid[str(world_a.member_participant.uuid)]
        assert member["nights"] == 0 and member["insight_codes"] == ["no_nights"]

    def test_it_filters_one_participant(self, world_a):
        person = _staff(world_a, 2)[1]
        body = world_a.client(Role.OWNER).get(_people_url(world_a), {"week": WEEK, "participant": str(person.uuid)})
        assert [r["participant"] for r in body.json()["results"]] == [str(person.uuid)]

    def test_a_member_gets_only_their_own_summary(self, world_a):
        other = _staff(world_a, 1)[0]
        store_nights(world_a.org, world_a.member_participant, days(date(2026, 3, 2), 3))
        client = world_a.client(Role.MEMBER)
        body = client.get(_people_url(world_a), {"week": WEEK}).json()
        assert [r["participant"] for r in body["results"]] == [str(world_a.member_participant.uuid)]
        assert body["results"][0]["nights"] == 3
        assert client.get(_people_url(world_a), {"week": WEEK, "participant": str(other.uuid)}).json()["count"] == 0

    def test_hr_may_not_read_a_persons_week(self, world_a):
        assert world_a.client(Role.HR).get(_people_url(world_a)).status_code == 403

    def test_it_reads_a_page_in_a_fixed_number_of_queries(self, world_a, django_assert_max_num_queries):
        _staff(world_a, 6, nights=10)
        client = world_a.client(Role.ADMIN)
        # membership, count, page of participants, their nights, their birth years
        with django_assert_max_num_queries(5):
            assert len(client.get(_people_url(world_a), {"week": WEEK}).json()["results"]) == 7
