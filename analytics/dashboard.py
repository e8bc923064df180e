"""Reads behind the organization overview page (dashboard selectors).

Everything is aggregated in the database over ``NightlyMetrics`` (enrollment and sync
health come from ``integrations.selectors``, composed by the view): a fixed number of
queries whatever the number of participants, never a loop over people (design.md flow 5,
style.md rules 12, 26). Views call ``overview_data`` and render what it returns; charts
get plain lists (``chart_*`` keys) that the page embeds with ``json_script``.

Figures are for owners and admins only (the page's roles), so no small-group suppression
is applied here; HR reads the suppressed cohort reports instead.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass

from django.db.models import Count, Exists, F, OuterRef, Q, Sum
from django.utils import timezone

from analytics.models import NightlyMetrics
from tenants.models import Organization, Participant

# Without ?start/?end the overview covers the last four weeks (as the cohort report).
DEFAULT_RANGE_DAYS = 28
# A range longer than a year is refused: it bounds the rows one page reads.
MAX_RANGE_DAYS = 366
# Trend charts: weekly means over this many ISO weeks, ending with the range's last week.
TREND_WEEKS = 12
# Score histogram: ten bins of ten points (0-9, 10-19, ..., 90-100).
SCORE_BIN_WIDTH = 10
NO_DEPARTMENT = "No department"


class InvalidRange(ValueError):
    """A date range from the query string that cannot be used; the message is for people."""


@dataclass(frozen=True)
class DateRange:
    start: dt.date
    end: dt.date

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1


def organization_today(organization: Organization) -> dt.date:
    return timezone.now().astimezone(zoneinfo.ZoneInfo(organization.timezone)).date()


def _parse_date(name: str, value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise InvalidRange(f"The {name} date {value[:20]!r} is not a date: use YYYY-MM-DD, e.g. 2026-03-01.") from None


def date_range_from_params(params, *, today: dt.date) -> DateRange:
    """``?start=&end=`` (ISO dates, both optional) -> a validated range; InvalidRange otherwise."""
    start_text, end_text = (params.get("start") or "").strip(), (params.get("end") or "").strip()
    end = _parse_date("end", end_text) if end_text else today
    start = _parse_date("start", start_text) if start_text else end - dt.timedelta(days=DEFAULT_RANGE_DAYS - 1)
    if start > end:
        raise InvalidRange(f"The start date ({start}) is after the end date ({end}).")
    span = (end - start).days + 1
    if span > MAX_RANGE_DAYS:
        raise InvalidRange(f"The range {start} to {end} spans {span} days; choose at most {MAX_RANGE_DAYS}.")
    return DateRange(start, end)


def _main_nights(organization: Organization):
    return NightlyMetrics.objects.for_org(organization).filter(is_main_sleep=True, is_nap=False)


def _round(value, digits: int = 1):
    return None if value is None else round(float(value), digits)


# --- one grouped read -------------------------------------------------------------------------------
# Summed figures (key -> NightlyMetrics field). Means are folded from sums and counts, so a
# department's mean, a week's mean and the period's mean all come from the same grouped
# rows, and a NULL figure is left out of its own mean only.
FIGURES = {"score": "score", "tst": "tst_min", "se": "se_pct", "waso": "waso_min", "regularity": "score_regularity"}
_SUMMED_KEYS = [f"{key}_{part}" for key in FIGURES for part in ("sum", "n")]


def _score_bins() -> list[tuple[int, int]]:
    return [(low, low + SCORE_BIN_WIDTH) for low in range(0, 100, SCORE_BIN_WIDTH)]


def daily_rows(organization: Organization, start: dt.date, end: dt.date) -> list[dict]:
    """Main sleeps grouped by (night date, department name): one query, one pass over the nights.

    Each row: ``night_date``, ``department`` (None: no department), ``nights``, ``<k>_sum``
    and ``<k>_n`` for each FIGURES key, and ``bin_<i>`` counts of the score histogram (the
    last bin includes 100). About (days x departments) rows, whatever the number of people.
    """
    histogram = {
        f"bin_{i}": Count("pk", filter=Q(score__gte=low) & (Q(score__lt=high) if high < 100 else Q(score__lte=100)))
        for i, (low, high) in enumerate(_score_bins())
    }
    return list(
        _main_nights(organization)
        .filter(night_date__gte=start, night_date__lte=end)
        .order_by()
        .values("night_date", department=F("participant__department__name"))
        .annotate(
            nights=Count("pk"),
            **{f"{key}_sum": Sum(field) for key, field in FIGURES.items()},
            **{f"{key}_n": Count(field) for key, field in FIGURES.items()},
            **histogram,
        )
    )


def _add(rows: list[dict]) -> dict:
    keys = ["nights", *_SUMMED_KEYS, *(f"bin_{i}" for i in range(len(_score_bins())))]
    return {key: sum(row[key] or 0 for row in rows) for key in keys}


def _mean(total: dict, key: str, divisor: float = 1, digits: int = 1):
    n = total[f"{key}_n"]
    return _round(total[f"{key}_sum"] / n / divisor, digits) if n else None


# --- the period: headline figures and departments ---------------------------------------------------
def active_participants(organization: Organization, period: DateRange) -> dict:
    """Department name -> people with at least one main sleep in the period.

    A semi-join over participants (one index probe each): COUNT(DISTINCT) over the nights
    would sort every night of the period (3x slower on PostgreSQL). A person is in one
    department, so the values add up to the organization's count.
    """
    nights = _main_nights(organization).filter(night_date__gte=period.start, night_date__lte=period.end)
    return dict(
        Participant.objects.for_org(organization)
        .filter(Exists(nights.filter(participant=OuterRef("pk"))))
        .order_by()
        .values("department__name")
        .annotate(people=Count("pk"))
        .values_list("department__name", "people")
    )


def summary_from(rows: list[dict], active: dict) -> dict:
    """The organization's figures of the period (and the score histogram) from its daily_rows."""
    total = _add(rows)
    bins = _score_bins()
    return {
        "nights": total["nights"],
        "participants": sum(active.values()),
        "score_mean": _mean(total, "score"),
        "tst_mean_h": _mean(total, "tst", 60, 2),
        "se_mean_pct": _mean(total, "se"),
        "waso_mean_min": _mean(total, "waso"),
        "chart_histogram": {
            "labels": [f"{low}–{high - 1 if high < 100 else 100}" for low, high in bins],
            "values": [total[f"bin_{i}"] for i in range(len(bins))],
        },
    }


