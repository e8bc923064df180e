"""Asleep simulator: paths, headers, envelopes, paging and errors of shared/upstreams.md §1."""

import json
import warnings
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from integrations.simulators.asleep import create_app

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # StarletteDeprecationWarning, as in conftest
    from starlette.responses import JSONResponse as StarletteJSONResponse

STAT_KEYS = 38


@pytest.fixture
def api(client_for):
    app = create_app(keys=["key-live"], seed=1)
    c = client_for(app)
    c.post("/_sim/credentials", json={"value": "key-test", "environment": "test"})
    users = c.post(
        "/_sim/users", json={"ids": ["G-1", "G-2"], "nights": 45, "last_night": "2025-03-01"}
    ).json()["users"]
    c.sim = app.state.sim
    c.uid = users[0]["id"]
    c.h = {"x-api-key": "key-live", "x-user-id": c.uid}
    return c


def all_sessions(api, **params):
    out, offset = [], 0
    while True:
        r = api.get(
            "/data/v1/sessions", headers=api.h, params={"offset": offset, "limit": 7, **params}
        )
        page = r.json()["result"]["sleep_session_list"]
        out += page
        if len(page) < 7:
            return out
        offset += 7


class AsleepUserTests:
    def test_it_creates_gets_and_deletes_users(self, api):
        r = api.post(
            "/ai/v1/users",
            headers={"x-api-key": "key-live"},
            json={"metadata": {"birth_year": 1990, "gender": "female", "height": 170.5}},
        )
        assert r.status_code == 201 and r.json()["detail"] == "success"
        uid = r.json()["result"]["user_id"]
        assert uid.startswith("G-")
        r = api.get(f"/ai/v1/users/{uid}", headers={"x-api-key": "key-live"})
        body = r.json()["result"]
        assert body["last_session_info"] is None and body["to_be_deleted"] is False
        assert body["metadata"]["height"] == 170.5
        assert (
            api.delete(f"/ai/v1/users/{uid}", headers={"x-api-key": "key-live"}).status_code == 204
        )
        r = api.get(f"/ai/v1/users/{uid}", headers={"x-api-key": "key-live"})
        assert r.status_code == 404 and r.json() == {"detail": "user does not exist"}

    def test_bad_metadata_is_422(self, api):
        r = api.post(
            "/ai/v1/users", headers={"x-api-key": "key-live"}, json={"metadata": {"height": 170.55}}
        )
        assert r.status_code == 422

    def test_last_session_info(self, api):
        body = api.get(f"/ai/v1/users/{api.uid}", headers={"x-api-key": "key-live"}).json()[
            "result"
        ]
        info = body["last_session_info"]
        assert info["state"] == "COMPLETE" and info["start_time"].startswith("2025-03-0")
        assert "+" not in info["start_time"]

    def test_keys_only_see_their_environment(self, api):
        assert (
            api.get("/data/v1/sessions", headers={**api.h, "x-api-key": "nope"}).status_code == 401
        )
        r = api.get("/data/v1/sessions", headers={**api.h, "x-api-key": "key-test"})
        assert r.status_code == 404 and r.json() == {"detail": "user does not exist"}
        r = api.get("/data/v1/sessions", headers={"x-api-key": "key-live"})
        assert r.status_code == 401 and r.json() == {"detail": "x-user-id is invalid"}


