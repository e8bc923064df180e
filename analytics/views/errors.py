"""HTML error pages for the dashboard (the project-wide 404 handler answers JSON for the API).

A middleware, not handler404: only exceptions raised by a dashboard view (namespace
"dashboard") get a page; API routes keep their JSON error shape.
"""

from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import render

from .access import membership_for

MESSAGES = {
    403: ("You cannot open this page", "Your role in this organization does not include this page."),
    404: ("Page not found", "This page does not exist, or you do not have access to it."),
}


class DashboardErrorPagesMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        match = getattr(request, "resolver_match", None)
        if match is None or "dashboard" not in match.app_names:
            return None
        if isinstance(exception, Http404):
            status = 404
        elif isinstance(exception, PermissionDenied):
            status = 403
        else:
            return None
        if getattr(request, "organization", None) is None and "org" in match.kwargs:
            # A member refused a page still gets their organization's top bar (links, switcher).
            membership = membership_for(request.user, match.kwargs["org"])
            if membership is not None:
                request.organization = membership.organization
        title, text = MESSAGES[status]
        return render(request, "analytics/error.html", {"status": status, "title": title, "text": text},
                      status=status)
