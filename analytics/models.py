"""The sleep store: canonical nights and the metrics computed from them."""

import uuid

import numpy as np
from django.conf import settings
from django.db import models

from tenants.models import Organization, Participant, validate_timezone
from tenants.scoping import OrgScopedManager

from .storage import exports_storage

# Bump when a metric definition changes; `python manage.py recompute_metrics` rebuilds
# rows computed with an older version. 2: a night's own bedtime counts its seconds in the
# timing-regularity score, as the stored history always did (scores no longer depend on
# how nights were batched); a session moved to another night date re-settles the old one.
METRICS_VERSION = 2


class Provider(models.TextChoices):
    ASLEEP = "asleep", "Asleep"
    BEDDIT = "beddit", "Beddit"
    USLEEP = "usleep", "U-Sleep (PSG)"
    GRAND_CHALLENGE = "grand_challenge", "Grand Challenge (PSG)"
    IMPORT = "import", "Imported file"


class Stage(models.IntegerChoices):
    """Canonical hypnogram codes (shared/design.md): one int8 per epoch."""

    NO_DATA = -1, "No data / artefact"
    WAKE = 0, "Wake"
    N1 = 1, "N1"
    N2 = 2, "N2"
    N3 = 3, "N3"
    REM = 4, "REM"
    LIGHT = 5, "Light (N1 or N2)"


class SleepSession(models.Model):
    """One sleep as an upstream reported it, in the canonical encoding.

    ``stages`` holds one signed byte per epoch (about 1 KB a night), not JSON. Unique per
    (participant, provider, upstream_id) so that re-running a sync updates, never duplicates.
    """

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    participant = models.ForeignKey(Participant, on_delete=models.CASCADE, related_name="sleep_sessions")
    provider = models.CharField(max_length=32, choices=Provider.choices)
    upstream_id = models.CharField(max_length=128)
    start = models.DateTimeField()
    end = models.DateTimeField()
    timezone = models.CharField(max_length=64, validators=[validate_timezone])
    epoch_seconds = models.PositiveSmallIntegerField(default=30)
    stages = models.BinaryField()
    upstream_stats = models.JSONField(default=dict, blank=True)
    upstream_updated_at = models.DateTimeField(null=True, blank=True)
    # Hash of the canonical content: a re-sync of an unchanged night writes nothing.
    content_hash = models.CharField(max_length=80, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = OrgScopedManager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["participant", "provider", "upstream_id"], name="sleepsession_unique_upstream"
            ),
            models.CheckConstraint(condition=models.Q(end__gt=models.F("start")), name="sleepsession_end_after_start"),
            models.CheckConstraint(condition=models.Q(epoch_seconds__gt=0), name="sleepsession_epoch_positive"),
        ]
        indexes = [
            # Per-organization time-range scans (dashboards, recompute).
            models.Index(fields=["organization", "start"], name="sleepsession_org_start_idx"),
        ]

    def __str__(self) -> str:
        return f"session {self.uuid}"

    @property
    def hypnogram(self) -> np.ndarray:
        return np.frombuffer(bytes(self.stages), dtype=np.int8)


class NightlyMetrics(models.Model):
    """Per-night metrics of one SleepSession (shared/science.md §1), one row per session.

    Minutes unless the name says otherwise; NULL where a metric is undefined (e.g. sleep
    onset latency of a night without sleep). Clock times are local to the participant.
    """

    session = models.OneToOneField(
        SleepSession, on_delete=models.CASCADE, primary_key=True, related_name="metrics"
    )
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    participant = models.ForeignKey(Participant, on_delete=models.CASCADE, related_name="nightly_metrics")
    # The wake-up date in the participant's time zone (analytics/engine/nights.py).
    night_date = models.DateField()
    is_nap = models.BooleanField(default=False)
    is_main_sleep = models.BooleanField(default=True)

    tib_min = models.FloatField()
    spt_min = models.FloatField()
    tst_min = models.FloatField()
    waso_min = models.FloatField(null=True)
    se_pct = models.FloatField()
    sme_pct = models.FloatField(null=True)
    sol_min = models.FloatField(null=True)
    sol_persistent_min = models.FloatField(null=True)
    lat_n1_min = models.FloatField(null=True)
    lat_n2_min = models.FloatField(null=True)
    lat_n3_min = models.FloatField(null=True)
    lat_rem_min = models.FloatField(null=True)
    rem_latency_min = models.FloatField(null=True)  # AASM: from sleep onset
    wake_min = models.FloatField()
    n1_min = models.FloatField()
    n2_min = models.FloatField()
    n3_min = models.FloatField()
    rem_min = models.FloatField()
    lt_min = models.FloatField()  # wearable "light" (N1 or N2 unknown)
    light_min = models.FloatField()  # N1 + N2 + light
    deep_min = models.FloatField()  # N3
    nrem_min = models.FloatField()
    nodata_min = models.FloatField()
    n1_pct = models.FloatField(null=True)
    n2_pct = models.FloatField(null=True)
    n3_pct = models.FloatField(null=True)
    rem_pct = models.FloatField(null=True)
    light_pct = models.FloatField(null=True)
    deep_pct = models.FloatField(null=True)
    nrem_pct = models.FloatField(null=True)
    awakenings = models.PositiveIntegerField(null=True)
    awakenings_5min = models.PositiveIntegerField(null=True)
    fragmentation_index = models.FloatField(null=True)  # sleep->wake transitions per hour of TST
    bedtime_local = models.TimeField()
    sleep_onset_local = models.TimeField(null=True)
    midsleep_local = models.TimeField(null=True)
    wake_time_local = models.TimeField()

    score = models.FloatField(null=True)
    score_duration = models.FloatField(null=True)
    score_efficiency = models.FloatField(null=True)
    score_continuity = models.FloatField(null=True)
    score_depth = models.FloatField(null=True)
    score_regularity = models.FloatField(null=True)

    metrics_version = models.PositiveSmallIntegerField(default=METRICS_VERSION)
    computed_at = models.DateTimeField(auto_now=True)

    objects = OrgScopedManager()

    class Meta:
        verbose_name_plural = "nightly metrics"
        indexes = [
            # Cohort reports and dashboards: an organization's nights in a date range.
            models.Index(fields=["organization", "night_date"], name="nightly_org_date_idx"),
            # Participant pages and weekly summaries: one person's nights in a range.
            models.Index(fields=["participant", "night_date"], name="nightly_participant_date_idx"),
        ]
        constraints = [
            models.CheckConstraint(condition=models.Q(tst_min__lte=models.F("tib_min")), name="nightly_tst_le_tib"),
        ]


