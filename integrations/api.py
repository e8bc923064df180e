"""API of the integrations: connections (credentials write-only), links, sync runs, quarantine."""

from datetime import timedelta

import django_filters
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response

from analytics.models import Provider
from tenants.api.base import OrgScopedSlugRelatedField, OrgScopedViewSet, StrictModelSerializer
from tenants.models import Participant
from tenants.roles import MANAGERS

from . import services
from .models import Connection, ParticipantLink, QuarantinedRecord, SyncRun

UPSTREAM_PROVIDERS = [(p.value, p.label) for p in Provider if p != Provider.IMPORT]
# Syncing more often than this gains nothing from nightly data and spends upstream quota.
MIN_SYNC_INTERVAL_MINUTES = 15


class ConnectionSerializer(StrictModelSerializer):
    provider = serializers.ChoiceField(choices=UPSTREAM_PROVIDERS)
    # Write-only: credentials are never returned, whoever asks.
    credentials = serializers.DictField(child=serializers.CharField(max_length=500), write_only=True)
    options = serializers.DictField(child=serializers.CharField(max_length=200), required=False)
    sync_interval_minutes = serializers.IntegerField(
        min_value=MIN_SYNC_INTERVAL_MINUTES, max_value=7 * 24 * 60, required=False, default=60
    )
    has_credentials = serializers.SerializerMethodField()
    linked_participants = serializers.SerializerMethodField()

    class Meta:
        model = Connection
        fields = [
            "uuid", "name", "provider", "base_url", "credentials", "has_credentials", "options",
            "sync_interval_minutes", "status", "last_error", "last_synced_at", "next_sync_at", "linked_participants",
            "created_at",
        ]
        read_only_fields = ["uuid", "status", "last_error", "last_synced_at", "next_sync_at", "created_at"]

    def get_linked_participants(self, connection) -> int:
        # Lists annotate the count in one query; a freshly created connection has none.
        count = getattr(connection, "links_count", None)
        return connection.links.count() if count is None else count

    def get_has_credentials(self, connection) -> bool:
        return bool(connection.credentials)

    def to_representation(self, instance):
        data = super().to_representation(instance)
        data["sync_interval_minutes"] = int(instance.sync_interval.total_seconds() // 60)
        return data

    def to_internal_value(self, data):
        values = super().to_internal_value(data)
        if "sync_interval_minutes" in values:
            values["sync_interval"] = timedelta(minutes=values.pop("sync_interval_minutes"))
        return values


class ConnectionUpdateSerializer(ConnectionSerializer):
    # The provider decides what the stored credentials and cursors mean: fixed once created.
    provider = serializers.CharField(read_only=True)
    credentials = serializers.DictField(child=serializers.CharField(max_length=500), write_only=True, required=False)
    sync_interval_minutes = serializers.IntegerField(
        min_value=MIN_SYNC_INTERVAL_MINUTES, max_value=7 * 24 * 60, required=False
    )

    class Meta(ConnectionSerializer.Meta):
        pass


CheckResponse = inline_serializer("ConnectionCheck", {"ok": serializers.BooleanField(), "detail": serializers.CharField()})


class ConnectionViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
    mixins.UpdateModelMixin, mixins.DestroyModelMixin, OrgScopedViewSet,
):
    """Accounts at upstream sleep APIs. Credentials are encrypted at rest and write-only."""

    model = Connection
    role_matrix = {
        "list": MANAGERS, "retrieve": MANAGERS, "create": MANAGERS, "update": MANAGERS,
        "partial_update": MANAGERS, "destroy": MANAGERS, "check": MANAGERS, "sync": MANAGERS,
    }
    role_matrix_notes = {"check": "tries the stored credentials upstream", "sync": "enqueues a sync now (202)"}
    filterset_fields = ["provider", "status"]

    def scoped_queryset(self, queryset):
        from django.db.models import Count

        return queryset.annotate(links_count=Count("links")).order_by("name", "pk")

    def get_serializer_class(self):
        if self.action in ("update", "partial_update"):
            return ConnectionUpdateSerializer
        return ConnectionSerializer

    def perform_create(self, serializer):
        serializer.instance = services.connection_create(organization=self.org, **serializer.validated_data)

    def perform_update(self, serializer):
        serializer.instance = services.connection_update(connection=serializer.instance, **serializer.validated_data)

    @extend_schema(request=None, responses={200: CheckResponse})
    @action(detail=True, methods=["post"], url_path="check")
    def check(self, request, *args, **kwargs):
        result = services.connection_check(connection=self.get_object())
        return Response({"ok": result.ok, "detail": result.detail})

    @extend_schema(request=None, responses={202: None})
    @action(detail=True, methods=["post"])
    def sync(self, request, *args, **kwargs):
        services.connection_sync_now(connection=self.get_object())
        return Response({"detail": "Sync enqueued."}, status=status.HTTP_202_ACCEPTED)


