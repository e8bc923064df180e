"""The cohort report for an organization and a set of parameters, outside any view.

Used by the reports page, the export jobs and the cohort report API:
one function validates the parameters, one builds the payload, so the page, the API and
every export file carry the very same figures. The payload is ``analytics.api.cohort_payload``
unchanged; the engine is ``analytics.engine.cohorts``.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass

from django.utils import timezone as django_timezone
from rest_framework import serializers

from analytics import selectors
from analytics.api import DEFAULT_REPORT_DAYS, CohortParamsSerializer, DateRangeSerializer, cohort_payload
from analytics.engine import cohorts, regularity
from tenants.models import Organization, Participant

# The figure the page's charts and the printable report draw per group.
CHART_FIGURE = "score"
# Longest attribute list offered as groupings (keys beyond are still accepted as attr:<name>).
MAX_ATTRIBUTE_CHOICES = 50


@dataclass(frozen=True)
class CohortParams:
    """Validated cohort parameters with the date range resolved (defaults applied)."""

    start: dt.date
    end: dt.date
    group_by: tuple[str, ...]
    include_regularity: bool = False

    @property
    def previous_period(self) -> tuple[dt.date, dt.date]:
        length = dt.timedelta(days=(self.end - self.start).days + 1)
        return self.start - length, self.start - dt.timedelta(days=1)

    def as_json(self) -> dict:
        """JSON-safe form stored on an Export row and in audit events (no personal data)."""
        data = {"start": self.start.isoformat(), "end": self.end.isoformat(), "group_by": list(self.group_by)}
        if self.include_regularity:
            data["include"] = "regularity"
        return data

    def as_query(self) -> dict:
        """The cohort API's query parameters for the same report."""
        return {**self.as_json(), "group_by": ",".join(self.group_by)}

    @classmethod
    def from_json(cls, data: Mapping) -> CohortParams:
        return cls(
            start=dt.date.fromisoformat(data["start"]),
            end=dt.date.fromisoformat(data["end"]),
            group_by=tuple(data["group_by"]),
            include_regularity=data.get("include") == "regularity",
        )


def organization_today(organization: Organization) -> dt.date:
    return django_timezone.now().astimezone(zoneinfo.ZoneInfo(organization.timezone)).date()


def cohort_params_resolve(*, organization: Organization, validated: Mapping) -> CohortParams:
    """Apply the API's defaults (the last 4 weeks up to today) to validated parameters."""
    end = validated.get("end") or organization_today(organization)
    start = validated.get("start") or end - dt.timedelta(days=DEFAULT_REPORT_DAYS - 1)
    DateRangeSerializer().validate({"start": start, "end": end})  # a default start may clash with ?start
    if validated.get("include") == "regularity" and (end - start).days + 1 > selectors.SRI_MAX_WINDOW_DAYS:
        raise serializers.ValidationError(
            f"include=regularity needs a period of at most {selectors.SRI_MAX_WINDOW_DAYS} days."
        )
    return CohortParams(
        start=start, end=end, group_by=tuple(validated["group_by"]),
        include_regularity=validated.get("include") == "regularity",
    )


def cohort_params_validate(*, organization: Organization, data: Mapping) -> CohortParams:
    """Validate raw parameters (query string or form) exactly as the cohort API does.

    Raises ``rest_framework.serializers.ValidationError`` whose detail has a readable first
    message under ``non_field_errors`` (see ``first_error``).
    """
    fields = CohortParamsSerializer().fields
    cleaned = {name: data.get(name) for name in fields if data.get(name) not in (None, "")}
    serializer = CohortParamsSerializer(data=cleaned)
    if not serializer.is_valid():
        raise serializers.ValidationError(serializer.errors)
    return cohort_params_resolve(organization=organization, validated=serializer.validated_data)


def first_error(error: serializers.ValidationError) -> str:
    """One readable sentence out of a DRF validation error (field name first)."""
    detail = error.detail
    if isinstance(detail, dict):
        for name, messages in detail.items():
            message = messages[0] if isinstance(messages, list) and messages else messages
            return str(message) if name == "non_field_errors" else f"{name}: {message}"
    if isinstance(detail, list) and detail:
        return str(detail[0])
    return str(detail)


def _regularity(organization: Organization, start: dt.date, end: dt.date):
    sessions = selectors.session_stages_frame(organization=organization, start=start, end=end)
    return regularity.sleep_regularity_index(sessions)["sri"]


def cohort_report_build(*, organization: Organization, params: CohortParams) -> dict:
    """The cohort report payload (what ``GET reports/cohort/`` answers for these parameters)."""
    start, end = params.start, params.end
    prev_start, prev_end = params.previous_period
    group_by = list(params.group_by)
    extra = {}
    if params.include_regularity:
        extra = {
            "regularity": _regularity(organization, start, end),
            "previous_regularity": _regularity(organization, prev_start, prev_end),
        }
    report = selectors.cohort_report_frame(
        organization=organization, period=(start, end), previous_period=(prev_start, prev_end),
        group_by=group_by, **extra,
    )
    return cohort_payload(
        report, group_by=group_by, min_group_size=organization.min_group_size,
        period=(start, end), previous_period=(prev_start, prev_end),
    )


def participant_attribute_names(organization: Organization) -> list[str]:
    """Attribute keys present on the organization's participants, sorted (grouping choices)."""
    names: set[str] = set()
    for attributes in Participant.objects.for_org(organization).values_list("attributes", flat=True):
        if isinstance(attributes, dict):
            names.update(str(key) for key in attributes)
    return sorted(names)[:MAX_ATTRIBUTE_CHOICES]


def grouping_label(spec: str) -> str:
    """``department`` -> ``Department``; ``attr:site`` -> ``site``."""
    return "Department" if spec == selectors.DEPARTMENT_COLUMN else spec.split(":", 1)[-1]


def cohort_chart_data(payload: dict, figure: str = CHART_FIGURE) -> dict:
    """Per first-level group: median and IQR of ``figure`` and its mean's change against the
    previous period. Suppressed groups carry no numbers (they are counted, not drawn)."""
    spec = payload["group_by"][0]
    groups, withheld = [], 0
    for row in payload["rows"]:
        if row["level"] != 1:
            continue
        if row["suppressed"]:
            withheld += 1
            continue
        groups.append(
            {
                "label": row["groups"][spec] or cohorts.MISSING_GROUP_LABEL,
                "median": row.get(f"{figure}_median"),
                "p25": row.get(f"{figure}_p25"),
                "p75": row.get(f"{figure}_p75"),
                "mean": row.get(f"{figure}_mean"),
                "delta": row.get(f"{figure}_mean_delta"),
            }
        )
    return {"figure": figure, "grouping": grouping_label(spec), "groups": groups, "withheld": withheld}
