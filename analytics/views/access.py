"""The one way a dashboard page resolves its organization and checks the caller's role.

``/o/<org>/...`` pages are wrapped in ``org_page(roles=...)``: not logged in -> login page;
not a member of ``org`` -> 404 (a foreign organization looks like a missing one); a role
outside ``roles`` -> 403. The view receives the request with ``request.organization`` and
``request.membership`` set, never an organization id from the client.
"""

from __future__ import annotations

from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404

from tenants.models import Membership
from tenants.roles import Role


def membership_for(user, slug: str) -> Membership | None:
    if not user.is_authenticated:
        return None
    return (
        Membership.objects.select_related("organization")
        .filter(organization__slug=slug, user=user)
        .first()
    )


def org_page(*, roles: frozenset[Role]):
    """Decorate a page view taking ``(request, org, ...)``; ``roles`` is its role matrix."""

    def decorator(view):
        @login_required
        @wraps(view)
        def wrapper(request, org, *args, **kwargs):
            membership = membership_for(request.user, org)
            if membership is None:
                raise Http404("No such organization.")
            if membership.role not in roles:
                raise PermissionDenied(f"Your role ({membership.get_role_display()}) may not open this page.")
            request.organization = membership.organization
            request.membership = membership
            return view(request, *args, **kwargs)

        wrapper.page_roles = frozenset(roles)
        return wrapper

    return decorator