class UpstreamAverageStats(models.Model):
    """The upstream's own averages for a participant over a period (e.g. Asleep average-stats).

    Kept as snapshots so pages can show the upstream's figures beside ours; a later pull for
    the same period replaces the earlier one.
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    participant = models.ForeignKey(Participant, on_delete=models.CASCADE, related_name="upstream_average_stats")
    provider = models.CharField(max_length=32, choices=Provider.choices)
    start_date = models.DateField()
    end_date = models.DateField()
    stats = models.JSONField(null=True)  # the upstream's values as it sent them (None: no sleep)
    peculiarities = models.JSONField(default=list, blank=True)
    nights = models.PositiveIntegerField(default=0)  # sessions the upstream averaged
    fetched_at = models.DateTimeField(auto_now=True)

    objects = OrgScopedManager()

    class Meta:
        verbose_name_plural = "upstream average stats"
        constraints = [
            models.UniqueConstraint(
                fields=["participant", "provider", "start_date", "end_date"], name="averagestats_unique_period"
            ),
        ]


class Export(models.Model):
    """An asynchronous report export (cohort report as CSV/XLSX/printable HTML).

    A Celery job fills `file` and moves `status` to done; the file is deleted after
    `expires_at` (settings.EXPORT_RETENTION).
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"
        EXPIRED = "expired"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    kind = models.CharField(max_length=32)  # e.g. "cohort"
    format = models.CharField(max_length=8)  # csv | xlsx | html
    params = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    progress = models.PositiveSmallIntegerField(default=0)  # 0..100
    file = models.FileField(upload_to="exports/%Y/%m/", storage=exports_storage, blank=True, default="")
    error = models.CharField(max_length=500, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    objects = OrgScopedManager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["organization", "-created_at"], name="export_org_created_idx")]

    def __str__(self) -> str:
        return f"export {self.uuid} ({self.kind}.{self.format}, {self.status})"


class WeeklyDigest(models.Model):
    """One weekly email per person per ISO week: the row is claimed before sending.

    Exactly one of `participant` (their own summary) or `membership` (an admin's
    organization digest) is set; the unique constraints make a second claim fail.
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    participant = models.ForeignKey(
        Participant, null=True, blank=True, on_delete=models.CASCADE, related_name="weekly_digests"
    )
    membership = models.ForeignKey(
        "tenants.Membership", null=True, blank=True, on_delete=models.CASCADE, related_name="weekly_digests"
    )
    iso_year = models.PositiveSmallIntegerField()
    iso_week = models.PositiveSmallIntegerField()
    claimed_at = models.DateTimeField(auto_now_add=True)
    # Recovery points (analytics/email_tasks.py): the claim's owner (Celery task id) and a
    # fence counter bumped by every (re)claim; `sending_at` is committed just before the
    # message goes to the SMTP server: set without `sent_at`, the outcome is unknown and
    # the email is never sent again (no duplicates).
    claim_token = models.CharField(max_length=64, blank=True, default="")
    attempts = models.PositiveSmallIntegerField(default=1)
    sending_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    # Last failure as a short code ("transient:421", "refused"), never an address.
    error = models.CharField(max_length=64, blank=True, default="")

    objects = OrgScopedManager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["participant", "iso_year", "iso_week"],
                condition=models.Q(participant__isnull=False),
                name="weeklydigest_once_per_participant_week",
            ),
            models.UniqueConstraint(
                fields=["membership", "iso_year", "iso_week"],
                condition=models.Q(membership__isnull=False),
                name="weeklydigest_once_per_admin_week",
            ),
            models.CheckConstraint(
                condition=models.Q(participant__isnull=False, membership__isnull=True)
                | models.Q(participant__isnull=True, membership__isnull=False),
                name="weeklydigest_one_recipient",
            ),
        ]

    def __str__(self) -> str:
        return f"weekly digest {self.iso_year}-W{self.iso_week:02d}"
