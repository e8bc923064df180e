from knox.models import AuthToken
from rest_framework.test import APIClient

from tenants.models import Membership, Organization
from tenants.roles import Role

from ...factories import UserFactory

PASSWORD = "correct horse battery staple"


class LoginTests:
    def test_it_exchanges_a_password_for_a_working_token(self, world_a):
        client = APIClient()
        response = client.post(
            "/api/v1/auth/login/", {"username": "admin@alpha.test", "password": PASSWORD}, format="json"
        )
        assert response.status_code == 200
        token = response.json()["token"]
        client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
        me = client.get("/api/v1/me/").json()
        assert me["username"] == "admin@alpha.test"
        assert [(o["slug"], o["role"]) for o in me["organizations"]] == [("alpha", "admin")]

    def test_it_stores_tokens_hashed(self, world_a):
        token = APIClient().post(
            "/api/v1/auth/login/", {"username": "admin@alpha.test", "password": PASSWORD}, format="json"
        ).json()["token"]
        stored = AuthToken.objects.get(user=world_a.users[Role.ADMIN])
        assert token not in (stored.digest, stored.token_key)

    def test_it_refuses_a_wrong_password_without_saying_which_part_was_wrong(self, world_a):
        for username in ("admin@alpha.test", "nobody@alpha.test"):
            response = APIClient().post(
                "/api/v1/auth/login/", {"username": username, "password": "wrong"}, format="json"
            )
            assert response.status_code == 400
            assert response.json()["code"] == "invalid_credentials"

    def test_it_revokes_a_token_at_logout(self, world_a):
        client = APIClient()
        token = client.post(
            "/api/v1/auth/login/", {"username": "hr@alpha.test", "password": PASSWORD}, format="json"
        ).json()["token"]
        client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
        assert client.post("/api/v1/auth/logout/").status_code == 204
        assert client.get("/api/v1/me/").status_code == 401

    def test_it_revokes_every_token_at_logout_all(self, world_a):
        tokens = [
            APIClient().post(
                "/api/v1/auth/login/", {"username": "hr@alpha.test", "password": PASSWORD}, format="json"
            ).json()["token"]
            for _ in range(2)
        ]
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {tokens[0]}")
        assert client.post("/api/v1/auth/logout-all/").status_code == 204
        client.credentials(HTTP_AUTHORIZATION=f"Token {tokens[1]}")
        assert client.get("/api/v1/me/").status_code == 401

    def test_it_throttles_repeated_login_attempts(self, world_a, monkeypatch):
        from django.core.cache import cache
        from rest_framework.throttling import SimpleRateThrottle

        # DRF reads the rates once at import; patch the class attribute for this test.
        monkeypatch.setattr(
            SimpleRateThrottle, "THROTTLE_RATES", {"anon": "1000/min", "user": "1000/min", "login": "3/min"}
        )
        cache.clear()
        codes = [
            APIClient().post("/api/v1/auth/login/", {"username": "x", "password": "y"}, format="json").status_code
            for _ in range(5)
        ]
        cache.clear()
        assert codes == [400, 400, 400, 429, 429]


class OrganizationListTests:
    def test_it_lists_only_my_organizations(self, world_a, world_b):
        response = world_a.client(Role.HR).get("/api/v1/orgs/")
        assert [o["slug"] for o in response.json()] == ["alpha"]

    def test_it_makes_the_creator_the_owner(self, db):
        user = UserFactory()
        client = APIClient()
        client.force_authenticate(user)
        response = client.post(
            "/api/v1/orgs/", {"slug": "new-clinic", "name": "New Clinic", "timezone": "Europe/Paris"}, format="json"
        )
        assert response.status_code == 201, response.content
        assert response.json()["role"] == "owner"
        organization = Organization.objects.get(slug="new-clinic")
        assert Membership.objects.get(organization=organization).role == Role.OWNER

    def test_it_refuses_a_taken_slug(self, world_a):
        response = world_a.client(Role.MEMBER).post(
            "/api/v1/orgs/", {"slug": "alpha", "name": "Copycat"}, format="json"
        )
        assert response.status_code == 400
        assert "slug" in response.json()["fields"]
