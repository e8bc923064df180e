"""Beddit simulator: login, UserToken, bare arrays, updated_after (shared/upstreams.md §4)."""

import json
import time
import warnings

import pytest

from integrations.simulators.beddit import create_app

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # StarletteDeprecationWarning, as in conftest
    from starlette.responses import JSONResponse as StarletteJSONResponse

GIGINET_SLEEP_KEYS = {
    "actigram_epochwise",
    "sleep_stages",
    "presence",
    "nap_periods",
    "heart_rate_curve",
    "sleep_cycles",
}


@pytest.fixture
def api(client_for):
    app = create_app(seed=2)
    c = client_for(app)
    c.sim = app.state.sim
    c.post("/_sim/users", json={"count": 2, "nights": 40, "last_night": "2025-03-01"})
    login(c)
    return c


def login(api, user=1):
    r = api.post(
        "/api/v1/auth/authorize",
        data={
            "grant_type": "password",
            "username": f"user{user}@example.test",
            "password": "secret",
        },
    )
    api.h = {"Authorization": f"UserToken {r.json()['access_token']}"}


def sleeps(api, **params):
    r = api.get("/api/v1/user/1/sleep", headers=api.h, params=params)
    assert r.status_code == 200, r.text
    return r.json()


class BedditAuthTests:
    def test_login(self, client_for):
        c = client_for(create_app(users=1, token_ttl=3600))
        r = c.post(
            "/api/v1/auth/authorize",
            data={"grant_type": "password", "username": "user1@example.test", "password": "secret"},
        )
        assert (
            r.json()["user"] == 1
            and r.json()["token_type"] == "user"
            and r.json()["expires_in"] == 3600
        )
        info = c.get(
            "/api/v1/auth/token_info",
            headers={"Authorization": f"UserToken {r.json()['access_token']}"},
        )
        assert info.json() == {"user": 1, "token_type": "user"}

    def test_login_errors(self, api):
        r = api.post(
            "/api/v1/auth/authorize",
            data={"grant_type": "password", "username": "user1@example.test", "password": "x"},
        )
        assert r.status_code == 400 and r.json()["error"] == "invalid_credentials"
        r = api.post(
            "/api/v1/auth/authorize",
            data={"grant_type": "password", "username": "nobody@example.test", "password": "x"},
        )
        assert r.status_code == 400 and r.json()["error"] == "no_such_user"

    def test_tokens_are_forbidden_elsewhere(self, api):
        r = api.get("/api/v1/user/2/sleep", headers=api.h, params={"updated_after": 0})
        assert r.status_code == 403 and set(r.json()) == {"error", "description"}
        assert api.get("/api/v1/user/1/sleep", params={"updated_after": 0}).status_code == 403
        r = api.get(
            "/api/v1/user/1/sleep",
            headers={"Authorization": "UserToken nope"},
            params={"updated_after": 0},
        )
        assert r.json()["error"] == "forbidden"

    def test_expired_tokens(self, client_for):
        app = create_app(users=1, token_ttl=0.05)
        c = client_for(app)
        token = c.post("/_sim/credentials", json={"user": 1}).json()["value"]
        time.sleep(0.1)
        r = c.get("/api/v1/user/1", headers={"Authorization": f"UserToken {token}"})
        assert r.status_code == 403 and "expired" in r.json()["description"]

    def test_profile_accepts_a_json_string_body(self, api):
        r = api.put(
            "/api/v1/user/1", headers=api.h, content=json.dumps(json.dumps({"weight": 70.5}))
        )
        assert r.status_code == 200 and r.json()["weight"] == 70.5
        assert set(r.json()) >= {
            "id",
            "email",
            "name",
            "date_of_birth",
            "sex",
            "weight",
            "height",
            "sleep_time_goal",
            "tip_audiences",
            "created",
            "updated",
        }


