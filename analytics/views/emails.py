"""Dashboard pages: the weekly emails (owners and admins).

``emails/`` shows the schedule, recent delivery counts, a participant search and, for the
chosen participant and week, the email as they would get it (an iframe of
``emails/preview/<participant>/``, the chart inlined as a data: URI) with a "send me a
test" button. ``emails/preview/admin/`` is the organization digest the owners and admins
get. Previews and tests are audited (analytics/email_pages.py).
"""

import uuid

from csp.decorators import csp_replace
from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.views.decorators.clickjacking import xframe_options_sameorigin

from analytics import email_pages, emails
from tenants.models import Participant
from tenants.roles import MANAGERS

from .access import org_page

# The preview is the email itself: inline styles (mail clients need them), a data: image,
# no script, shown only inside our own page's sandboxed iframe.
PREVIEW_CSP = {
    "default-src": ["'none'"],
    "script-src": ["'none'"],
    "connect-src": ["'none'"],
    "font-src": ["'none'"],
    "style-src": ["'unsafe-inline'"],
    "img-src": ["data:"],
    "base-uri": ["'none'"],
    "form-action": ["'none'"],
    "frame-ancestors": ["'self'"],
}


def _participant(organization, value) -> Participant:
    """The organization's participant with this uuid; any other value answers 404 alike."""
    try:
        key = value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except ValueError:
        raise Http404("No such participant.") from None
    participant = Participant.objects.for_org(organization).filter(uuid=key).first()
    if participant is None:
        raise Http404("No such participant.")
    return participant


def _page(request, *, status=200, error=None, week_value=None):
    organization = request.organization
    week_param = request.GET.get("week", "") if week_value is None else week_value
    try:
        iso_year, iso_week = email_pages.parse_week(week_param, organization)
    except email_pages.InvalidWeek as exc:
        iso_year, iso_week = email_pages.parse_week("", organization)
        error, status = str(exc), 400
    query = request.GET.get("q", "")
    chosen = request.GET.get("participant") or request.POST.get("participant") or ""
    participant = _participant(organization, chosen) if chosen and chosen != "admin" else None
    week = emails.week_label(iso_year, iso_week)
    context = {
        "error": error,
        "week": week,
        "week_title": emails.week_title(iso_year, iso_week),
        "q": query.strip()[:100],
        "results": email_pages.find_participants(organization, query) if query else [],
        "participant": participant,
        "admin_digest": chosen == "admin",
        "schedule": email_pages.schedule_text(organization),
        "status": email_pages.delivery_status(organization),
        "tests_per_hour": settings.WEEKLY_EMAIL_TESTS_PER_HOUR,
    }
    if participant is not None:
        context["recipient"] = email_pages.recipient_status(organization, participant, iso_year, iso_week)
        context["preview_url"] = reverse("dashboard:email-preview", kwargs={
            "org": organization.slug, "participant": participant.uuid}) + f"?week={week}"
    elif chosen == "admin":
        context["preview_url"] = reverse("dashboard:email-admin-preview", kwargs={"org": organization.slug}) + (
            f"?week={week}")
    return render(request, "analytics/emails/index.html", context, status=status)


@org_page(roles=MANAGERS)
def email_index(request):
    return _page(request)


def _preview_response(html: str) -> HttpResponse:
    response = HttpResponse(html, content_type="text/html; charset=utf-8")
    response["Cache-Control"] = "no-store"
    return response


@xframe_options_sameorigin
@csp_replace(PREVIEW_CSP)
@org_page(roles=MANAGERS)
def email_preview(request, participant):
    organization = request.organization
    person = _participant(organization, participant)
    try:
        iso_year, iso_week = email_pages.parse_week(request.GET.get("week"), organization)
    except email_pages.InvalidWeek as exc:
        return HttpResponse(str(exc), status=400, content_type="text/plain; charset=utf-8")
    html = email_pages.participant_preview(organization=organization, participant=person, iso_year=iso_year,
                                           iso_week=iso_week, actor=request.user)
    return _preview_response(html)


@xframe_options_sameorigin
@csp_replace(PREVIEW_CSP)
@org_page(roles=MANAGERS)
def email_admin_preview(request):
    organization = request.organization
    try:
        iso_year, iso_week = email_pages.parse_week(request.GET.get("week"), organization)
    except email_pages.InvalidWeek as exc:
        return HttpResponse(str(exc), status=400, content_type="text/plain; charset=utf-8")
    html = email_pages.admin_digest_preview(organization=organization, iso_year=iso_year, iso_week=iso_week,
                                            actor=request.user)
    return _preview_response(html)


@org_page(roles=MANAGERS)
def email_test(request):
    """POST participant=<uuid>|admin, week=YYYY-Www: send that email to the requester."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    organization = request.organization
    chosen = request.POST.get("participant", "")
    participant = None if chosen == "admin" else _participant(organization, chosen)
    week_value = request.POST.get("week", "")
    try:
        iso_year, iso_week = email_pages.parse_week(week_value, organization)
    except email_pages.InvalidWeek as exc:
        return _page(request, status=400, error=str(exc), week_value="")
    try:
        address = email_pages.test_send(organization=organization, membership=request.membership,
                                        participant=participant, iso_year=iso_year, iso_week=iso_week)
    except email_pages.TestSendRefused as exc:
        return _page(request, status=exc.status, error=str(exc), week_value=week_value)
    messages.success(request, f"A test email was sent to {address}.")
    target = "admin" if participant is None else participant.uuid
    url = reverse("dashboard:emails", kwargs={"org": organization.slug})
    return redirect(f"{url}?participant={target}&week={emails.week_label(iso_year, iso_week)}")


urlpatterns = [
    path("emails/", email_index, name="emails"),
    path("emails/preview/admin/", email_admin_preview, name="email-admin-preview"),
    path("emails/preview/<uuid:participant>/", email_preview, name="email-preview"),
    path("emails/test/", email_test, name="email-test"),
]
