"""Account pages, landing by role, bad input on pages, participant pages, CSP and admin."""

from __future__ import annotations

import re
import uuid
from datetime import date, timedelta

import pytest

from analytics import dashboard
from analytics.models import UpstreamAverageStats
from tenants.roles import Role

from ...factories import MembershipFactory, OrganizationFactory, ParticipantFactory, UserFactory
from .nights import night


def _login(client, user):
    client.force_login(user)
    return client


@pytest.mark.django_db
class AccountTests:
    def test_it_signs_in_through_the_form_and_lands_by_role(self, client, world_a):
        user = world_a.users[Role.ADMIN]
        user.set_password("a-long-test-password-9")
        user.save()
        response = client.post("/login/", {"username": user.username, "password": "a-long-test-password-9"})
        assert response.status_code == 302 and response["Location"] == "/"
        assert client.get("/")["Location"] == f"/o/{world_a.org.slug}/"

    def test_it_refuses_a_wrong_password_with_a_message(self, client, world_a):
        response = client.post("/login/", {"username": world_a.users[Role.ADMIN].username, "password": "nope"})
        assert response.status_code == 200
        assert b"enter a correct" in response.content.lower()
        assert "_auth_user_id" not in client.session

    @pytest.mark.parametrize(
        "role, landing",
        [(Role.OWNER, "/o/alpha/"), (Role.ADMIN, "/o/alpha/"), (Role.HR, "/o/alpha/reports/"), (Role.MEMBER, None)],
    )
    def test_it_sends_each_role_to_its_page(self, client, world_a, role, landing):
        response = _login(client, world_a.users[role]).get("/")
        expected = landing or f"/o/alpha/participants/{world_a.member_participant.uuid}/"
        assert response.status_code == 302 and response["Location"] == expected

    def test_it_offers_a_picker_to_people_in_several_organizations(self, client, world_a, world_b):
        user = world_a.users[Role.ADMIN]
        MembershipFactory(organization=world_b.org, user=user, role=Role.HR)
        response = _login(client, user).get("/")
        assert response.status_code == 200
        assert b'href="/o/alpha/"' in response.content and b'href="/o/bravo/reports/"' in response.content
        # The switcher in the top bar of an organization page offers the other one.
        page = client.get("/o/alpha/").content.decode()
        switcher = re.search(r'<details class="switcher">(.*?)</details>', page, re.S).group(1)
        assert 'href="/o/bravo/reports/"' in switcher and 'href="/o/alpha/"' not in switcher

    def test_it_tells_a_member_without_a_participant_record_what_to_do(self, client, db):
        org = OrganizationFactory(slug="solo")
        user = UserFactory()
        MembershipFactory(organization=org, user=user, role=Role.MEMBER)
        response = _login(client, user).get("/")
        assert response.status_code == 200
        assert b"not linked to a participant record" in response.content

    def test_it_signs_out_on_post_only(self, client, world_a):
        _login(client, world_a.users[Role.ADMIN])
        assert client.get("/logout/").status_code == 405
        assert client.post("/logout/")["Location"] == "/login/"
        assert client.get("/")["Location"].startswith("/login/")

    def test_it_keeps_the_admin_login_for_the_admin(self, client, db):
        response = client.get("/admin/")
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
        assert client.get("/admin/login/").status_code == 200

    def test_it_shows_links_by_role(self, client, world_a):
        owner_nav = _login(client, world_a.users[Role.ADMIN]).get("/o/alpha/").content.decode()
        for path in ("/o/alpha/", "/o/alpha/participants/", "/o/alpha/reports/", "/o/alpha/emails/"):
            assert f'href="{path}"' in owner_nav
        assert 'href="/admin/"' not in owner_nav  # not staff
        client.logout()
        member = world_a.users[Role.MEMBER]
        page = _login(client, member).get(f"/o/alpha/participants/{world_a.member_participant.uuid}/")
        nav = re.search(r'<nav class="mainnav".*?</nav>', page.content.decode(), re.S).group(0)
        assert "My sleep" in nav and "/reports/" not in nav and "Participants" not in nav


@pytest.mark.django_db
class OverviewPageTests:
    def test_it_shows_the_figures_and_chart_data(self, client, world_a):
        today = dashboard.organization_today(world_a.org)
        night(world_a.member_participant, today - timedelta(days=1), score=81, tst=450)
        response = _login(client, world_a.users[Role.OWNER]).get("/o/alpha/")
        assert response.status_code == 200
        html = response.content.decode()
        assert 'id="data-histogram" type="application/json"' in html
        assert "<script>" not in html  # no inline code: the CSP would block it
        assert "81.0" in html

    @pytest.mark.parametrize("query", ["start=nope", "start=2026-05-01&end=2026-04-01", "start=2020-01-01&end=2026-01-01"])
    def test_it_answers_a_bad_range_with_a_readable_400_page(self, client, world_a, query):
        response = _login(client, world_a.users[Role.ADMIN]).get(f"/o/alpha/?{query}")
        assert response.status_code == 400
        assert b"This period cannot be shown" in response.content
        assert b"data-histogram" not in response.content


