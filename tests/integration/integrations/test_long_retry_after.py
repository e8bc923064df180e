"""T3 long-retry-after (shared/reliability.md §7): a rate limit longer than a Celery countdown
may safely wait becomes the connection's ``next_sync_at``, never a message with an ETA.

Redis redelivers a delivered-but-unacked message after the visibility timeout, ETA or not
(reliability.md §1), so a long countdown would run the task again and again. Three upstream
answers: Beddit's 429 with ``Retry-After: 3600``, the same as an HTTP-date, and Asleep's 403
"Rate limit exceeded" without Retry-After (the client waits its 60 s default, still longer
than a countdown may be under a 15 s visibility timeout).
"""

import email.utils
import time
from datetime import UTC, datetime

import pytest

from integrations.models import SyncRun, SyncRunStatus
from integrations.simulators.server import start_in_thread

from .conftest import (
    VISIBILITY_TIMEOUT,
    broker_messages,
    linked_asleep_org,
    linked_beddit_org,
    send_sync,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _assert_no_far_eta(broker_url: str) -> list[dict]:
    messages = broker_messages(broker_url)
    limit = time.time() + VISIBILITY_TIMEOUT
    for message in messages:
        if message["eta"]:
            assert datetime.fromisoformat(message["eta"]).timestamp() <= limit, message
    return messages


class LongRetryAfterTests:
    def test_it_stores_next_sync_at_and_runs_once_without_any_eta(self, broker_url, start_worker):
        sims = {
            "seconds": start_in_thread("beddit", seed=3, schedule={1: "429:3600"}),
            "http-date": start_in_thread("beddit", seed=3, schedule={1: "429:http-date:3600"}),
            "asleep": start_in_thread("asleep", seed=3, rate_limit_rate=1.0),
        }
        try:
            connections = {
                "seconds": linked_beddit_org(sims["seconds"], users=1, nights=5)[1][0],
                "http-date": linked_beddit_org(sims["http-date"], users=1, nights=5)[1][0],
                "asleep": linked_asleep_org(sims["asleep"], users=1, nights=5)[1],
            }
            start_worker("t3")
            for connection in connections.values():
                send_sync(broker_url, connection.pk)

            deadline = time.monotonic() + 30
            while SyncRun.objects.filter(status=SyncRunStatus.DEFERRED).count() < 3:
                assert time.monotonic() < deadline, "timed out waiting for 3 deferred runs"
                _assert_no_far_eta(broker_url)
                time.sleep(0.1)
            # Long enough for any countdown retry below the visibility timeout to show up.
            watch_until = time.monotonic() + 6
            while time.monotonic() < watch_until:
                _assert_no_far_eta(broker_url)
                time.sleep(0.2)

            assert broker_messages(broker_url) == []  # acked; nothing waits with an ETA
            for name, connection in connections.items():
                runs = list(SyncRun.objects.filter(connection=connection))
                assert [r.status for r in runs] == [SyncRunStatus.DEFERRED], name  # one execution
                log = sims[name].log()
                assert len(log) == 1 and log[0]["status"] in (429, 403), (name, log)  # no inline wait
                connection.refresh_from_db()
                asked_at = log[0]["t"]
                if name == "seconds":
                    assert connection.next_sync_at.timestamp() >= asked_at + 3600
                elif name == "http-date":
                    # The header is a whole-second date: the simulator wrote formatdate(t + 3600).
                    header = email.utils.formatdate(asked_at + 3600, usegmt=True)
                    not_before = email.utils.parsedate_to_datetime(header).timestamp()
                    assert connection.next_sync_at.timestamp() >= not_before - 0.5
                    assert connection.next_sync_at.timestamp() >= asked_at + 3599
                else:
                    assert connection.next_sync_at.timestamp() >= asked_at + 60  # the client's default
                assert connection.next_sync_at > datetime.now(UTC)
                assert connection.last_error == "rate limited" and connection.lease_token is None
        finally:
            for sim in sims.values():
                sim.stop()
