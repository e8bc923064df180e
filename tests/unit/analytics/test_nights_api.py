from datetime import UTC, date, datetime

import numpy as np
import pytest

from analytics.engine.metrics import single_night_metrics
from analytics.models import NightlyMetrics, SleepSession
from analytics.services import sleep_sessions_upsert
from tenants.roles import Role

from ...factories import ParticipantFactory
from .nights import Record, days, hypnogram, store_nights


def _url(world, suffix=""):
    return f"/api/v1/orgs/{world.org.slug}/nights/{suffix}"


@pytest.fixture
def person(world_a):
    participant = ParticipantFactory(organization=world_a.org)
    store_nights(world_a.org, participant, days(date(2026, 3, 1), 5), wake_inside=30)
    return participant


class NightsListTests:
    def test_it_returns_the_stored_engine_figures_and_score_breakdown(self, world_a, person):
        response = world_a.client(Role.ADMIN).get(_url(world_a), {"participant": str(person.uuid)})
        assert response.status_code == 200
        body = response.json()
        assert body["count"] == 5
        expected = single_night_metrics(hypnogram(900, wake_inside=30), 30)
        night = body["results"][0]
        assert night["night_date"] == "2026-03-05"  # newest first
        assert night["participant"] == str(person.uuid)
        for name in ("tib_min", "tst_min", "waso_min", "se_pct", "sol_min", "n3_min", "rem_min", "awakenings"):
            assert night["metrics"][name] == pytest.approx(float(expected[name])), name
        stored = NightlyMetrics.objects.get(session__uuid=night["uuid"])
        assert night["score"]["value"] == pytest.approx(stored.score)
        assert night["score"]["components"]["efficiency"] == pytest.approx(stored.score_efficiency)
        assert night["score"]["components_used"] == ["duration", "efficiency", "continuity", "depth", "regularity"]
        assert sum(night["score"]["weights"].values()) == pytest.approx(1.0)
        first = body["results"][-1]["score"]  # no history of 3 nights yet: regularity left out, reweighted
        assert "regularity" not in first["components_used"] and first["weights"]["regularity"] == 0
        assert first["weights"]["duration"] == pytest.approx(0.35 / 0.85)
        assert night["clock"]["bedtime_local"] == "23:00:00"
        assert "hypnogram" not in night

    def test_it_includes_the_hypnogram_as_canonical_codes_when_asked(self, world_a, person):
        response = world_a.client(Role.OWNER).get(_url(world_a), {"include": "stages", "participant": str(person.uuid)})
        night = response.json()["results"][0]
        assert night["hypnogram"] == hypnogram(900, wake_inside=30).tolist()

    def test_it_filters_by_date_range(self, world_a, person):
        response = world_a.client(Role.ADMIN).get(_url(world_a), {"start": "2026-03-02", "end": "2026-03-03"})
        assert [n["night_date"] for n in response.json()["results"]] == ["2026-03-03", "2026-03-02"]

    def test_it_leaves_naps_out_unless_asked(self, world_a, person):
        nap = Record.night("nap", datetime(2026, 3, 3, 13, tzinfo=UTC), [2] * 120)  # 14:00 Berlin, 1 h
        sleep_sessions_upsert(organization=world_a.org, records=[(person.pk, nap, "nap")])
        client = world_a.client(Role.ADMIN)
        assert client.get(_url(world_a)).json()["count"] == 5
        with_naps = client.get(_url(world_a), {"include": "naps"}).json()
        assert with_naps["count"] == 6
        assert sum(n["is_nap"] for n in with_naps["results"]) == 1

    def test_a_member_sees_only_their_own_nights(self, world_a, person):
        store_nights(world_a.org, world_a.member_participant, days(date(2026, 3, 1), 2))
        client = world_a.client(Role.MEMBER)
        body = client.get(_url(world_a)).json()
        assert body["count"] == 2
        assert {n["participant"] for n in body["results"]} == {str(world_a.member_participant.uuid)}
        assert client.get(_url(world_a), {"participant": str(person.uuid)}).json()["count"] == 0

    def test_hr_may_not_read_nights(self, world_a, person):
        response = world_a.client(Role.HR).get(_url(world_a))
        assert response.status_code == 403
        assert str(person.uuid) not in response.content.decode()

    @pytest.mark.parametrize(
        "params, message",
        [
            ({"start": "2026-03-10", "end": "2026-03-01"}, "start (2026-03-10) is after end (2026-03-01)."),
            ({"start": "2025-01-01", "end": "2026-03-01"}, "The range 2025-01-01 to 2026-03-01 spans 425 days"),
            ({"start": "03/01/2026"}, "start: Date has wrong format"),
            ({"end": "2026-02-30"}, "end: Date has wrong format"),
            ({"participant": "not-a-uuid"}, "participant: Must be a valid UUID."),
            ({"include": "stages,secrets"}, "include: include takes 'stages' and/or 'naps'"),
        ],
    )
    def test_it_rejects_bad_parameters_with_a_clear_400(self, world_a, params, message):
        response = world_a.client(Role.ADMIN).get(_url(world_a), params)
        assert response.status_code == 400
        body = response.json()
        assert set(body) == {"detail", "code", "fields"} and body["code"] == "invalid"
        assert body["detail"].startswith(message)

    def test_it_reads_a_page_in_a_fixed_number_of_queries(self, world_a, person, django_assert_max_num_queries):
        for _ in range(3):
            store_nights(world_a.org, ParticipantFactory(organization=world_a.org), days(date(2026, 3, 1), 5))
        client = world_a.client(Role.ADMIN)
        # membership + count + page (stages deferred), whatever the page size
        with django_assert_max_num_queries(3):
            response = client.get(_url(world_a), {"page_size": 20, "include": "stages"})
        assert len(response.json()["results"]) == 20


class NightDetailTests:
    def test_it_returns_one_night_with_its_hypnogram(self, world_a, person):
        session = SleepSession.objects.filter(participant=person).order_by("start").first()
        response = world_a.client(Role.ADMIN).get(_url(world_a, f"{session.uuid}/"))
        assert response.status_code == 200
        body = response.json()
        assert body["uuid"] == str(session.uuid)
        assert body["hypnogram"] == np.frombuffer(bytes(session.stages), dtype=np.int8).tolist()
        assert body["night_date"] == "2026-03-01"

    def test_a_member_gets_404_for_someone_elses_night(self, world_a, person):
        session = SleepSession.objects.filter(participant=person).first()
        response = world_a.client(Role.MEMBER).get(_url(world_a, f"{session.uuid}/"))
        assert response.status_code == 404

    def test_a_member_reads_their_own_night(self, world_a):
        store_nights(world_a.org, world_a.member_participant, [date(2026, 3, 1)])
        session = SleepSession.objects.get(participant=world_a.member_participant)
        assert world_a.client(Role.MEMBER).get(_url(world_a, f"{session.uuid}/")).status_code == 200
