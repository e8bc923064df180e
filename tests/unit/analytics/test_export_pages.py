"""Reports page, its export endpoints (create, status, download) and the audit log page."""

import re

import pytest
from django.test import Client

from analytics.export_services import export_build
from analytics.models import Export
from tenants.models import AuditEvent
from tenants.roles import Role

from .export_fixtures import PERIOD, person_markers, staff_organization

pytestmark = pytest.mark.django_db


@pytest.fixture
def staffed(world_a):
    return staff_organization(world_a)


def browser(world, role) -> Client:
    client = Client()
    client.force_login(world.users[role])
    return client


def reports_url(world, query=""):
    return f"/o/{world.org.slug}/reports/{query}"


def inline_scripts(html: str) -> list[str]:
    """<script> tags that would run inline code (a JSON data block does not run)."""
    return [tag for tag in re.findall(r"<script[^>]*>", html) if "src=" not in tag and "application/json" not in tag]


class ReportsPageTests:
    def test_hr_sees_the_report_with_suppression_charts_data_and_no_individual(self, staffed):
        response = browser(staffed, Role.HR).get(reports_url(staffed), {**PERIOD, "group1": "department"})
        assert response.status_code == 200
        html = response.content.decode()
        assert "Withheld: fewer than 5 people" in html
        assert "Withheld: could be derived by subtraction" in html
        assert 'id="report-chart-data"' in html and 'data-report-chart="iqr"' in html
        assert "Sales" in html and "Lab" in html  # Lab is named, its figures are not
        assert not inline_scripts(html)
        assert not any(marker in html for marker in person_markers(staffed.org))
        chart = response.context["chart"]
        assert [g["label"] for g in chart["groups"]] == ["Sales"] and chart["withheld"] == 2

    def test_it_groups_by_two_levels_with_a_participant_attribute(self, staffed):
        response = browser(staffed, Role.HR).get(
            reports_url(staffed), {**PERIOD, "group1": "department", "group2": "attr:site"}
        )
        assert response.status_code == 200
        assert '<option value="attr:site" selected>' in response.content.decode()
        levels = {row["level"] for row in response.context["table"]["rows"]}
        assert levels == {0, 1, 2}
        for row in response.context["table"]["rows"]:
            assert row["suppressed"] or row["participants"] >= 5

    @pytest.mark.parametrize("query, message", [
        ({"start": "2026-03-20", "end": "2026-03-01"}, "is after"),
        ({"start": "2025-01-01", "end": "2026-03-01"}, "at most 366"),
        ({"start": "yesterday"}, "start:"),
        ({"group1": "attr:shoe_size"}, "no grouping"),
        ({"group1": "department", "group2": "department"}, "two different groupings"),
    ])
    def test_bad_parameters_show_the_form_with_a_clear_message(self, world_a, query, message):
        response = browser(world_a, Role.HR).get(reports_url(world_a), query)
        assert response.status_code == 400
        html = response.content.decode()
        assert message in html and 'role="alert"' in html and '<form method="get"' in html

    def test_roles_and_organizations(self, world_a, world_b):
        assert browser(world_a, Role.MEMBER).get(reports_url(world_a)).status_code == 403
        assert browser(world_b, Role.HR).get(reports_url(world_a)).status_code == 404
        assert Client().get(reports_url(world_a)).status_code == 302  # to the login page
        for role in (Role.OWNER, Role.ADMIN, Role.HR):
            assert browser(world_a, role).get(reports_url(world_a)).status_code == 200


class PageExportTests:
    def _post(self, world, role=Role.HR, **changes):
        data = {**PERIOD, "group_by": "department", "format": "xlsx", **changes}
        return browser(world, role).post(f"/o/{world.org.slug}/reports/exports/", data,
                                         HTTP_ACCEPT="application/json")

    def test_an_export_from_the_page_is_polled_and_downloaded(self, staffed):
        response = self._post(staffed)
        assert response.status_code == 202
        created = response.json()
        client = browser(staffed, Role.HR)
        status = client.get(created["status_url"]).json()
        assert (status["status"], status["download_url"]) == ("pending", None)
        assert client.get(f"/o/{staffed.org.slug}/exports/{created['uuid']}/download/").status_code == 409
        export_build(organization_id=staffed.org.pk, export_uuid=created["uuid"])
        status = client.get(created["status_url"]).json()
        assert (status["status"], status["progress"]) == ("done", 100)
        download = client.get(status["download_url"])
        assert download.status_code == 200 and download.content[:2] == b"PK"
        assert 'filename="cohort-alpha-2026-03-01-2026-03-14.xlsx"' in download["Content-Disposition"]
        assert list(AuditEvent.objects.values_list("action", flat=True)) == ["export.downloaded", "export.requested"]
        page = client.get(reports_url(staffed)).content.decode()
        assert status["download_url"] in page  # the recent exports list links the file

    def test_bad_parameters_create_nothing(self, world_a):
        for changes in ({"format": "pdf"}, {"start": "2026-04-01"}, {"group_by": "attr:nothing-like-it"}):
            response = self._post(world_a, **changes)
            assert response.status_code == 400 and response.json()["detail"]
        assert not Export.objects.exists() and not AuditEvent.objects.exists()

    def test_without_javascript_the_form_redirects_back_to_the_report(self, world_a):
        response = browser(world_a, Role.HR).post(
            f"/o/{world_a.org.slug}/reports/exports/", {**PERIOD, "group_by": "department", "format": "csv"}
        )
        assert response.status_code == 302 and response["Location"].startswith("/o/alpha/reports/?start=2026-03-01")
        assert Export.objects.get().format == "csv"

    def test_another_organization_cannot_poll_or_download(self, staffed, world_b):
        created = self._post(staffed).json()
        export_build(organization_id=staffed.org.pk, export_uuid=created["uuid"])
        outsider = browser(world_b, Role.OWNER)
        for path in (created["status_url"], f"/o/{staffed.org.slug}/exports/{created['uuid']}/download/",
                     f"/o/{world_b.org.slug}/exports/{created['uuid']}/download/",
                     f"/o/{world_b.org.slug}/exports/{created['uuid']}/status/"):
            assert outsider.get(path).status_code == 404, path
        assert browser(staffed, Role.MEMBER).get(created["status_url"]).status_code == 403
        assert AuditEvent.objects.filter(action="export.downloaded").count() == 0


class AuditPageTests:
    def test_owners_see_the_audit_log_and_no_one_else(self, world_a):
        PageExportTests()._post(world_a, format="csv")
        response = browser(world_a, Role.OWNER).get(f"/o/{world_a.org.slug}/audit/")
        assert response.status_code == 200
        html = response.content.decode()
        assert "export.requested" in html and world_a.users[Role.HR].username in html
        assert "group_by=department" in html
        for role in (Role.ADMIN, Role.HR, Role.MEMBER):
            assert browser(world_a, role).get(f"/o/{world_a.org.slug}/audit/").status_code == 403
