"""Analytics API: nights, cohort report, weekly summaries, monthly trends.

Every endpoint is an OrgScopedViewSet (organization from the URL + membership, role
matrix per action), so the route walker, role-matrix and isolation tests cover it. Views
only validate -> call a selector -> call the engine -> serialize (style.md rule 12).

Who sees what:
  - nights: managers (owner, admin) and a member for their own participant record only;
  - cohort report, organization weekly summary, trends: owner, admin, HR; aggregates only,
    every group below the organization's minimum group size suppressed for every role;
  - per-participant weekly summary: managers, and a member for themself.

Modules: ``params`` (query parameters), ``rendering`` (figures, renderers, report base),
``nights``, ``cohort``, ``weekly``, ``trends`` (one per endpoint family). Every name that
used to live in the single ``analytics/api.py`` is re-exported here, so ``from analytics.api
import X`` keeps working.
"""

from analytics.api.cohort import CohortReportViewSet, cohort_payload
from analytics.api.nights import CLOCK_OUTPUT_FIELDS, METRIC_OUTPUT_FIELDS, NightViewSet, nights_payload
from analytics.api.params import (
    DEFAULT_REPORT_DAYS,
    DEFAULT_TREND_MONTHS,
    GROUP_ATTRIBUTE_RE,
    MAX_RANGE_DAYS,
    WEEK_RE,
    CohortParamsSerializer,
    DateRangeSerializer,
    NightsParamsSerializer,
    TrendParamsSerializer,
    WeeklyParticipantParamsSerializer,
    WeekParamsSerializer,
    _group_by,
    _iso_week,
    _last_full_week,
    _report_range,
    _today,
    _validated,
)
from analytics.api.rendering import (
    FIGURE_DECIMALS,
    METRIC_DEFINITIONS,
    SELF_OR_MANAGERS,
    CohortCSVRenderer,
    CohortXLSXRenderer,
    ReportContentNegotiation,
    ReportViewSet,
    _clock,
    _date,
    _number,
    _suppression_note,
    _suppression_rule,
)
from analytics.api.trends import TrendReportViewSet
from analytics.api.weekly import (
    ORG_WEEKLY_FIGURES,
    PARTICIPANT_WEEKLY_NUMBERS,
    WeeklyParticipantReportViewSet,
    WeeklyReportViewSet,
    _weekly_nights,
)

__all__ = [
    "CLOCK_OUTPUT_FIELDS", "DEFAULT_REPORT_DAYS", "DEFAULT_TREND_MONTHS", "FIGURE_DECIMALS", "GROUP_ATTRIBUTE_RE",
    "MAX_RANGE_DAYS", "METRIC_DEFINITIONS", "METRIC_OUTPUT_FIELDS", "ORG_WEEKLY_FIGURES",
    "PARTICIPANT_WEEKLY_NUMBERS", "SELF_OR_MANAGERS", "WEEK_RE", "CohortCSVRenderer", "CohortParamsSerializer",
    "CohortReportViewSet", "CohortXLSXRenderer", "DateRangeSerializer", "NightViewSet", "NightsParamsSerializer",
    "ReportContentNegotiation", "ReportViewSet", "TrendParamsSerializer", "TrendReportViewSet",
    "WeekParamsSerializer", "WeeklyParticipantParamsSerializer", "WeeklyParticipantReportViewSet",
    "WeeklyReportViewSet", "_clock", "_date", "_group_by", "_iso_week", "_last_full_week", "_number",
    "_report_range", "_suppression_note", "_suppression_rule", "_today", "_validated",
    "_weekly_nights", "cohort_payload", "nights_payload",
]