class AsleepSessionListTests:
    def test_pages_cover_everything_once_without_a_total(self, api):
        sessions = all_sessions(api)
        ids = [s["session_id"] for s in sessions]
        truth = api.get("/_sim/truth", params={"user": api.uid}).json()["sessions"]
        assert len(ids) == len(set(ids)) == len(truth) > 35
        assert set(ids) == {t["upstream_id"] for t in truth}
        starts = [s["session_start_time"] for s in sessions]
        assert starts == sorted(starts, reverse=True)  # default DESC
        page = api.get("/data/v1/sessions", headers=api.h).json()
        assert set(page) == {"detail", "result"} and page["detail"] == "OK"
        assert set(page["result"]) == {"timezone", "sleep_session_list"}
        assert len(page["result"]["sleep_session_list"]) == 20  # default limit

    def test_item_shape(self, api):
        item = api.get("/data/v1/sessions", headers=api.h, params={"limit": 1}).json()["result"][
            "sleep_session_list"
        ][0]
        assert set(item) == {
            "session_id",
            "state",
            "session_start_time",
            "session_end_time",
            "created_timezone",
            "unexpected_end_time",
            "last_received_seq_num",
            "time_in_bed",
        }
        assert item["time_in_bed"] == item["last_received_seq_num"] * 30
        sid = item["session_id"]
        assert len(sid) == 20 and sid[14] == "_" and sid[:14].isdigit()

    def test_limit_bounds_and_order(self, api):
        assert api.get("/data/v1/sessions", headers=api.h, params={"limit": 101}).status_code == 422
        assert api.get("/data/v1/sessions", headers=api.h, params={"limit": 100}).status_code == 200
        asc = api.get(
            "/data/v1/sessions", headers=api.h, params={"order_by": "ASC", "limit": 3}
        ).json()
        starts = [s["session_start_time"] for s in asc["result"]["sleep_session_list"]]
        assert starts == sorted(starts) and starts[0].startswith("2025-01-1")

    def test_timezone_header_reexpresses_times_and_dates(self, api):
        r = api.get(
            "/data/v1/sessions",
            headers={**api.h, "timezone": "Asia/Seoul"},
            params={"date_gte": "2025-02-10", "date_lte": "2025-02-12", "order_by": "ASC"},
        )
        body = r.json()["result"]
        assert body["timezone"] == "Asia/Seoul"
        for s in body["sleep_session_list"]:
            t = datetime.fromisoformat(s["session_start_time"])
            assert t.utcoffset().total_seconds() == 9 * 3600
            assert date(2025, 2, 10) <= t.date() <= date(2025, 2, 12)
        r = api.get("/data/v1/sessions", headers={**api.h, "timezone": "Mars/Base"})
        assert r.status_code == 400 and r.json() == {"detail": "The invalid timezone is provided"}

    def test_page_size_cap(self, api):
        api.post("/_sim/config", json={"page_size_cap": 5})
        assert (
            len(
                api.get("/data/v1/sessions", headers=api.h, params={"limit": 50}).json()["result"][
                    "sleep_session_list"
                ]
            )
            == 5
        )


