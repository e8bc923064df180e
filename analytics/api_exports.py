"""API of report exports and of the audit trail.

``POST exports/`` validates the report parameters exactly as ``GET reports/cohort/`` does
(bad ones: 400 and no Export row), creates the export and enqueues its job (202); poll
``GET exports/{id}/`` for ``status``/``progress``, then ``GET exports/{id}/download/``
(streamed by the platform, audited). An HR user sees every export of the organization.
``audit-events/`` is the organization's audit trail, for owners.
"""

from __future__ import annotations

import django_filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response

from analytics.api import CohortParamsSerializer
from analytics.export_services import FORMATS, KINDS, ExportNotReady, export_http_response, export_open_for_download
from analytics.export_services import export_request
from analytics.models import Export
from analytics.reports import cohort_params_resolve, first_error
from tenants.api.base import OrgScopedViewSet, StrictSerializer
from tenants.models import AuditEvent
from tenants.roles import AGGREGATE_READERS, OWNERS


class ExportNotDownloadable(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "not_ready"


class ExportExpired(exceptions.APIException):
    status_code = status.HTTP_410_GONE
    default_code = "expired"
    default_detail = "This export has expired; request a new one."


class ExportSerializer(serializers.ModelSerializer):
    requested_by = serializers.CharField(source="requested_by.username", read_only=True, default=None)

    class Meta:
        model = Export
        fields = ["uuid", "kind", "format", "params", "status", "progress", "error", "requested_by",
                  "created_at", "finished_at", "expires_at"]
        read_only_fields = fields


class ExportCreateSerializer(StrictSerializer, CohortParamsSerializer):
    """``kind`` + ``format`` + the cohort report's parameters (``group_by`` comma-separated)."""

    kind = serializers.ChoiceField(choices=list(KINDS))
    format = serializers.ChoiceField(choices=list(FORMATS))


class ExportFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=Export.Status.choices)
    format = django_filters.ChoiceFilter(choices=[(name, name) for name in FORMATS])

    class Meta:
        model = Export
        fields = ["status", "format"]


class ExportViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, OrgScopedViewSet):
    """Asynchronous report exports (CSV, XLSX, printable HTML) of the organization."""

    model = Export
    serializer_class = ExportSerializer
    role_matrix = {
        "list": AGGREGATE_READERS, "retrieve": AGGREGATE_READERS, "create": AGGREGATE_READERS,
        "download": AGGREGATE_READERS,
    }
    role_matrix_notes = {
        "create": "kind=cohort, format=csv, xlsx or html, and the cohort report parameters; "
                  "the file is built in the background (202)",
        "download": "the file, served by the platform; audited; 409 until done, 410 once expired",
    }
    filterset_class = ExportFilter
    ordering_fields = ["created_at", "status"]

    def scoped_queryset(self, queryset):
        return queryset.select_related("requested_by", "organization")

    def get_serializer_class(self):
        return ExportCreateSerializer if self.action == "create" else ExportSerializer

    @extend_schema(request=ExportCreateSerializer, responses={202: ExportSerializer})
    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        if not serializer.is_valid():
            # The first problem, readable, as the error's detail (fields keep every problem).
            errors = dict(serializer.errors)
            errors["non_field_errors"] = [first_error(serializers.ValidationError(serializer.errors))]
            raise serializers.ValidationError(errors)
        data = serializer.validated_data
        params = cohort_params_resolve(organization=self.org, validated=data)
        export = export_request(organization=self.org, user=request.user, kind=data["kind"],
                                file_format=data["format"], params=params)
        return Response(ExportSerializer(export).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(responses={(200, "application/octet-stream"): OpenApiTypes.BINARY})
    @action(detail=True, methods=["get"])
    def download(self, request, *args, **kwargs):
        export = self.get_object()
        try:
            handle = export_open_for_download(export=export, user=request.user)
        except ExportNotReady:
            if export.status == Export.Status.EXPIRED:
                raise ExportExpired() from None
            raise ExportNotDownloadable(f"This export is {export.status}, not ready for download.") from None
        return export_http_response(export=export, organization=self.org, handle=handle)


class AuditEventSerializer(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor.username", read_only=True, default=None)

    class Meta:
        model = AuditEvent
        fields = ["uuid", "at", "actor", "action", "target", "params"]
        read_only_fields = fields


class AuditEventFilter(django_filters.FilterSet):
    action = django_filters.CharFilter()
    since = django_filters.IsoDateTimeFilter(field_name="at", lookup_expr="gte")

    class Meta:
        model = AuditEvent
        fields = ["action", "since"]


class AuditEventViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, OrgScopedViewSet):
    """The organization's audit trail (exports requested and downloaded...), newest first."""

    model = AuditEvent
    serializer_class = AuditEventSerializer
    role_matrix = {"list": OWNERS, "retrieve": OWNERS}
    role_matrix_notes = {"list": "who requested and downloaded which export, and when"}
    filterset_class = AuditEventFilter
    ordering_fields = ["at"]

    def scoped_queryset(self, queryset):
        return queryset.select_related("actor")
