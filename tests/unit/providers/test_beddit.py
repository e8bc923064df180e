"""Beddit client: payloads shaped as the giginet fixtures in shared/upstreams.md §4."""

import math
from datetime import datetime, timezone
from urllib.parse import parse_qs

import httpx
import numpy as np
import pytest
import respx

from integrations.providers.beddit import (
    BedditClient,
    BedditCursor,
    advance_cursor,
    epochs_to_canonical,
    transitions_to_epochs,
)
from integrations.providers.errors import (
    UpstreamAuthFailed,
    UpstreamBadPayload,
    UpstreamNotFound,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamUnavailable,
)

BASE = "https://cloudapi.beddit.test"
A, S, R, W, N, G = 65, 83, 82, 87, 78, 71
T0 = 1471271700.0


def sleep(
    date="2016-08-16", *, items=None, start=T0, end=T0 + 300, updated=1471303494.441255, **overrides
):
    body = {
        "user": 98740,
        "date": date,
        "timezone": "Asia/Tokyo",
        "start_timestamp": start,
        "end_timestamp": end,
        "session_range_start": start,
        "session_range_end": end,
        "updated": updated,
        "tags": ["not_enough_sleep"],
        "tips": [],
        "properties": {
            "total_sleep_score": 44,
            "sleep_score_version": 3,
            "sleep_efficiency": 0.8962782,
            "sleep_latency": 2040,
            "resting_heart_rate": 44.6,
            "average_respiration_rate": 13.2,
            "stage_duration_S": 17628,
            "stage_duration_W": 12437,
            "signal_amplitude": 7.1,
        },
        "time_value_tracks": {
            "sleep_stages": {
                "value_data_type": "uint8",
                "items": items if items is not None else [[start, S]],
            },
            "presence": {"value_data_type": "uint8", "items": [[start, 80]]},
            "actigram_epochwise": {"value_data_type": "float32", "items": [[start, 14]]},
            "heart_rate_curve": {"value_data_type": "float32", "items": [[start + 150, 62.6]]},
            "sleep_cycles": {"value_data_type": "float32", "items": []},
            "snoring_episodes": {"value_data_type": "float32", "items": []},
            "nap_periods": {"value_data_type": "uint8", "items": []},
        },
    }
    body.update(overrides)
    return body


LOGIN = {
    "user": 98740,
    "access_token": "2YotnFZFEjr1zCsicMWpAA",
    "token_type": "user",
    "expires_in": 3600,
}


@pytest.fixture
def mock():
    with respx.mock(base_url=BASE, assert_all_called=False) as m:
        yield m


@pytest.fixture
def client():
    with BedditClient(username="ann@example.com", password="hunter2", base_url=BASE) as c:
        yield c


class TestTransitionTrack:
    def test_it_samples_each_epoch_midpoint_and_crops_away_at_both_ends(self):
        # mids 15,45,...,285 s after T0 → A A W S S S R S A A
        items = [
            [T0, A],
            [T0 + 60, W],
            [T0 + 100, S],
            [T0 + 190, R],
            [T0 + 220, S],
            [T0 + 250, A],
            [T0 + 265, W],
            [T0 + 280, A],
        ]
        raw = transitions_to_epochs(items, T0, T0 + 300)
        assert raw.tolist() == [A, A, W, S, S, S, R, S, A, A]
        first, stages = epochs_to_canonical(raw)
        assert first == 2
        assert stages.tolist() == [0, 5, 5, 5, 5, 5]

    def test_it_maps_away_inside_the_night_to_wake_and_no_signal_and_gaps_to_no_data(self):
        # mids → W S S A S S N G W A
        items = [
            [T0, W],
            [T0 + 30, S],
            [T0 + 90, A],
            [T0 + 120, S],
            [T0 + 180, N],
            [T0 + 210, G],
            [T0 + 240, W],
            [T0 + 270, A],
        ]
        first, stages = epochs_to_canonical(transitions_to_epochs(items, T0, T0 + 300))
        assert first == 0
        assert stages.tolist() == [0, 5, 5, 0, 5, 5, -1, -1, 0]

    def test_it_reads_unsorted_transitions_and_no_data_before_the_first(self):
        raw = transitions_to_epochs([[T0 + 70, W], [T0 + 40, S]], T0, T0 + 120)
        assert raw.tolist() == [N, S, W, W]

    def test_it_keeps_a_last_epoch_only_when_its_midpoint_is_inside(self):
        assert len(transitions_to_epochs([[T0, S]], T0, T0 + 74)) == 2
        assert len(transitions_to_epochs([[T0, S]], T0, T0 + 75)) == 3

    def test_it_refuses_unknown_codes(self):
        with pytest.raises(ValueError, match="unknown codes"):
            epochs_to_canonical(transitions_to_epochs([[T0, 88]], T0, T0 + 60))

    def test_it_refuses_a_night_away_from_bed(self):
        with pytest.raises(ValueError, match="away"):
            epochs_to_canonical(transitions_to_epochs([[T0, A]], T0, T0 + 60))


