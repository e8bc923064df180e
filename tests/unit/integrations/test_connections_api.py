import pytest
from django.db import connection as db_connection

from integrations.models import Connection, ConnectionStatus, ParticipantLink
from integrations.simulators.server import start_in_thread
from tenants.roles import Role

from ...factories import ConnectionFactory, ParticipantFactory

PUBLIC = "https://93.184.216.34"


def _url(world, suffix=""):
    return f"/api/v1/orgs/{world.org.slug}/connections/{suffix}"


class ConnectionApiTests:
    def test_it_never_returns_credentials_and_encrypts_them_at_rest(self, world_a):
        client = world_a.client(Role.ADMIN)
        response = client.post(_url(world_a), {"name": "Asleep", "provider": "asleep", "base_url": PUBLIC,
                                               "credentials": {"api_key": "super-secret-key"}}, format="json")
        assert response.status_code == 201, response.content
        assert "super-secret-key" not in response.content.decode()
        assert response.json()["has_credentials"] is True
        listed = client.get(_url(world_a)).content.decode()
        assert "super-secret-key" not in listed
        with db_connection.cursor() as cursor:
            cursor.execute("SELECT credentials FROM integrations_connection")
            [(stored,)] = cursor.fetchall()
        assert "super-secret-key" not in stored
        assert Connection.objects.get().credentials == {"api_key": "super-secret-key"}

    @pytest.mark.parametrize("url", ["http://127.0.0.1:8101", "http://[::1]/", "http://169.254.169.254/",
                                     "http://10.0.0.1/", "http://0x7f000001/", "ftp://93.184.216.34/"])
    def test_it_refuses_private_and_metadata_base_urls(self, world_a, url):
        response = world_a.client(Role.ADMIN).post(_url(world_a), {
            "name": "x", "provider": "asleep", "base_url": url, "credentials": {"api_key": "k"}}, format="json")
        assert response.status_code == 400
        assert not Connection.objects.exists()

    def test_it_requires_the_providers_credential_fields(self, world_a):
        response = world_a.client(Role.ADMIN).post(_url(world_a), {
            "name": "Beddit", "provider": "beddit", "base_url": PUBLIC, "credentials": {"username": "a"}}, format="json")
        assert response.status_code == 400
        assert "token or password+username" in response.json()["detail"]

    def test_it_enqueues_a_sync_after_commit(self, world_a, django_capture_on_commit_callbacks, monkeypatch):
        sent = []
        monkeypatch.setattr("integrations.tasks.sync_connection_task.delay", lambda pk: sent.append(pk))
        connection = ConnectionFactory(organization=world_a.org)
        with django_capture_on_commit_callbacks(execute=True):
            response = world_a.client(Role.ADMIN).post(_url(world_a, f"{connection.uuid}/sync/"))
        assert response.status_code == 202
        assert sent == [connection.pk]

    def test_it_refuses_an_interval_below_fifteen_minutes(self, world_a):
        connection = ConnectionFactory(organization=world_a.org)
        response = world_a.client(Role.ADMIN).patch(
            _url(world_a, f"{connection.uuid}/"), {"sync_interval_minutes": 1}, format="json")
        assert response.status_code == 400


@pytest.fixture
def allow_loopback(settings):
    settings.UPSTREAM_ALLOW_PRIVATE = True


class ConnectionCheckTests:
    def test_it_marks_refused_credentials_and_clears_them_when_fixed(self, world_a, allow_loopback):
        with start_in_thread("asleep", keys=["good-key"]) as sim:
            connection = ConnectionFactory(organization=world_a.org, base_url=sim.url, credentials={"api_key": "bad"})
            client = world_a.client(Role.ADMIN)
            assert client.post(_url(world_a, f"{connection.uuid}/check/")).json()["ok"] is False
            connection.refresh_from_db()
            assert connection.status == ConnectionStatus.NEEDS_ATTENTION
            client.patch(_url(world_a, f"{connection.uuid}/"), {"credentials": {"api_key": "good-key"}}, format="json")
            assert client.post(_url(world_a, f"{connection.uuid}/check/")).json() == {
                "ok": True, "detail": "Credentials accepted."}
            connection.refresh_from_db()
            assert connection.status == ConnectionStatus.ACTIVE
            assert all(entry.get("credential") in (None, "bad", "good-key") for entry in sim.log())

    def test_it_creates_an_upstream_asleep_user_when_linking(self, world_a, allow_loopback):
        with start_in_thread("asleep", keys=["k"]) as sim:
            connection = ConnectionFactory(organization=world_a.org, base_url=sim.url, credentials={"api_key": "k"})
            participant = ParticipantFactory(organization=world_a.org)
            response = world_a.client(Role.ADMIN).post(f"/api/v1/orgs/{world_a.org.slug}/participant-links/", {
                "connection": str(connection.uuid), "participant": str(participant.uuid),
                "create_upstream_user": True}, format="json")
            assert response.status_code == 201, response.content
            link = ParticipantLink.objects.get()
            upstream_ids = {user["id"] for user in sim.control.get("/_sim/users").json()["users"]}
            assert link.upstream_user_id in upstream_ids
