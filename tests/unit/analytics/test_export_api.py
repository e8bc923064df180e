"""API of exports (/exports/) and of the audit trail (/audit-events/)."""

import json

import pytest

from analytics.audit import EXPORT_DOWNLOADED, EXPORT_REQUESTED
from analytics.export_services import export_build, exports_expire
from analytics.models import Export
from tenants.models import AuditEvent
from tenants.roles import Role

from .export_fixtures import PERIOD, staff_organization

pytestmark = pytest.mark.django_db
BODY = {"kind": "cohort", "format": "csv", **PERIOD, "group_by": "department"}


@pytest.fixture
def staffed(world_a):
    return staff_organization(world_a)


def _url(world, tail=""):
    return f"/api/v1/orgs/{world.org.slug}/exports/{tail}"


def _create(world, role=Role.HR, **changes):
    return world.client(role).post(_url(world), {**BODY, **changes}, format="json")


def _build(world, uuid):
    return export_build(organization_id=world.org.pk, export_uuid=uuid)


class ExportApiTests:
    def test_hr_requests_an_export_follows_it_and_downloads_the_apis_csv(self, staffed):
        response = _create(staffed)
        assert response.status_code == 202, response.content
        created = response.json()
        assert (created["status"], created["progress"], created["format"]) == ("pending", 0, "csv")
        assert created["params"] == {**PERIOD, "group_by": ["department"]}
        client = staffed.client(Role.HR)
        assert client.get(_url(staffed, f"{created['uuid']}/download/")).status_code == 409
        _build(staffed, created["uuid"])
        detail = client.get(_url(staffed, f"{created['uuid']}/")).json()
        assert (detail["status"], detail["progress"]) == ("done", 100) and detail["expires_at"]
        download = client.get(_url(staffed, f"{created['uuid']}/download/"))
        assert download.status_code == 200
        assert download["Content-Disposition"] == (
            f'attachment; filename="cohort-{staffed.org.slug}-2026-03-01-2026-03-14.csv"'
        )
        assert download["Cache-Control"] == "private, no-store"
        same_report = client.get(f"/api/v1/orgs/{staffed.org.slug}/reports/cohort/",
                                 {**PERIOD, "group_by": "department", "format": "csv"})
        assert download.content == same_report.content
        actions = list(AuditEvent.objects.filter(organization=staffed.org).values_list("action", "actor", "target"))
        target = f"export:{created['uuid']}"
        hr = staffed.users[Role.HR].pk
        assert actions == [(EXPORT_DOWNLOADED, hr, target), (EXPORT_REQUESTED, hr, target)]

    @pytest.mark.parametrize("changes, field", [
        ({"start": "2026-03-20"}, None),  # after end
        ({"start": "2025-01-01"}, None),  # more than a year
        ({"group_by": "nonsense"}, "group_by"),
        ({"group_by": "department,department"}, "group_by"),
        ({"format": "pdf"}, "format"),
        ({"kind": "nights"}, "kind"),
        ({"end": "14/03/2026"}, "end"),
        ({"organization": "bravo"}, "organization"),
    ])
    def test_bad_parameters_are_refused_and_create_nothing(self, world_a, changes, field):
        response = _create(world_a, **changes)
        assert response.status_code == 400, response.content
        body = response.json()
        assert body["code"] == "invalid" and body["detail"] != "Invalid input."
        if field:
            assert field in body["fields"]
        assert not Export.objects.exists() and not AuditEvent.objects.exists()

    def test_hr_sees_every_export_of_the_organization_and_no_other(self, staffed, world_b):
        mine = _create(staffed, role=Role.ADMIN).json()["uuid"]
        theirs = _create(world_b, role=Role.OWNER).json()["uuid"]
        listed = staffed.client(Role.HR).get(_url(staffed)).json()["results"]
        assert [row["uuid"] for row in listed] == [mine]
        other = world_b.client(Role.HR)
        assert other.get(_url(staffed)).status_code == 404
        assert other.get(_url(world_b, f"{mine}/")).status_code == 404
        assert other.get(_url(world_b, f"{mine}/download/")).status_code == 404
        assert theirs not in json.dumps(listed)

    def test_a_member_may_not_export(self, world_a):
        assert _create(world_a, role=Role.MEMBER).status_code == 403
        assert world_a.client(Role.MEMBER).get(_url(world_a)).status_code == 403
        assert not Export.objects.exists()

    def test_an_expired_export_answers_410(self, staffed):
        uuid = _create(staffed).json()["uuid"]
        export = _build(staffed, uuid)
        exports_expire(now=export.expires_at)
        response = staffed.client(Role.HR).get(_url(staffed, f"{uuid}/download/"))
        assert response.status_code == 410 and response.json()["code"] == "expired"


class AuditEventApiTests:
    def test_owners_read_the_audit_trail_and_no_one_else(self, world_a):
        _create(world_a, role=Role.HR)
        url = f"/api/v1/orgs/{world_a.org.slug}/audit-events/"
        events = world_a.client(Role.OWNER).get(url).json()["results"]
        assert [(e["action"], e["actor"]) for e in events] == [(EXPORT_REQUESTED, world_a.users[Role.HR].username)]
        assert events[0]["params"]["format"] == "csv"
        for role in (Role.ADMIN, Role.HR, Role.MEMBER):
            assert world_a.client(role).get(url).status_code == 403
        assert world_a.client(Role.OWNER).post(url, {}, format="json").status_code == 403  # read-only
        assert AuditEvent.objects.count() == 1

    def test_the_audit_trail_filters_by_action(self, world_a):
        _create(world_a, role=Role.HR)
        url = f"/api/v1/orgs/{world_a.org.slug}/audit-events/"
        client = world_a.client(Role.OWNER)
        assert client.get(url, {"action": EXPORT_DOWNLOADED}).json()["results"] == []
        assert len(client.get(url, {"action": EXPORT_REQUESTED}).json()["results"]) == 1