class AsleepSessionReportTests:
    def sid(self, api):
        return api.get("/data/v1/sessions", headers=api.h, params={"limit": 1}).json()["result"][
            "sleep_session_list"
        ][0]["session_id"]

    def test_report_shape(self, api):
        r = api.get(f"/data/v3/sessions/{self.sid(api)}", headers=api.h)
        body = r.json()
        assert r.status_code == 200 and body["detail"] == "OK"
        res = body["result"]
        assert set(res) >= {"timezone", "peculiarities", "missing_data_ratio", "session", "stat"}
        s, st = res["session"], res["stat"]
        assert len(st) == STAT_KEYS
        assert set(s["sleep_stages"]) <= {-1, 0, 1, 2, 3}
        assert len(s["sleep_stages"]) * 30 == st["time_in_bed"]
        assert len(s["snoring_stages"]) == len(s["sleep_stages"]) and s["breath_stages"] is None
        for k in (
            "sleep_efficiency",
            "sleep_ratio",
            "wake_ratio",
            "light_ratio",
            "deep_ratio",
            "rem_ratio",
        ):
            assert 0 <= st[k] <= 1
        assert st["sleep_efficiency"] == pytest.approx(
            st["time_in_sleep"] / st["time_in_bed"], abs=1e-4
        )
        assert st["time_in_sleep_period"] >= st["time_in_sleep"] + st["time_in_wake"]
        assert (
            3 <= st["sleep_cycle_count"] <= 7
            and len(st["sleep_cycle_time"]) == st["sleep_cycle_count"]
        )
        assert "NO_BREATHING_STABILITY" in res["peculiarities"]

    def test_unknown_session_and_v2(self, api):
        r = api.get("/data/v3/sessions/20200101000000_zzzzz", headers=api.h)
        assert r.status_code == 404 and r.json() == {"detail": "session does not exist"}
        assert api.get(f"/data/v2/sessions/{self.sid(api)}", headers=api.h).status_code == 200

    def test_delete_session(self, api):
        sid = self.sid(api)
        assert api.delete(f"/ai/v1/sessions/{sid}", headers=api.h).status_code == 204
        assert api.get(f"/data/v3/sessions/{sid}", headers=api.h).status_code == 404

    def test_revision_changes_stages_and_completed_time(self, api):
        sid = self.sid(api)
        before = api.get(f"/data/v3/sessions/{sid}", headers=api.h).json()["result"]
        truth = api.get("/_sim/truth", params={"user": api.uid}).json()["sessions"]
        night_of = next(t["night_of"] for t in truth if t["upstream_id"] == sid)
        r = api.post(f"/_sim/users/{api.uid}/revise", json={"dates": [night_of]})
        assert r.json()["revised"][0]["revision"] == 1
        after = api.get(f"/data/v3/sessions/{sid}", headers=api.h).json()["result"]
        assert before["session"]["sleep_stages"] != after["session"]["sleep_stages"]
        assert before["session"]["start_time"] == after["session"]["start_time"]

    def test_open_sessions_have_no_stat_until_completed(self, api):
        r = api.post(
            f"/_sim/users/{api.uid}/nights", json={"dates": ["2025-03-05"], "state": "OPEN"}
        )
        sid = r.json()["added"][0]["upstream_id"]
        res = api.get(f"/data/v3/sessions/{sid}", headers=api.h).json()["result"]
        assert (
            res["session"]["state"] == "OPEN"
            and res["stat"] is None
            and res["session"]["end_time"] is None
        )
        api.post(f"/_sim/users/{api.uid}/complete", json={"dates": ["2025-03-05"]})
        res = api.get(f"/data/v3/sessions/{sid}", headers=api.h).json()["result"]
        assert res["session"]["state"] == "COMPLETE" and len(res["stat"]) == STAT_KEYS


class AsleepAverageStatsTests:
    def test_shape(self, api):
        r = api.get(
            f"/data/v1/users/{api.uid}/average-stats",
            headers={"x-api-key": "key-live"},
            params={"start_date": "2025-02-01", "end_date": "2025-02-28"},
        )
        res = r.json()["result"]
        assert res["period"] == {
            "timezone": "UTC",
            "start_date": "2025-02-01",
            "end_date": "2025-02-28",
        }
        avg = res["average_stats"]
        for k in ("start_time", "end_time", "sleep_time", "wake_time"):
            assert len(avg[k]) == 8 and avg[k][2] == ":"
        assert 0 < avg["sleep_efficiency"] <= 1
        slept = res["slept_sessions"][0]
        for k in (
            "id",
            "created_timezone",
            "start_time",
            "end_time",
            "completed_time",
            "sleep_efficiency",
            "time_in_wake",
            "time_in_sleep_period",
            "time_in_sleep",
            "time_in_bed",
            "wake_ratio",
            "sleep_ratio",
        ):
            assert k in slept

    def test_validation(self, api):
        h = {"x-api-key": "key-live"}
        assert api.get(f"/data/v1/users/{api.uid}/average-stats", headers=h).status_code == 422
        r = api.get(
            f"/data/v1/users/{api.uid}/average-stats",
            headers=h,
            params={"start_date": "2024-01-01", "end_date": "2025-01-01"},
        )
        assert r.status_code == 400 and "100 days" in r.json()["detail"]


