"""User-level endpoints: log in and out, who am I, my organizations."""

from django.contrib.auth import authenticate
from drf_spectacular.utils import extend_schema, inline_serializer
from knox.models import AuthToken
from rest_framework import permissions, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from tenants import services
from tenants.models import Membership, Organization

from .serializers import LoginSerializer, OrganizationSerializer

TokenResponse = inline_serializer(
    "TokenResponse",
    {"token": serializers.CharField(), "expiry": serializers.DateTimeField(allow_null=True)},
)


class LoginApi(APIView):
    """Exchange a username and password for an API token (sent as `Authorization: Token <t>`)."""

    authentication_classes: list = []
    permission_classes = [permissions.AllowAny]
    throttle_scope = "login"

    @extend_schema(request=LoginSerializer, responses={200: TokenResponse})
    def post(self, request):
        serializer = LoginSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = authenticate(request, **serializer.validated_data)
        if user is None or not user.is_active:
            return Response(
                {"detail": "Unknown username or wrong password.", "code": "invalid_credentials", "fields": {}},
                status=status.HTTP_400_BAD_REQUEST,
            )
        instance, token = AuthToken.objects.create(user)
        return Response({"token": token, "expiry": instance.expiry})


class LogoutApi(APIView):
    """Revoke the token that made this request."""

    @extend_schema(request=None, responses={204: None})
    def post(self, request):
        if isinstance(request.auth, AuthToken):
            request.auth.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


class LogoutAllApi(APIView):
    """Revoke every API token of the current user."""

    @extend_schema(request=None, responses={204: None})
    def post(self, request):
        AuthToken.objects.filter(user=request.user).delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


class MeApi(APIView):
    @extend_schema(
        responses=inline_serializer(
            "Me",
            {
                "username": serializers.CharField(),
                "email": serializers.EmailField(),
                "organizations": OrganizationSerializer(many=True),
            },
        )
    )
    def get(self, request):
        memberships = Membership.objects.filter(user=request.user).select_related("organization")
        roles = {m.organization_id: m.role for m in memberships}
        organizations = [m.organization for m in memberships]
        data = OrganizationSerializer(organizations, many=True, context={"roles_by_org": roles}).data
        return Response(
            {"username": request.user.get_username(), "email": request.user.email, "organizations": data}
        )


class OrganizationListCreateApi(APIView):
    """The organizations you belong to; create one (you become its owner)."""

    @extend_schema(responses=OrganizationSerializer(many=True))
    def get(self, request):
        memberships = Membership.objects.filter(user=request.user).select_related("organization")
        roles = {m.organization_id: m.role for m in memberships}
        organizations = Organization.objects.filter(pk__in=roles).order_by("name")
        data = OrganizationSerializer(organizations, many=True, context={"roles_by_org": roles}).data
        return Response(data)

    @extend_schema(request=OrganizationSerializer, responses={201: OrganizationSerializer})
    def post(self, request):
        serializer = OrganizationSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        organization = services.organization_create(creator=request.user, **serializer.validated_data)
        data = OrganizationSerializer(organization, context={"roles_by_org": {organization.pk: "owner"}}).data
        return Response(data, status=status.HTTP_201_CREATED)
