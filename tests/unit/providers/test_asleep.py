"""Asleep client: payloads shaped as in shared/upstreams.md §1."""

from datetime import date, datetime, timezone

import httpx
import numpy as np
import pytest
import respx

from integrations.providers.asleep import AsleepClient, split_date_range
from integrations.providers.errors import (
    UpstreamAuthFailed,
    UpstreamBadPayload,
    UpstreamNotFound,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamUnavailable,
)

BASE = "https://api.asleep.test"
KEY = "live-key-0123456789abcdef"
USER = "G-20250115025029-vLErWBfQNtnfvgDccFOQ"


def stat(**overrides):
    values = {
        "sleep_time": "2025-01-15T03:05:29+00:00",
        "wake_time": "2025-01-15T03:26:29+00:00",
        "sleep_index": 50,
        "sleep_latency": 900,
        "wakeup_latency": 1440,
        "light_latency": 0,
        "deep_latency": None,
        "time_in_bed": 3600,
        "time_in_sleep_period": 1260,
        "time_in_sleep": 1080,
        "time_in_wake": 180,
        "time_in_light": 1080,
        "time_in_deep": 0,
        "time_in_rem": 0,
        "time_in_stable_breath": None,
        "sleep_efficiency": 0.3,
        "sleep_ratio": 0.86,
        "breathing_index": None,
        "breathing_pattern": None,
        "waso_count": 1,
        "longest_waso": 180,
        "sleep_cycle_count": 0,
    }
    values.update(overrides)
    return values


def report(
    stages,
    *,
    session_id="20250115025029_fvivn",
    state="COMPLETE",
    tz="UTC",
    start="2025-01-15T02:50:29+00:00",
    end="2025-01-15T03:50:29+00:00",
    created_timezone="UTC",
    stat_value="default",
    **extra,
):
    result = {
        "timezone": tz,
        "peculiarities": ["NO_BREATHING_STABILITY"],
        "missing_data_ratio": 0.0,
        "session": {
            "id": session_id,
            "state": state,
            "start_time": start,
            "end_time": end,
            "unexpected_end_time": None,
            "created_timezone": created_timezone,
            "sleep_stages": stages,
            "breath_stages": None,
            "snoring_stages": [0] * len(stages or []),
        },
        "stat": stat() if stat_value == "default" else stat_value,
        **extra,
    }
    return {"detail": "OK", "result": result}


def list_item(session_id, *, state="COMPLETE", start="2025-01-14T18:25:18+00:00"):
    return {
        "session_id": session_id,
        "state": state,
        "session_start_time": start,
        "session_end_time": "2025-01-14T22:55:55+00:00" if state == "COMPLETE" else None,
        "created_timezone": "Asia/Seoul",
        "unexpected_end_time": None,
        "last_received_seq_num": 540,
        "time_in_bed": 16237,
    }


def listing(items, tz="UTC"):
    return {"detail": "OK", "result": {"timezone": tz, "sleep_session_list": items}}


@pytest.fixture
def client():
    with AsleepClient(KEY, base_url=BASE) as c:
        yield c


@pytest.fixture
def mock():
    with respx.mock(base_url=BASE, assert_all_called=False) as m:
        yield m


class TestUsers:
    def test_it_creates_a_user(self, client, mock):
        route = mock.post("/ai/v1/users").respond(
            201, json={"detail": "success", "result": {"user_id": USER}}
        )
        assert client.create_user({"birth_year": 1990, "gender": "female"}) == USER
        request = route.calls.last.request
        assert request.headers["x-api-key"] == KEY
        assert b'"birth_year":1990' in request.content.replace(b" ", b"")

    def test_it_gets_a_user_with_naive_session_times(self, client, mock):
        mock.get(f"/ai/v1/users/{USER}").respond(
            200,
            json={
                "detail": "success",
                "result": {
                    "user_id": USER,
                    "to_be_deleted": False,
                    "last_session_info": {
                        "session_id": "20230630224117",
                        "inference_type": "MELSPECTROGRAM",
                        "service": "NOSERVICE",
                        "start_time": "2023-06-30T22:41:17",
                        "end_time": "2023-07-01T05:36:12",
                        "state": "COMPLETE",
                        "complete_time": "2023-07-01T05:41:12",
                    },
                    "metadata": {
                        "birth_year": 2001,
                        "gender": "male",
                        "height": 178.6,
                        "weight": 62.1,
                    },
                },
            },
        )
        user = client.get_user(USER)
        assert user.user_id == USER
        assert user.last_session_info.state == "COMPLETE"

    def test_it_deletes_a_user(self, client, mock):
        route = mock.delete(f"/ai/v1/users/{USER}").respond(204)
        assert client.delete_user(USER) is None
        assert route.called

    def test_it_refuses_an_id_that_would_change_the_path(self, client):
        with pytest.raises(ValueError):
            client.delete_user("../sessions")