class AsleepFaultTests:
    def test_rate_limit_is_403_and_errors_keep_the_envelope(self, api):
        api.post("/_sim/config", json={"schedule": {"1": "429", "2": "503", "3": "truncate"}})
        r1 = api.get("/data/v1/sessions", headers=api.h)
        r2 = api.get("/data/v1/sessions", headers=api.h)
        r3 = api.get("/data/v1/sessions", headers=api.h)
        r4 = api.get("/data/v1/sessions", headers=api.h)
        assert r1.status_code == 403 and r1.json() == {"detail": "Rate limit exceeded"}
        assert "retry-after" not in r1.headers
        assert r2.status_code == 503 and "detail" in r2.json()
        assert r3.status_code == 200
        with pytest.raises(ValueError):
            r3.json()
        assert r4.status_code == 200 and r4.json()["detail"] == "OK"
        log = api.get("/_sim/log").json()["entries"]
        assert [(e["index"], e["status"], e["fault"], e["key"]) for e in log] == [
            (1, 403, "429", "key-live"),
            (2, 503, "503", "key-live"),
            (3, 200, "truncate", "key-live"),
            (4, 200, "ok", "key-live"),
        ]

    def test_malformed_records_are_stable_and_reported(self, api):
        api.post("/_sim/config", json={"malformed_rate": 0.2})
        items = all_sessions(api)
        bad = {s["session_id"] for s in items if s["time_in_bed"] == "NaN"}
        truth = api.get("/_sim/truth", params={"user": api.uid}).json()["sessions"]
        assert bad == {t["upstream_id"] for t in truth if t["malformed"]} and bad
        assert bad == {s["session_id"] for s in all_sessions(api) if s["time_in_bed"] == "NaN"}
        sid = next(iter(bad))
        session = api.get(f"/data/v3/sessions/{sid}", headers=api.h).json()["result"]["session"]
        assert 9 in session["sleep_stages"] and session["id"] == sid

    def test_drift_inserts_nights_between_pages(self, api):
        n0 = len(api.get("/_sim/truth", params={"user": api.uid}).json()["sessions"])
        api.post("/_sim/config", json={"drift_every": 2})
        all_sessions(api)
        assert len(api.get("/_sim/truth", params={"user": api.uid}).json()["sessions"]) > n0


class AsleepDeterminismTests:
    def test_same_seed_same_data(self, client_for):
        def hashes():
            c = client_for(create_app(keys=["k"], users=3, nights=10, seed=4))
            return [
                (t["upstream_id"], t["stages_sha256"])
                for t in c.get("/_sim/truth").json()["sessions"]
            ]

        assert hashes() == hashes()


class AsleepArtefactKnobTests:
    def test_no_minus_one_when_artefacts_are_off(self, client_for):
        c = client_for(create_app(keys=["k"], artefacts=False))
        c.post("/_sim/users", json={"ids": ["G-9"], "nights": 120, "last_night": "2025-03-01"})
        stages = c.get("/_sim/truth", params={"stages": 1}).json()["sessions"]
        assert all(-1 not in s["provider_stages"] for s in stages)