class TestLogin:
    def test_it_logs_in_with_a_form_and_uses_the_user_token(self, client, mock):
        login = mock.post("/api/v1/auth/authorize").respond(200, json=LOGIN)
        sleeps = mock.get("/api/v1/user/98740/sleep").respond(200, json=[])
        client.fetch_sleeps()
        form = parse_qs(login.calls.last.request.content.decode())
        assert form == {
            "grant_type": ["password"],
            "username": ["ann@example.com"],
            "password": ["hunter2"],
        }
        assert "authorization" not in login.calls.last.request.headers
        assert (
            sleeps.calls.last.request.headers["Authorization"] == "UserToken 2YotnFZFEjr1zCsicMWpAA"
        )

    def test_it_logs_in_again_once_when_the_token_is_refused(self, mock):
        client = BedditClient(
            username="ann@example.com", password="pw", token="stale", user_id=98740, base_url=BASE
        )
        login = mock.post("/api/v1/auth/authorize").respond(200, json=LOGIN)
        sleeps = mock.get("/api/v1/user/98740/sleep").mock(
            side_effect=[
                httpx.Response(403, json={"error": "forbidden", "description": "Token expired"}),
                httpx.Response(200, json=[]),
            ]
        )
        client.fetch_sleeps()
        assert login.call_count == 1
        assert [c.request.headers["Authorization"] for c in sleeps.calls] == [
            "UserToken stale",
            "UserToken 2YotnFZFEjr1zCsicMWpAA",
        ]

    def test_it_gives_up_after_one_fresh_login_is_refused_too(self, mock):
        client = BedditClient(
            username="ann@example.com", password="pw", token="stale", user_id=98740, base_url=BASE
        )
        login = mock.post("/api/v1/auth/authorize").respond(200, json=LOGIN)
        mock.get("/api/v1/user/98740/sleep").respond(
            403, json={"error": "forbidden", "description": "no"}
        )
        with pytest.raises(UpstreamAuthFailed) as excinfo:
            client.fetch_sleeps()
        assert login.call_count == 1 and excinfo.value.permanent

    def test_it_fails_auth_on_invalid_credentials_without_leaking_them(self, client, mock):
        mock.post("/api/v1/auth/authorize").respond(
            400,
            json={
                "error": "invalid_credentials",
                "description": "Bad password for ann@example.com",
            },
        )
        with pytest.raises(UpstreamAuthFailed) as excinfo:
            client.login()
        assert "hunter2" not in str(excinfo.value) and "ann@example.com" not in str(excinfo.value)

    def test_it_cannot_log_in_again_with_only_a_token(self, mock):
        client = BedditClient(token="stale", user_id=1, base_url=BASE)
        mock.get("/api/v1/user/1/sleep").respond(
            403, json={"error": "forbidden", "description": "x"}
        )
        with pytest.raises(UpstreamAuthFailed):
            client.fetch_sleeps()


