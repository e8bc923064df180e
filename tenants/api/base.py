"""The one mechanism that scopes every tenant API request.

The organization comes only from the URL (``/api/v1/orgs/{org}/...``) joined with the
caller's Membership, resolved once per request. A slug the caller is not a member of is
indistinguishable from one that does not exist: 404. Subclasses cannot override
``get_queryset``/``get_object``/``get_permissions``; they describe their rows with
``scoped_queryset`` and their role matrix with ``role_matrix``, and every id a client sends
is looked up inside ``Model.objects.for_org(self.org)``.
"""

from __future__ import annotations

import uuid

from django.shortcuts import get_object_or_404
from rest_framework import exceptions, permissions, serializers, viewsets

from tenants.models import Membership, Organization
from tenants.roles import Role

ORG_URL_KWARG = "org"
_PROTECTED = ("get_queryset", "get_object", "get_permissions", "initial")


class OrgRolePermission(permissions.BasePermission):
    """Resolve the organization from the URL, then check the action against the role matrix."""

    def has_permission(self, request, view) -> bool:
        if not (request.user and request.user.is_authenticated):
            raise exceptions.NotAuthenticated()
        membership = view.resolve_membership()
        allowed = view.roles_for_action(view.action or request.method.lower())
        if membership.role not in allowed:
            raise exceptions.PermissionDenied(
                f"Your role ({membership.role}) may not {view.action or request.method} here."
            )
        return True


class OrgScopedViewSet(viewsets.GenericViewSet):
    """Base for every tenant-owned API endpoint.

    Class attributes:
      model: the tenant-owned model (has ``objects.for_org``)
      role_matrix: {action: frozenset of Role} - an action absent from it is refused
    """

    model = None
    role_matrix: dict[str, frozenset[Role]] = {}
    lookup_field = "uuid"
    # A singleton view (the organization itself) has no id in its URL: its object is the
    # one row of its scoped queryset.
    singleton = False
    lookup_value_regex = "[0-9a-fA-F-]{36}"
    permission_classes = [OrgRolePermission]

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        overridden = [name for name in _PROTECTED if name in cls.__dict__]
        if overridden:
            raise TypeError(
                f"{cls.__name__} overrides {overridden}: implement scoped_queryset() instead, "
                "so that organization scoping cannot be bypassed."
            )

    # --- resolution -------------------------------------------------------------------
    def resolve_membership(self) -> Membership:
        if getattr(self, "_membership", None) is None:
            slug = self.kwargs.get(ORG_URL_KWARG)
            membership = (
                Membership.objects.select_related("organization")
                .filter(organization__slug=slug, user=self.request.user)
                .first()
            )
            if membership is None:
                raise exceptions.NotFound()
            self._membership = membership
        return self._membership

    @property
    def membership(self) -> Membership:
        return self.resolve_membership()

    @property
    def org(self) -> Organization:
        return self.resolve_membership().organization

    def roles_for_action(self, action: str) -> frozenset[Role]:
        return self.role_matrix.get(action, frozenset())

    # --- protected plumbing --------------------------------------------------------------
    def get_permissions(self):
        return [permission() for permission in self.permission_classes]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation has no request org
            return self.model.objects.none()
        return self.scoped_queryset(self.model.objects.for_org(self.org))

    def get_object(self):
        queryset = self.filter_queryset(self.get_queryset())
        if self.singleton:
            obj = get_object_or_404(queryset)
            self.check_object_permissions(self.request, obj)
            return obj
        value = self.kwargs.get(self.lookup_url_kwarg or self.lookup_field)
        try:
            uuid.UUID(str(value))
        except ValueError:
            raise exceptions.NotFound() from None
        obj = get_object_or_404(queryset, **{self.lookup_field: value})
        self.check_object_permissions(self.request, obj)
        return obj

    # --- for subclasses ------------------------------------------------------------------
    def scoped_queryset(self, queryset):
        """Narrow the organization's rows further (role-specific rows, select_related)."""
        return queryset

    def get_serializer_context(self):
        context = super().get_serializer_context()
        if not getattr(self, "swagger_fake_view", False) and self.request is not None:
            try:
                context["organization"] = self.org
                context["membership"] = self.membership
            except exceptions.APIException:
                pass
        return context

    def perform_create(self, serializer):
        serializer.save(organization=self.org)


class StrictSerializer(serializers.Serializer):
    """Refuses unknown fields instead of silently ignoring them (mass assignment, typos)."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


class StrictModelSerializer(StrictSerializer, serializers.ModelSerializer):
    pass


class OrgScopedSlugRelatedField(serializers.SlugRelatedField):
    """A related object named by its uuid, looked up only inside the request's organization."""

    def __init__(self, model, **kwargs):
        self.related_model = model
        kwargs.setdefault("slug_field", "uuid")
        kwargs.setdefault("queryset", model.objects.none())
        super().__init__(**kwargs)

    def get_queryset(self):
        organization = self.context.get("organization")
        return self.related_model.objects.for_org(organization)  # none() without an org

    def to_internal_value(self, data):
        try:
            uuid.UUID(str(data))
        except ValueError:
            self.fail("invalid")
        return super().to_internal_value(data)
