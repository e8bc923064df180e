import uuid
import zoneinfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone as django_timezone

from .roles import Role
from .scoping import OrgScopedManager


def validate_timezone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(f"'{value}' is not an IANA time zone (e.g. Europe/Berlin).")


def _today():
    return django_timezone.localdate()


class TimeStampedModel(models.Model):
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class Weekday(models.IntegerChoices):
    MONDAY = 0, "Monday"
    TUESDAY = 1, "Tuesday"
    WEDNESDAY = 2, "Wednesday"
    THURSDAY = 3, "Thursday"
    FRIDAY = 4, "Friday"
    SATURDAY = 5, "Saturday"
    SUNDAY = 6, "Sunday"


class OrganizationQuerySet(models.QuerySet):
    def for_org(self, organization) -> "OrganizationQuerySet":
        if organization is None or organization.pk is None:
            return self.none()
        return self.filter(pk=organization.pk)


class Organization(TimeStampedModel):
    """A tenant: an employer, a clinic or a research study."""

    slug = models.SlugField(max_length=50, unique=True)
    name = models.CharField(max_length=200)
    timezone = models.CharField(max_length=64, default="UTC", validators=[validate_timezone])
    # HR never sees a cohort with fewer distinct participants than this.
    min_group_size = models.PositiveSmallIntegerField(
        default=5, validators=[MinValueValidator(3), MaxValueValidator(1000)]
    )
    weekly_email_weekday = models.PositiveSmallIntegerField(
        choices=Weekday.choices, default=Weekday.MONDAY
    )
    weekly_email_hour = models.PositiveSmallIntegerField(
        default=8, validators=[MaxValueValidator(23)]
    )
    # Sleep score weights by component (duration, efficiency, continuity, depth,
    # regularity); empty means the defaults of analytics/engine/scores.py.
    score_weights = models.JSONField(default=dict, blank=True)

    objects = OrganizationQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(min_group_size__gte=3), name="organization_min_group_size_gte_3"
            ),
            models.CheckConstraint(
                condition=models.Q(weekly_email_hour__lte=23), name="organization_email_hour_valid"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Membership(TimeStampedModel):
    """A user's role in one organization. A user may belong to several."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices)

    objects = OrgScopedManager()

    class Meta:
        ordering = ["organization_id", "created_at"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "user"], name="membership_unique_user_per_org"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id}@{self.organization_id}:{self.role}"


class Department(TimeStampedModel):
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="departments")
    name = models.CharField(max_length=120)

    objects = OrgScopedManager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "name"], name="department_unique_name_per_org"),
        ]

    def __str__(self) -> str:
        return self.name


class Participant(TimeStampedModel):
    """A person whose nights the organization analyses (with their consent)."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="participants")
    department = models.ForeignKey(
        Department, null=True, blank=True, on_delete=models.SET_NULL, related_name="participants"
    )
    # Optional login: the participant sees their own nights with the `member` role.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="participant_profiles",
    )
    name = models.CharField(max_length=200)
    email = models.EmailField(blank=True, default="")
    # Free attributes for cohorting (site, age band, shift, study arm...): string values.
    attributes = models.JSONField(default=dict, blank=True)
    birth_year = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1900), MaxValueValidator(2100)]
    )
    # Overrides the organization's zone for this person's nights (travel, remote staff).
    timezone = models.CharField(max_length=64, blank=True, default="", validators=[validate_timezone])
    enrolled_at = models.DateField(default=_today)
    weekly_email_opt_in = models.BooleanField(default=True)

    objects = OrgScopedManager()

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "email"],
                condition=~models.Q(email=""),
                name="participant_unique_email_per_org",
            ),
            models.UniqueConstraint(
                fields=["organization", "user"],
                condition=models.Q(user__isnull=False),
                name="participant_unique_user_per_org",
            ),
        ]
        indexes = [
            # Cohort reports group an organization's participants by department.
            models.Index(fields=["organization", "department"], name="participant_org_dept_idx"),
        ]

    def __str__(self) -> str:
        return f"participant {self.uuid}"

    @property
    def effective_timezone(self) -> str:
        return self.timezone or self.organization.timezone


class AuditEvent(models.Model):
    """Who did what to which tenant data, and when (exports, previews, test emails...).

    Append-only: rows are written by services, never edited; owners read them.
    `target` names the object without personal data (an export's uuid, a report kind).
    """

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="audit_events")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    action = models.CharField(max_length=64)
    target = models.CharField(max_length=200, blank=True, default="")
    params = models.JSONField(default=dict, blank=True)
    at = models.DateTimeField(default=django_timezone.now, db_index=True)

    objects = OrgScopedManager()

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["organization", "-at"], name="auditevent_org_at_idx")]

    def __str__(self) -> str:
        return f"{self.action} {self.target} by {self.actor_id} at {self.at:%Y-%m-%d %H:%M}"