class TestFetchSleeps:
    @pytest.fixture
    def authed(self, mock):
        return BedditClient(
            username="a@b.c", password="pw", token="t", user_id=98740, base_url=BASE
        )

    def test_it_maps_a_night_with_stats_and_updated_time(self, authed, mock):
        items = [[T0, A], [T0 + 60, W], [T0 + 100, S], [T0 + 190, R], [T0 + 220, S], [T0 + 250, A]]
        mock.get("/api/v1/user/98740/sleep").respond(200, json=[sleep(items=items)])
        page = authed.fetch_sleeps()
        (night,) = page.items
        assert night.provider == "beddit" and night.upstream_id == "2016-08-16"
        assert night.upstream_user_id == "98740"
        assert night.stage_array().tolist() == [0, 5, 5, 5, 5, 5]
        assert night.start == datetime.fromtimestamp(T0 + 60, tz=timezone.utc)
        assert night.end == datetime.fromtimestamp(T0 + 240, tz=timezone.utc)
        assert night.timezone == "Asia/Tokyo"
        assert night.upstream_updated_at == datetime.fromtimestamp(
            1471303494.441255, tz=timezone.utc
        )
        stats = night.upstream_stats
        assert stats["total_sleep_score"] == 44 and stats["resting_heart_rate"] == 44.6
        assert stats["average_respiration_rate"] == 13.2 and stats["sleep_efficiency"] == 0.8962782
        assert "signal_amplitude" not in stats

    def test_it_starts_from_zero_and_returns_the_max_updated_as_cursor(self, authed, mock):
        route = mock.get("/api/v1/user/98740/sleep").respond(
            200, json=[sleep("2016-08-15", updated=100.5), sleep("2016-08-16", updated=200.25)]
        )
        page = authed.fetch_sleeps()
        assert route.calls.last.request.url.params["updated_after"] == "0.0"
        assert "limit" not in route.calls.last.request.url.params
        assert page.next_cursor == {"updated_after": 200.25, "seen": {"2016-08-16": 200.25}}

    def test_it_asks_with_a_lookback_and_drops_ties_it_already_delivered(self, authed, mock):
        cursor = BedditCursor.from_json({"updated_after": 200.25, "seen": {"2016-08-16": 200.25}})
        route = mock.get("/api/v1/user/98740/sleep").respond(
            200,
            json=[
                sleep("2016-08-16", updated=200.25),  # delivered last time
                sleep("2016-08-17", updated=200.25),  # same timestamp, new: must not be lost
                sleep("2016-08-10", updated=300.0),  # re-scored old night
            ],
        )
        page = authed.fetch_sleeps(cursor)
        assert float(route.calls.last.request.url.params["updated_after"]) == pytest.approx(199.25)
        assert sorted(n.upstream_id for n in page.items) == ["2016-08-10", "2016-08-17"]
        assert page.next_cursor["updated_after"] == 300.0

    def test_it_keeps_the_newest_of_two_records_for_one_night(self, authed, mock):
        mock.get("/api/v1/user/98740/sleep").respond(
            200,
            json=[
                sleep("2016-08-16", updated=10.0, tags=["old"]),
                sleep("2016-08-16", updated=20.0, tags=["new"]),
            ],
        )
        (night,) = authed.fetch_sleeps().items
        assert night.upstream_stats["tags"] == ["new"]

    def test_it_quarantines_malformed_nights_and_keeps_the_good_ones(self, authed, mock):
        no_tracks = sleep("2016-08-17")
        del no_tracks["time_value_tracks"]
        bad_code = sleep("2016-08-18", items=[[T0, 99]])
        bad_tz = sleep("2016-08-19", timezone="Mars/Olympus")
        mock.get("/api/v1/user/98740/sleep").respond(
            200, json=[sleep("2016-08-16"), no_tracks, bad_code, bad_tz, "not an object"]
        )
        page = authed.fetch_sleeps()
        assert [n.upstream_id for n in page.items] == ["2016-08-16"]
        reasons = {q.upstream_id: q.reason for q in page.quarantined}
        assert "time_value_tracks" in reasons["2016-08-17"]
        assert "unknown codes [99]" in reasons["2016-08-18"]
        assert "IANA" in reasons["2016-08-19"]
        assert None in reasons and len(page.quarantined) == 4

    def test_it_accepts_unknown_extra_keys(self, authed, mock):
        body = sleep(brand_new={"a": 1})
        body["properties"]["new_metric"] = 1
        body["time_value_tracks"]["new_track"] = {"value_data_type": "weird", "items": [["x"]]}
        mock.get("/api/v1/user/98740/sleep").respond(200, json=[body])
        assert len(authed.fetch_sleeps().items) == 1

    def test_it_fetches_a_date_range_without_a_cursor(self, authed, mock):
        from datetime import date

        route = mock.get("/api/v1/user/98740/sleep").respond(200, json=[sleep()])
        page = authed.fetch_sleeps_between(date(2016, 8, 1), date(2016, 8, 31))
        assert dict(route.calls.last.request.url.params) == {
            "start_date": "2016-08-01",
            "end_date": "2016-08-31",
        }
        assert page.next_cursor is None and len(page.items) == 1

    def test_it_reads_a_non_array_as_bad_payload(self, authed, mock):
        mock.get("/api/v1/user/98740/sleep").respond(200, json={"error": None})
        with pytest.raises(UpstreamBadPayload):
            authed.fetch_sleeps()

    @pytest.mark.parametrize(
        ("status", "body", "error"),
        [
            (404, {"error": "not_found", "description": "x"}, UpstreamNotFound),
            (410, {"error": "unsupported_api_version", "description": "x"}, UpstreamRejected),
            (500, {"error": "email_send_failed", "description": "x"}, UpstreamUnavailable),
            (502, None, UpstreamUnavailable),
            (503, None, UpstreamUnavailable),
        ],
    )
    def test_it_maps_error_bodies(self, authed, mock, status, body, error):
        mock.get("/api/v1/user/98740/sleep").respond(status, json=body)
        with pytest.raises(error):
            authed.fetch_sleeps()

    def test_it_reads_429_with_retry_after(self, authed, mock):
        mock.get("/api/v1/user/98740/sleep").respond(429, headers={"Retry-After": "3"})
        with pytest.raises(UpstreamRateLimited) as excinfo:
            authed.fetch_sleeps()
        assert excinfo.value.retry_after == 3

    def test_it_reads_a_timeout_and_a_truncated_body_as_unavailable(self, authed, mock):
        mock.get("/api/v1/user/98740/sleep").mock(
            side_effect=[
                httpx.ConnectTimeout("slow"),
                httpx.Response(200, content=b'[{"user": 98740, "da'),
            ]
        )
        for _ in range(2):
            with pytest.raises(UpstreamUnavailable):
                authed.fetch_sleeps()


