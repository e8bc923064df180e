"""Connections to upstream sleep APIs, participant links, sync runs, quarantined records."""

import uuid
from datetime import timedelta

from django.db import models
from django.utils import timezone

from analytics.models import Provider, SleepSession
from tenants.models import Organization, Participant, TimeStampedModel, validate_timezone
from tenants.scoping import OrgScopedManager

from .crypto import EncryptedJSONField


class ConnectionStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    NEEDS_ATTENTION = "needs_attention", "Needs attention (credentials refused)"
    PAUSED = "paused", "Paused"


class Connection(TimeStampedModel):
    """An organization's account at one upstream API.

    ``credentials`` are encrypted at rest and never returned by the API or written to logs.
    ``next_sync_at`` is the outbox beat sweeps: the database, not the broker, decides what
    must run next, so a lost or flushed queue heals by itself.
    """

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="connections")
    name = models.CharField(max_length=120)
    provider = models.CharField(max_length=32, choices=Provider.choices)
    base_url = models.URLField(max_length=300)
    credentials = EncryptedJSONField(default=dict)
    # Non-secret provider options (e.g. the Grand Challenge algorithm slug).
    options = models.JSONField(default=dict, blank=True)
    sync_interval = models.DurationField(default=timedelta(hours=1))
    next_sync_at = models.DateTimeField(default=timezone.now)
    status = models.CharField(max_length=32, choices=ConnectionStatus.choices, default=ConnectionStatus.ACTIVE)
    # An error code and a short reason, never upstream text or personal data.
    last_error = models.CharField(max_length=300, blank=True, default="")
    last_synced_at = models.DateTimeField(null=True, blank=True)
    # Sync lease: one sync per connection; it expires if its worker dies. ``lease_token`` is
    # the fencing token every write of the holder checks.
    lease_token = models.UUIDField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)

    objects = OrgScopedManager()

    class Meta:
        ordering = ["name"]
        indexes = [
            # schedule_due_syncs: active connections whose next_sync_at has passed.
            models.Index(fields=["status", "next_sync_at"], name="connection_due_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.provider} connection {self.uuid}"


class ParticipantLink(TimeStampedModel):
    """A participant's account at an upstream, reached through a connection."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="links")
    participant = models.ForeignKey(Participant, on_delete=models.CASCADE, related_name="upstream_links")
    upstream_user_id = models.CharField(max_length=128)
    # Provider-specific position of the incremental sync; moves only after data commits.
    cursor = models.JSONField(null=True, blank=True)
    last_synced_at = models.DateTimeField(null=True, blank=True)

    objects = OrgScopedManager()

    class Meta:
        ordering = ["created_at"]
        constraints = [
            models.UniqueConstraint(fields=["connection", "participant"], name="link_unique_participant"),
            models.UniqueConstraint(fields=["connection", "upstream_user_id"], name="link_unique_upstream_user"),
        ]


class SyncRunStatus(models.TextChoices):
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    DEFERRED = "deferred", "Deferred (rate limited)"


class SyncRun(models.Model):
    """One attempt to sync one connection, with its counts.

    fetched = created + updated + unchanged + quarantined.
    """

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="sync_runs")
    task_id = models.CharField(max_length=64, blank=True, default="")
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=SyncRunStatus.choices, default=SyncRunStatus.RUNNING)
    fetched = models.PositiveIntegerField(default=0)
    created = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    unchanged = models.PositiveIntegerField(default=0)
    quarantined = models.PositiveIntegerField(default=0)
    error = models.CharField(max_length=300, blank=True, default="")
    # A big connection's run is split into shard tasks (integrations/sync_shards.py): how many,
    # and a bit per shard that has paged all its links. 0 shards: one task did the run.
    shards = models.PositiveSmallIntegerField(default=0)
    shards_done = models.PositiveIntegerField(default=0)

    objects = OrgScopedManager()

    class Meta:
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["connection", "-started_at"], name="syncrun_connection_idx")]

    @property
    def duration_seconds(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


class QuarantinedRecord(models.Model):
    """An upstream record that failed parsing, kept with its reason for an operator to read."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="quarantined_records")
    sync_run = models.ForeignKey(SyncRun, null=True, on_delete=models.SET_NULL, related_name="quarantined_records")
    upstream_id = models.CharField(max_length=128, blank=True, default="")
    reason = models.CharField(max_length=500)
    payload = models.JSONField(null=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = OrgScopedManager()

    class Meta:
        ordering = ["-created_at"]


# Upstreams that score PSG recordings (one upload at a time) rather than sync nights.
PSG_PROVIDERS = frozenset({Provider.USLEEP, Provider.GRAND_CHALLENGE})


class PsgStatus(models.TextChoices):
    UPLOADED = "uploaded", "Uploaded (waiting to be sent for scoring)"
    SUBMITTED = "submitted", "Submitted to the scorer"
    SCORING = "scoring", "Being scored"
    COMPLETED = "completed", "Completed (the night is stored)"
    FAILED = "failed", "Failed"


PSG_TERMINAL = frozenset({PsgStatus.COMPLETED, PsgStatus.FAILED})


def psg_upload_to(recording: "PsgRecording", filename: str) -> str:
    # Per organization; named by the recording's uuid, never by the uploaded name (which
    # may carry a patient's name).
    return f"psg/org-{recording.organization_id}/{recording.uuid}.edf"


class PsgRecording(TimeStampedModel):
    """A PSG recording (EDF) an admin uploaded for sleep staging by U-Sleep or Grand Challenge.

    The file lives in Django storage; the header facts are read from it (and validated)
    before anything goes upstream. ``edf_start`` is the EDF start (local clock time) read in
    ``timezone``, the participant's zone at upload. Scoring runs in Celery tasks
    (integrations/psg.py, integrations/tasks.py); ``error`` holds a short code only.
    """

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    participant = models.ForeignKey(Participant, on_delete=models.CASCADE, related_name="psg_recordings")
    # SET_NULL: deleting a connection keeps the history; a scoring in flight then fails.
    connection = models.ForeignKey(
        Connection, null=True, on_delete=models.SET_NULL, related_name="psg_recordings"
    )
    file = models.FileField(upload_to=psg_upload_to, max_length=255)
    original_name = models.CharField(max_length=255, blank=True, default="")
    size = models.PositiveBigIntegerField()
    edf_start = models.DateTimeField()
    edf_duration_seconds = models.FloatField()
    edf_channels = models.JSONField(default=list)
    timezone = models.CharField(max_length=64, validators=[validate_timezone])
    status = models.CharField(max_length=16, choices=PsgStatus.choices, default=PsgStatus.UPLOADED)
    # U-Sleep session name or Grand Challenge job pk; the GC upload pk once the file is up.
    upstream_id = models.CharField(max_length=128, blank=True, default="")
    upstream_upload_id = models.CharField(max_length=128, blank=True, default="")
    # When the upstream copy (U-Sleep session) was deleted; null while it may still exist.
    upstream_deleted_at = models.DateTimeField(null=True, blank=True)
    # A submit attempt holds this claim while it talks to the upstream (conditional UPDATE).
    claimed_until = models.DateTimeField(null=True, blank=True)
    error = models.CharField(max_length=64, blank=True, default="")
    sleep_session = models.ForeignKey(
        SleepSession, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    submitted_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = OrgScopedManager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(size__gt=0), name="psgrecording_size_positive"),
            models.CheckConstraint(
                condition=models.Q(edf_duration_seconds__gt=0), name="psgrecording_duration_positive"
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=PsgStatus.values), name="psgrecording_status_valid"
            ),
        ]
        indexes = [
            # The recordings list: an organization's uploads, newest first.
            models.Index(fields=["organization", "-created_at"], name="psgrecording_org_created_idx"),
        ]

    def __str__(self) -> str:
        return f"psg recording {self.uuid}"
