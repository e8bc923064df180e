"""User-level routes of /api/v1/ and the organization itself; collections are in config/api_router.py."""

from django.urls import path

from . import account
from .views import OrganizationViewSet

organization_detail = OrganizationViewSet.as_view(
    {"get": "retrieve", "put": "update", "patch": "partial_update", "delete": "destroy"}
)

urlpatterns = [
    path("auth/login/", account.LoginApi.as_view(), name="auth-login"),
    path("auth/logout/", account.LogoutApi.as_view(), name="auth-logout"),
    path("auth/logout-all/", account.LogoutAllApi.as_view(), name="auth-logout-all"),
    path("me/", account.MeApi.as_view(), name="me"),
    path("orgs/", account.OrganizationListCreateApi.as_view(), name="org-list"),
    path("orgs/<slug:org>/", organization_detail, name="org-detail"),
]
