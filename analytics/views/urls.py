"""Dashboard URL layout. Each feature module owns its own ``urlpatterns`` list.

``/`` and the account pages are not tied to an organization; everything under
``/o/<org>/`` is, and goes through ``access.org_page``.
"""

from django.urls import include, path

from . import account, emails, overview, participants, reports, unsubscribe

app_name = "dashboard"

urlpatterns = [
    *account.urlpatterns,
    # Public (no login): the weekly emails' signed one-click unsubscribe links.
    *unsubscribe.urlpatterns,
    path("o/<slug:org>/", include(overview.urlpatterns)),
    path("o/<slug:org>/", include(participants.urlpatterns)),
    path("o/<slug:org>/", include(reports.urlpatterns)),
    path("o/<slug:org>/", include(emails.urlpatterns)),
]
