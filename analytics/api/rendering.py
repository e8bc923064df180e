"""What every report endpoint shares: number formatting, definitions, suppression wording,
``?format=`` negotiation, the CSV/XLSX renderers and the report view base."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from rest_framework import exceptions, renderers
from rest_framework.negotiation import DefaultContentNegotiation

from analytics import exports
from analytics.engine import cohorts
from tenants.api.base import OrgScopedViewSet
from tenants.roles import MANAGERS, Role

# Figures are rounded once, here, so JSON, CSV and XLSX carry the very same numbers.
FIGURE_DECIMALS = 2

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