class ParticipantLinkSerializer(StrictModelSerializer):
    connection = OrgScopedSlugRelatedField(Connection)
    participant = OrgScopedSlugRelatedField(Participant)
    upstream_user_id = serializers.CharField(max_length=128, required=False, allow_blank=True)
    create_upstream_user = serializers.BooleanField(write_only=True, required=False, default=False)

    class Meta:
        model = ParticipantLink
        fields = ["uuid", "connection", "participant", "upstream_user_id", "create_upstream_user",
                  "last_synced_at", "created_at"]
        read_only_fields = ["uuid", "last_synced_at", "created_at"]
        validators = []


class ParticipantLinkFilter(django_filters.FilterSet):
    connection = django_filters.UUIDFilter(field_name="connection__uuid")
    participant = django_filters.UUIDFilter(field_name="participant__uuid")

    class Meta:
        model = ParticipantLink
        fields = ["connection", "participant"]


class ParticipantLinkViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, mixins.DestroyModelMixin,
    OrgScopedViewSet,
):
    """Which upstream account holds a participant's nights."""

    model = ParticipantLink
    serializer_class = ParticipantLinkSerializer
    role_matrix = {"list": MANAGERS, "retrieve": MANAGERS, "create": MANAGERS, "destroy": MANAGERS}
    role_matrix_notes = {"create": "can create the upstream account (Asleep)"}
    filterset_class = ParticipantLinkFilter

    def scoped_queryset(self, queryset):
        return queryset.select_related("connection", "participant")

    def perform_create(self, serializer):
        serializer.instance = services.participant_link(organization=self.org, **serializer.validated_data)


class SyncRunSerializer(serializers.ModelSerializer):
    connection = serializers.SlugRelatedField(slug_field="uuid", read_only=True)

    class Meta:
        model = SyncRun
        fields = ["uuid", "connection", "status", "started_at", "finished_at", "duration_seconds", "fetched",
                  "created", "updated", "unchanged", "quarantined", "error"]


class SyncRunFilter(django_filters.FilterSet):
    connection = django_filters.UUIDFilter(field_name="connection__uuid")

    class Meta:
        model = SyncRun
        fields = ["connection", "status"]


class SyncRunViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, OrgScopedViewSet):
    """Sync history with counts: fetched = created + updated + unchanged + quarantined."""

    model = SyncRun
    serializer_class = SyncRunSerializer
    role_matrix = {"list": MANAGERS, "retrieve": MANAGERS}
    filterset_class = SyncRunFilter

    def scoped_queryset(self, queryset):
        return queryset.select_related("connection")


class QuarantinedRecordSerializer(serializers.ModelSerializer):
    connection = serializers.SlugRelatedField(slug_field="uuid", read_only=True)
    sync_run = serializers.SlugRelatedField(slug_field="uuid", read_only=True)

    class Meta:
        model = QuarantinedRecord
        fields = ["uuid", "connection", "sync_run", "upstream_id", "reason", "payload", "created_at"]


class QuarantinedRecordFilter(django_filters.FilterSet):
    connection = django_filters.UUIDFilter(field_name="connection__uuid")

    class Meta:
        model = QuarantinedRecord
        fields = ["connection"]


class QuarantinedRecordViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, OrgScopedViewSet):
    """Upstream records that failed validation, with the reason (payload kept for diagnosis)."""

    model = QuarantinedRecord
    serializer_class = QuarantinedRecordSerializer
    role_matrix = {"list": MANAGERS, "retrieve": MANAGERS}
    filterset_class = QuarantinedRecordFilter

    def scoped_queryset(self, queryset):
        return queryset.select_related("connection", "sync_run")
