"""Query parameters of the analytics API: serializers, validation and the report's date range."""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo

from django.utils import timezone as django_timezone
from rest_framework import serializers

from analytics import selectors
from analytics.engine import cohorts

# A report covers at most a year (and its previous period another): bounds the rows read.
MAX_RANGE_DAYS = 366
# Without ?start/?end a cohort report covers the last 4 weeks.
DEFAULT_REPORT_DAYS = 28
# Without ?start a trend covers the 12 months up to ?end.
DEFAULT_TREND_MONTHS = 12
GROUP_ATTRIBUTE_RE = re.compile(r"^[A-Za-z0-9_.\- ]{1,64}$")
WEEK_RE = re.compile(r"^(\d{4})-W(\d{2})$")


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

