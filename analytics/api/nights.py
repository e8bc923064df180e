"""``nights/``: per-night metrics, score components and (optionally) the hypnogram."""

from __future__ import annotations

import pandas as pd
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins
from rest_framework.response import Response

from analytics.api.params import NightsParamsSerializer, _validated
from analytics.api.rendering import SELF_OR_MANAGERS
from analytics.engine import scores
from analytics.models import SleepSession
from tenants.api.base import OrgScopedViewSet
from tenants.roles import Role

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

