"""Analytics API: nights, cohort report, weekly summaries, monthly trends.

Every endpoint is an OrgScopedViewSet (organization from the URL + membership, role
matrix per action), so the route walker, role-matrix and isolation tests cover it. Views
only validate -> call a selector -> call the engine -> serialize (style.md rule 12).

Who sees what:
  - nights: managers (owner, admin) and a member for their own participant record only;
  - cohort report, organization weekly summary, trends: owner, admin, HR; aggregates only,
    every group below the organization's minimum group size suppressed for every role;
  - per-participant weekly summary: managers, and a member for themself.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import zoneinfo

import numpy as np
import pandas as pd
from django.utils import timezone as django_timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, mixins, renderers, serializers
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.response import Response

from analytics import exports, selectors
from analytics.engine import cohorts, regularity, scores, trends, weekly
from analytics.models import NightlyMetrics, SleepSession
from tenants.api.base import OrgScopedViewSet
from tenants.models import Participant
from tenants.roles import AGGREGATE_READERS, MANAGERS, Role

# A report covers at most a year (and its previous period another): bounds the rows read.
MAX_RANGE_DAYS = 366
# Without ?start/?end a cohort report covers the last 4 weeks.
DEFAULT_REPORT_DAYS = 28
# Without ?start a trend covers the 12 months up to ?end.
DEFAULT_TREND_MONTHS = 12
# Figures are rounded once, here, so JSON, CSV and XLSX carry the very same numbers.
FIGURE_DECIMALS = 2
GROUP_ATTRIBUTE_RE = re.compile(r"^[A-Za-z0-9_.\- ]{1,64}$")
WEEK_RE = re.compile(r"^(\d{4})-W(\d{2})$")

SELF_OR_MANAGERS = MANAGERS | {Role.MEMBER}

METRIC_DEFINITIONS = {
    "participants": "distinct participants with at least one main sleep in the period",
    "nights": "main sleeps (naps excluded) with their wake-up date in the period",
    "score": "sleep score 0-100 (weighted components: duration, efficiency, continuity, depth, regularity)",
    "tst": "total sleep time, minutes (sleep epochs between first and last sleep epoch; AASM)",
    "se": "sleep efficiency, % (100 x TST / time in bed)",
    "waso": "wake after sleep onset, minutes (wake epochs between first and last sleep epoch)",
    "regularity": "Sleep Regularity Index, Phillips scale -100..100 (one value per participant)",
    "_mean/_median/_p25/_p75": "over the group's nights (each night one observation); regularity over participants",
    "_mean_delta": "mean minus the previous period's mean (same length, just before), shown only "
    "when the group is visible in both periods",
}


# --- input validation ---------------------------------------------------------------------------
def _validated(serializer_class, params) -> dict:
    """Validate query parameters; the first problem becomes the error's readable detail."""
    data = {name: params.get(name) for name in serializer_class().fields if params.get(name) not in (None, "")}
    serializer = serializer_class(data=data)
    if serializer.is_valid():
        return serializer.validated_data
    errors = dict(serializer.errors)
    non_field = [str(e) for e in errors.pop("non_field_errors", [])]
    messages = non_field + [f"{name}: {msgs[0]}" for name, msgs in errors.items()]
    raise serializers.ValidationError({"non_field_errors": [messages[0]], **errors})


class DateRangeSerializer(serializers.Serializer):
    start = serializers.DateField(required=False, input_formats=["iso-8601"])
    end = serializers.DateField(required=False, input_formats=["iso-8601"])

    def validate(self, data):
        start, end = data.get("start"), data.get("end")
        if start and end:
            if start > end:
                raise serializers.ValidationError(f"start ({start}) is after end ({end}).")
            days = (end - start).days + 1
            if days > MAX_RANGE_DAYS:
                raise serializers.ValidationError(
                    f"The range {start} to {end} spans {days} days; at most {MAX_RANGE_DAYS} are allowed."
                )
        return data