class BedditSleepTests:
    def test_sleep_objects(self, api):
        items = sleeps(api, updated_after=0)
        assert isinstance(items, list) and len(items) > 30
        s = items[0]
        assert set(s) >= {
            "user",
            "date",
            "timezone",
            "start_timestamp",
            "end_timestamp",
            "session_range_start",
            "session_range_end",
            "updated",
            "tags",
            "tips",
            "properties",
            "time_value_tracks",
        }
        assert GIGINET_SLEEP_KEYS <= set(s["time_value_tracks"])
        assert all(
            isinstance(v, (int, float)) for v in s["properties"].values()
        )  # giginet int()s them all
        track = s["time_value_tracks"]["sleep_stages"]
        assert track["value_data_type"] == "uint8"
        assert track["items"][0][0] == s["start_timestamp"]
        assert {v for _, v in track["items"]} <= {65, 83, 82, 87, 78, 71}
        p = s["properties"]
        assert 0 < p["sleep_efficiency"] <= 1 and 35 < p["resting_heart_rate"] < 80
        total = sum(p[f"stage_duration_{c}"] for c in "ASRWNG")
        assert total == pytest.approx(s["end_timestamp"] - s["start_timestamp"])

    def test_updated_after_is_strict_and_ordered(self, api):
        items = sleeps(api, updated_after=0)
        upd = [s["updated"] for s in items]
        assert upd == sorted(upd)
        later = sleeps(api, updated_after=upd[9])
        assert [s["updated"] for s in later] == upd[10:]
        assert sleeps(api, updated_after=upd[-1]) == []
        assert len(sleeps(api, updated_after=0, limit=5)) == 5

    def test_dates_and_reverse(self, api):
        items = sleeps(api, start_date="2025-02-10", end_date="2025-02-14")
        assert [s["date"] for s in items] == sorted(s["date"] for s in items)
        assert all("2025-02-10" <= s["date"] <= "2025-02-14" for s in items) and items
        rev = sleeps(api, start_date="2025-02-10", end_date="2025-02-14", reverse="yes")
        assert rev == items[::-1]
        r = api.get("/api/v1/user/1/sleep", headers=api.h)
        assert r.status_code == 400 and r.json()["error"] == "bad_request"

    def test_revisions_and_ties_across_a_page_boundary(self, api):
        cursor = max(s["updated"] for s in sleeps(api, updated_after=0))
        truth = api.get("/_sim/truth", params={"user": "1"}).json()["sessions"]
        dates = [t["night_of"] for t in truth[:6]]
        api.post("/_sim/users/1/revise", json={"dates": dates, "same_updated": True})
        changed = sleeps(api, updated_after=cursor)
        assert len(changed) == 6 and len({s["updated"] for s in changed}) == 1
        # A strict updated_after cursor taken from a page of 4 loses the 2 tied rows after it.
        page = sleeps(api, updated_after=cursor, limit=4)
        assert sleeps(api, updated_after=page[-1]["updated"]) == []

    def test_late_nights_arrive_with_a_new_updated(self, api):
        cursor = max(s["updated"] for s in sleeps(api, updated_after=0))
        r = api.post("/_sim/users/1/nights", json={"count": 2})
        assert r.status_code == 201
        late = sleeps(api, updated_after=cursor)
        assert len(late) == 2 and all(s["updated"] > cursor for s in late)

    def test_sessions_have_offset_tracks(self, api):
        r = api.get("/api/v1/user/1/session", headers=api.h, params={"updated_after": 0})
        s = r.json()[0]
        assert s["id"] == int(s["start_timestamp"])
        assert {"software", "updated", "timezone", "time_value_tracks"} <= set(s)
        assert s["time_value_tracks"]["actigram"]["items"][0][0] == 0.0
        assert s["time_value_tracks"]["events"]["items"][0][0] < 0

    def test_rate_limit_and_malformed(self, api):
        api.post(
            "/_sim/config", json={"schedule": {"2": "429:7"}, "malformed_rate": 0.1}
        )  # 1 was the login
        r = api.get("/api/v1/user/1/sleep", headers=api.h, params={"updated_after": 0})
        assert (
            r.status_code == 429
            and r.headers["retry-after"] == "7"
            and r.json()["error"] == "rate_limited"
        )
        items = sleeps(api, updated_after=0)
        bad = [s for s in items if "start_timestamp" not in s]
        truth = api.get("/_sim/truth", params={"user": "1"}).json()["sessions"]
        assert len(bad) == sum(t["malformed"] for t in truth) > 0


def fresh_sleeps(api, user="1"):
    """What the list answer of ``updated_after=0`` holds, rendered afresh."""
    sim = api.sim
    recs = sorted(
        sim.store.sessions(sim.store.users[user]), key=lambda r: (r.updated, r.night.start)
    )
    return [sim.sleep_object(r) for r in recs]


def sleep_bytes(api, user="1"):
    r = api.get(f"/api/v1/user/{user}/sleep", headers=api.h, params={"updated_after": 0})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    return r.content


