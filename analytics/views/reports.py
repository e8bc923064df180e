"""Reports page (cohort report, charts, exports) for owners, admins and HR.

``/o/<org>/reports/``: pick a period and up to two groupings; the cohort report (small
groups withheld), its trend against the previous period and charts. Exports are Celery
jobs: ``POST reports/exports/`` creates one, ``exports/<uuid>/status/`` is polled by
static/analytics/js/reports.js, ``exports/<uuid>/download/`` streams the file (audited).
HR sees aggregates only: no participant name, email or id reaches these pages.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.http import HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse
from django.views.decorators.http import require_GET, require_POST
from rest_framework import serializers

from analytics import report_pages
from analytics.export_services import FORMATS, KIND_COHORT, ExportNotReady, export_http_response
from analytics.export_services import export_open_for_download, export_request
from analytics.models import Export
from analytics.reports import (
    cohort_chart_data,
    cohort_params_validate,
    cohort_report_build,
    first_error,
    grouping_label,
    participant_attribute_names,
)
from tenants.roles import AGGREGATE_READERS

from . import audit
from .access import org_page

NO_SECOND_GROUPING = ""


class GroupingError(ValueError):
    pass


def _grouping_choices(organization) -> list[tuple[str, str]]:
    names = participant_attribute_names(organization)
    return [("department", "Department")] + [(f"attr:{name}", name) for name in names]


def _group_by(data, choices) -> str:
    """``group_by`` from the form's two selects (or a ``group_by`` query parameter)."""
    allowed = {value for value, _ in choices}
    first = data.get("group1") or ""
    second = data.get("group2") or NO_SECOND_GROUPING
    if not first:  # the export form (and a bookmarked link) send the API's group_by
        specs = [part.strip() for part in (data.get("group_by") or "department").split(",")]
        if len(specs) > 2:
            raise GroupingError("Choose at most two groupings.")
        first, second = specs[0], specs[1] if len(specs) == 2 else NO_SECOND_GROUPING
    for spec in (first, second):
        if spec and spec not in allowed:
            raise GroupingError(
                f"There is no grouping {grouping_label(spec)!r} in this organization's data: "
                "choose the department or one of the participant attributes listed."
            )
    if second == first:
        raise GroupingError("Choose two different groupings, or none as the second.")
    return f"{first},{second}" if second else first


def _form_values(data, group_by: str) -> dict:
    specs = [part.strip() for part in group_by.split(",")]
    return {"start": data.get("start", ""), "end": data.get("end", ""), "group1": specs[0],
            "group2": specs[1] if len(specs) > 1 else NO_SECOND_GROUPING}


def _validated_params(organization, data, choices):
    group_by = _group_by(data, choices)
    raw = {"start": data.get("start"), "end": data.get("end"), "group_by": group_by}
    return cohort_params_validate(organization=organization, data=raw), group_by


@org_page(roles=AGGREGATE_READERS)
@require_GET
def reports_page(request):
    organization = request.organization
    choices = _grouping_choices(organization)
    context = {"choices": choices, "formats": FORMATS, "min_group_size": organization.min_group_size,
               "exports": report_pages.export_rows(organization)}
    try:
        params, group_by = _validated_params(organization, request.GET, choices)
    except GroupingError as exc:
        context.update(error=str(exc), form=_form_values(request.GET, request.GET.get("group1") or "department"))
        return render(request, "analytics/reports/cohort.html", context, status=400)
    except serializers.ValidationError as exc:
        group_by = request.GET.get("group_by") or request.GET.get("group1") or "department"
        context.update(error=first_error(exc), form=_form_values(request.GET, group_by))
        return render(request, "analytics/reports/cohort.html", context, status=400)
    payload = cohort_report_build(organization=organization, params=params)
    context.update(
        form={**_form_values(request.GET, group_by), "start": params.start.isoformat(), "end": params.end.isoformat()},
        params=params.as_query(),
        payload=payload,
        table=report_pages.report_table(payload),
        chart=cohort_chart_data(payload),
    )
    return render(request, "analytics/reports/cohort.html", context)


def _wants_json(request) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _export_status(organization, export: Export) -> dict:
    slug = organization.slug
    return {
        "uuid": str(export.uuid),
        "status": export.status,
        "progress": export.progress,
        "error": export.error,
        "format": FORMATS[export.format].label,
        "status_url": reverse("dashboard:export-status", args=[slug, export.uuid]),
        "download_url": reverse("dashboard:export-download", args=[slug, export.uuid])
        if export.status == Export.Status.DONE else None,
    }


@org_page(roles=AGGREGATE_READERS)
@require_POST
def export_create(request):
    """Create an export of the report the form shows; JSON for the page's script, else redirect."""
    organization = request.organization
    choices = _grouping_choices(organization)
    file_format = request.POST.get("format", "")
    back = reverse("dashboard:reports", args=[organization.slug])
    try:
        if file_format not in FORMATS:
            raise GroupingError(f"Choose an export format: {', '.join(FORMATS)}.")
        params, group_by = _validated_params(organization, request.POST, choices)
    except (GroupingError, serializers.ValidationError) as exc:
        message = str(exc) if isinstance(exc, GroupingError) else first_error(exc)
        if _wants_json(request):
            return JsonResponse({"detail": message, "code": "invalid"}, status=400)
        messages.error(request, f"No export was created: {message}")
        return redirect(back)
    export = export_request(organization=organization, user=request.user, kind=KIND_COHORT,
                            file_format=file_format, params=params)
    if _wants_json(request):
        return JsonResponse(_export_status(organization, export), status=202)
    messages.success(request, "Your export is being prepared; it appears below when ready.")
    query = urlencode({"start": params.start.isoformat(), "end": params.end.isoformat(), "group_by": group_by})
    return redirect(f"{back}?{query}#exports")


@org_page(roles=AGGREGATE_READERS)
@require_GET
def export_status(request, export_uuid):
    export = get_object_or_404(Export.objects.for_org(request.organization), uuid=export_uuid)
    response = JsonResponse(_export_status(request.organization, export))
    response["Cache-Control"] = "no-store"
    return response


@org_page(roles=AGGREGATE_READERS)
@require_GET
def export_download(request, export_uuid):
    export = get_object_or_404(
        Export.objects.for_org(request.organization).select_related("organization"), uuid=export_uuid
    )
    try:
        handle = export_open_for_download(export=export, user=request.user)
    except ExportNotReady:
        if export.status == Export.Status.EXPIRED:
            return HttpResponse("This export has expired; request a new one from the reports page.",
                                status=410, content_type="text/plain")
        return HttpResponse(f"This export is {export.status}, not ready for download.", status=409,
                            content_type="text/plain")
    return export_http_response(export=export, organization=request.organization, handle=handle)


urlpatterns = [
    path("reports/", reports_page, name="reports"),
    path("reports/exports/", export_create, name="export-create"),
    path("exports/<uuid:export_uuid>/status/", export_status, name="export-status"),
    path("exports/<uuid:export_uuid>/download/", export_download, name="export-download"),
    *audit.urlpatterns,
]
