"""The simulators as real HTTP servers: threads, subprocesses, TLS, fault knobs over sockets."""

import ssl
import threading
import time
from email.utils import parsedate_to_datetime

import httpx
import pytest

from integrations.simulators.server import start_in_subprocess, start_in_thread

pytestmark = pytest.mark.integration


@pytest.fixture
def asleep():
    with start_in_thread("asleep", keys=["k"], seed=7) as sim:
        sim.add_users(ids=["G-1"], nights=20, last_night="2025-03-01")
        sim.h = {"x-api-key": "k", "x-user-id": "G-1"}
        yield sim


class ServerTests:
    def test_each_provider_serves_on_a_free_port(self):
        for provider in ("asleep", "beddit", "usleep", "grand_challenge"):
            with start_in_thread(provider) as sim:
                r = sim.control.get("/_sim/config")
                assert r.status_code == 200 and r.json()["seed"] == 0
                assert sim.url.startswith(
                    "https://" if provider == "grand_challenge" else "http://127.0.0.1:"
                )

    def test_grand_challenge_is_https_with_a_loopback_cert(self):
        with start_in_thread("grand_challenge", tokens=["t"]) as sim:
            ctx = ssl.create_default_context(cafile=sim.cert)
            r = httpx.get(sim.api_url + "gcapi/", verify=ctx)  # the self-signed cert verifies
            assert r.status_code == 200
            with pytest.raises(httpx.ConnectError):
                httpx.get(sim.api_url + "gcapi/")  # ...but is not in the system trust store

    def test_subprocess_server(self):
        sim = start_in_subprocess("beddit", users=1, nights=5)
        try:
            assert sim.call("GET", "/_sim/users")["users"][0]["nights"] > 0
            r = httpx.post(
                sim.url + "/api/v1/auth/authorize",
                data={
                    "grant_type": "password",
                    "username": "user1@example.test",
                    "password": "secret",
                },
            )
            assert r.status_code == 200
        finally:
            sim.stop()
        assert sim.process.poll() is not None

    def test_warm_renders_every_night_ahead(self):
        sim = start_in_subprocess("beddit", seed=7)
        try:
            users = sim.add_users(count=2, nights=10, last_night="2025-03-01")
            url = sim.url + "/api/v1/user/1/sleep?updated_after=0.0"
            auth = {"Authorization": f"UserToken {sim.credential(user=1)}"}
            cold = httpx.get(url, headers=auth)
            out = sim.warm()
            assert out["rendered"] == sum(u["nights"] for u in users) and out["seconds"] >= 0
            assert httpx.get(url, headers=auth).content == cold.content
        finally:
            sim.stop()
        with start_in_thread("asleep", keys=["k"], seed=7) as sim:
            sim.add_users(ids=["G-1"], nights=10, last_night="2025-03-01")
            assert sim.warm(timezones=["UTC", "Asia/Seoul"])["rendered"] == len(
                sim.sim.store.records()
            )
            h = {"x-api-key": "k", "x-user-id": "G-1", "timezone": "Asia/Seoul"}
            (item, *_) = httpx.get(sim.url + "/data/v1/sessions", headers=h).json()["result"][
                "sleep_session_list"
            ]
            r = httpx.get(sim.url + f"/data/v3/sessions/{item['session_id']}", headers=h)
            assert r.status_code == 200 and r.json()["result"]["timezone"] == "Asia/Seoul"


