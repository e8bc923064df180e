"""``reports/cohort/``: the cohort report (JSON, CSV, XLSX)."""

from __future__ import annotations

import pandas as pd
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import renderers
from rest_framework.response import Response

from analytics.api.params import CohortParamsSerializer, _validated
from analytics.api.rendering import (
    METRIC_DEFINITIONS,
    CohortCSVRenderer,
    CohortXLSXRenderer,
    ReportContentNegotiation,
    ReportViewSet,
    _number,
    _suppression_note,
    _suppression_rule,
)
from analytics.engine import cohorts
from analytics.models import NightlyMetrics
from tenants.roles import AGGREGATE_READERS


def cohort_payload(report: pd.DataFrame, *, group_by, min_group_size, period, previous_period) -> dict:
    """The cohort report as the API returns it (and CSV/XLSX lay out unchanged)."""
    figures = [c for c in report.columns if any(c.startswith(f"{m}_") for m in (*cohorts.NIGHT_METRICS, "regularity"))]
    rows = []
    for record in report.to_dict("records"):
        reason = record["suppression_reason"]
        reason = None if reason is None or (not isinstance(reason, str) and pd.isna(reason)) else reason
        rows.append(
            {
                "level": int(record["level"]),
                "groups": {g: (None if pd.isna(record[g]) else str(record[g])) for g in group_by},
                "participants": _number(record["participants"]),
                "nights": _number(record["nights"]),
                "suppressed": bool(record["suppressed"]),
                "suppression_reason": reason,
                "suppression_note": _suppression_note(reason, min_group_size),
                **{name: _number(record[name]) for name in figures},
                "trend_available": bool(record["trend_available"]),
            }
        )
    return {
        "period": {"start": period[0].isoformat(), "end": period[1].isoformat()},
        "previous_period": {"start": previous_period[0].isoformat(), "end": previous_period[1].isoformat()},
        "group_by": list(group_by),
        "min_group_size": int(min_group_size),
        "suppression_rule": _suppression_rule(min_group_size),
        "definitions": METRIC_DEFINITIONS,
        "figures": figures,
        "rows": rows,
    }


class CohortReportViewSet(ReportViewSet):
    """``GET reports/cohort/?start=&end=&group_by=department|attr:<name>[,<second>]&format=json|csv|xlsx``."""

    model = NightlyMetrics
    role_matrix = {"list": AGGREGATE_READERS}
    role_matrix_notes = {"list": "aggregates only; groups below the minimum group size suppressed; ?format=csv or xlsx"}
    renderer_classes = [renderers.JSONRenderer, CohortCSVRenderer, CohortXLSXRenderer]
    content_negotiation_class = ReportContentNegotiation

    @extend_schema(
        parameters=[
            OpenApiParameter("start", OpenApiTypes.DATE),
            OpenApiParameter("end", OpenApiTypes.DATE),
            OpenApiParameter("group_by", OpenApiTypes.STR, description="department or attr:<name>, up to two"),
            OpenApiParameter("include", OpenApiTypes.STR, enum=["regularity"]),
            OpenApiParameter("format", OpenApiTypes.STR, enum=["json", "csv", "xlsx"]),
        ],
        responses=OpenApiTypes.OBJECT,
    )
    def list(self, request, *args, **kwargs):
        # The page, the export jobs and this endpoint share one builder (analytics/reports.py);
        # imported here because that module builds on this package.
        from analytics import reports

        validated = _validated(CohortParamsSerializer, request.query_params)
        organization = self.org
        params = reports.cohort_params_resolve(organization=organization, validated=validated)
        payload = reports.cohort_report_build(organization=organization, params=params)
        start, end = params.start, params.end
        response = Response(payload)
        file_format = request.accepted_renderer.format
        if file_format in ("csv", "xlsx"):
            response["Content-Disposition"] = (
                f'attachment; filename="cohort-{organization.slug}-{start}-{end}.{file_format}"'
            )
        return response

