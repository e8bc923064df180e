"""How to exercise each tenant API view: the object a role acts on, and valid payloads.

The route-walking tests look every view class up here; a route whose view has no case
fails those tests, so a new endpoint cannot ship untested.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Callable

from django.apps import apps

from integrations.api import ConnectionViewSet, ParticipantLinkViewSet, QuarantinedRecordViewSet, SyncRunViewSet
from integrations.api_psg import PsgRecordingViewSet
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
    # Actions whose valid request is a multipart upload: the files it carries (the payload
    # rides along as form fields). Without them a request is JSON.
    uploads: dict[str, Callable[[Any, Any], dict]] = field(default_factory=dict)

    def payload(self, action: str, world, obj) -> dict | None:
        builder = self.payloads.get(action)
        return builder(world, obj) if builder else None

    def send(self, client, method: str, path: str, action: str, world, obj, payload: dict | None):
        """The request a well-behaved client sends for ``action``: JSON, or a multipart upload."""
        files = self.uploads.get(action)
        if files is None:
            body = json.dumps(payload) if payload is not None else ""
            return client.generic(method.upper(), path, body, content_type="application/json")
        return getattr(client, method.lower())(path, {**(payload or {}), **files(world, obj)}, format="multipart")


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


def _psg_connection(organization):
    return ConnectionFactory(organization=organization, provider="usleep", credentials={"token": "t"})


def _psg_recording(organization):
    from datetime import UTC, datetime

    from integrations.models import PsgRecording

    # No file is written: the row names one, and deleting a missing file is a no-op.
    return PsgRecording.objects.create(
        organization=organization, participant=ParticipantFactory(organization=organization),
        connection=_psg_connection(organization), file=f"psg/org-{organization.pk}/missing.edf",
        size=1024, edf_start=datetime(2026, 1, 1, 22, tzinfo=UTC), edf_duration_seconds=60.0,
        edf_channels=["EEG C3-M2"], timezone="Europe/Berlin",
    )


def _tiny_edf():
    from django.core.files.uploadedfile import SimpleUploadedFile

    from integrations.simulators.edf import make_edf

    return SimpleUploadedFile("night.edf", make_edf(60), content_type="application/octet-stream")


CASES.update({
    PsgRecordingViewSet: RouteCase(
        make=lambda world, role: _psg_recording(world.org),
        # The bad-input tests post these as JSON, which a multipart-only create refuses (400).
        payloads={
            "create": lambda w, o: {
                "participant": str(ParticipantFactory(organization=w.org).uuid),
                "connection": str(_psg_connection(w.org).uuid),
            },
        },
        uploads={"create": lambda w, o: {"file": _tiny_edf()}},
    ),
})


def _stored_night(world, role):
    """A scored night of the participant a caller with ``role`` may look at (the member's own)."""
    from datetime import UTC, datetime

    import numpy as np

    from analytics.models import SleepSession
    from analytics.services import sleep_sessions_upsert
    from ..analytics.nights import Record

    participant = world.member_participant if role == Role.MEMBER else ParticipantFactory(organization=world.org)
    stages = np.full(960, 2, dtype=np.int8)
    stages[:20] = 0
    record = Record.night(f"route-{participant.pk}", datetime(2026, 3, 1, 22, tzinfo=UTC), stages)
    sleep_sessions_upsert(organization=world.org, records=[(participant.pk, record, f"h-{participant.pk}")])
    return SleepSession.objects.get(participant=participant, upstream_id=record.upstream_id)


def _analytics_cases() -> dict:
    from analytics.api import (
        CohortReportViewSet,
        NightViewSet,
        TrendReportViewSet,
        WeeklyParticipantReportViewSet,
        WeeklyReportViewSet,
    )

    # Report routes have no id in their path: the stored night only gives them rows to answer with.
    return {
        view: RouteCase(make=_stored_night)
        for view in (NightViewSet, CohortReportViewSet, TrendReportViewSet, WeeklyParticipantReportViewSet,
                     WeeklyReportViewSet)
    }


CASES.update(_analytics_cases())


def _done_export(world, role):
    """A built cohort export of the organization, its file in the exports storage."""
    from datetime import timedelta

    from django.core.files.base import ContentFile
    from django.utils import timezone

    from analytics.models import Export

    export = Export(organization=world.org, kind="cohort", format="csv", status=Export.Status.DONE, progress=100,
                    params={"start": "2026-03-01", "end": "2026-03-14", "group_by": ["department"]},
                    finished_at=timezone.now(), expires_at=timezone.now() + timedelta(days=7))
    export.file.save(f"{export.uuid}.csv", ContentFile(b"level,participants\r\n0,\r\n"), save=False)
    export.save()
    return export


def _export_cases() -> dict:
    from analytics.api_exports import AuditEventViewSet, ExportViewSet
    from tenants.models import AuditEvent

    return {
        ExportViewSet: RouteCase(
            make=_done_export,
            payloads={"create": lambda w, o: {"kind": "cohort", "format": "csv", "start": "2026-03-01",
                                              "end": "2026-03-14", "group_by": "department"}},
        ),
        AuditEventViewSet: RouteCase(
            make=lambda world, role: AuditEvent.objects.create(
                organization=world.org, actor=world.users[Role.OWNER], action="export.requested",
                target="export:route-case", params={"format": "csv"},
            )
        ),
    }


CASES.update(_export_cases())


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