class BedditRenderedBodyTests:
    """Nights are served from each record's cache of JSON bytes, never stale."""

    def test_it_serves_what_a_fresh_render_serializes_as_before(self, api):
        api.post("/_sim/config", json={"malformed_rate": 0.2})
        # starlette's own JSONResponse (stdlib json) is what the simulator sent before orjson.
        before_orjson = StarletteJSONResponse(fresh_sleeps(api)).body
        assert sleep_bytes(api) == before_orjson  # rendered now
        assert sleep_bytes(api) == before_orjson  # served from the cache
        recs = api.sim.store.sessions(api.sim.store.users["1"])
        assert all("sleep" in r.rendered for r in recs)
        r = api.get("/api/v1/user/1/session", headers=api.h, params={"updated_after": 0})
        ordered = sorted(recs, key=lambda r: (r.updated, r.night.start))
        expected = [api.sim.session_object(r) for r in ordered]
        assert r.content == StarletteJSONResponse(expected).body

    def test_it_never_serves_a_revision_stale(self, api):
        old = json.loads(sleep_bytes(api))
        truth = api.get("/_sim/truth", params={"user": "1"}).json()["sessions"]
        api.post("/_sim/users/1/revise", json={"dates": [t["night_of"] for t in truth[:2]]})
        # A re-score that keeps its ``updated``: only the revision tells the bodies apart.
        api.post(
            "/_sim/users/1/revise",
            json={"dates": [truth[2]["night_of"]], "updated": truth[2]["updated"]},
        )
        new = json.loads(sleep_bytes(api))
        assert new == fresh_sleeps(api)
        revised = {t["upstream_id"] for t in truth[:3]}
        stages = {
            s["date"]: s["time_value_tracks"]["sleep_stages"]["items"]
            for s in old
            if s["date"] in revised
        }
        assert all(
            s["time_value_tracks"]["sleep_stages"]["items"] != stages[s["date"]]
            for s in new
            if s["date"] in revised
        )

    def test_it_follows_the_malformed_knob_and_seed(self, api):
        clean = sleep_bytes(api)
        key = f"1/{json.loads(clean)[0]['date']}"
        api.post("/_sim/config", json={"malformed_keys": [key]})
        first = json.loads(sleep_bytes(api))[0]
        assert "start_timestamp" not in first and first["time_value_tracks"]["sleep_stages"][
            "items"
        ][0][1] == "S"
        api.post("/_sim/config", json={"malformed_keys": [], "malformed_rate": 0.3, "seed": 1})
        seed_1 = json.loads(sleep_bytes(api))
        api.post("/_sim/config", json={"seed": 5})
        seed_5 = json.loads(sleep_bytes(api))
        assert seed_5 == fresh_sleeps(api)
        broken = [
            {s["date"] for s in items if "start_timestamp" not in s} for items in (seed_1, seed_5)
        ]
        assert broken[0] != broken[1]
        truth = api.get("/_sim/truth", params={"user": "1"}).json()["sessions"]
        assert broken[1] == {t["upstream_id"] for t in truth if t["malformed"]}
        api.post("/_sim/reset", json={})  # knobs back to the start, data kept
        assert sleep_bytes(api) == clean

    def test_it_forgets_a_reset_or_deleted_night(self, api):
        before = json.loads(sleep_bytes(api))
        api.post("/_sim/reset", json={"data": True})
        # The same user id and dates, another timezone: other nights.
        api.post(
            "/_sim/users",
            json={"count": 1, "nights": 40, "last_night": "2025-03-01", "timezone": "Asia/Tokyo"},
        )
        login(api)
        after = json.loads(sleep_bytes(api))
        assert after == fresh_sleeps(api) and after != before
        night_of = api.get("/_sim/truth", params={"user": "1"}).json()["sessions"][0]["night_of"]
        api.delete(f"/_sim/users/1/nights/{night_of}")
        api.post("/_sim/users/1/nights", json={"dates": [night_of]})  # a late copy, new updated
        assert json.loads(sleep_bytes(api)) == fresh_sleeps(api)

    def test_it_warms_every_night(self, api, monkeypatch):
        r = api.post("/_sim/warm")
        nights = sum(u["nights"] for u in api.get("/_sim/users").json()["users"])
        assert r.status_code == 200 and r.json()["rendered"] == nights > 0
        assert r.json()["seconds"] >= 0
        expected = StarletteJSONResponse(fresh_sleeps(api)).body
        assert all("sleep" in rec.rendered for rec in api.sim.store.records())

        def no_render(*args, **kwargs):
            raise AssertionError("rendered again after warm")

        monkeypatch.setattr(api.sim, "sleep_object", no_render)
        assert sleep_bytes(api) == expected

    def test_same_seed_same_bytes(self, client_for):
        def served():
            c = client_for(create_app(seed=4))
            c.post("/_sim/users", json={"count": 1, "nights": 10, "last_night": "2025-03-01"})
            login(c)
            return sleep_bytes(c, "1")

        assert served() == served()
