"""T20 (reliability.md §7), through the API: randomized organizations, every format.

No JSON, CSV or XLSX cohort answer contains a visible group below the organization's
minimum group size, and no hidden group can be recovered as total - visible siblings
(every parent-and-children equation hides 0 or at least 2 cells). The monthly trend
answers hide small months too.
"""

import csv
import io
import itertools
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta

import numpy as np
import openpyxl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from analytics.services import sleep_sessions_upsert
from tenants.roles import Role

from ...factories import DepartmentFactory, MembershipFactory, OrganizationFactory, ParticipantFactory, UserFactory
from .nights import Record, hypnogram

PERIOD_START = date(2026, 3, 1)
PERIOD_DAYS = 14
SITES = ("north", "south", "east")
_counter = itertools.count()


def _build(min_group_size, department_sizes, seed):
    """An organization with random departments, sites and nights; returns (org, client, truth)."""
    rng = np.random.default_rng(seed)
    org = OrganizationFactory(slug=f"t20-{next(_counter)}", min_group_size=min_group_size)
    user = UserFactory()
    MembershipFactory(organization=org, user=user, role=Role.HR)
    records, people = [], []
    for d, size in enumerate(department_sizes):
        department = DepartmentFactory(organization=org, name=f"Dept {d}")
        for _ in range(size):
            site = SITES[rng.integers(len(SITES))]
            person = ParticipantFactory(organization=org, department=department, attributes={"site": site})
            current = int(rng.integers(0, 3))  # 0: only in the previous period (not in this report)
            offsets = list(rng.choice(PERIOD_DAYS, size=current, replace=False)) + [-int(rng.integers(1, 15))]
            for offset in offsets:
                night = PERIOD_START + timedelta(days=int(offset))
                start = datetime(night.year, night.month, night.day, 22, tzinfo=UTC) - timedelta(days=1)
                stages = hypnogram(int(rng.integers(600, 1000)), wake_inside=int(rng.integers(0, 60)))
                records.append((person.pk, Record.night(f"{person.pk}-{offset}", start, stages), str(offset)))
            if current:
                people.append({"department": department.name, "attr:site": site})
    sleep_sessions_upsert(organization=org, records=records)
    client = APIClient()
    client.force_authenticate(user)
    return org, client, people


def _key(groups: dict, group_by: list[str]) -> tuple:
    return tuple(groups[g] for g in group_by if groups[g] is not None)


def _check_json(body, group_by, min_group_size, people):
    truth = defaultdict(int)
    for person in people:
        for level in range(len(group_by) + 1):
            truth[tuple(person[g] for g in group_by[:level])] += 1
    rows = {_key(r["groups"], group_by): r for r in body["rows"]}
    assert set(rows) == set(truth)
    for key, row in rows.items():
        if row["suppressed"]:
            figures = [row["participants"], row["nights"], *(row[f] for f in body["figures"])]
            assert all(v is None for v in figures)
            assert row["suppression_note"]
        else:
            assert row["participants"] == truth[key] >= min_group_size
        if truth[key] < min_group_size:
            assert row["suppressed"], key
    # Each parent with its children is one additive equation: never exactly one hidden cell.
    for parent in [k for k in rows if len(k) < len(group_by)]:
        members = [parent] + [k for k in rows if len(k) == len(parent) + 1 and k[: len(parent)] == parent]
        hidden = sum(rows[k]["suppressed"] for k in members)
        assert hidden != 1, (parent, [(k, rows[k]["suppressed"]) for k in members])


def _plain(row, body, name):
    if name in body["group_by"]:
        return row["groups"][name]
    return row[name]


def _check_files(client, url, params, body):
    columns = None
    text = client.get(url, {**params, "format": "csv"}).content.decode("utf-8-sig")
    lines = list(csv.DictReader(io.StringIO(text)))
    assert len(lines) == len(body["rows"])
    for line, row in zip(lines, body["rows"], strict=True):
        columns = [c for c in line if c != "level"]
        for name in columns:
            value = _plain(row, body, name)
            expected = "" if value is None else ("true" if value is True else "false" if value is False else str(value))
            assert line[name] == expected, name
    workbook = openpyxl.load_workbook(io.BytesIO(client.get(url, {**params, "format": "xlsx"}).content))
    sheet_rows = []
    for sheet in workbook.worksheets[:-1]:
        header = [c.value for c in sheet[1]]
        sheet_rows += [dict(zip(header, (c.value for c in r), strict=True)) for r in sheet.iter_rows(min_row=2)]
    by_level = sorted(body["rows"], key=lambda r: r["level"])  # sheets go level by level, order kept
    assert len(sheet_rows) == len(by_level)
    for cells, row in zip(sheet_rows, by_level, strict=True):
        for name in columns:
            assert cells[name] == _plain(row, body, name), name


@pytest.mark.django_db
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(
    min_group_size=st.integers(3, 8),
    department_sizes=st.lists(st.integers(1, 15), min_size=1, max_size=5),
    group_by=st.sampled_from(["department", "attr:site", "department,attr:site", "attr:site,department"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_no_cohort_answer_reveals_a_group_below_the_minimum(min_group_size, department_sizes, group_by, seed):
    org, client, people = _build(min_group_size, department_sizes, seed)
    url = f"/api/v1/orgs/{org.slug}/reports/cohort/"
    end = PERIOD_START + timedelta(days=PERIOD_DAYS - 1)
    params = {"start": PERIOD_START.isoformat(), "end": end.isoformat(), "group_by": group_by}
    response = client.get(url, params)
    assert response.status_code == 200, response.content
    body = response.json()
    if not people:
        assert body["rows"] == []
        return
    _check_json(body, group_by.split(","), min_group_size, people)
    _check_files(client, url, params, body)

    trend = client.get(f"/api/v1/orgs/{org.slug}/reports/trends/", {"start": "2026-02-01", "end": "2026-03-31"})
    for month in trend.json()["months"]:
        assert month["suppressed"] or month["participants"] == 0 or month["participants"] >= min_group_size