class AsleepRenderedReportTests:
    """Reports are served from each record's cache of JSON bytes, per timezone, never stale."""

    def report(self, api, sid, tz=None):
        headers = {**api.h, "timezone": tz} if tz else api.h
        r = api.get(f"/data/v3/sessions/{sid}", headers=headers)
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        return r.content

    def fresh(self, api, sid, tz="UTC"):
        """The answer rendered afresh, serialized as starlette (stdlib json) did before orjson."""
        user = api.sim.store.users[api.uid]
        rec = api.sim._find(user, sid)
        result = api.sim._report(rec, ZoneInfo(tz), tz)
        return StarletteJSONResponse({"detail": "OK", "result": result}).body

    def sids(self, api):
        truth = api.get("/_sim/truth", params={"user": api.uid}).json()["sessions"]
        return [t["upstream_id"] for t in truth]

    def test_it_serves_what_a_fresh_render_serializes_as_before(self, api):
        api.post("/_sim/config", json={"malformed_rate": 0.3})
        for sid in self.sids(api)[:8]:
            for tz in (None, "UTC", "Asia/Seoul"):
                expected = self.fresh(api, sid, tz or "UTC")
                assert self.report(api, sid, tz) == expected  # rendered now or for UTC
                assert self.report(api, sid, tz) == expected  # from the cache
        assert self.report(api, sid, "Asia/Seoul") != self.report(api, sid, "UTC")

    def test_it_never_serves_a_revision_or_completion_stale(self, api):
        sid = self.sids(api)[0]
        self.report(api, sid)
        truth = api.get("/_sim/truth", params={"user": api.uid}).json()["sessions"][0]
        api.post(
            f"/_sim/users/{api.uid}/revise",
            json={"dates": [truth["night_of"]], "updated": truth["updated"]},
        )
        assert self.report(api, sid) == self.fresh(api, sid)
        r = api.post(
            f"/_sim/users/{api.uid}/nights", json={"dates": ["2025-03-05"], "state": "OPEN"}
        )
        open_sid = r.json()["added"][0]["upstream_id"]
        assert json.loads(self.report(api, open_sid))["result"]["stat"] is None
        api.post(f"/_sim/users/{api.uid}/complete", json={"dates": ["2025-03-05"]})
        assert self.report(api, open_sid) == self.fresh(api, open_sid)
        assert json.loads(self.report(api, open_sid))["result"]["stat"] is not None

    def test_it_follows_the_malformed_knob(self, api):
        sid = self.sids(api)[0]
        clean = self.report(api, sid)
        api.post("/_sim/config", json={"malformed_keys": [sid]})
        broken = json.loads(self.report(api, sid))["result"]["session"]
        assert broken["start_time"] == "not-a-time" and broken["sleep_stages"][-1] == 9
        api.post("/_sim/reset", json={})  # knobs back to the start, data kept
        assert self.report(api, sid) == clean

    def test_it_forgets_a_reset_or_deleted_night(self, api):
        sid = self.sids(api)[0]
        before = self.report(api, sid)
        assert api.delete(f"/ai/v1/sessions/{sid}", headers=api.h).status_code == 204
        assert api.get(f"/data/v3/sessions/{sid}", headers=api.h).status_code == 404
        api.post("/_sim/reset", json={"data": True})
        api.post("/_sim/credentials", json={"value": "key-live"})
        # The same user id and dates, another timezone: other nights.
        api.post(
            "/_sim/users",
            json={
                "ids": [api.uid],
                "nights": 45,
                "last_night": "2025-03-01",
                "timezone": "Asia/Tokyo",
            },
        )
        sid = self.sids(api)[0]
        assert self.report(api, sid) == self.fresh(api, sid) != before

    def test_it_warms_every_night_in_each_timezone(self, api, monkeypatch):
        r = api.post("/_sim/warm", json={"timezones": ["UTC", "Europe/Copenhagen"]})
        nights = sum(u["nights"] for u in api.get("/_sim/users").json()["users"])
        assert r.status_code == 200 and r.json()["rendered"] == nights > 0
        for rec in api.sim.store.records():
            assert {("report", "UTC"), ("report", "Europe/Copenhagen")} <= set(rec.rendered)
        sid = self.sids(api)[0]
        expected = {tz: self.fresh(api, sid, tz) for tz in ("UTC", "Europe/Copenhagen")}

        def no_render(*args, **kwargs):
            raise AssertionError("rendered again after warm")

        monkeypatch.setattr(api.sim, "_report", no_render)
        for tz, body in expected.items():
            assert self.report(api, sid, tz) == body

    def test_warm_refuses_unknown_timezones(self, api):
        r = api.post("/_sim/warm", json={"timezones": ["Mars/Olympus"]})
        assert r.status_code == 400 and "Mars/Olympus" in r.json()["error"]
        assert api.post("/_sim/warm", json={"timezones": "UTC"}).status_code == 400
