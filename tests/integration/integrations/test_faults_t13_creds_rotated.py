"""T13 creds-rotated-midrun (shared/reliability.md §7): an admin rotates the upstream API key
while a sync runs.

The sync holds at page 2 (the second participant's list request); the test provisions a
new key upstream, PATCHes it into the connection through the API, revokes the old key
upstream, then releases the page. The held request is refused (old key, now revoked); the
attempt must not flag the *new* credentials as refused: it fails as "replaced" and the task
retries with the new key. Pass: page 1 stays committed (the retry finds it unchanged), the
retry is EXACT, the simulator never sees the old key after the rotation commit, the
connection is active, and neither key appears in any log or API body.
"""

from __future__ import annotations

import logging
import time

import pytest
from rest_framework.test import APIClient

from integrations.models import Connection, ConnectionStatus, ParticipantLink, SyncRun, SyncRunStatus
from tenants.roles import Role

from ...factories import MembershipFactory, UserFactory
from .conftest import (
    assert_exact,
    linked_asleep_org,
    request_index_of_list,
    send_sync,
    truth_entries,
    wait_for_status,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


class CredentialsRotatedMidRunTests:
    def test_the_old_key_stops_at_the_rotation_and_the_new_key_finishes_exact(
        self, asleep_sim, broker_url, start_worker, caplog
    ):
        caplog.set_level(logging.DEBUG)
        organization, connection = linked_asleep_org(asleep_sim, users=3, nights=10)
        old_key = connection.credentials["api_key"]
        admin = UserFactory()
        MembershipFactory(organization=organization, user=admin, role=Role.ADMIN)
        api = APIClient()
        api.force_authenticate(admin)
        links = list(ParticipantLink.objects.filter(connection=connection).order_by("pk"))
        entries = truth_entries(asleep_sim)
        page_two = request_index_of_list(entries, [link.upstream_user_id for link in links], 1)
        asleep_sim.arm_barrier(page_two)
        worker = start_worker("t13")
        task_id = send_sync(broker_url, connection.pk)
        assert asleep_sim.wait_barrier(page_two, timeout=30)
        page_one = sum(1 for t in entries if t["user_id"] == links[0].upstream_user_id)

        new_key = asleep_sim.credential()
        url = f"/api/v1/orgs/{organization.slug}/connections/{connection.uuid}/"
        response = api.patch(url, {"credentials": {"api_key": new_key}}, format="json")
        assert response.status_code == 200, response.content
        rotated_at = time.time()  # the new key is committed
        asleep_sim.call("DELETE", f"/_sim/credentials/{old_key}")
        asleep_sim.release_barrier()

        [ok] = wait_for_status([connection], SyncRunStatus.SUCCEEDED, timeout=40)
        assert ok.task_id == task_id  # the same message, retried with the new key
        first = SyncRun.objects.get(connection=connection, status=SyncRunStatus.FAILED)
        assert first.error == "credentials replaced during the sync"
        # Page 1 stayed committed: written by the first attempt; the retry resumed after it
        # (its cursor), re-reading only the lookback window, which it found unchanged.
        assert first.created == page_one
        assert ok.created == len(entries) - page_one and ok.unchanged > 0 and ok.updated == 0
        assert_exact(asleep_sim, [connection])

        log = asleep_sim.log()
        assert not [e for e in log if e["key"] == old_key and e["t"] > rotated_at]
        refused = [e for e in log if e["key"] == old_key and e["status"] == 401]
        assert [e["index"] for e in refused] == [page_two]  # the held request, and nothing after
        assert any(e["key"] == new_key and e["status"] == 200 for e in log)

        connection.refresh_from_db()
        assert connection.status == ConnectionStatus.ACTIVE and connection.last_error == ""
        assert connection.credentials == {"api_key": new_key}
        bodies = response.content.decode() + api.get(url).content.decode()
        bodies += api.get(f"/api/v1/orgs/{organization.slug}/sync-runs/").content.decode()
        # The test's own calls to the simulator's control surface name the key in their URL.
        platform_records = [r.getMessage() for r in caplog.records if "/_sim/" not in r.getMessage()]
        logs = "\n".join(platform_records) + worker.log()
        assert platform_records  # logging was captured
        for key in (old_key, new_key):
            assert key not in bodies and key not in logs
        assert Connection.objects.get(pk=connection.pk).lease_token is None