class TestListSessions:
    def test_it_sends_filters_paging_and_headers(self, client, mock):
        route = mock.get("/data/v1/sessions").respond(200, json=listing([list_item("a")]))
        page = client.list_sessions(
            USER,
            date_gte=date(2025, 1, 1),
            date_lte=date(2025, 1, 31),
            limit=50,
            timezone="Asia/Seoul",
        )
        request = route.calls.last.request
        assert request.headers["x-user-id"] == USER
        assert request.headers["timezone"] == "Asia/Seoul"
        assert dict(request.url.params) == {
            "offset": "0",
            "limit": "50",
            "order_by": "ASC",
            "date_gte": "2025-01-01",
            "date_lte": "2025-01-31",
        }
        assert [s.session_id for s in page.items] == ["a"]
        assert page.items[0].start == datetime(2025, 1, 14, 18, 25, 18, tzinfo=timezone.utc)
        # 18:25 UTC is 03:25 next day in Seoul: the date filters' unit
        assert page.items[0].start_date == date(2025, 1, 15)

    def test_it_stops_when_a_page_is_shorter_than_the_limit(self, client, mock):
        mock.get("/data/v1/sessions").respond(200, json=listing([list_item("a")]))
        page = client.list_sessions(USER, limit=2)
        assert page.has_more is False and page.next_cursor is None

    def test_it_asks_again_after_a_full_page_and_stops_on_an_empty_one(self, client, mock):
        route = mock.get("/data/v1/sessions").mock(
            side_effect=[
                httpx.Response(200, json=listing([list_item("a"), list_item("b")])),
                httpx.Response(200, json=listing([])),
            ]
        )
        first = client.list_sessions(USER, limit=2)
        assert first.has_more is True and first.next_cursor == 2
        second = client.list_sessions(USER, limit=2, offset=first.next_cursor)
        assert second.items == () and second.has_more is False
        assert route.calls[1].request.url.params["offset"] == "2"

    def test_it_refuses_a_limit_over_100(self, client):
        with pytest.raises(ValueError):
            client.list_sessions(USER, limit=101)

    def test_it_quarantines_a_malformed_item_and_keeps_the_others(self, client, mock):
        broken = list_item("b")
        del broken["session_start_time"]
        mock.get("/data/v1/sessions").respond(
            200, json=listing([list_item("a"), broken, list_item("c")])
        )
        page = client.list_sessions(USER)
        assert [s.session_id for s in page.items] == ["a", "c"]
        (bad,) = page.quarantined
        assert (
            bad.upstream_id == "b" and "session_start_time" in bad.reason and bad.payload == broken
        )

    def test_it_accepts_unknown_extra_keys(self, client, mock):
        item = {**list_item("a"), "brand_new_field": {"x": 1}}
        body = listing([item])
        body["result"]["also_new"] = True
        body["trace_id"] = "abc"
        mock.get("/data/v1/sessions").respond(200, json=body)
        assert [s.session_id for s in client.list_sessions(USER).items] == ["a"]