class TestCursor:
    def test_it_never_moves_back(self):
        cursor = advance_cursor(BedditCursor(500.0, {"x": 500.0}), [("y", 100.0)])
        assert cursor.updated_after == 500.0 and cursor.seen == {"x": 500.0}

    def test_it_keeps_only_keys_inside_the_lookback_window(self):
        cursor = advance_cursor(BedditCursor(), [("a", 10.0), ("b", 19.5), ("c", 20.0)])
        assert cursor.to_json() == {"updated_after": 20.0, "seen": {"b": 19.5, "c": 20.0}}

    def test_it_round_trips_through_json(self):
        cursor = BedditCursor(20.0, {"c": 20.0})
        assert BedditCursor.from_json(cursor.to_json()) == cursor
        assert BedditCursor.from_json(None) == BedditCursor()

    def test_it_refuses_a_garbled_cursor(self):
        with pytest.raises(ValueError):
            BedditCursor.from_json({"updated_after": "yesterday"})


class TestIterSleeps:
    """An upstream that serves at most a few nights per answer, ordered by ``updated``."""

    @pytest.fixture
    def authed(self, mock):
        return BedditClient(token="t", user_id=98740, base_url=BASE)

    @staticmethod
    def capped(mock, nights, cap):
        def answer(request):
            after = float(request.url.params["updated_after"])
            chosen = sorted((n for n in nights if n["updated"] > after), key=lambda n: (n["updated"], n["date"]))
            return httpx.Response(200, json=chosen[:cap])

        return mock.get("/api/v1/user/98740/sleep").mock(side_effect=answer)

    def test_it_reads_every_night_across_capped_answers_and_ties(self, authed, mock):
        # Six nights share updated=20.0 across the cut of a 4-night answer.
        nights = [sleep(f"2016-08-{d:02d}", updated=10.0 + d) for d in (1, 2)]
        nights += [sleep(f"2016-08-{d:02d}", updated=20.0) for d in range(3, 7)]
        nights += [sleep(f"2016-08-{d:02d}", updated=30.0) for d in (7, 8)]
        route = self.capped(mock, nights, cap=4)
        pages = list(authed.iter_sleeps())
        got = [n.upstream_id for p in pages for n in p.items]
        assert sorted(got) == [n["date"] for n in nights] and len(got) == len(set(got))
        assert pages[-1].next_cursor["updated_after"] == 30.0
        assert route.call_count <= 5

    def test_it_steps_past_a_lookback_window_fuller_than_one_answer(self, authed, mock):
        # Five nights within the 1 s lookback were delivered; a new one sits behind them.
        old = [sleep(f"2016-08-{d:02d}", updated=100.0 + d / 10) for d in range(1, 6)]
        new = sleep("2016-08-09", updated=100.9)
        self.capped(mock, [*old, new], cap=3)
        cursor = BedditCursor.from_json(
            {"updated_after": 100.5, "seen": {n["date"]: n["updated"] for n in old}}
        )
        pages = list(authed.iter_sleeps(cursor))
        assert [n.upstream_id for p in pages for n in p.items] == ["2016-08-09"]

    def test_it_asks_twice_when_nothing_changed(self, authed, mock):
        night = sleep("2016-08-16", updated=200.25)
        route = self.capped(mock, [night], cap=10)
        cursor = BedditCursor.from_json({"updated_after": 200.25, "seen": {"2016-08-16": 200.25}})
        (page,) = list(authed.iter_sleeps(cursor))
        assert page.items == ()
        asked = [float(c.request.url.params["updated_after"]) for c in route.calls]
        assert asked == [199.25, math.nextafter(200.25, -math.inf)]  # lookback, then >= newest


