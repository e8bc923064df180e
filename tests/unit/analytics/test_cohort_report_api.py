import csv
import io
from datetime import date

import openpyxl
import pandas as pd
import pytest

from analytics.engine.cohorts import cohort_report
from analytics.models import NightlyMetrics
from tenants.models import Participant
from tenants.roles import Role

from ...factories import DepartmentFactory, ParticipantFactory
from .nights import days, store_nights

PERIOD = {"start": "2026-03-01", "end": "2026-03-14"}


def _url(world):
    return f"/api/v1/orgs/{world.org.slug}/reports/cohort/"


@pytest.fixture
def staffed(world_a):
    """Sales 6 people, Ops 6, Lab 2 (below the minimum of 5); sites Berlin / Lisbon."""
    org = world_a.org
    for name, size, wake in (("Sales", 6, 0), ("Ops", 6, 40), ("Lab", 2, 80)):
        department = DepartmentFactory(organization=org, name=name)
        for i in range(size):
            person = ParticipantFactory(organization=org, department=department,
                                        attributes={"site": "Berlin" if i % 2 else "Lisbon"})
            store_nights(org, person, days(date(2026, 3, 1), 4), sleep_epochs=800 + 20 * i, wake_inside=wake)
            store_nights(org, person, days(date(2026, 2, 18), 3), sleep_epochs=850, prefix="prev")
    return world_a


def _engine_report(org, group_by):
    """The engine's report on a frame read independently of analytics.selectors."""
    rows = list(
        NightlyMetrics.objects.filter(organization=org, is_main_sleep=True, is_nap=False).values(
            "participant_id", "night_date", "is_nap", "score", "tst_min", "se_pct", "waso_min",
            "participant__department__name", "participant__attributes",
        )
    )
    frame = pd.DataFrame(rows)
    frame["department"] = frame.pop("participant__department__name")
    frame["attr:site"] = frame.pop("participant__attributes").map(lambda a: a.get("site"))
    return cohort_report(frame, group_by=group_by, min_group_size=org.min_group_size,
                         period=(date(2026, 3, 1), date(2026, 3, 14)))


def _person_markers(org):
    markers = set()
    for uuid, name, email in Participant.objects.filter(organization=org).values_list("uuid", "name", "email"):
        markers |= {str(uuid), name, email}
    return markers


