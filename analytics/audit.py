"""Audit trail of access to tenant data (exports requested and downloaded...).

Rows are appended by services, never edited; owners read them on /o/<org>/audit/ and at
``GET /api/v1/orgs/{org}/audit-events/``. ``target`` and ``params`` name objects and report
parameters only, never a participant.
"""

from __future__ import annotations

from tenants.models import AuditEvent, Organization

EXPORT_REQUESTED = "export.requested"
EXPORT_DOWNLOADED = "export.downloaded"


def audit_record(
    *, organization: Organization, actor, action: str, target: str = "", params: dict | None = None
) -> AuditEvent:
    """Append one audit event (``actor`` may be None for the system)."""
    return AuditEvent.objects.create(
        organization=organization,
        actor=actor if actor is not None and actor.is_authenticated else None,
        action=action,
        target=target[:200],
        params=params or {},
    )


def audit_events_for(organization: Organization):
    """The organization's audit trail, newest first, with actors joined."""
    return AuditEvent.objects.for_org(organization).select_related("actor").order_by("-at", "-id")
