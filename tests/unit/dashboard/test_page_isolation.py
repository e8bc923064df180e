"""Every organization page of the dashboard, found by walking the URL resolver.

For each ``/o/<org>/...`` route of analytics.views.urls (no hand-kept list: the walker
fails for a route without a case in page_cases.py, or without org_page's ``page_roles``):
  - anonymous -> redirect to /login/;
  - each role of the organization -> 200 (the case's ok_status) or 403 exactly as the
    view's declared roles say;
  - every role of organization B -> 404 under A's slug (same as an unknown slug);
  - an object of B under A's slug answers exactly like a uuid that does not exist;
  - an HR page never shows a participant's name, e-mail or uuid.
"""

from __future__ import annotations

import re
import uuid

import pytest
from django.urls import URLPattern, URLResolver, reverse

from analytics.views import urls as dashboard_urls
from tenants.roles import Role

from ...conftest import ROLES
from ...factories import ParticipantFactory
from .page_cases import PAGE_CASES


def _walk(patterns, prefix=""):
    for entry in patterns:
        if isinstance(entry, URLResolver):
            yield from _walk(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern), entry


def org_pages() -> list[tuple[str, str, object]]:
    """(route template, "dashboard:<name>", view) of every page under /o/<org>/."""
    pages = []
    for template, pattern in _walk(dashboard_urls.urlpatterns):
        if "<slug:org>" in template:
            assert pattern.name, f"the page {template} has no URL name"
            pages.append((template, f"{dashboard_urls.app_name}:{pattern.name}", pattern.callback))
    return pages


PAGES = org_pages()


def _ids(page):
    return page[1]


def _url(name, slug, kwargs, query=""):
    url = reverse(name, kwargs={"org": slug, **kwargs})
    return f"{url}?{query}" if query else url


CSRF_VALUE = re.compile(rb'name="csrfmiddlewaretoken" value="[^"]*"')


def _same_page(a, b) -> bool:
    """Two answers are alike, once the per-request CSRF token masks are set aside."""
    return a.status_code == b.status_code and CSRF_VALUE.sub(b"", a.content) == CSRF_VALUE.sub(b"", b.content)


def _case(name):
    if name not in PAGE_CASES:
        pytest.fail(f"{name} has no PageCase: register it in tests/unit/dashboard/page_cases.py")
    return PAGE_CASES[name]


def _client(client, user):
    client.force_login(user)
    return client


class WalkerTests:
    def test_it_finds_the_dashboard_pages(self):
        names = {name for _, name, _ in PAGES}
        assert {"dashboard:overview", "dashboard:participants", "dashboard:participant"} <= names

    @pytest.mark.parametrize("page", PAGES, ids=_ids)
    def test_it_has_a_case_and_declared_roles_for_every_page(self, page):
        template, name, view = page
        assert name in PAGE_CASES, (
            f"{template} ({name}) has no PageCase: register it in tests/unit/dashboard/page_cases.py"
        )
        roles = getattr(view, "page_roles", None)
        assert roles is not None, f"{template} must be wrapped in analytics.views.access.org_page(roles=...)"
        assert set(roles) <= set(Role)


@pytest.mark.django_db
class PageAccessTests:
    @pytest.fixture
    def worlds(self, world_a, world_b):
        for world in (world_a, world_b):
            # A second person, so that pages have someone besides the logged-in member.
            world.other_participant = ParticipantFactory(organization=world.org, name=f"Zed {world.org.slug}")
        return world_a, world_b

    @pytest.mark.parametrize("page", PAGES, ids=_ids)
    def test_it_sends_anonymous_visitors_to_the_login_page(self, client, worlds, page):
        _, name, _ = page
        world_a, _ = worlds
        case = _case(name)
        response = client.get(_url(name, world_a.org.slug, case.kwargs(world_a), case.query))
        assert response.status_code == 302
        assert response["Location"].startswith("/login/?next=")

    @pytest.mark.parametrize("page", PAGES, ids=_ids)
    @pytest.mark.parametrize("role", ROLES, ids=lambda r: r.value)
    def test_it_answers_each_role_as_the_page_declares(self, client, worlds, page, role):
        _, name, view = page
        world_a, _ = worlds
        case = _case(name)
        if case.setup:
            case.setup(world_a)
        response = _client(client, world_a.users[role]).get(
            _url(name, world_a.org.slug, case.kwargs(world_a), case.query)
        )
        expected = case.ok_status if role in view.page_roles else 403
        assert response.status_code == expected, response.content[:500]

    @pytest.mark.parametrize("page", PAGES, ids=_ids)
    @pytest.mark.parametrize("role", ROLES, ids=lambda r: r.value)
    def test_it_hides_an_organization_from_outsiders(self, client, worlds, page, role):
        _, name, _ = page
        world_a, world_b = worlds
        case = _case(name)
        outsider = _client(client, world_b.users[role])
        foreign = outsider.get(_url(name, world_a.org.slug, case.kwargs(world_a), case.query))
        unknown = outsider.get(_url(name, "no-such-org", case.kwargs(world_a), case.query))
        assert foreign.status_code == unknown.status_code == 404
        assert _same_page(foreign, unknown)
        assert world_a.org.name.encode() not in foreign.content

    @pytest.mark.parametrize("page", [p for p in PAGES if PAGE_CASES.get(p[1]) and PAGE_CASES[p[1]].object_kwargs],
                             ids=_ids)
    def test_it_answers_a_foreign_object_like_a_missing_one(self, client, worlds, page):
        _, name, view = page
        world_a, world_b = worlds
        case = _case(name)
        own = case.kwargs(world_a)
        theirs = case.kwargs(world_b)
        for role in ROLES:
            if role not in view.page_roles:
                continue
            user_client = _client(client, world_a.users[role])
            for key in case.object_kwargs:
                foreign = user_client.get(_url(name, world_a.org.slug, {**own, key: theirs[key]}, case.query))
                missing = user_client.get(_url(name, world_a.org.slug, {**own, key: uuid.uuid4()}, case.query))
                assert foreign.status_code == missing.status_code == 404, (role, key)
                assert _same_page(foreign, missing)

    @pytest.mark.parametrize("page", PAGES, ids=_ids)
    def test_it_never_shows_a_person_on_hr_pages(self, client, worlds, page):
        _, name, view = page
        if Role.HR not in view.page_roles:
            pytest.skip("HR cannot open this page")
        world_a, _ = worlds
        case = _case(name)
        if case.setup:
            case.setup(world_a)
        response = _client(client, world_a.users[Role.HR]).get(
            _url(name, world_a.org.slug, case.kwargs(world_a), case.query)
        )
        assert response.status_code == case.ok_status
        body = response.content.decode(errors="replace")
        for person in (world_a.member_participant, world_a.other_participant):
            for secret in (person.name, person.email, str(person.uuid)):
                assert secret and secret not in body, f"{name} shows a participant's {secret!r} to HR"
