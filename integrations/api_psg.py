"""API of PSG recordings: upload an EDF for scoring, follow its status, find the night it gave.

``POST /api/v1/orgs/{org}/psg-recordings/`` is a multipart upload (``participant`` and
``connection`` by uuid, ``file``). The size limit is enforced while the body streams in (413),
the EDF header is validated before anything is stored or sent upstream (400), and scoring
runs in the background (integrations/psg.py): poll the recording's ``status``.
"""

import django_filters
from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.response import Response

from tenants.api.base import OrgScopedSlugRelatedField, OrgScopedViewSet, StrictModelSerializer, StrictSerializer
from tenants.api.errors import PayloadTooLarge
from tenants.models import Participant
from tenants.roles import MANAGERS

from . import psg
from .models import PSG_PROVIDERS, Connection, PsgRecording, PsgStatus

# Room for the multipart envelope (boundaries, part headers, the two uuid fields).
MULTIPART_OVERHEAD_BYTES = 64 * 1024


def _too_large() -> PayloadTooLarge:
    return PayloadTooLarge(psg.MESSAGES["too_large"].format(limit=settings.PSG_MAX_UPLOAD_BYTES))


class UploadLimitHandler(FileUploadHandler):
    """First in the chain: refuses a file once it streams past the limit, before the rest
    of it is written to a temporary file (a body without Content-Length gets here too)."""

    def __init__(self, request=None, *, limit: int):
        super().__init__(request)
        self.limit = limit

    def receive_data_chunk(self, raw_data, start):
        if start + len(raw_data) > self.limit:
            raise _too_large()
        return raw_data

    def file_complete(self, file_size):
        return None  # the next handler builds the file


class PsgRecordingSerializer(StrictModelSerializer):
    participant = serializers.UUIDField(source="participant.uuid", read_only=True)
    connection = serializers.UUIDField(source="connection.uuid", read_only=True, allow_null=True)
    provider = serializers.CharField(source="connection.provider", read_only=True, allow_null=True)
    sleep_session = serializers.UUIDField(source="sleep_session.uuid", read_only=True, allow_null=True)

    class Meta:
        model = PsgRecording
        fields = [
            "uuid", "participant", "connection", "provider", "original_name", "size", "edf_start",
            "edf_duration_seconds", "edf_channels", "timezone", "status", "error", "sleep_session",
            "submitted_at", "finished_at", "created_at", "updated_at",
        ]
        read_only_fields = fields


class PsgRecordingCreateSerializer(StrictSerializer):
    participant = OrgScopedSlugRelatedField(Participant)
    connection = OrgScopedSlugRelatedField(Connection)
    file = serializers.FileField(allow_empty_file=False)

    def validate_connection(self, connection):
        if connection.provider not in PSG_PROVIDERS:
            raise serializers.ValidationError(psg.MESSAGES["not_a_scorer"])
        return connection


class PsgRecordingFilter(django_filters.FilterSet):
    participant = django_filters.UUIDFilter(field_name="participant__uuid")
    connection = django_filters.UUIDFilter(field_name="connection__uuid")
    status = django_filters.ChoiceFilter(choices=PsgStatus.choices)

    class Meta:
        model = PsgRecording
        fields = ["participant", "connection", "status"]


class PsgRecordingViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, OrgScopedViewSet
):
    """PSG recordings uploaded for sleep staging by U-Sleep or a Grand Challenge algorithm."""

    model = PsgRecording
    serializer_class = PsgRecordingSerializer
    # Uploads are multipart; JSON is parsed only to answer it with a clear 400.
    parser_classes = [MultiPartParser, JSONParser]
    role_matrix = {"list": MANAGERS, "retrieve": MANAGERS, "create": MANAGERS, "destroy": MANAGERS}
    role_matrix_notes = {
        "create": "multipart EDF upload; scoring runs in the background",
        "destroy": "deletes the stored file; the scored night stays",
    }
    filterset_class = PsgRecordingFilter
    ordering_fields = ["created_at", "status"]

    def scoped_queryset(self, queryset):
        return queryset.select_related("participant", "connection", "sleep_session")

    def get_serializer_class(self):
        if self.action == "create":
            return PsgRecordingCreateSerializer
        return PsgRecordingSerializer

    @extend_schema(
        request={"multipart/form-data": PsgRecordingCreateSerializer},
        responses={201: PsgRecordingSerializer},
    )
    def create(self, request, *args, **kwargs):
        limit = settings.PSG_MAX_UPLOAD_BYTES
        declared = request.META.get("CONTENT_LENGTH") or ""
        if declared.isdigit() and int(declared) > limit + MULTIPART_OVERHEAD_BYTES:
            raise _too_large()  # refused before a byte of the body is read
        request.upload_handlers.insert(0, UploadLimitHandler(request._request, limit=limit))
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        recording = psg.psg_recording_upload(
            organization=self.org,
            participant=data["participant"],
            connection=data["connection"],
            file=data["file"],
            original_name=data["file"].name or "",
        )
        return Response(PsgRecordingSerializer(recording).data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance):
        psg.psg_recording_delete(recording=instance)
