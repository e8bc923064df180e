"""How to exercise each tenant API view: the object a role acts on, and valid payloads.

The route-walking tests look every view class up here; a route whose view has no case
fails those tests, so a new endpoint cannot ship untested.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Callable

from django.apps import apps

from integrations.api import ConnectionViewSet, ParticipantLinkViewSet, QuarantinedRecordViewSet, SyncRunViewSet
from tenants.api.views import DepartmentViewSet, MembershipViewSet, OrganizationViewSet, ParticipantViewSet
from tenants.models import Organization
from tenants.roles import Role

from ...factories import (
    ConnectionFactory,
    DepartmentFactory,
    MembershipFactory,
    ParticipantFactory,
    ParticipantLinkFactory,
    QuarantinedRecordFactory,
    SyncRunFactory,
)


@dataclass
class RouteCase:
    # The object a caller with `role` acts on in its own organization.
    make: Callable[[Any, Role], Any]
    payloads: dict[str, Callable[[Any, Any], dict]] = field(default_factory=dict)

    def payload(self, action: str, world, obj) -> dict | None:
        builder = self.payloads.get(action)
        return builder(world, obj) if builder else None


def _participant_payload(world, obj) -> dict:
    department = DepartmentFactory(organization=world.org)
    return {
        "name": "Renamed Person",
        "email": "renamed@example.test",
        "department": str(department.uuid),
        "attributes": {"site": "Lisbon", "shift": "late"},
        "birth_year": 1990,
        "timezone": "Europe/Lisbon",
        "enrolled_at": "2026-01-05",
        "weekly_email_opt_in": False,
    }


ORG_FIELDS = {
    "name": "Renamed Org",
    "timezone": "UTC",
    "min_group_size": 7,
    "weekly_email_weekday": 2,
    "weekly_email_hour": 9,
}

CASES: dict[type, RouteCase] = {
    OrganizationViewSet: RouteCase(
        make=lambda world, role: world.org,
        payloads={
            "update": lambda w, o: dict(ORG_FIELDS),
            "partial_update": lambda w, o: {"name": "Patched Org"},
        },
    ),
    MembershipViewSet: RouteCase(
        make=lambda world, role: MembershipFactory(organization=world.org, role=Role.HR),
        payloads={
            "create": lambda w, o: {"email": "newcomer@example.test", "role": "hr"},
            "update": lambda w, o: {"role": "admin"},
            "partial_update": lambda w, o: {"role": "member"},
        },
    ),
    DepartmentViewSet: RouteCase(
        make=lambda world, role: DepartmentFactory(organization=world.org),
        payloads={
            "create": lambda w, o: {"name": "Night Shift"},
            "update": lambda w, o: {"name": "Renamed Department"},
            "partial_update": lambda w, o: {"name": "Patched Department"},
        },
    ),
    ParticipantViewSet: RouteCase(
        # A member may only see their own record, so that is what a member acts on.
        make=lambda world, role: world.member_participant
        if role == Role.MEMBER
        else ParticipantFactory(organization=world.org),
        payloads={
            "create": lambda w, o: dict(_participant_payload(w, o), email="new@example.test"),
            "update": _participant_payload,
            "partial_update": lambda w, o: {"name": "Patched Person"},
        },
    ),
}


# A public address literal: the SSRF guard accepts it without any lookup or connection.
PUBLIC_BASE_URL = "https://93.184.216.34"

CASES.update({
    ConnectionViewSet: RouteCase(
        make=lambda world, role: ConnectionFactory(organization=world.org),
        payloads={
            "create": lambda w, o: {"name": "Asleep", "provider": "asleep", "base_url": PUBLIC_BASE_URL,
                                    "credentials": {"api_key": "s3cret"}},
            "update": lambda w, o: {"name": "Renamed", "base_url": PUBLIC_BASE_URL,
                                    "credentials": {"api_key": "n3w"}, "options": {}, "sync_interval_minutes": 120},
            "partial_update": lambda w, o: {"name": "Patched"},
        },
    ),
    ParticipantLinkViewSet: RouteCase(
        make=lambda world, role: ParticipantLinkFactory(connection=ConnectionFactory(organization=world.org)),
        payloads={
            "create": lambda w, o: {
                "connection": str(ConnectionFactory(organization=w.org).uuid),
                "participant": str(ParticipantFactory(organization=w.org).uuid),
                "upstream_user_id": "upstream-new",
            },
        },
    ),
    SyncRunViewSet: RouteCase(make=lambda world, role: SyncRunFactory(connection=ConnectionFactory(organization=world.org))),
    QuarantinedRecordViewSet: RouteCase(
        make=lambda world, role: QuarantinedRecordFactory(connection=ConnectionFactory(organization=world.org))
    ),
})


def case_for(view_class) -> RouteCase:
    if view_class not in CASES:
        raise AssertionError(
            f"{view_class.__name__} has no RouteCase in tests/unit/tenants/route_cases.py: "
            "every tenant route must be covered by the isolation and role-matrix tests."
        )
    return CASES[view_class]


def org_checksum(organization: Organization) -> str:
    """A digest of every row an organization owns, across every tenant-owned model."""
    digest = hashlib.sha256()
    digest.update(repr(Organization.objects.filter(pk=organization.pk).values().first()).encode())
    for model in apps.get_models():
        if any(f.name == "organization" for f in model._meta.concrete_fields):
            rows = model._default_manager.filter(organization_id=organization.pk).order_by("pk").values()
            digest.update(model._meta.label.encode())
            digest.update(repr(list(rows)).encode())
    return digest.hexdigest()