class TestGetSession:
    def test_it_maps_four_stage_epochs_to_canonical_codes(self, client, mock):
        stages = [0, 0, 1, 2, 3, -1] + [1] * 114
        route = mock.get("/data/v3/sessions/20250115025029_fvivn").respond(200, json=report(stages))
        night = client.get_session(USER, "20250115025029_fvivn")
        assert route.calls.last.request.headers["x-user-id"] == USER
        assert night.stage_array()[:6].tolist() == [0, 0, 5, 3, 4, -1]
        assert night.epoch_seconds == 30 and night.epoch_count == 120
        assert night.start == datetime(2025, 1, 15, 2, 50, 29, tzinfo=timezone.utc)
        assert night.end == datetime(2025, 1, 15, 3, 50, 29, tzinfo=timezone.utc)
        assert night.provider == "asleep" and night.upstream_user_id == USER
        stats = night.upstream_stats
        assert stats["sleep_index"] == 50 and stats["sleep_efficiency"] == 0.3
        assert stats["stage_plan"] == "4-stage"
        assert stats["peculiarities"] == ["NO_BREATHING_STABILITY"]

    def test_it_maps_two_stage_sleep_to_light_and_leaves_the_plan_unknown(self, client, mock):
        two_stage_stat = stat(time_in_deep=None, time_in_rem=None)
        mock.get("/data/v3/sessions/s2").respond(
            200,
            json=report(
                [0, 1, 1, 0],
                session_id="s2",
                end="2025-01-15T02:52:29+00:00",
                stat_value=two_stage_stat,
            ),
        )
        night = client.get_session(USER, "s2")
        assert night.stage_array().tolist() == [0, 5, 5, 0]
        assert night.upstream_stats["stage_plan"] == "unknown"

    def test_it_returns_none_while_the_session_is_not_complete(self, client, mock):
        mock.get("/data/v3/sessions/open").respond(
            200, json=report(None, session_id="open", state="OPEN", end=None, stat_value=None)
        )
        assert client.get_session(USER, "open") is None

    def test_it_converts_to_utc_and_keeps_the_participant_timezone(self, client, mock):
        route = mock.get("/data/v3/sessions/s3").respond(
            200,
            json=report(
                [0, 1],
                session_id="s3",
                tz="Asia/Seoul",
                start="2025-01-15T11:50:29+09:00",
                end="2025-01-15T11:51:29+09:00",
                created_timezone="Asia/Seoul",
            ),
        )
        night = client.get_session(USER, "s3", timezone="Asia/Seoul")
        assert route.calls.last.request.headers["timezone"] == "Asia/Seoul"
        assert night.start == datetime(2025, 1, 15, 2, 50, 29, tzinfo=timezone.utc)
        assert night.timezone == "Asia/Seoul"

    def test_it_raises_bad_payload_with_the_payload_for_an_unknown_stage_code(self, client, mock):
        body = report([0, 1, 7], session_id="s4")
        mock.get("/data/v3/sessions/s4").respond(200, json=body)
        with pytest.raises(UpstreamBadPayload) as excinfo:
            client.get_session(USER, "s4")
        assert excinfo.value.permanent
        assert excinfo.value.payload == body["result"]
        assert "unknown codes [7]" in str(excinfo.value)

    def test_it_rejects_percent_efficiency_from_the_skills_pack(self, client, mock):
        mock.get("/data/v3/sessions/s5").respond(
            200, json=report([0, 1], session_id="s5", stat_value=stat(sleep_efficiency=88.24))
        )
        with pytest.raises(UpstreamBadPayload, match="sleep_efficiency"):
            client.get_session(USER, "s5")


class TestIterSessions:
    def test_it_fetches_complete_nights_and_quarantines_bad_ones(self, client, mock):
        broken_item = {"state": "COMPLETE"}
        mock.get("/data/v1/sessions").respond(
            200,
            json=listing(
                [
                    list_item("good", start="2025-01-10T22:00:00+00:00"),
                    list_item("bad", start="2025-01-11T22:00:00+00:00"),
                    list_item("open", state="OPEN", start="2025-01-12T22:00:00+00:00"),
                    broken_item,
                ]
            ),
        )
        mock.get("/data/v3/sessions/good").respond(200, json=report([0, 1, 2], session_id="good"))
        mock.get("/data/v3/sessions/bad").respond(200, json=report([0, 9], session_id="bad"))
        open_route = mock.get("/data/v3/sessions/open")
        (page,) = list(client.iter_sessions(USER, date_gte=date(2025, 1, 1)))
        assert [s.upstream_id for s in page.items] == ["good"]
        assert sorted(q.upstream_id or "" for q in page.quarantined) == ["", "bad"]
        assert not open_route.called
        # the open session must be read again next time
        assert page.next_cursor == "2025-01-12"

    def test_it_deduplicates_a_session_repeated_across_pages(self, client, mock):
        mock.get("/data/v1/sessions").mock(
            side_effect=[
                httpx.Response(200, json=listing([list_item("a"), list_item("b")])),
                httpx.Response(200, json=listing([list_item("b")])),  # drift: "b" slid into page 2
            ]
        )
        detail = mock.get(url__regex=r"/data/v3/sessions/(?P<sid>\w+)").mock(
            side_effect=lambda request, sid: httpx.Response(
                200, json=report([0, 1], session_id=sid)
            )
        )
        pages = list(client.iter_sessions(USER, page_size=2))
        assert [s.upstream_id for p in pages for s in p.items] == ["a", "b"]
        assert detail.call_count == 2
        assert pages[-1].has_more is False

    def test_it_moves_the_cursor_back_to_the_scan_start_after_drift(self, client, mock):
        # "b" repeated on page 2: a night was inserted before our offset and this scan missed it.
        mock.get("/data/v1/sessions").mock(
            side_effect=[
                httpx.Response(200, json=listing([
                    list_item("a", start="2025-01-10T22:00:00+00:00"),
                    list_item("b", start="2025-01-11T22:00:00+00:00"),
                ])),
                httpx.Response(200, json=listing([list_item("b", start="2025-01-11T22:00:00+00:00")])),
            ] * 2
        )
        mock.get(url__regex=r"/data/v3/sessions/(?P<sid>\w+)").mock(
            side_effect=lambda request, sid: httpx.Response(200, json=report([0, 1], session_id=sid))
        )
        pages = list(client.iter_sessions(USER, date_gte=date(2025, 1, 5), page_size=2))
        assert [p.next_cursor for p in pages] == ["2025-01-11", "2025-01-05"]
        whole = list(client.iter_sessions(USER, page_size=2))
        assert [p.next_cursor for p in whole] == ["2025-01-11", ""]  # "": read everything again


