"""``reports/weekly/`` (the organization's week) and ``reports/weekly/participants/`` (each person's)."""

from __future__ import annotations

import pandas as pd
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response

from analytics import selectors
from analytics.api.params import (
    WeeklyParticipantParamsSerializer,
    WeekParamsSerializer,
    _last_full_week,
    _validated,
)
from analytics.api.rendering import SELF_OR_MANAGERS, ReportViewSet, _clock, _date, _number, _suppression_note
from analytics.engine import cohorts, weekly
from analytics.models import NightlyMetrics
from tenants.api.base import OrgScopedViewSet
from tenants.models import Participant
from tenants.roles import AGGREGATE_READERS, Role

def _weekly_nights(organization, iso_year, iso_week, participant_ids=None):
    """Nights of the week and the 4 weeks before (baseline, streak), with clock minutes and age."""
    week_start, week_end = weekly.iso_week_bounds(iso_year, iso_week)
    start = (week_start - pd.Timedelta(days=7 * weekly.BASELINE_WEEKS)).date()
    nights = selectors.nightly_metrics_frame(
        organization=organization, start=start, end=week_end.date(), participant_ids=participant_ids, with_clock=True
    )
    people = selectors.participants_frame(organization=organization, participant_ids=participant_ids)
    ages = (iso_year - people["birth_year"]).astype(float)
    nights["age_years"] = nights["participant_id"].map(ages).astype(float)
    return nights, people


ORG_WEEKLY_FIGURES = [
    "score_mean", "score_median", "tst_mean_min", "tst_median_min", "se_mean_pct", "waso_mean_min",
    "midsleep_sd_mean_min", "short_sleep_pct", "score_delta_prev_week", "tst_delta_prev_week_min",
    "score_delta_baseline", "tst_delta_baseline_min",
]


class WeeklyReportViewSet(ReportViewSet):
    """``GET reports/weekly/?week=2026-W47``: the organization's week, aggregates only."""

    model = NightlyMetrics
    role_matrix = {"list": AGGREGATE_READERS}
    role_matrix_notes = {"list": "organization aggregates; suppressed below the minimum group size"}

    @extend_schema(parameters=[OpenApiParameter("week", OpenApiTypes.STR, description="ISO week, e.g. 2026-W47")],
                   responses=OpenApiTypes.OBJECT)
    def list(self, request, *args, **kwargs):
        params = _validated(WeekParamsSerializer, request.query_params)
        organization = self.org
        iso_year, iso_week = params.get("week") or _last_full_week(organization)
        nights, people = _weekly_nights(organization, iso_year, iso_week)
        row = weekly.weekly_organization_summary(
            nights, iso_year=iso_year, iso_week=iso_week, min_group_size=organization.min_group_size,
            participant_ids=people.index,
        ).iloc[0]
        suppressed = bool(row["suppressed"])
        return Response({
            "week": f"{iso_year}-W{iso_week:02d}",
            "week_start": _date(row["week_start"]),
            "min_group_size": organization.min_group_size,
            "participants_total": int(row["participants_total"]),
            # Below the minimum even the counts of a suppressed week stay hidden (a count is a cell too).
            "participants_with_data": None if suppressed else int(row["participants_with_data"]),
            "nights": None if suppressed else int(row["nights"]),
            **{name: _number(row[name]) for name in ORG_WEEKLY_FIGURES},
            "bedtime_mean": _clock(row["bedtime_mean_min"]),
            "suppressed": suppressed,
            "suppression_note": _suppression_note(cohorts.REASON_BELOW_MIN, organization.min_group_size)
            if suppressed else None,
        })


PARTICIPANT_WEEKLY_NUMBERS = [
    "score_mean", "tst_mean_min", "se_mean_pct", "waso_mean_min", "bedtime_sd_min", "midsleep_sd_min",
    "best_night_score", "worst_night_score", "score_delta_prev_week", "tst_delta_prev_week_min",
    "se_delta_prev_week_pct", "waso_delta_prev_week_min", "bedtime_shift_prev_week_min",
    "midsleep_shift_prev_week_min", "score_delta_baseline", "tst_delta_baseline_min", "se_delta_baseline_pct",
    "waso_delta_baseline_min", "bedtime_shift_baseline_min", "midsleep_shift_baseline_min", "tst_baseline_min",
    "score_rising_weeks", "sjl_signed_min", "recommended_min_h", "recommended_max_h",
]


class WeeklyParticipantReportViewSet(ReportViewSet):
    """``GET reports/weekly/participants/?week=&participant=<uuid>``: each person's week.

    Managers get every participant (paginated), or one with ``?participant=``; a member
    only their own summary.
    """

    model = Participant
    role_matrix = {"list": SELF_OR_MANAGERS}
    role_matrix_notes = {"list": "a member gets only their own summary; ?participant=&week="}
    pagination_class = OrgScopedViewSet.pagination_class

    def scoped_queryset(self, queryset):
        if self.membership.role == Role.MEMBER:
            queryset = queryset.filter(user=self.request.user)
        return queryset.order_by("name", "pk")

    @extend_schema(
        parameters=[OpenApiParameter("week", OpenApiTypes.STR), OpenApiParameter("participant", OpenApiTypes.UUID)],
        responses=OpenApiTypes.OBJECT,
    )
    def list(self, request, *args, **kwargs):
        params = _validated(WeeklyParticipantParamsSerializer, request.query_params)
        organization = self.org
        iso_year, iso_week = params.get("week") or _last_full_week(organization)
        queryset = self.get_queryset()
        if params.get("participant"):
            queryset = queryset.filter(uuid=params["participant"])
        page = list(self.paginate_queryset(queryset.values_list("pk", "uuid", "name")))
        ids = [pk for pk, _, _ in page]
        nights, _ = _weekly_nights(organization, iso_year, iso_week, participant_ids=ids)
        summary = weekly.weekly_participant_summary(
            nights, iso_year=iso_year, iso_week=iso_week, participant_ids=ids
        ) if ids else pd.DataFrame()
        results = []
        for pk, uuid, name in page:
            row = summary.loc[pk]
            results.append({
                "participant": str(uuid),
                "name": name,
                "week": f"{iso_year}-W{iso_week:02d}",
                "week_start": _date(row["week_start"]),
                "nights": int(row["nights"]) if not pd.isna(row["nights"]) else 0,
                **{key: _number(row[key]) for key in PARTICIPANT_WEEKLY_NUMBERS},
                "bedtime_mean": _clock(row["bedtime_mean_min"]),
                "waketime_mean": _clock(row["waketime_mean_min"]),
                "midsleep_mean": _clock(row["midsleep_mean_min"]),
                "best_night_date": _date(row["best_night_date"]),
                "worst_night_date": _date(row["worst_night_date"]),
                "insight_codes": list(row["insight_codes"]),
                "insights": list(row["insights"]),
            })
        return self.get_paginated_response(results)