class FaultOverSocketsTests:
    def test_barrier_holds_request_k_until_released(self, asleep):
        asleep.arm_barrier(2)
        statuses = []

        def client():
            with httpx.Client(base_url=asleep.url, headers=asleep.h) as c:
                for _ in range(3):
                    status = c.get("/data/v1/sessions").status_code
                    statuses.append((time.monotonic(), status))

        t = threading.Thread(target=client)
        t.start()
        assert asleep.wait_barrier(2, timeout=5)
        time.sleep(0.3)
        assert len(statuses) == 1  # request 2 is held
        released = time.monotonic()
        asleep.release_barrier(2)
        t.join(5)
        assert [s for _, s in statuses] == [200, 200, 200] and statuses[1][0] >= released
        assert [e["index"] for e in asleep.log()] == [1, 2, 3]

    def test_timeout_hangs_past_the_client_timeout(self, asleep):
        asleep.configure(schedule={"1": "timeout"}, hang_seconds=20)
        with pytest.raises(httpx.ReadTimeout):
            httpx.get(asleep.url + "/data/v1/sessions", headers=asleep.h, timeout=0.3)
        assert httpx.get(asleep.url + "/data/v1/sessions", headers=asleep.h).status_code == 200
        asleep.reset()  # frees the hung request at once

    def test_truncated_body_modes(self, asleep):
        asleep.configure(schedule={"1": "truncate", "2": "truncate"}, truncate_mode="json")
        r = httpx.get(asleep.url + "/data/v1/sessions", headers=asleep.h)
        assert r.status_code == 200 and not r.text.rstrip().endswith("}")
        asleep.configure(truncate_mode="connection")
        with pytest.raises(httpx.RemoteProtocolError):
            httpx.get(asleep.url + "/data/v1/sessions", headers=asleep.h)

    def test_retry_after_and_latency(self):
        with start_in_thread(
            "beddit",
            users=1,
            nights=3,
            latency=0.2,
            schedule={"1": "429:http-date:30", "2": "429"},
            retry_after=[2, 4],
        ) as sim:
            t0 = time.monotonic()
            r = httpx.get(sim.url + "/api/v1/auth/token_info")
            assert time.monotonic() - t0 >= 0.2
            assert r.status_code == 429
            when = parsedate_to_datetime(r.headers["retry-after"]).timestamp()
            assert 25 < when - time.time() <= 31
            r = httpx.get(sim.url + "/api/v1/auth/token_info")
            assert r.status_code == 429 and 2 <= int(r.headers["retry-after"]) <= 4

    def test_seeded_rates_replay_identically(self):
        def faults(seed):
            with start_in_thread(
                "asleep",
                keys=["k"],
                seed=seed,
                error_rate=0.2,
                rate_limit_rate=0.1,
                truncate_rate=0.1,
            ) as sim:
                sim.add_users(ids=["G-1"], nights=3, last_night="2025-03-01")
                with httpx.Client(
                    base_url=sim.url, headers={"x-api-key": "k", "x-user-id": "G-1"}
                ) as c:
                    for _ in range(40):
                        c.get("/data/v1/sessions")
                return [(e["fault"], e["status"]) for e in sim.log()]

        a, b = faults(11), faults(11)
        assert a == b
        assert 5 < sum(f != "ok" for f, _ in a) < 30
        assert a != faults(12)

    def test_fault_paths_limit_where_faults_land(self, asleep):
        asleep.configure(error_rate=1.0, fault_paths=r"^/data/v3/")
        assert httpx.get(asleep.url + "/data/v1/sessions", headers=asleep.h).status_code == 200
        assert httpx.get(asleep.url + "/data/v3/sessions/x", headers=asleep.h).status_code in (
            500,
            503,
        )

    def test_key_rotation_shows_in_the_log(self, asleep):
        asleep.credential(value="k2")
        httpx.get(asleep.url + "/data/v1/sessions", headers=asleep.h)
        asleep.call("DELETE", "/_sim/credentials/k")
        assert httpx.get(asleep.url + "/data/v1/sessions", headers=asleep.h).status_code == 401
        assert (
            httpx.get(
                asleep.url + "/data/v1/sessions", headers={**asleep.h, "x-api-key": "k2"}
            ).status_code
            == 200
        )
        assert [(e["key"], e["status"]) for e in asleep.log()] == [
            ("k", 200),
            ("k", 401),
            ("k2", 200),
        ]