@pytest.mark.django_db
class ParticipantPageTests:
    def test_it_lists_and_searches_participants(self, client, world_a):
        ParticipantFactory(organization=world_a.org, name="Quincy Searchable")
        client = _login(client, world_a.users[Role.ADMIN])
        assert b"Quincy Searchable" in client.get("/o/alpha/participants/").content
        found = client.get("/o/alpha/participants/?q=quincy").content
        assert b"Quincy Searchable" in found and world_a.member_participant.name.encode() not in found
        by_department = client.get(f"/o/alpha/participants/?q={world_a.member_participant.department.name}")
        assert world_a.member_participant.name.encode() in by_department.content

    def test_it_pages_the_list(self, client, world_a):
        for i in range(55):
            ParticipantFactory(organization=world_a.org, name=f"Person {i:03d}")
        client = _login(client, world_a.users[Role.ADMIN])
        first = client.get("/o/alpha/participants/").content.decode()
        assert "Page 1 of 2" in first and "?page=2" in first
        assert client.get("/o/alpha/participants/?page=abc").status_code == 200  # falls back to page 1

    def test_it_shows_a_night_the_table_the_week_and_the_upstream(self, client, world_a):
        person = world_a.member_participant
        today = dashboard.organization_today(world_a.org)
        chosen = night(person, today - timedelta(days=2), score=64, tst=400)
        night(person, today - timedelta(days=1), score=77, tst=460)
        UpstreamAverageStats.objects.create(
            organization=world_a.org, participant=person, provider="asleep", start_date=today - timedelta(days=7),
            end_date=today, stats={"time_in_sleep": 27000, "sleep_efficiency": 0.9, "start_time": "23:10:00"},
            nights=2,
        )
        client = _login(client, world_a.users[Role.ADMIN])
        url = f"/o/alpha/participants/{person.uuid}/"
        html = client.get(url).content.decode()
        assert 'id="data-hypnogram"' in html and 'id="data-recent"' in html
        assert "7 h 30 min" in html  # the upstream's 27000 s
        assert "Compared with Asleep" in html
        picked = client.get(f"{url}?night={chosen.session.uuid}")
        assert picked.status_code == 200 and b'class="selected"' in picked.content

    def test_it_lets_a_member_open_only_their_own_page(self, client, world_a):
        other = ParticipantFactory(organization=world_a.org)
        client = _login(client, world_a.users[Role.MEMBER])
        assert client.get(f"/o/alpha/participants/{world_a.member_participant.uuid}/").status_code == 200
        someone = client.get(f"/o/alpha/participants/{other.uuid}/")
        nobody = client.get(f"/o/alpha/participants/{uuid.uuid4()}/")
        assert someone.status_code == nobody.status_code == 404
        assert other.name.encode() not in someone.content
        assert client.get("/o/alpha/participants/").status_code == 403

    def test_it_refuses_someone_elses_night_and_a_malformed_one(self, client, world_a):
        other = ParticipantFactory(organization=world_a.org)
        theirs = night(other, date(2026, 3, 3))
        client = _login(client, world_a.users[Role.MEMBER])
        url = f"/o/alpha/participants/{world_a.member_participant.uuid}/"
        assert client.get(f"{url}?night={theirs.session.uuid}").status_code == 404
        bad = client.get(f"{url}?night=not-a-uuid")
        assert bad.status_code == 400 and b"does not name a night" in bad.content
        assert client.get(f"{url}?week=2026-W60").status_code == 400


@pytest.mark.django_db
class SecurityHeaderTests:
    def test_it_sends_a_self_only_content_security_policy_on_pages(self, client, world_a):
        response = _login(client, world_a.users[Role.ADMIN]).get("/o/alpha/")
        policy = response["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "style-src 'self'" in policy
        assert "unsafe-inline" not in policy and "http" not in policy
        assert "Content-Security-Policy" in client.get("/login/")

    @pytest.mark.parametrize("url", ["/api/docs/", "/api/redoc/"])
    def test_it_leaves_the_api_docs_out_of_the_policy(self, client, url):
        response = client.get(url)
        assert response.status_code == 200
        assert "Content-Security-Policy" not in response

    def test_it_keeps_the_admin_working_under_the_policy(self, client, db):
        admin = UserFactory(is_staff=True, is_superuser=True)
        client.force_login(admin)
        for url in ("/admin/", "/admin/integrations/connection/", "/admin/integrations/connection/add/",
                    "/admin/integrations/psgrecording/add/", "/admin/tenants/participant/"):
            assert client.get(url).status_code == 200, url

    def test_it_answers_dashboard_errors_with_html_and_api_errors_with_json(self, client, world_a):
        _login(client, world_a.users[Role.HR])
        page = client.get("/o/alpha/")
        assert page.status_code == 403 and page["Content-Type"].startswith("text/html")
        assert b'href="/o/alpha/reports/"' in page.content  # the refused member keeps their top bar
        assert client.get("/o/nowhere/")["Content-Type"].startswith("text/html")
        assert client.get("/api/v1/orgs/nowhere/")["Content-Type"].startswith("application/json")
