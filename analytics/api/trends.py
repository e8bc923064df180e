"""``reports/trends/``: monthly means, organization-wide."""

from __future__ import annotations

import pandas as pd
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response

from analytics import selectors
from analytics.api.params import (
    DEFAULT_REPORT_DAYS,
    DEFAULT_TREND_MONTHS,
    TrendParamsSerializer,
    _report_range,
    _today,
    _validated,
)
from analytics.api.rendering import METRIC_DEFINITIONS, ReportViewSet, _number, _suppression_note
from analytics.engine import cohorts, trends
from analytics.models import NightlyMetrics
from tenants.roles import AGGREGATE_READERS

class TrendReportViewSet(ReportViewSet):
    """``GET reports/trends/?start=&end=&metric=score|tst|se|waso``: monthly means, organization-wide."""

    model = NightlyMetrics
    role_matrix = {"list": AGGREGATE_READERS}
    role_matrix_notes = {"list": "monthly means; months below the minimum group size suppressed"}

    @extend_schema(
        parameters=[
            OpenApiParameter("start", OpenApiTypes.DATE),
            OpenApiParameter("end", OpenApiTypes.DATE),
            OpenApiParameter("metric", OpenApiTypes.STR, enum=list(cohorts.NIGHT_METRICS)),
        ],
        responses=OpenApiTypes.OBJECT,
    )
    def list(self, request, *args, **kwargs):
        params = _validated(TrendParamsSerializer, request.query_params)
        organization = self.org
        end = params.get("end") or _today(organization)
        if params.get("start"):
            start = params["start"]
        else:
            first = pd.Timestamp(end).to_period("M") - (DEFAULT_TREND_MONTHS - 1)
            start = first.start_time.date()
        start, end = _report_range(organization, {"start": start, "end": end}, DEFAULT_REPORT_DAYS)
        nights = selectors.nightly_metrics_frame(organization=organization, start=start, end=end)
        table = trends.monthly_trends(
            nights, metric=params["metric"], min_group_size=organization.min_group_size, start=start, end=end
        )
        months = [
            {
                "month": record["month"],
                "participants": _number(record["participants"]),
                "nights": _number(record["nights"]),
                "mean": _number(record["mean"]),
                "median": _number(record["median"]),
                "suppressed": bool(record["suppressed"]),
                "suppression_note": _suppression_note(record["suppression_reason"], organization.min_group_size),
            }
            for record in table.to_dict("records")
        ]
        return Response({
            "metric": params["metric"],
            "definition": METRIC_DEFINITIONS[params["metric"]],
            "start": start.isoformat(),
            "end": end.isoformat(),
            "min_group_size": organization.min_group_size,
            "months": months,
        })
