"""The export job's work (analytics.export_services.export_build) and expiry, without a worker.

The files are opened with the csv module and openpyxl and compared cell by cell with what
the cohort report API answers for the same parameters.
"""

import csv
import io
from datetime import timedelta

import openpyxl
import pytest
from django.conf import settings
from django.utils import timezone

from analytics.audit import EXPORT_REQUESTED
from analytics.export_services import export_build, export_request, exports_expire
from analytics.exports import table_columns
from analytics.models import Export
from analytics.reports import cohort_params_validate
from tenants.models import AuditEvent
from tenants.roles import Role

from .export_fixtures import PERIOD, person_markers, staff_organization

pytestmark = pytest.mark.django_db


@pytest.fixture
def staffed(world_a):
    return staff_organization(world_a)


def request_export(world, file_format, group_by="department", role=Role.HR):
    params = cohort_params_validate(organization=world.org, data={**PERIOD, "group_by": group_by})
    return export_request(organization=world.org, user=world.users[role], kind="cohort",
                          file_format=file_format, params=params)


def build(export):
    return export_build(organization_id=export.organization_id, export_uuid=str(export.uuid))


def api_report(world, group_by):
    response = world.client(Role.HR).get(f"/api/v1/orgs/{world.org.slug}/reports/cohort/",
                                         {**PERIOD, "group_by": group_by})
    assert response.status_code == 200, response.content
    return response.json()


def read_file(export) -> bytes:
    with export.file.storage.open(export.file.name, "rb") as handle:
        return handle.read()


def expected_cells(row, payload) -> dict:
    """A payload row as the files lay it out: column name -> value."""
    cells = {"level": row["level"], "participants": row["participants"], "nights": row["nights"],
             "suppressed": row["suppressed"], "suppression_reason": row["suppression_reason"],
             "suppression_note": row["suppression_note"], "trend_available": row["trend_available"]}
    cells.update({spec: row["groups"].get(spec) for spec in payload["group_by"]})
    cells.update({name: row[name] for name in payload["figures"]})
    return cells