def departments_from(rows: list[dict], active: dict) -> list[dict]:
    """Per department: people with nights, nights, mean score / sleep hours / efficiency."""
    names = sorted({row["department"] for row in rows}, key=lambda name: (name or NO_DEPARTMENT).lower())
    out = []
    for name in names:
        total = _add([row for row in rows if row["department"] == name])
        out.append({
            "department": name or NO_DEPARTMENT,
            "participants": active.get(name, 0),
            "nights": total["nights"],
            "score_mean": _mean(total, "score"),
            "tst_mean_h": _mean(total, "tst", 60, 2),
            "se_mean_pct": _mean(total, "se"),
        })
    return out


def range_summary(organization: Organization, period: DateRange) -> dict:
    return summary_from(daily_rows(organization, period.start, period.end), active_participants(organization, period))


def department_comparison(organization: Organization, period: DateRange) -> list[dict]:
    rows = daily_rows(organization, period.start, period.end)
    return departments_from(rows, active_participants(organization, period))


def nights_this_week(organization: Organization, *, today: dt.date) -> int:
    """Main sleeps whose wake-up date falls in the current ISO week (Monday up to today)."""
    monday = today - dt.timedelta(days=today.weekday())
    return _main_nights(organization).filter(night_date__gte=monday, night_date__lte=today).count()


# --- weekly trends --------------------------------------------------------------------------------
TREND_METRICS = {
    # key: (FIGURES key, label, unit, divisor, (axis low, axis high) the chart shows at least)
    "score": ("score", "Sleep score", "points", 1, (0, 100)),
    "tst": ("tst", "Total sleep time", "hours", 60, (5, 9)),
    "efficiency": ("se", "Sleep efficiency", "%", 1, (70, 100)),
    "regularity": ("regularity", "Regularity (score component)", "points", 1, (0, 100)),
}


def trend_window(end: dt.date, weeks: int = TREND_WEEKS) -> tuple[dt.date, dt.date]:
    """Monday of the first week and Sunday of the last of ``weeks`` ISO weeks ending with ``end``'s."""
    last_monday = end - dt.timedelta(days=end.weekday())
    return last_monday - dt.timedelta(weeks=weeks - 1), last_monday + dt.timedelta(days=6)


def trends_from(rows: list[dict], *, end: dt.date, weeks: int = TREND_WEEKS) -> dict:
    """Weekly means of each TREND_METRICS figure from daily_rows covering the trend window.

    A week's mean is the mean of its nights, exactly; weeks without nights get None (a gap).
    Rows outside the window are ignored.
    """
    first_monday, last_sunday = trend_window(end, weeks)
    by_week: dict[int, list[dict]] = {i: [] for i in range(weeks)}
    for row in rows:
        if first_monday <= row["night_date"] <= last_sunday:
            by_week[(row["night_date"] - first_monday).days // 7].append(row)
    totals = [_add(by_week[i]) for i in range(weeks)]
    labels = [(first_monday + dt.timedelta(weeks=i)).isoformat() for i in range(weeks)]
    series = {
        key: {"label": label, "unit": unit, "labels": labels, "axis": list(axis),
              "values": [_mean(total, figure, divisor, 2) for total in totals]}
        for key, (figure, label, unit, divisor, axis) in TREND_METRICS.items()
    }
    return {"weeks": labels, "nights": [total["nights"] for total in totals], "series": series}


def weekly_trends(organization: Organization, *, end: dt.date, weeks: int = TREND_WEEKS) -> dict:
    start, stop = trend_window(end, weeks)
    return trends_from(daily_rows(organization, start, stop), end=end, weeks=weeks)


# --- the page ------------------------------------------------------------------------------------
def overview_data(organization: Organization, period: DateRange, *, today: dt.date) -> dict:
    """The sleep figures of the overview page in three queries, whatever the organization's size.

    One pass over the nights of the period and the trend window together (grouped by day
    and department), one semi-join for the people with nights, one count for this week.
    """
    first_monday, last_sunday = trend_window(period.end)
    rows = daily_rows(organization, min(period.start, first_monday), max(period.end, last_sunday))
    in_period = [row for row in rows if period.start <= row["night_date"] <= period.end]
    active = active_participants(organization, period)
    summary = summary_from(in_period, active)
    departments = departments_from(in_period, active)
    trends = trends_from(rows, end=period.end)
    return {
        "period": period,
        "nights_this_week": nights_this_week(organization, today=today),
        "summary": summary,
        "trends": trends,
        "departments": departments,
        "charts": {
            "histogram": summary["chart_histogram"],
            "trends": trends["series"],
            "departments": {
                "labels": [d["department"] for d in departments],
                "values": [d["score_mean"] for d in departments],
            },
        },
    }
