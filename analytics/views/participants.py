"""Participant pages: the searchable list (owners, admins) and one person's nights.

A member opens only their own page; any other uuid, existing or not, answers 404 the same
way (no existence oracle), as in the API.
"""


from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import path
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_POST

from analytics import dashboard, participant_pages
from integrations import psg
from integrations import selectors as integration_selectors
from integrations.api_psg import MULTIPART_OVERHEAD_BYTES, UploadLimitHandler
from tenants.api.errors import ApplicationError, PayloadTooLarge
from tenants.roles import MANAGERS, Role

from .access import org_page


@org_page(roles=MANAGERS)
def participant_list(request):
    organization = request.organization
    query = request.GET.get("q", "")
    page = participant_pages.participant_list_page(
        organization, query=query, page_number=request.GET.get("page"),
        today=dashboard.organization_today(organization),
    )
    return render(request, "analytics/participants/list.html", {
        "page": page, "q": query.strip()[:participant_pages.SEARCH_MAX_LENGTH],
        "recent_days": participant_pages.RECENT_DAYS,
    })


@org_page(roles=MANAGERS | {Role.MEMBER})
def participant_detail(request, participant):
    organization = request.organization
    participant_obj = participant_pages.participant_for(organization, request.membership, request.user, participant)
    if participant_obj is None:
        raise Http404("No such participant.")
    today = dashboard.organization_today(organization)
    context = {"participant": participant_obj, "is_self": participant_obj.user_id == request.user.pk}
    try:
        session = participant_pages.chosen_session(participant_obj, request.GET.get("night", ""))
        iso_year, iso_week = participant_pages.iso_week_from_param(request.GET.get("week", ""), today=today)
    except participant_pages.BadParameter as exc:
        return render(request, "analytics/participants/detail.html", {**context, "error": str(exc)}, status=400)
    if request.GET.get("night") and session is None:
        raise Http404("No such night.")
    nights = participant_pages.recent_nights(participant_obj, end=today)
    context.update({
        "session": session,
        "night_of": participant_pages.night_of(session) if session else None,
        "nights": nights,
        "recent_days": participant_pages.RECENT_DAYS,
        "weekly": participant_pages.weekly_summary(participant_obj, iso_year=iso_year, iso_week=iso_week),
        "upstream": participant_pages.upstream_comparison(participant_obj),
        "charts": {
            "recent": participant_pages.recent_chart(nights),
            "hypnogram": participant_pages.hypnogram_chart(session) if session else None,
        },
        "stage_minutes": participant_pages.stage_minutes(session) if session else [],
    })
    if request.membership.role in MANAGERS:
        context["psg_recordings"] = integration_selectors.psg_recordings_of(participant_obj)
        context["psg_scorers"] = integration_selectors.psg_scorers(organization)
        context["psg_limit_mb"] = settings.PSG_MAX_UPLOAD_BYTES // (1024 * 1024)
    return render(request, "analytics/participants/detail.html", context)


# The upload limit must be in place before the body is read, and CSRF checking reads it:
# the view is exempted outside and protected inside, as Django's upload-handler docs show.
@csrf_exempt
@org_page(roles=MANAGERS)
@require_POST
def psg_upload(request, participant):
    """Upload an EDF for scoring from the participant page (same service as the API and admin)."""
    limit = settings.PSG_MAX_UPLOAD_BYTES
    declared = request.META.get("CONTENT_LENGTH") or ""
    if declared.isdigit() and int(declared) > limit + MULTIPART_OVERHEAD_BYTES:
        return _psg_refused(request, participant, psg.MESSAGES["too_large"].format(limit=limit), 413)
    request.upload_handlers.insert(0, UploadLimitHandler(request, limit=limit))
    return _psg_upload(request, participant)


@csrf_protect
def _psg_upload(request, participant):
    organization = request.organization
    person = participant_pages.participant_for(organization, request.membership, request.user, participant)
    if person is None:
        raise Http404("No such participant.")
    try:
        files, data = request.FILES, request.POST
    except PayloadTooLarge:
        return _psg_refused(request, participant, psg.MESSAGES["too_large"].format(limit=settings.PSG_MAX_UPLOAD_BYTES),
                            413)
    upload = files.get("file")
    scorers = {str(c.uuid): c for c in integration_selectors.psg_scorers(organization)}
    connection = scorers.get((data.get("connection") or "").strip())
    if upload is None or connection is None:
        return _psg_refused(request, participant, "Choose a scoring connection and an EDF file.", 400)
    try:
        psg.psg_recording_upload(organization=organization, participant=person, connection=connection, file=upload,
                                 original_name=upload.name or "")
    except ApplicationError as exc:
        return _psg_refused(request, participant, str(exc.detail), exc.status_code)
    except ValidationError as exc:
        return _psg_refused(request, participant, "; ".join(exc.messages), 400)
    messages.success(request, "The recording was uploaded: scoring runs in the background; this page shows its progress.")
    return redirect(f"/o/{organization.slug}/participants/{participant}/")


def _psg_refused(request, participant, message: str, status: int):
    return render(request, "analytics/participants/psg_refused.html",
                  {"message": message, "back": f"/o/{request.organization.slug}/participants/{participant}/"},
                  status=status)


urlpatterns = [
    path("participants/", participant_list, name="participants"),
    path("participants/<uuid:participant>/", participant_detail, name="participant"),
    path("participants/<uuid:participant>/psg/", psg_upload, name="participant-psg-upload"),
]
