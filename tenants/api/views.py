"""Tenant API: organizations, members, departments, participants.

Each viewset declares its role matrix; tenants/api/base.py enforces it and the
organization scope. docs: the README's role matrix is generated from these declarations
(`python manage.py role_matrix`).
"""

import django_filters
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status
from rest_framework.response import Response

from tenants import services
from tenants.models import Department, Membership, Organization, Participant
from tenants.roles import AGGREGATE_READERS, ALL_ROLES, MANAGERS, OWNERS, Role

from .base import OrgScopedViewSet
from .serializers import (
    DepartmentSerializer,
    MembershipCreateSerializer,
    MembershipSerializer,
    MembershipUpdateSerializer,
    OrganizationSerializer,
    OrganizationUpdateSerializer,
    ParticipantSerializer,
)

CRUD_FOR_MANAGERS = {
    "create": MANAGERS,
    "update": MANAGERS,
    "partial_update": MANAGERS,
    "destroy": MANAGERS,
}


class OrganizationViewSet(
    mixins.RetrieveModelMixin, mixins.UpdateModelMixin, mixins.DestroyModelMixin, OrgScopedViewSet
):
    """The organization itself: /api/v1/orgs/{org}/."""

    model = Organization
    singleton = True
    serializer_class = OrganizationSerializer
    role_matrix = {
        "retrieve": ALL_ROLES,
        "update": MANAGERS,
        "partial_update": MANAGERS,
        "destroy": OWNERS,
    }
    role_matrix_notes = {"destroy": "deletes every participant, night and report of the organization"}

    def get_serializer_class(self):
        if self.action in ("update", "partial_update"):
            return OrganizationUpdateSerializer
        return OrganizationSerializer

    def perform_update(self, serializer):
        serializer.instance = services.organization_update(
            organization=self.org, **serializer.validated_data
        )

    def perform_destroy(self, instance):
        services.organization_delete(organization=self.org)


class MembershipViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    OrgScopedViewSet,
):
    model = Membership
    role_matrix = {"list": MANAGERS, "retrieve": MANAGERS, **CRUD_FOR_MANAGERS}
    role_matrix_notes = {
        "create": "only an owner may grant the owner role",
        "update": "only an owner may change an owner; the last owner stays",
        "destroy": "only an owner may remove an owner; the last owner stays",
    }
    filterset_fields = ["role"]
    ordering_fields = ["created_at", "role"]

    def scoped_queryset(self, queryset):
        return queryset.select_related("user")

    def get_serializer_class(self):
        if self.action == "create":
            return MembershipCreateSerializer
        if self.action in ("update", "partial_update"):
            return MembershipUpdateSerializer
        return MembershipSerializer

    @extend_schema(request=MembershipCreateSerializer, responses={201: MembershipSerializer})
    def create(self, request, *args, **kwargs):
        serializer = MembershipCreateSerializer(data=request.data, context=self.get_serializer_context())
        serializer.is_valid(raise_exception=True)
        membership = services.membership_create(
            organization=self.org, actor=self.membership, **serializer.validated_data
        )
        return Response(MembershipSerializer(membership).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=MembershipUpdateSerializer, responses={200: MembershipSerializer})
    def update(self, request, *args, **kwargs):
        membership = self.get_object()
        serializer = MembershipUpdateSerializer(
            membership, data=request.data, partial=kwargs.get("partial", False)
        )
        serializer.is_valid(raise_exception=True)
        role = serializer.validated_data.get("role", membership.role)
        membership = services.membership_update(membership=membership, actor=self.membership, role=role)
        return Response(MembershipSerializer(membership).data)

    def perform_destroy(self, instance):
        services.membership_delete(membership=instance, actor=self.membership)


class DepartmentViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    OrgScopedViewSet,
):
    model = Department
    serializer_class = DepartmentSerializer
    role_matrix = {"list": AGGREGATE_READERS, "retrieve": AGGREGATE_READERS, **CRUD_FOR_MANAGERS}
    ordering_fields = ["name", "created_at"]
    search_fields = ["name"]

    def perform_create(self, serializer):
        serializer.instance = services.department_create(
            organization=self.org, **serializer.validated_data
        )

    def perform_update(self, serializer):
        serializer.instance = services.department_update(
            department=serializer.instance, **serializer.validated_data
        )

    def perform_destroy(self, instance):
        services.department_delete(department=instance)


class ParticipantFilter(django_filters.FilterSet):
    department = django_filters.UUIDFilter(field_name="department__uuid")
    name = django_filters.CharFilter(field_name="name", lookup_expr="icontains")
    email = django_filters.CharFilter(field_name="email", lookup_expr="iexact")
    enrolled_after = django_filters.DateFilter(field_name="enrolled_at", lookup_expr="gte")
    enrolled_before = django_filters.DateFilter(field_name="enrolled_at", lookup_expr="lte")
    weekly_email_opt_in = django_filters.BooleanFilter()

    class Meta:
        model = Participant
        fields = ["department", "name", "email", "enrolled_after", "enrolled_before", "weekly_email_opt_in"]


class ParticipantViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    OrgScopedViewSet,
):
    model = Participant
    serializer_class = ParticipantSerializer
    role_matrix = {
        "list": MANAGERS | {Role.MEMBER},
        "retrieve": MANAGERS | {Role.MEMBER},
        **CRUD_FOR_MANAGERS,
    }
    role_matrix_notes = {
        "list": "a member sees only their own participant record",
        "retrieve": "a member sees only their own participant record (404 for others)",
    }
    filterset_class = ParticipantFilter
    ordering_fields = ["name", "enrolled_at", "created_at"]

    def scoped_queryset(self, queryset):
        if self.membership.role == Role.MEMBER:
            queryset = queryset.filter(user=self.request.user)
        return queryset.select_related("department")

    def perform_create(self, serializer):
        serializer.instance = services.participant_enroll(
            organization=self.org, **serializer.validated_data
        )

    def perform_update(self, serializer):
        serializer.instance = services.participant_update(
            participant=serializer.instance, **serializer.validated_data
        )

    def perform_destroy(self, instance):
        services.participant_delete(participant=instance)
