"""T14 revisions-late-ties (shared/reliability.md §7), on Beddit's ``updated_after``.

After a first full sync, the upstream re-scores 10 old nights in two groups that each share
one ``updated`` value, and 5 nights arrive late stamped just before the cursor (inside its
lookback window). The upstream serves at most 6 nights per response, so the tied groups
straddle response boundaries. Pass: the 10 are updated, not duplicated, with their metrics
recomputed; the 5 late ones and every tied one are present; EXACT.
"""

import pytest

from analytics.models import NightlyMetrics, SleepSession
from integrations.models import SyncRun, SyncRunStatus

from .conftest import assert_exact, linked_beddit_org, send_sync, truth_entries, wait_for_status

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

PAGE_CAP = 6


class RevisionsLateTiesTests:
    def test_it_updates_revised_nights_and_reads_late_and_tied_ones(self, beddit_sim, broker_url, start_worker):
        beddit_sim.configure(page_size_cap=PAGE_CAP)
        _, connections = linked_beddit_org(beddit_sim, users=2, nights=20)
        start_worker("t14", concurrency=2)
        for connection in connections:
            send_sync(broker_url, connection.pk)
        wait_for_status(connections, SyncRunStatus.SUCCEEDED, timeout=40)
        assert_exact(beddit_sim, connections)

        connection = connections[0]
        link = connection.links.get()
        user = link.upstream_user_id
        cursor_top = link.cursor["updated_after"]
        nights = sorted(t["upstream_id"] for t in truth_entries(beddit_sim) if t["user_id"] == user)
        sessions = SleepSession.objects.filter(participant_id=link.participant_id)
        computed_before = dict(
            NightlyMetrics.objects.filter(session__in=sessions).values_list("session__upstream_id", "computed_at")
        )
        old = nights[:10]
        # Wake dates in the API, night dates in the control surface: revise by night_of.
        night_of = {t["upstream_id"]: t["night_of"] for t in truth_entries(beddit_sim) if t["user_id"] == user}
        for group in (old[:4], old[4:]):  # each group shares one `updated` value
            beddit_sim.call(
                "POST", f"/_sim/users/{user}/revise",
                json={"dates": [night_of[d] for d in group], "same_updated": True},
            )
        late = beddit_sim.call(
            "POST", f"/_sim/users/{user}/nights", json={"count": 5, "updated": cursor_top - 0.5}
        )["added"]

        entries = {t["upstream_id"]: t for t in truth_entries(beddit_sim) if t["user_id"] == user}
        assert [len({entries[d]["updated"] for d in group}) for group in (old[:4], old[4:])] == [1, 1]
        assert all(entries[n["upstream_id"]]["updated"] < cursor_top for n in late)  # inside the lookback

        for c in connections:
            send_sync(broker_url, c.pk)
        wait_for_status(connections, SyncRunStatus.SUCCEEDED, count=2, timeout=40)
        assert_exact(beddit_sim, connections)
        second = SyncRun.objects.filter(connection=connection).order_by("-started_at").first()
        assert (second.created, second.updated) == (5, 10)
        assert sessions.count() == len(entries)
        computed_after = dict(
            NightlyMetrics.objects.filter(session__in=sessions).values_list("session__upstream_id", "computed_at")
        )
        assert all(computed_after[d] > computed_before[d] for d in old)  # recomputed
        assert all(computed_after[d] == computed_before[d] for d in nights[10:])  # untouched
        assert {n["upstream_id"] for n in late} <= set(computed_after)
