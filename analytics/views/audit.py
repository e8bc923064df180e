"""Audit log page (owners): who requested and downloaded which export, and when."""

from django.core.paginator import Paginator
from django.shortcuts import render
from django.urls import path

from analytics.audit import audit_events_for
from tenants.roles import OWNERS

from .access import org_page

EVENTS_PER_PAGE = 50


@org_page(roles=OWNERS)
def audit_log(request):
    paginator = Paginator(audit_events_for(request.organization), EVENTS_PER_PAGE)
    page = paginator.get_page(request.GET.get("page"))
    rows = [{"event": event, "params": _params_text(event.params)} for event in page.object_list]
    return render(request, "analytics/reports/audit.html", {"page": page, "rows": rows})


def _params_text(params) -> str:
    """``format=csv, start=2026-03-01, group_by=department+attr:site`` (the target names the export)."""
    if not isinstance(params, dict):
        return ""
    parts = []
    for key, value in params.items():
        if key == "export":
            continue
        parts.append(f"{key}={'+'.join(map(str, value)) if isinstance(value, list) else value}")
    return ", ".join(parts)


urlpatterns = [
    path("audit/", audit_log, name="audit"),
]