class CohortReportTests:
    def test_it_returns_the_engines_figures_with_small_groups_suppressed(self, staffed):
        response = staffed.client(Role.HR).get(_url(staffed), {**PERIOD, "group_by": "department"})
        assert response.status_code == 200
        body = response.json()
        expected = _engine_report(staffed.org, ["department"])
        assert len(body["rows"]) == len(expected)
        for row, (_, cell) in zip(body["rows"], expected.iterrows(), strict=True):
            assert row["groups"]["department"] == (None if pd.isna(cell["department"]) else cell["department"])
            assert row["suppressed"] == bool(cell["suppressed"])
            for name in body["figures"]:
                want = cell[name]
                assert row[name] == (None if pd.isna(want) else pytest.approx(round(float(want), 2))), name
        by_name = {r["groups"]["department"]: r for r in body["rows"]}
        assert by_name[None]["participants"] == 14 + 0  # total (world's member has no nights)
        lab = by_name["Lab"]
        assert lab["suppressed"] and lab["participants"] is None and lab["score_mean"] is None
        assert lab["suppression_reason"] == "below_min_group_size"
        assert lab["suppression_note"] == "fewer than 5 people"
        # Lab alone would be total - Sales - Ops: one more department is hidden with it.
        hidden = [r for r in body["rows"] if r["level"] == 1 and r["suppressed"]]
        assert len(hidden) == 2 and {r["suppression_reason"] for r in hidden} == {"below_min_group_size",
                                                                                   "complementary"}
        assert body["period"] == {"start": "2026-03-01", "end": "2026-03-14"}
        assert body["previous_period"] == {"start": "2026-02-15", "end": "2026-02-28"}
        assert by_name[None]["trend_available"] and by_name[None]["tst_mean_delta"] is not None

    def test_it_groups_by_two_columns_including_an_attribute(self, staffed):
        response = staffed.client(Role.ADMIN).get(_url(staffed), {**PERIOD, "group_by": "department,attr:site"})
        body = response.json()
        expected = _engine_report(staffed.org, ["department", "attr:site"])
        assert [r["suppressed"] for r in body["rows"]] == expected["suppressed"].tolist()
        assert {r["level"] for r in body["rows"]} == {0, 1, 2}
        for row in body["rows"]:
            assert row["suppressed"] or row["participants"] >= 5

    def test_hr_never_receives_an_individual_in_any_format(self, staffed):
        client = staffed.client(Role.HR)
        markers = _person_markers(staffed.org)
        for fmt in ("json", "csv"):
            text = client.get(_url(staffed), {**PERIOD, "group_by": "department,attr:site", "format": fmt}).content
            assert not any(marker in text.decode("utf-8") for marker in markers)
        xlsx = client.get(_url(staffed), {**PERIOD, "group_by": "department,attr:site", "format": "xlsx"}).content
        workbook = openpyxl.load_workbook(io.BytesIO(xlsx))
        cells = {str(c.value) for ws in workbook for row in ws.iter_rows() for c in row if c.value is not None}
        assert not cells & markers

    def test_csv_holds_exactly_the_json_figures_with_suppressed_cells_empty_and_marked(self, staffed):
        client = staffed.client(Role.HR)
        params = {**PERIOD, "group_by": "department"}
        body = client.get(_url(staffed), params).json()
        response = client.get(_url(staffed), {**params, "format": "csv"})
        assert response.status_code == 200
        assert response["Content-Type"].startswith("text/csv")
        assert response["Content-Disposition"] == (
            f'attachment; filename="cohort-{staffed.org.slug}-2026-03-01-2026-03-14.csv"'
        )
        rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
        assert len(rows) == len(body["rows"])
        for line, row in zip(rows, body["rows"], strict=True):
            assert line["department"] == (row["groups"]["department"] or "")
            assert line["suppressed"] == ("true" if row["suppressed"] else "false")
            assert line["suppression_note"] == (row["suppression_note"] or "")
            for name in ["participants", "nights", *body["figures"]]:
                value = row[name]
                assert line[name] == ("" if value is None else str(value)), name
                if value is not None:
                    assert float(line[name]) == value
            if row["suppressed"]:
                assert all(line[name] == "" for name in ["participants", "nights", *body["figures"]])

    def test_xlsx_holds_exactly_the_json_figures_one_sheet_per_grouping_and_notes(self, staffed):
        client = staffed.client(Role.HR)
        params = {**PERIOD, "group_by": "department,attr:site"}
        body = client.get(_url(staffed), params).json()
        response = client.get(_url(staffed), {**params, "format": "xlsx"})
        assert response.status_code == 200
        assert response["Content-Type"] == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        assert response["Content-Disposition"].endswith('.xlsx"')
        workbook = openpyxl.load_workbook(io.BytesIO(response.content))
        assert workbook.sheetnames == ["Overall", "By department", "By department and site", "Notes"]
        for level, title in enumerate(workbook.sheetnames[:3]):
            sheet = workbook[title]
            header = [c.value for c in sheet[1]]
            assert sheet["A1"].font.bold
            lines = [dict(zip(header, (c.value for c in r), strict=True)) for r in sheet.iter_rows(min_row=2)]
            expected = [r for r in body["rows"] if r["level"] == level]
            assert len(lines) == len(expected)
            for line, row in zip(lines, expected, strict=True):
                assert line["suppressed"] is row["suppressed"]
                assert line["suppression_note"] == row["suppression_note"]
                for name in ["participants", "nights", *body["figures"]]:
                    assert line[name] == row[name], name  # None (an empty cell) where suppressed
        notes = [c.value for c in workbook["Notes"]["B"]]
        assert body["suppression_rule"] in notes
        assert any("sleep efficiency" in str(n) for n in notes)

    def test_it_defaults_to_the_last_four_weeks_by_department(self, staffed):
        body = staffed.client(Role.OWNER).get(_url(staffed)).json()
        start, end = date.fromisoformat(body["period"]["start"]), date.fromisoformat(body["period"]["end"])
        assert (end - start).days == 27 and body["group_by"] == ["department"]

    @pytest.mark.parametrize(
        "params, message",
        [
            ({"start": "2026-03-14", "end": "2026-03-01"}, "start (2026-03-14) is after end (2026-03-01)."),
            ({"start": "2025-01-01", "end": "2026-03-01"}, "The range 2025-01-01 to 2026-03-01 spans 425 days"),
            ({"start": "yesterday"}, "start: Date has wrong format"),
            ({"group_by": "salary"}, "group_by: Unknown grouping 'salary'"),
            ({"group_by": "attr:"}, "group_by: Unknown grouping 'attr:'"),
            ({"group_by": "department,department"}, "group_by: group_by names the same grouping twice."),
            ({"group_by": "department,attr:a,attr:b"}, "group_by: group_by takes one or two groupings"),
            ({"format": "pdf"}, "format must be one of json, csv, xlsx, not 'pdf'."),
            ({**PERIOD, "include": "regularity", "end": "2026-04-30"}, "include=regularity needs a period of at most"),
        ],
    )
    def test_it_rejects_bad_parameters_with_a_clear_400(self, world_a, params, message):
        response = world_a.client(Role.HR).get(_url(world_a), params)
        assert response.status_code == 400, response.content
        assert response["Content-Type"] == "application/json"
        body = response.json()
        assert body["code"] == "invalid" and body["detail"].startswith(message)

    def test_a_csv_request_that_fails_answers_in_json(self, world_a):
        response = world_a.client(Role.HR).get(_url(world_a), {"start": "2026-03-14", "end": "2026-03-01",
                                                               "format": "csv"})
        assert response.status_code == 400 and response.json()["code"] == "invalid"
        forbidden = world_a.client(Role.MEMBER).get(_url(world_a), {"format": "xlsx"})
        assert forbidden.status_code == 403 and forbidden.json()["code"] == "permission_denied"

    def test_it_reports_regularity_for_short_periods(self, world_a):
        org = world_a.org
        department = DepartmentFactory(organization=org, name="Night Owls")
        for _ in range(5):
            person = ParticipantFactory(organization=org, department=department)
            store_nights(org, person, days(date(2026, 3, 1), 8))
        response = world_a.client(Role.HR).get(
            _url(world_a), {"start": "2026-03-01", "end": "2026-03-08", "include": "regularity"}
        )
        total = response.json()["rows"][0]
        # Identical nights every day: the Sleep Regularity Index is 100 for everyone.
        assert total["regularity_mean"] == pytest.approx(100.0)

    def test_it_builds_a_report_in_a_fixed_number_of_queries(self, staffed, django_assert_max_num_queries):
        client = staffed.client(Role.HR)
        with django_assert_max_num_queries(3):  # membership, nights, participants
            assert client.get(_url(staffed), {**PERIOD, "group_by": "department,attr:site"}).status_code == 200
