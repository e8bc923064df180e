"""Where each person lands and which links the top bar shows, by role.

owner/admin: Overview, Participants, Reports, Emails preview, and the Django admin when the
login is staff; hr: Reports only (aggregates); member: their own participant page.
Other features' pages are linked by path, so this module needs none of their code.
"""

from __future__ import annotations

from dataclasses import dataclass

from tenants.models import Membership, Participant
from tenants.roles import MANAGERS, Role


@dataclass(frozen=True)
class Place:
    slug: str
    name: str
    role: str
    role_label: str
    landing: str | None  # None: nothing to open yet (a member without a participant record)


def landing_url(slug: str, role: str, participant_uuid=None) -> str | None:
    if role in MANAGERS:
        return f"/o/{slug}/"
    if role == Role.HR:
        return f"/o/{slug}/reports/"
    if participant_uuid is not None:
        return f"/o/{slug}/participants/{participant_uuid}/"
    return None


def places_for(user) -> list[Place]:
    """Every organization the user belongs to, with their landing page. Two queries."""
    if not user.is_authenticated:
        return []
    memberships = list(
        Membership.objects.filter(user=user).select_related("organization").order_by("organization__name", "pk")
    )
    own = dict(Participant.objects.filter(user=user).values_list("organization_id", "uuid"))
    return [
        Place(
            slug=m.organization.slug,
            name=m.organization.name,
            role=m.role,
            role_label=m.get_role_display(),
            landing=landing_url(m.organization.slug, m.role, own.get(m.organization_id)),
        )
        for m in memberships
    ]


def nav_links(slug: str, role: str, *, own_page: str | None, is_staff: bool) -> list[tuple[str, str, str]]:
    """(key, label, url) of the top bar's links for ``role`` in organization ``slug``."""
    base = f"/o/{slug}/"
    if role in MANAGERS:
        links = [
            ("overview", "Overview", base),
            ("participants", "Participants", f"{base}participants/"),
            ("reports", "Reports", f"{base}reports/"),
            ("emails", "Emails preview", f"{base}emails/"),
        ]
        if is_staff:
            links.append(("admin", "Admin", "/admin/"))
        return links
    if role == Role.HR:
        return [("reports", "Reports", f"{base}reports/")]
    return [("me", "My sleep", own_page)] if own_page else []
