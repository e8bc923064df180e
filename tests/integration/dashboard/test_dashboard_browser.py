"""The dashboard in headless Chromium against a live server: charts drawn, roles, no CDN, CSP.

Screenshots of each page land in TEST_ARTIFACTS_DIR (default var/test-artifacts).
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from analytics import dashboard
from tenants.roles import Role

from ...factories import DepartmentFactory, MembershipFactory, ParticipantFactory
from ...unit.analytics.nights import days, store_nights
from .conftest import PASSWORD, canvas_has_pixels, log_in, screenshot

pytestmark = pytest.mark.integration


def _with_password(user, *, staff: bool = False):
    user.set_password(PASSWORD)
    user.is_staff = user.is_superuser = staff
    user.save()
    return user


@pytest.fixture
def site(transactional_db, world_a, world_b):
    """Alpha with nights for three people over 3 weeks; the admin is also HR in Bravo."""
    org = world_a.org
    today = dashboard.organization_today(org)
    last = days(today - timedelta(days=20), 20)
    sleepers = [world_a.member_participant] + [
        ParticipantFactory(organization=org, department=DepartmentFactory(organization=org, name=f"Team {i}"))
        for i in range(2)
    ]
    for i, person in enumerate(sleepers):
        store_nights(org, person, last, sleep_epochs=780 + 60 * i, wake_inside=10 * i, prefix=f"b{i}")
    admin = _with_password(world_a.users[Role.ADMIN], staff=True)
    MembershipFactory(organization=world_b.org, user=admin, role=Role.HR)
    member = _with_password(world_a.users[Role.MEMBER])
    return {"org": org, "admin": admin, "member": member, "others": sleepers[1:], "me": sleepers[0]}


def _csp_errors(page) -> list[str]:
    errors = []
    page.on("console", lambda msg: errors.append(msg.text) if "Content Security Policy" in msg.text else None)
    return errors


def test_an_admin_sees_the_overview_a_participant_and_switches_organization(page, live_server, site):
    csp_errors = _csp_errors(page)
    log_in(page, live_server, site["admin"])
    # Two organizations: the start page is a picker.
    assert page.url == f"{live_server.url}/"
    page.click("a.place-link[href='/o/alpha/']")
    page.wait_for_selector("#chart-histogram")
    page.wait_for_function("() => Chart.getChart(document.getElementById('chart-histogram')) !== undefined")
    assert canvas_has_pixels(page, "canvas[data-chart]")
    assert page.locator(".kpi-value").first.inner_text() == "3"  # enrolled: the member and two others
    screenshot(page, "dashboard-overview")

    page.click("nav.mainnav >> text=Participants")
    page.wait_for_selector("table.data")
    page.click(f"a[href='{site['others'][0].uuid}/']")
    page.wait_for_selector("#chart-hypnogram")
    page.wait_for_function("() => Chart.getChart(document.getElementById('chart-hypnogram')) !== undefined")
    assert canvas_has_pixels(page, "#chart-hypnogram")
    assert canvas_has_pixels(page, "#chart-recent")
    assert page.locator("table.data tbody tr").count() == 20
    screenshot(page, "dashboard-participant")

    page.click("details.switcher summary")
    page.click("details.switcher a[href='/o/bravo/reports/']")
    page.wait_for_load_state("networkidle")
    assert page.url == f"{live_server.url}/o/bravo/reports/"

    page.goto(f"{live_server.url}/admin/")
    page.wait_for_selector("#site-name")
    assert page.external_requests == []
    assert csp_errors == []


def test_a_member_sees_only_their_own_page(page, live_server, site):
    csp_errors = _csp_errors(page)
    page.goto(f"{live_server.url}/o/alpha/")
    assert page.url.startswith(f"{live_server.url}/login/?next=")
    screenshot(page, "dashboard-login")
    log_in(page, live_server, site["member"])
    assert page.url == f"{live_server.url}/o/alpha/participants/{site['me'].uuid}/"
    assert page.locator("h1").inner_text() == "My sleep"
    page.wait_for_function("() => Chart.getChart(document.getElementById('chart-hypnogram')) !== undefined")
    assert canvas_has_pixels(page, "#chart-hypnogram")
    assert [a.inner_text() for a in page.locator("nav.mainnav a").all()] == ["My sleep"]
    screenshot(page, "dashboard-member")

    other = page.goto(f"{live_server.url}/o/alpha/participants/{site['others'][0].uuid}/")
    assert other.status == 404
    assert site["others"][0].name not in page.content()
    assert page.goto(f"{live_server.url}/o/alpha/participants/").status == 403
    assert page.goto(f"{live_server.url}/o/alpha/").status == 403
    assert page.external_requests == []
    assert csp_errors == []