class TestAverageStats:
    def test_it_splits_a_long_range_into_calls_of_at_most_100_days(self, client, mock):
        def answer(request):
            p = request.url.params
            return httpx.Response(
                200,
                json={
                    "detail": "OK",
                    "result": {
                        "period": {
                            "timezone": "UTC",
                            "start_date": p["start_date"],
                            "end_date": p["end_date"],
                        },
                        "peculiarities": [],
                        "average_stats": {
                            "start_time": "23:54:01",
                            "end_time": "07:28:03",
                            "sleep_time": "00:10:30",
                            "wake_time": "07:17:44",
                            "sleep_efficiency": 0.864,
                            "time_in_bed": 16381,
                        },
                        "never_slept_sessions": [],
                        "slept_sessions": [{"id": "x1", "created_timezone": "UTC"}],
                    },
                },
            )

        route = mock.get(f"/data/v1/users/{USER}/average-stats").mock(side_effect=answer)
        snapshots = client.average_stats(
            USER, start_date=date(2025, 1, 1), end_date=date(2025, 9, 7)
        )
        ranges = [
            (c.request.url.params["start_date"], c.request.url.params["end_date"])
            for c in route.calls
        ]
        assert ranges == [
            ("2025-01-01", "2025-04-10"),
            ("2025-04-11", "2025-07-19"),
            ("2025-07-20", "2025-09-07"),
        ]
        assert "x-user-id" not in route.calls.last.request.headers
        first = snapshots[0]
        assert first.average_stats["start_time"] == "23:54:01"
        assert first.average_stats["start_time_seconds"] == 23 * 3600 + 54 * 60 + 1
        assert first.average_stats["sleep_efficiency"] == 0.864
        assert first.slept_session_ids == ("x1",)

    def test_it_refuses_a_clock_time_that_is_not_hh_mm_ss(self, client, mock):
        mock.get(f"/data/v1/users/{USER}/average-stats").respond(
            200,
            json={
                "detail": "OK",
                "result": {
                    "period": {
                        "timezone": "UTC",
                        "start_date": "2025-01-01",
                        "end_date": "2025-01-05",
                    },
                    "average_stats": {"start_time": "2025-01-01T02:54:01"},
                },
            },
        )
        with pytest.raises(UpstreamBadPayload, match="start_time"):
            client.average_stats(USER, start_date=date(2025, 1, 1), end_date=date(2025, 1, 5))

    def test_it_accepts_null_average_stats(self, client, mock):
        mock.get(f"/data/v1/users/{USER}/average-stats").respond(
            200,
            json={
                "detail": "OK",
                "result": {
                    "period": {
                        "timezone": "UTC",
                        "start_date": "2025-01-01",
                        "end_date": "2025-01-05",
                    },
                    "peculiarities": [],
                    "average_stats": None,
                    "never_slept_sessions": [],
                    "slept_sessions": [],
                },
            },
        )
        (snapshot,) = client.average_stats(
            USER, start_date=date(2025, 1, 1), end_date=date(2025, 1, 5)
        )
        assert snapshot.average_stats is None

    @pytest.mark.parametrize(("days", "chunks"), [(1, 1), (100, 1), (101, 2), (200, 2), (201, 3)])
    def test_it_counts_chunks_inclusive_of_both_ends(self, days, chunks):
        start = date(2024, 1, 1)
        end = date.fromordinal(start.toordinal() + days - 1)
        result = split_date_range(start, end)
        assert len(result) == chunks
        assert all((b - a).days <= 99 for a, b in result)
        assert result[0][0] == start and result[-1][1] == end

    def test_it_refuses_an_end_before_the_start(self):
        with pytest.raises(ValueError):
            split_date_range(date(2025, 1, 2), date(2025, 1, 1))


