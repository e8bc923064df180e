"""T4 bad-payloads (shared/reliability.md §7): one truncated JSON page and 3 malformed records
among 100. The truncated page is asked for again; the 3 bad records are quarantined with a
reason; the 97 good ones land; EXACT."""

import pytest

from integrations.models import QuarantinedRecord, SyncRunStatus

from .conftest import (
    assert_exact,
    linked_asleep_org,
    request_index_of_list,
    send_sync,
    truth_entries,
    wait_for_status,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _trim_to(sim, total: int) -> None:
    """Delete the newest nights until the simulator holds exactly `total` complete sessions."""
    entries = sorted(truth_entries(sim), key=lambda t: t["night_of"], reverse=True)
    assert len(entries) >= total
    for t in entries[: len(entries) - total]:
        sim.call("DELETE", f"/_sim/users/{t['user_id']}/nights/{t['night_of']}")


class BadPayloadTests:
    def test_it_quarantines_three_bad_records_retries_a_truncated_page_and_lands_the_rest(
        self, asleep_sim, broker_url, start_worker
    ):
        _, connection = linked_asleep_org(asleep_sim, users=4, nights=30)
        _trim_to(asleep_sim, 100)
        users = list(connection.links.order_by("pk").values_list("upstream_user_id", flat=True))
        entries = truth_entries(asleep_sim)
        bad = [next(t["upstream_id"] for t in entries if t["user_id"] == user) for user in users[:3]]
        asleep_sim.configure(malformed_keys=bad)
        truncated = request_index_of_list(truth_entries(asleep_sim), users, 1)  # the second link's page
        asleep_sim.configure(schedule={truncated: "truncate"}, truncate_mode="json")

        start_worker("t4")
        send_sync(broker_url, connection.pk)
        [run] = wait_for_status([connection], SyncRunStatus.SUCCEEDED, timeout=40)

        log = {e["index"]: e for e in asleep_sim.log()}
        assert log[truncated]["fault"] == "truncate" and log[truncated]["path"] == "/data/v1/sessions"
        retry = log[truncated + 1]  # the client asked for the same page again at once
        cut = log[truncated]
        assert (retry["path"], retry["query"], retry["status"]) == (cut["path"], cut["query"], 200)
        assert (run.fetched, run.created, run.quarantined) == (100, 97, 3)
        records = list(QuarantinedRecord.objects.filter(connection=connection))
        assert sorted(r.upstream_id for r in records) == sorted(bad)
        assert all(r.reason and r.sync_run_id == run.pk and r.payload for r in records)
        assert_exact(asleep_sim, [connection])