def _group_by(value: str) -> list[str]:
    specs = [part.strip() for part in value.split(",")]
    if not 1 <= len(specs) <= 2:
        raise serializers.ValidationError("group_by takes one or two groupings, comma-separated.")
    for spec in specs:
        if spec == selectors.DEPARTMENT_COLUMN:
            continue
        name = spec[len(selectors.ATTRIBUTE_PREFIX):] if spec.startswith(selectors.ATTRIBUTE_PREFIX) else None
        if not name or not GROUP_ATTRIBUTE_RE.match(name):
            raise serializers.ValidationError(
                f"Unknown grouping {spec!r}: use 'department' or 'attr:<name>' "
                "(letters, digits, space, '_', '-', '.'; up to 64 characters)."
            )
    if len(set(specs)) != len(specs):
        raise serializers.ValidationError("group_by names the same grouping twice.")
    return specs


class CohortParamsSerializer(DateRangeSerializer):
    group_by = serializers.CharField(required=False, default="department", max_length=200)
    include = serializers.ChoiceField(choices=["regularity"], required=False)

    def validate_group_by(self, value):
        return _group_by(value)

    def validate(self, data):
        data = super().validate(data)
        if data.get("include") == "regularity":
            start, end = data.get("start"), data.get("end")
            if start and end and (end - start).days + 1 > selectors.SRI_MAX_WINDOW_DAYS:
                raise serializers.ValidationError(
                    f"include=regularity needs a period of at most {selectors.SRI_MAX_WINDOW_DAYS} days."
                )
        return data


class NightsParamsSerializer(DateRangeSerializer):
    participant = serializers.UUIDField(required=False)
    include = serializers.CharField(required=False, max_length=50)

    def validate_include(self, value):
        parts = {p.strip() for p in value.split(",") if p.strip()}
        unknown = parts - {"stages", "naps"}
        if unknown:
            raise serializers.ValidationError(f"include takes 'stages' and/or 'naps', not {sorted(unknown)}.")
        return parts


def _iso_week(value: str) -> tuple[int, int]:
    match = WEEK_RE.match(value)
    if not match:
        raise serializers.ValidationError(f"{value!r} is not an ISO week: use YYYY-Www, e.g. 2026-W47.")
    year, week = int(match.group(1)), int(match.group(2))
    try:
        dt.date.fromisocalendar(year, week, 1)
    except ValueError:
        raise serializers.ValidationError(f"{year} has no ISO week {week}.") from None
    return year, week


class WeekParamsSerializer(serializers.Serializer):
    week = serializers.CharField(required=False, max_length=10)

    def validate_week(self, value):
        return _iso_week(value)


class WeeklyParticipantParamsSerializer(WeekParamsSerializer):
    participant = serializers.UUIDField(required=False)


class TrendParamsSerializer(DateRangeSerializer):
    metric = serializers.ChoiceField(choices=list(cohorts.NIGHT_METRICS), required=False, default="score")


def _today(organization) -> dt.date:
    return django_timezone.now().astimezone(zoneinfo.ZoneInfo(organization.timezone)).date()


def _report_range(organization, params: dict, default_days: int) -> tuple[dt.date, dt.date]:
    end = params.get("end") or _today(organization)
    start = params.get("start") or end - dt.timedelta(days=default_days - 1)
    DateRangeSerializer().validate({"start": start, "end": end})
    return start, end


def _last_full_week(organization) -> tuple[int, int]:
    year, week, _ = (_today(organization) - dt.timedelta(days=7)).isocalendar()
    return year, week


# --- serialization helpers ------------------------------------------------------------------------
def _number(value, decimals: int = FIGURE_DECIMALS):
    """JSON number: rounded float, int for integral counts, None for NaN / NA."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    value = float(value)
    return None if math.isnan(value) else round(value, decimals)


def _clock(minutes) -> str | None:
    value = _number(minutes, 6)
    if value is None:
        return None
    total = int(round(value)) % (24 * 60)
    return f"{total // 60:02d}:{total % 60:02d}"


def _date(value) -> str | None:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return pd.Timestamp(value).date().isoformat()


class ReportContentNegotiation(DefaultContentNegotiation):
    """``?format=`` picks a renderer; an unknown one is a 400, not DRF's 404."""

    def select_renderer(self, request, renderers, format_suffix=None):
        wanted = request.query_params.get(self.settings.URL_FORMAT_OVERRIDE)
        formats = [r.format for r in renderers]
        if wanted and wanted not in formats:
            raise exceptions.ValidationError(
                {"non_field_errors": [f"format must be one of {', '.join(formats)}, not {wanted!r}."],
                 "format": [f"Choose one of {', '.join(formats)}."]}
            )
        return super().select_renderer(request, renderers, format_suffix)


