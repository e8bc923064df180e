"""T2 flaky-upstream (shared/reliability.md §7): 20% seeded faults end EXACT, within at most
twice the requests of a fault-free sync of the same data, and every request after a 429 waits
at least its Retry-After.

Two upstreams, each beside a fault-free twin (same seed, same users and nights) that gives the
baseline request count:
- Asleep: 500/503, timeouts (a hang, then 504) and truncated bodies. Asleep has no 429: its
  rate limit is a 403 without Retry-After, which T3 covers. The faults may push the sync past
  the 8 s soft time limit; the retry resumes from the committed pages.
- Beddit: 429 with Retry-After 1-3 s, 500/503 and timeouts, one connection per user.
"""

import pytest

from integrations.models import SyncRunStatus
from integrations.simulators.server import start_in_thread

from .conftest import assert_exact, linked_asleep_org, linked_beddit_org, send_sync, wait_for_status

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]



@pytest.fixture
def twins():
    made = []

    def make(provider: str, **faults):
        baseline = start_in_thread(provider, seed=5)
        flaky = start_in_thread(provider, seed=5, **faults)
        made.extend([baseline, flaky])
        return baseline, flaky

    yield make
    for sim in made:
        sim.stop()


class FlakyUpstreamTests:
    def test_it_ends_exact_through_5xx_timeouts_and_truncated_bodies(self, twins, broker_url, start_worker):
        baseline, flaky = twins(
            "asleep", error_rate=0.10, timeout_rate=0.05, hang_seconds=0.5, truncate_rate=0.05
        )
        _, clean_connection = linked_asleep_org(baseline, users=4, nights=20)
        _, flaky_connection = linked_asleep_org(flaky, users=4, nights=20)
        start_worker("t2-asleep", concurrency=2)
        send_sync(broker_url, clean_connection.pk)
        send_sync(broker_url, flaky_connection.pk)
        wait_for_status([clean_connection, flaky_connection], SyncRunStatus.SUCCEEDED, timeout=55)

        assert_exact(baseline, [clean_connection])
        assert_exact(flaky, [flaky_connection])
        faults = [e["fault"] for e in flaky.log() if e["fault"] != "ok"]
        assert {"timeout", "truncate"} <= set(faults) and {"500", "503"} & set(faults)
        assert len(faults) >= 0.15 * flaky.sim.request_count
        assert flaky.sim.request_count <= 2 * baseline.sim.request_count

    def test_it_waits_out_each_retry_after_and_ends_exact(self, twins, broker_url, start_worker):
        baseline, flaky = twins(
            "beddit", rate_limit_rate=0.12, retry_after=[1, 3], error_rate=0.05, timeout_rate=0.03,
            hang_seconds=0.5,
        )
        _, clean_connections = linked_beddit_org(baseline, users=12, nights=20)
        _, flaky_connections = linked_beddit_org(flaky, users=12, nights=20)
        start_worker("t2-beddit", concurrency=2)
        for connection in clean_connections + flaky_connections:
            send_sync(broker_url, connection.pk)
        wait_for_status(clean_connections + flaky_connections, SyncRunStatus.SUCCEEDED, timeout=55)

        assert_exact(baseline, clean_connections)
        assert_exact(flaky, flaky_connections)
        log = sorted(flaky.log(), key=lambda e: e["index"])
        limited = [e for e in log if e["status"] == 429]
        assert len(limited) >= 2
        for entry in limited:
            retry_after = float(flaky.sim.retry_after_value(entry["index"]))
            later = [e for e in log if e["index"] > entry["index"] and e["key"] == entry["key"]]
            assert later, "a rate-limited request was never retried"
            assert later[0]["t"] - entry["t_end"] >= retry_after - 0.01, (entry, later[0], retry_after)
        assert flaky.sim.request_count <= 2 * baseline.sim.request_count
