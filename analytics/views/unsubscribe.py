"""The public one-click unsubscribe of the weekly emails (no login).

``/unsubscribe/<token>/``: GET shows a confirmation button, POST unsubscribes. The token is
signed (django.core.signing, own salt) and carries only the participant's uuid; a tampered
or expired token gets a 400 page. Every answer for a valid token is the same success page,
whoever it names: nothing about the person or the organization is shown.

CSRF: exempt on purpose. RFC 8058 one-click unsubscribes are POSTed by mail providers
(body ``List-Unsubscribe=One-Click``) without cookies or a CSRF token; the signed token in
the URL is the secret, so a forged cross-site POST cannot do more than its holder can.
"""

from django.shortcuts import render
from django.urls import path
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from analytics import email_pages, emails


@csrf_exempt  # RFC 8058 one-click POSTs carry no CSRF token; see the module docstring.
@never_cache
@require_http_methods(["GET", "POST"])
def unsubscribe(request, token):
    try:
        participant_uuid = emails.participant_uuid_from_token(token)
    except emails.InvalidUnsubscribeToken:
        return render(request, "analytics/emails/unsubscribe_invalid.html", status=400)
    if request.method == "POST":
        email_pages.participant_unsubscribe(participant_uuid=participant_uuid)
        return render(request, "analytics/emails/unsubscribe_done.html")
    return render(request, "analytics/emails/unsubscribe_confirm.html", {"action": request.path})


urlpatterns = [
    path("unsubscribe/<str:token>/", unsubscribe, name="weekly-email-unsubscribe"),
]