class CohortCSVRenderer(renderers.BaseRenderer):
    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return exports.cohort_csv(data)


class CohortXLSXRenderer(renderers.BaseRenderer):
    media_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    format = "xlsx"
    charset = None
    render_style = "binary"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return exports.cohort_xlsx(data)


class ReportViewSet(OrgScopedViewSet):
    """Base of the report endpoints: a ``list`` action, no pagination, errors always JSON."""

    pagination_class = None
    filter_backends: list = []

    def handle_exception(self, exc):
        response = super().handle_exception(exc)
        # An error answers in JSON whatever ?format= asked for (a CSV of an error is no use).
        self.request.accepted_renderer = renderers.JSONRenderer()
        self.request.accepted_media_type = "application/json"
        return response


# --- nights ---------------------------------------------------------------------------------------
METRIC_OUTPUT_FIELDS = [
    "tib_min", "spt_min", "tst_min", "waso_min", "se_pct", "sme_pct", "sol_min", "sol_persistent_min",
    "lat_n1_min", "lat_n2_min", "lat_n3_min", "lat_rem_min", "rem_latency_min", "wake_min", "n1_min", "n2_min",
    "n3_min", "rem_min", "lt_min", "light_min", "deep_min", "nrem_min", "nodata_min", "n1_pct", "n2_pct",
    "n3_pct", "rem_pct", "light_pct", "deep_pct", "nrem_pct", "awakenings", "awakenings_5min",
    "fragmentation_index",
]
CLOCK_OUTPUT_FIELDS = ["bedtime_local", "sleep_onset_local", "midsleep_local", "wake_time_local"]


def nights_payload(sessions: list[SleepSession], *, organization, include_stages: bool) -> list[dict]:
    """Serialize sessions with their metrics and the score's components and effective weights."""
    metrics = [s.metrics for s in sessions]
    components = pd.DataFrame(
        {f"score_{c}": [getattr(m, f"score_{c}") for m in metrics] for c in scores.COMPONENTS}, dtype=float
    )
    if len(components):
        _, used, effective = scores.combine_components(components, organization.score_weights or None)
    out = []
    for i, (session, m) in enumerate(zip(sessions, metrics, strict=True)):
        item = {
            "uuid": str(session.uuid),
            "participant": str(session.participant.uuid),
            "night_date": m.night_date.isoformat(),
            "start": session.start.isoformat(),
            "end": session.end.isoformat(),
            "timezone": session.timezone,
            "provider": session.provider,
            "epoch_seconds": session.epoch_seconds,
            "is_nap": m.is_nap,
            "is_main_sleep": m.is_main_sleep,
            "metrics": {name: getattr(m, name) for name in METRIC_OUTPUT_FIELDS},
            "clock": {
                name: (getattr(m, name).isoformat() if getattr(m, name) is not None else None)
                for name in CLOCK_OUTPUT_FIELDS
            },
            "score": {
                "value": m.score,
                "components": {c: getattr(m, f"score_{c}") for c in scores.COMPONENTS},
                "components_used": [c for j, c in enumerate(scores.COMPONENTS) if used[i, j]],
                "weights": {c: round(float(effective[i, j]), 6) for j, c in enumerate(scores.COMPONENTS)},
            },
            "metrics_version": m.metrics_version,
        }
        if include_stages:
            item["hypnogram"] = session.hypnogram.tolist()
        out.append(item)
    return out


class NightViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, OrgScopedViewSet):
    """Per-night metrics, score components and (optionally) the hypnogram.

    ``GET nights/?participant=<uuid>&start=&end=&include=stages,naps`` and
    ``GET nights/<session uuid>/`` (hypnogram always included).
    """

    model = SleepSession
    role_matrix = {"list": SELF_OR_MANAGERS, "retrieve": SELF_OR_MANAGERS}
    role_matrix_notes = {
        "list": "a member sees only their own nights; ?participant=&start=&end=&include=stages,naps",
        "retrieve": "a member sees only their own nights (404 for others)",
    }
    filter_backends: list = []

    def scoped_queryset(self, queryset):
        if self.membership.role == Role.MEMBER:
            queryset = queryset.filter(participant__user=self.request.user)
        queryset = queryset.filter(metrics__isnull=False).select_related("metrics", "participant")
        if self.action == "list" and "stages" not in self._include:
            queryset = queryset.defer("stages")
        return queryset.order_by("-metrics__night_date", "-start", "-pk")

    @property
    def _include(self) -> set[str]:
        return getattr(self, "_params", {}).get("include", set())

    @extend_schema(
        parameters=[
            OpenApiParameter("participant", OpenApiTypes.UUID),
            OpenApiParameter("start", OpenApiTypes.DATE),
            OpenApiParameter("end", OpenApiTypes.DATE),
            OpenApiParameter("include", OpenApiTypes.STR, description="stages and/or naps, comma-separated"),
        ],
        responses=OpenApiTypes.OBJECT,
        operation_id="v1_orgs_nights_list",
    )
    def list(self, request, *args, **kwargs):
        self._params = _validated(NightsParamsSerializer, request.query_params)
        queryset = self.get_queryset()
        params = self._params
        if "naps" not in self._include:
            queryset = queryset.filter(metrics__is_main_sleep=True, metrics__is_nap=False)
        if params.get("start"):
            queryset = queryset.filter(metrics__night_date__gte=params["start"])
        if params.get("end"):
            queryset = queryset.filter(metrics__night_date__lte=params["end"])
        if params.get("participant"):
            queryset = queryset.filter(participant__uuid=params["participant"])
        page = self.paginate_queryset(queryset)
        data = nights_payload(list(page), organization=self.org, include_stages="stages" in self._include)
        return self.get_paginated_response(data)

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def retrieve(self, request, *args, **kwargs):
        self._params = {"include": {"stages"}}
        session = self.get_object()
        return Response(nights_payload([session], organization=self.org, include_stages=True)[0])


# --- cohort report ------------------------------------------------------------------------------
def _suppression_rule(min_group_size: int) -> str:
    return (
        f"No cell describes fewer than {min_group_size} people: such groups are suppressed "
        "(figures left empty). So that no small group can be recovered by subtracting the "
        "visible groups from their total, one more group is also hidden wherever exactly one "
        "would be (complementary suppression). Trends are shown only for groups visible in "
        "both periods."
    )


def _suppression_note(reason, min_group_size: int) -> str | None:
    if reason == cohorts.REASON_BELOW_MIN:
        return f"fewer than {min_group_size} people"
    if reason == cohorts.REASON_COMPLEMENTARY:
        return f"hidden so that a group of fewer than {min_group_size} people cannot be derived by subtraction"
    return None


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


def _regularity(organization, start, end):
    sessions = selectors.session_stages_frame(organization=organization, start=start, end=end)
    return regularity.sleep_regularity_index(sessions)["sri"]


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
        params = _validated(CohortParamsSerializer, request.query_params)
        organization = self.org
        start, end = _report_range(organization, params, DEFAULT_REPORT_DAYS)
        length = dt.timedelta(days=(end - start).days + 1)
        prev_start, prev_end = start - length, start - dt.timedelta(days=1)
        group_by = params["group_by"]
        nights = selectors.cohort_frame(organization=organization, start=prev_start, end=end, group_by=group_by)
        extra = {}
        if params.get("include") == "regularity":
            if (end - start).days + 1 > selectors.SRI_MAX_WINDOW_DAYS:
                raise serializers.ValidationError(
                    f"include=regularity needs a period of at most {selectors.SRI_MAX_WINDOW_DAYS} days."
                )
            extra = {
                "regularity": _regularity(organization, start, end),
                "previous_regularity": _regularity(organization, prev_start, prev_end),
            }
        report = cohorts.cohort_report(
            nights,
            group_by=group_by,
            min_group_size=organization.min_group_size,
            period=(start, end),
            previous_period=(prev_start, prev_end),
            **extra,
        )
        payload = cohort_payload(
            report, group_by=group_by, min_group_size=organization.min_group_size,
            period=(start, end), previous_period=(prev_start, prev_end),
        )
        response = Response(payload)
        file_format = request.accepted_renderer.format
        if file_format in ("csv", "xlsx"):
            response["Content-Disposition"] = (
                f'attachment; filename="cohort-{organization.slug}-{start}-{end}.{file_format}"'
            )
        return response


# --- weekly summaries ------------------------------------------------------------------------------
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


# --- trends -------------------------------------------------------------------------------------------
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
