"""Beddit simulator: login, UserToken, bare arrays, updated_after (shared/upstreams.md §4)."""

import json
import time

import pytest

from integrations.simulators.beddit import create_app

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
    c.post("/_sim/users", json={"count": 2, "nights": 40, "last_night": "2025-03-01"})
    r = c.post(
        "/api/v1/auth/authorize",
        data={"grant_type": "password", "username": "user1@example.test", "password": "secret"},
    )
    c.h = {"Authorization": f"UserToken {r.json()['access_token']}"}
    return c


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
