"""How to open each organization page of the dashboard: the kwargs of its URL, per route name.

The page walker (test_page_isolation.py) walks ``analytics.views.urls`` and FAILS for any
``/o/<org>/...`` route without an entry here, so a new page cannot ship untested.

To add a page: register its route name (``dashboard:<name>``) below with a ``PageCase``
whose ``kwargs(world)`` returns the URL kwargs *other than* ``org`` for the given World
(tests/conftest.py: one organization, one user per role, ``world.member_participant``).
List in ``object_kwargs`` the kwargs that name an object (uuids): the walker swaps them
for a random uuid and for the same object of another organization, and expects both to
answer alike (404). The walker derives who may open the page from the view's
``page_roles`` (access.org_page), so nothing about roles is repeated here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class PageCase:
    kwargs: Callable[[Any], dict] = lambda world: {}
    # Kwargs naming an object of the organization (swapped for foreign/missing ones).
    object_kwargs: tuple[str, ...] = ()
    # Query string appended to the URL (without "?"), e.g. a valid week.
    query: str = ""
    # What an allowed role gets (a page answering GET with a redirect may say 302).
    ok_status: int = 200
    # Build whatever the page needs to show real content (nights, exports...).
    setup: Callable[[Any], None] | None = None


PAGE_CASES: dict[str, PageCase] = {
    "dashboard:overview": PageCase(),
    "dashboard:participants": PageCase(),
    "dashboard:participant": PageCase(
        kwargs=lambda world: {"participant": world.member_participant.uuid},
        object_kwargs=("participant",),
    ),
}


def _export_of(world):
    """A built export of ``world``'s organization (the same one on every call)."""
    from datetime import timedelta

    from django.core.files.base import ContentFile
    from django.utils import timezone

    from analytics.models import Export

    export = Export.objects.filter(organization=world.org).first()
    if export is None:
        export = Export(organization=world.org, kind="cohort", format="csv", status=Export.Status.DONE,
                        progress=100, params={"start": "2026-03-01", "end": "2026-03-14", "group_by": ["department"]},
                        finished_at=timezone.now(), expires_at=timezone.now() + timedelta(days=7))
        export.file.save(f"{export.uuid}.csv", ContentFile(b"level,participants\r\n0,\r\n"), save=False)
        export.save()
    return export


# Reports and exports (analytics/views/reports.py, audit.py).
PAGE_CASES.update({
    "dashboard:reports": PageCase(query="start=2026-03-01&end=2026-03-14&group1=department"),
    # POST only: a GET by an allowed role is 405, by another role 403.
    "dashboard:export-create": PageCase(ok_status=405),
    "dashboard:export-status": PageCase(kwargs=lambda world: {"export_uuid": _export_of(world).uuid},
                                        object_kwargs=("export_uuid",)),
    "dashboard:export-download": PageCase(kwargs=lambda world: {"export_uuid": _export_of(world).uuid},
                                          object_kwargs=("export_uuid",)),
    "dashboard:audit": PageCase(),
})

# Weekly emails (analytics/views/emails.py).
PAGE_CASES.update({
    "dashboard:emails": PageCase(query="week=2026-W10&q=a"),
    "dashboard:email-preview": PageCase(kwargs=lambda world: {"participant": world.member_participant.uuid},
                                        object_kwargs=("participant",), query="week=2026-W10"),
    "dashboard:email-admin-preview": PageCase(query="week=2026-W10"),
    # POST only: a GET by an allowed role is 405, by another role 403.
    "dashboard:email-test": PageCase(ok_status=405),
})

# PSG upload from the participant page (analytics/views/participants.py).
PAGE_CASES.update({
    # POST only: a GET by an allowed role is 405, by another role 403.
    "dashboard:participant-psg-upload": PageCase(
        kwargs=lambda world: {"participant": world.member_participant.uuid}, ok_status=405,
    ),
})