class ExportJobTests:
    def test_the_csv_file_holds_exactly_the_apis_figures(self, staffed):
        export = build(request_export(staffed, "csv"))
        assert (export.status, export.progress) == (Export.Status.DONE, 100)
        payload = api_report(staffed, "department")
        lines = list(csv.DictReader(io.StringIO(read_file(export).decode("utf-8-sig"))))
        assert list(lines[0]) == table_columns(payload)
        assert len(lines) == len(payload["rows"])
        for line, row in zip(lines, payload["rows"], strict=True):
            for name, want in expected_cells(row, payload).items():
                if want is None:
                    assert line[name] == "", name
                elif isinstance(want, bool):
                    assert line[name] == ("true" if want else "false"), name
                elif isinstance(want, float):
                    assert float(line[name]) == want, name
                else:
                    assert line[name] == str(want), name
        hidden = [line for line in lines if line["suppressed"] == "true"]
        assert len(hidden) == 2  # Lab (3 people... 2) and the department hidden with it
        for line in hidden:
            assert line["participants"] == line["nights"] == line["score_mean"] == ""
            assert line["suppression_note"]
        assert {line["suppression_reason"] for line in hidden} == {"below_min_group_size", "complementary"}

    def test_the_xlsx_file_has_a_sheet_per_level_the_apis_figures_and_notes(self, staffed):
        export = build(request_export(staffed, "xlsx", group_by="department,attr:site"))
        payload = api_report(staffed, "department,attr:site")
        workbook = openpyxl.load_workbook(io.BytesIO(read_file(export)))
        assert workbook.sheetnames == ["Overall", "By department", "By department and site", "Notes"]
        header = table_columns(payload)
        for level, name in enumerate(workbook.sheetnames[:3]):
            sheet = workbook[name]
            assert [c.value for c in sheet[1]] == header
            assert all(c.font.bold for c in sheet[1])
            rows = [row for row in payload["rows"] if row["level"] == level]
            values = list(sheet.iter_rows(min_row=2, values_only=True))
            assert len(values) == len(rows)
            for got, row in zip(values, rows, strict=True):
                assert dict(zip(header, got, strict=True)) == expected_cells(row, payload)
        suppressed = [row for row in payload["rows"] if row["suppressed"]]
        assert suppressed and all(row["score_mean"] is None for row in suppressed)
        notes = {row[0]: row[1] for row in workbook["Notes"].iter_rows(values_only=True) if row[0]}
        assert notes["Period"] == "2026-03-01 to 2026-03-14"
        assert notes["Minimum group size"] == 5
        assert "fewer than 5 people" in notes["Suppression rule"]
        assert notes["Generated at"].startswith(export.finished_at.strftime("%Y-%m-%d"))
        for figure in ("score", "tst", "se", "waso", "participants", "nights"):
            assert notes[figure]  # every metric is defined

    def test_the_printable_report_is_self_contained_with_charts_and_suppression(self, staffed):
        export = build(request_export(staffed, "html"))
        html = read_file(export).decode("utf-8")
        assert html.count("<svg") == 2 and "@media print" in html
        for external in ("<script", "<link", "src=", "url(", "@import"):
            assert external not in html, external
        assert "https://" not in html and html.count("http://") == html.count('xmlns="http://www.w3.org/2000/svg"')
        assert "fewer than 5 people" in html and "derived by subtraction" in html
        assert "Sales" in html and "2026-03-01" in html
        assert not any(marker in html for marker in person_markers(staffed.org))

    def test_no_file_carries_an_individual(self, staffed):
        markers = person_markers(staffed.org)
        for file_format in ("csv", "html"):
            text = read_file(build(request_export(staffed, file_format, group_by="department,attr:site")))
            assert not any(marker in text.decode("utf-8") for marker in markers)

    def test_a_done_export_expires_after_the_retention_time(self, staffed):
        export = build(request_export(staffed, "csv"))
        assert export.expires_at == export.finished_at + settings.EXPORT_RETENTION
        storage, name = export.file.storage, export.file.name
        assert storage.exists(name)
        other = build(request_export(staffed, "xlsx"))
        assert exports_expire(now=export.expires_at - timedelta(seconds=1)) == 0
        assert exports_expire(now=export.expires_at + timedelta(seconds=1)) == 2
        export.refresh_from_db()
        assert export.status == Export.Status.EXPIRED and not export.file
        assert not storage.exists(name) and not storage.exists(other.file.name)
        assert exports_expire(now=export.expires_at + timedelta(days=1)) == 0

    def test_a_redelivered_job_leaves_a_done_export_alone(self, world_a):
        export = build(request_export(world_a, "csv"))
        assert build(export) is None
        export.refresh_from_db()
        assert export.status == Export.Status.DONE and export.file.storage.exists(export.file.name)

    def test_a_job_whose_worker_died_is_rebuilt_without_an_orphan_file(self, world_a):
        export = build(request_export(world_a, "csv"))
        Export.objects.filter(pk=export.pk).update(status=Export.Status.RUNNING, progress=60)  # redelivered mid-run
        export = build(export)
        assert (export.status, export.progress) == (Export.Status.DONE, 100)
        storage, folder = export.file.storage, export.file.name.rsplit("/", 1)[0]
        assert [f for f in storage.listdir(folder)[1] if f.startswith(str(export.uuid))] == [f"{export.uuid}.csv"]

    def test_a_failing_build_is_marked_failed_with_a_generic_message(self, world_a):
        export = request_export(world_a, "csv")
        Export.objects.filter(pk=export.pk).update(params={"start": "not a date"})
        export = build(export)
        assert export.status == Export.Status.FAILED and not export.file
        assert "could not be built" in export.error

    def test_a_request_is_audited_and_enqueued_only_after_commit(self, world_a, django_capture_on_commit_callbacks):
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            export = request_export(world_a, "xlsx")
        assert len(callbacks) == 1
        assert export.status == Export.Status.PENDING and export.requested_by == world_a.users[Role.HR]
        event = AuditEvent.objects.get(organization=world_a.org, action=EXPORT_REQUESTED)
        assert event.actor == world_a.users[Role.HR] and event.target == f"export:{export.uuid}"
        assert event.params == {"export": str(export.uuid), "kind": "cohort", "format": "xlsx", **PERIOD,
                                "group_by": ["department"]}

    def test_the_job_finds_no_export_of_another_organization(self, world_a, world_b):
        export = request_export(world_a, "csv")
        assert export_build(organization_id=world_b.org.pk, export_uuid=str(export.uuid)) is None
        export.refresh_from_db()
        assert export.status == Export.Status.PENDING and timezone.now() > export.created_at