def test_it_stores_int8_stages(client, mock):
    stages = transitions_to_epochs([[T0, W], [T0 + 30, S]], T0, T0 + 90)
    _, canonical = epochs_to_canonical(stages)
    assert canonical.dtype == np.int8


class TestWholeAnswerFastPath:
    """A well-formed answer is validated whole from its bytes; anything else per record."""

    @pytest.fixture
    def authed(self, mock):
        return BedditClient(token="t", user_id=98740, base_url=BASE)

    @pytest.fixture
    def per_record_calls(self, monkeypatch):
        import integrations.providers.beddit as beddit

        calls = []
        original = beddit.parse_records

        def spy(records, *args, **kwargs):
            calls.append(len(records))
            return original(records, *args, **kwargs)

        monkeypatch.setattr(beddit, "parse_records", spy)
        return calls

    def simulated_nights(self, count=5):
        from integrations.simulators.beddit import BedditSimulator

        sim = BedditSimulator(seed=3)
        user = sim.add_user(nights=count)
        return [sim.sleep_object(rec) for rec in sim.store.sessions(user)]

    def test_it_gives_what_the_per_record_path_gives(self, authed, mock, per_record_calls):
        from integrations.providers.beddit import parse_sleep

        nights = self.simulated_nights()
        mock.get("/api/v1/user/98740/sleep").respond(200, json=nights)
        page = authed.fetch_sleeps()
        assert per_record_calls == []  # validated whole
        assert list(page.items) == [parse_sleep(n, user_id="98740") for n in nights]
        newest = max(n["updated"] for n in nights)
        assert page.next_cursor["updated_after"] == newest

    def test_a_night_wrong_in_meaning_sends_the_answer_per_record(self, authed, mock, per_record_calls):
        good, bad_tz = self.simulated_nights(2)
        bad_tz["timezone"] = "Mars/Olympus"  # well-formed, so the whole answer validates
        mock.get("/api/v1/user/98740/sleep").respond(200, json=[good, bad_tz])
        page = authed.fetch_sleeps()
        assert per_record_calls == [2]
        assert [n.upstream_id for n in page.items] == [good["date"]]
        (quarantined,) = page.quarantined
        assert quarantined.upstream_id == bad_tz["date"] and quarantined.payload == bad_tz

    def test_nan_anywhere_is_refused_as_before(self, authed, mock):
        (night,) = self.simulated_nights(1)
        text = httpx.Response(200, json=[night]).text.replace('"items":[]', '"items":[[1.0,NaN]]', 1)
        assert "NaN" in text
        mock.get("/api/v1/user/98740/sleep").respond(200, content=text.encode())
        with pytest.raises(UpstreamUnavailable):
            authed.fetch_sleeps()
