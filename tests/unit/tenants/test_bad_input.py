"""Bad input gets a clear 4xx JSON error and changes nothing in the database."""

import json

import pytest

from tenants.api.route_walk import org_routes
from tenants.roles import Role

from .route_cases import case_for, org_checksum

# Writes that take a body (body-less actions such as "sync" read no input to reject).
WRITE_ROUTES = [
    (route, method)
    for route in org_routes()
    for method, action in route.actions.items()
    if method in ("post", "put", "patch") and action in case_for(route.view_class).payloads
]


def _write(client, method, path, body: str):
    return client.generic(method.upper(), path, body, content_type="application/json")


def _setup(world, route, method):
    case = case_for(route.view_class)
    action = route.actions[method]
    obj = case.make(world, Role.OWNER) if route.is_detail else None
    payload = case.payload(action, world, obj)
    return route.path(world.org.slug, getattr(obj, "uuid", None)), payload


def _assert_error(response, status, code=None):
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"detail", "code", "fields"}
    assert body["detail"]
    if code:
        assert body["code"] == code


@pytest.mark.parametrize("route_method", WRITE_ROUTES, ids=lambda rm: f"{rm[1].upper()} {rm[0].template}")
class BadInputTests:
    def test_it_rejects_malformed_json(self, world_a, world_b, route_method):
        route, method = route_method
        path, _ = _setup(world_a, route, method)
        before = org_checksum(world_a.org), org_checksum(world_b.org)
        _assert_error(_write(world_a.client(Role.OWNER), method, path, '{"name": "unterminated'), 400, "parse_error")
        assert (org_checksum(world_a.org), org_checksum(world_b.org)) == before

    def test_it_rejects_a_body_that_is_not_an_object(self, world_a, route_method):
        route, method = route_method
        path, _ = _setup(world_a, route, method)
        before = org_checksum(world_a.org)
        _assert_error(_write(world_a.client(Role.OWNER), method, path, "[1, 2, 3]"), 400, "invalid")
        assert org_checksum(world_a.org) == before

    def test_it_rejects_unknown_fields(self, world_a, world_b, route_method):
        route, method = route_method
        path, payload = _setup(world_a, route, method)
        before = org_checksum(world_a.org), org_checksum(world_b.org)
        for extra in ({"organization": world_b.org.slug}, {"id": 1}, {"is_superuser": True}):
            response = _write(world_a.client(Role.OWNER), method, path, json.dumps({**payload, **extra}))
            _assert_error(response, 400, "invalid")
            assert set(extra) <= set(response.json()["fields"])
        assert (org_checksum(world_a.org), org_checksum(world_b.org)) == before

    def test_it_rejects_wrong_types_field_by_field(self, world_a, route_method):
        route, method = route_method
        path, payload = _setup(world_a, route, method)
        before = org_checksum(world_a.org)
        for name in payload:
            response = _write(
                world_a.client(Role.OWNER), method, path, json.dumps({**payload, name: [[["nested"]]]})
            )
            _assert_error(response, 400, "invalid")
            assert name in response.json()["fields"], name
        assert org_checksum(world_a.org) == before

    def test_it_rejects_oversized_bodies(self, world_a, route_method, settings):
        route, method = route_method
        path, payload = _setup(world_a, route, method)
        before = org_checksum(world_a.org)
        big = json.dumps({**payload, "name": "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 10)})
        _assert_error(_write(world_a.client(Role.OWNER), method, path, big), 413, "payload_too_large")
        assert org_checksum(world_a.org) == before


class FieldValidationTests:
    def test_it_rejects_an_unknown_time_zone(self, world_a):
        response = world_a.client(Role.OWNER).patch(
            f"/api/v1/orgs/{world_a.org.slug}/", {"timezone": "Mars/Olympus"}, format="json"
        )
        _assert_error(response, 400, "invalid")
        assert "timezone" in response.json()["fields"]

    def test_it_refuses_a_minimum_group_size_below_the_floor(self, world_a):
        response = world_a.client(Role.OWNER).patch(
            f"/api/v1/orgs/{world_a.org.slug}/", {"min_group_size": 1}, format="json"
        )
        _assert_error(response, 400, "invalid")
        world_a.org.refresh_from_db()
        assert world_a.org.min_group_size == 5

    def test_it_refuses_a_duplicate_participant_email(self, world_a):
        client = world_a.client(Role.ADMIN)
        url = f"/api/v1/orgs/{world_a.org.slug}/participants/"
        assert client.post(url, {"name": "A", "email": "same@example.test"}, format="json").status_code == 201
        response = client.post(url, {"name": "B", "email": "same@example.test"}, format="json")
        _assert_error(response, 400, "invalid")

    def test_it_answers_unknown_api_urls_with_json(self, world_a):
        response = world_a.client(Role.OWNER).get("/api/v1/nothing-here/")
        _assert_error(response, 404, "not_found")

    def test_it_answers_a_malformed_id_with_404(self, world_a):
        response = world_a.client(Role.OWNER).get(f"/api/v1/orgs/{world_a.org.slug}/participants/not-a-uuid/")
        _assert_error(response, 404, "not_found")