class TestErrors:
    def call(self, client, mock, status, body=None, headers=None):
        mock.get(f"/ai/v1/users/{USER}").respond(status, json=body, headers=headers)
        with pytest.raises(Exception) as excinfo:
            client.get_user(USER)
        return excinfo.value

    @pytest.mark.parametrize("message", ["Rate limit exceeded", "rate limit exceeded."])
    def test_it_reads_a_403_rate_limit_as_rate_limited(self, client, mock, message):
        error = self.call(client, mock, 403, {"detail": message})
        assert isinstance(error, UpstreamRateLimited) and not error.permanent
        assert error.retry_after == 60

    def test_it_honours_retry_after_on_a_403_rate_limit(self, client, mock):
        error = self.call(
            client, mock, 403, {"detail": "Rate limit exceeded"}, {"Retry-After": "7"}
        )
        assert isinstance(error, UpstreamRateLimited) and error.retry_after == 7

    def test_it_reads_a_403_quota_as_a_long_rate_limit(self, client, mock):
        error = self.call(client, mock, 403, {"detail": "Quota exceeded"})
        assert isinstance(error, UpstreamRateLimited) and error.retry_after == 3600

    def test_it_reads_a_403_expired_plan_as_permanent_auth_failure(self, client, mock):
        error = self.call(client, mock, 403, {"detail": "Plan is expired"})
        assert isinstance(error, UpstreamAuthFailed) and error.permanent

    def test_it_reads_a_401_as_a_bad_key(self, client, mock):
        error = self.call(client, mock, 401, {"detail": "Unauthorized"})
        assert isinstance(error, UpstreamAuthFailed) and error.permanent
        assert KEY not in str(error)

    @pytest.mark.parametrize(
        "message", ["user_id is invalid", "x-user-id is invalid", "invalid user id"]
    )
    def test_it_reads_a_401_about_the_user_id_as_not_found(self, client, mock, message):
        assert isinstance(self.call(client, mock, 401, {"detail": message}), UpstreamNotFound)

    @pytest.mark.parametrize(
        "message",
        [
            "user does not exist",
            "user not exist",
            "user requested was not found",
            "session does not exist",
        ],
    )
    def test_it_reads_both_generations_of_404_wording(self, client, mock, message):
        error = self.call(client, mock, 404, {"detail": message})
        assert isinstance(error, UpstreamNotFound) and error.permanent
        assert USER not in str(error)

    def test_it_reads_a_bad_timezone_as_rejected(self, client, mock):
        assert isinstance(
            self.call(client, mock, 400, {"detail": "The invalid timezone is provided"}),
            UpstreamRejected,
        )

    def test_it_reads_429_retry_after_seconds(self, client, mock):
        error = self.call(client, mock, 429, {"detail": "slow down"}, {"Retry-After": "120"})
        assert isinstance(error, UpstreamRateLimited) and error.retry_after == 120

    def test_it_reads_429_retry_after_http_date(self, client, mock):
        error = self.call(client, mock, 429, None, {"Retry-After": "Wed, 21 Oct 2099 07:28:00 GMT"})
        assert isinstance(error, UpstreamRateLimited) and error.retry_after > 3600

    @pytest.mark.parametrize("status", [500, 502, 503])
    def test_it_reads_5xx_as_unavailable(self, client, mock, status):
        error = self.call(client, mock, status, {"detail": "oops"})
        assert isinstance(error, UpstreamUnavailable) and not error.permanent

    def test_it_reads_a_timeout_as_unavailable(self, client, mock):
        mock.get(f"/ai/v1/users/{USER}").mock(side_effect=httpx.ReadTimeout("slow"))
        with pytest.raises(UpstreamUnavailable, match="timeout"):
            client.get_user(USER)

    def test_it_reads_a_truncated_body_as_unavailable(self, client, mock):
        mock.get("/data/v1/sessions").respond(
            200,
            content=b'{"detail":"OK","result":{"timezone":"UTC","sleep_sess',
            headers={"Content-Type": "application/json"},
        )
        with pytest.raises(UpstreamUnavailable, match="JSON"):
            client.list_sessions(USER)

    def test_it_reads_a_wrong_envelope_as_bad_payload(self, client, mock):
        mock.get("/data/v1/sessions").respond(200, json={"result": {"sleep_session_list": []}})
        with pytest.raises(UpstreamBadPayload):
            client.list_sessions(USER)


def test_it_stores_stages_as_int8_bytes(client, mock):
    mock.get("/data/v3/sessions/s6").respond(200, json=report([0, 1, 2, 3], session_id="s6"))
    night = client.get_session(USER, "s6")
    assert np.frombuffer(night.stages, dtype=np.int8).tolist() == [0, 5, 3, 4]
