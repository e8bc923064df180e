"""Tenant isolation over every route found in the URL configuration (not a hand-kept list).

For each route x method x role, a member of organization B:
  - gets 404 for anything under organization A's URL, whatever the method;
  - gets the same answer for A's object ids under B's URL as for ids that don't exist;
  - cannot attach A's objects (e.g. A's department) to rows in B;
  - never sees A's ids in B's lists;
and A's rows are byte-for-byte unchanged afterwards.
"""

import json
import uuid

import pytest

from tenants.api.base import OrgScopedSlugRelatedField
from tenants.api.route_walk import org_routes

from ...conftest import ROLES
from .route_cases import case_for, org_checksum

ROUTE_METHODS = [(route, method) for route in org_routes() for method in route.actions]


def _id(route_method):
    route, method = route_method
    return f"{method.upper()} {route.template}"


def _send(client, method, path, payload=None):
    body = json.dumps(payload) if payload is not None else ""
    return client.generic(method.upper(), path, body, content_type="application/json")


def test_it_finds_the_tenant_routes():
    templates = {route.template for route in org_routes()}
    assert "api/v1/orgs/<slug:org>/participants/<uuid>/" in templates
    assert "api/v1/orgs/<slug:org>/" in templates
    assert all(case_for(route.view_class) for route in org_routes())


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.value)
@pytest.mark.parametrize("route_method", ROUTE_METHODS, ids=_id)
def test_it_hides_organization_a_from_members_of_b(world_a, world_b, route_method, role):
    route, method = route_method
    action = route.actions[method]
    case = case_for(route.view_class)
    obj_a = case.make(world_a, role)
    obj_b = case.make(world_b, role)
    payload_a = case.payload(action, world_a, obj_a)
    payload_b = case.payload(action, world_b, obj_b)
    before = org_checksum(world_a.org)
    client = world_b.client(role)

    # 1. Anything under A's URL is 404, for every method and role.
    response = _send(client, method, route.path(world_a.org.slug, getattr(obj_a, "uuid", None)), payload_a)
    assert response.status_code == 404, response.content
    assert response.json()["code"] == "not_found"

    # 2. A's ids under B's URL answer exactly like ids that do not exist (no existence oracle).
    if route.is_detail and not getattr(route.view_class, "singleton", False):
        foreign = _send(client, method, route.path(world_b.org.slug, obj_a.uuid), payload_b)
        missing = _send(client, method, route.path(world_b.org.slug, uuid.uuid4()), payload_b)
        assert (foreign.status_code, foreign.json()) == (missing.status_code, missing.json())
        allowed = role in route.view_class.role_matrix.get(action, ())
        assert foreign.status_code == (404 if allowed else 403)

    # 3. A's objects named in a body sent to B's URL are refused.
    if method in ("post", "put", "patch") and payload_b is not None:
        view = route.view_class(action=action, request=None, kwargs={}, format_kwarg=None)
        serializer = view.get_serializer_class()()
        for name, field in serializer.fields.items():
            if isinstance(field, OrgScopedSlugRelatedField) and not field.read_only:
                related_a = field.related_model.objects.for_org(world_a.org).first()
                assert related_a is not None, f"seed org A with a {field.related_model.__name__}"
                target = route.path(world_b.org.slug, getattr(obj_b, "uuid", None))
                foreign_payload = dict(payload_b, **{name: str(related_a.uuid)})
                response = case.send(client, method, target, action, world_b, obj_b, foreign_payload)
                assert response.status_code in (400, 403), response.content

    assert org_checksum(world_a.org) == before


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.value)
def test_it_never_lists_another_organizations_rows(world_a, world_b, role):
    a_ids = set()
    for route in org_routes():
        obj = case_for(route.view_class).make(world_a, role)
        a_ids.add(str(getattr(obj, "uuid", "")) or None)
    a_ids.discard(None)
    client = world_b.client(role)
    for route in org_routes():
        if route.is_detail or "get" not in route.actions:
            continue
        response = client.get(route.path(world_b.org.slug))
        assert response.status_code in (200, 403)
        text = response.content.decode()
        assert not any(a_id in text for a_id in a_ids), route.template
