"""The organization overview (owners and admins): enrollment, nights, scores, trends, sync health."""

from django.shortcuts import render
from django.urls import path

from analytics import dashboard
from integrations import selectors as integration_selectors
from tenants.roles import MANAGERS

from .access import org_page


@org_page(roles=MANAGERS)
def overview(request):
    organization = request.organization
    today = dashboard.organization_today(organization)
    try:
        period = dashboard.date_range_from_params(request.GET, today=today)
    except dashboard.InvalidRange as exc:
        context = {"error": str(exc), "start": request.GET.get("start", ""), "end": request.GET.get("end", ""),
                   "max_days": dashboard.MAX_RANGE_DAYS}
        return render(request, "analytics/overview.html", context, status=400)
    data = dashboard.overview_data(organization, period, today=today)
    context = {
        **data,
        "start": period.start.isoformat(),
        "end": period.end.isoformat(),
        "enrollment": integration_selectors.enrollment_counts(organization),
        "connections": integration_selectors.sync_health(organization),
        "max_days": dashboard.MAX_RANGE_DAYS,
    }
    return render(request, "analytics/overview.html", context)


urlpatterns = [
    path("", overview, name="overview"),
]
