from django.contrib.auth import get_user_model
from rest_framework import serializers

from tenants.models import Department, Membership, Organization, Participant
from tenants.roles import Role

from .base import OrgScopedSlugRelatedField, StrictModelSerializer, StrictSerializer

User = get_user_model()


class OrganizationSerializer(StrictModelSerializer):
    role = serializers.SerializerMethodField()

    class Meta:
        model = Organization
        fields = [
            "slug",
            "name",
            "timezone",
            "min_group_size",
            "weekly_email_weekday",
            "weekly_email_hour",
            "score_weights",
            "role",
            "created_at",
        ]
        read_only_fields = ["role", "created_at"]

    score_weights = serializers.DictField(child=serializers.FloatField(), required=False)

    def validate_score_weights(self, value):
        from analytics.engine.scores import validate_weights

        if value:
            try:
                validate_weights(value)
            except ValueError as exc:
                raise serializers.ValidationError(str(exc)) from None
        return value

    def get_role(self, organization) -> str | None:
        membership = self.context.get("membership")
        if membership is not None and membership.organization_id == organization.pk:
            return membership.role
        roles = self.context.get("roles_by_org", {})
        return roles.get(organization.pk)


class OrganizationUpdateSerializer(OrganizationSerializer):
    class Meta(OrganizationSerializer.Meta):
        # The slug is the organization's address in every URL and export: fixed once created.
        read_only_fields = ["slug", "role", "created_at"]


class MembershipSerializer(StrictModelSerializer):
    email = serializers.EmailField(source="user.email")
    name = serializers.SerializerMethodField()

    class Meta:
        model = Membership
        fields = ["uuid", "email", "name", "role", "created_at"]
        read_only_fields = ["uuid", "name", "created_at"]

    def get_name(self, membership) -> str:
        return membership.user.get_full_name()


class MembershipUpdateSerializer(StrictModelSerializer):
    class Meta:
        model = Membership
        fields = ["role"]


class DepartmentSerializer(StrictModelSerializer):
    class Meta:
        model = Department
        fields = ["uuid", "name", "created_at"]
        read_only_fields = ["uuid", "created_at"]


class AttributesField(serializers.DictField):
    """Cohort attributes: a flat map of short strings (site, age band, shift...)."""

    MAX_ATTRIBUTES = 20

    def __init__(self, **kwargs):
        super().__init__(child=serializers.CharField(max_length=100, allow_blank=True), **kwargs)

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if len(value) > self.MAX_ATTRIBUTES:
            raise serializers.ValidationError(f"At most {self.MAX_ATTRIBUTES} attributes.")
        for key in value:
            if not key or len(key) > 50:
                raise serializers.ValidationError("Attribute names must be 1-50 characters.")
        return value


class ParticipantSerializer(StrictModelSerializer):
    department = OrgScopedSlugRelatedField(Department, allow_null=True, required=False)
    attributes = AttributesField(required=False)

    class Meta:
        model = Participant
        fields = [
            "uuid",
            "name",
            "email",
            "department",
            "attributes",
            "birth_year",
            "timezone",
            "enrolled_at",
            "weekly_email_opt_in",
            "created_at",
        ]
        read_only_fields = ["uuid", "created_at"]
        # Uniqueness is checked by the model's constraints in the service (full_clean).
        validators = []


class LoginSerializer(StrictSerializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=256, trim_whitespace=False)


class MembershipCreateSerializer(StrictSerializer):
    email = serializers.EmailField()
    role = serializers.ChoiceField(choices=Role.choices)
