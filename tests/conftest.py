import os

import pytest
from rest_framework.test import APIClient

from tenants.roles import Role

from .factories import MembershipFactory, OrganizationFactory, ParticipantFactory, UserFactory

ROLES = [Role.OWNER, Role.ADMIN, Role.HR, Role.MEMBER]


class World:
    """One organization with one user per role; the member is also a participant."""

    def __init__(self, slug: str):
        self.org = OrganizationFactory(slug=slug, name=slug.title())
        self.users = {}
        for role in ROLES:
            user = UserFactory(username=f"{role.value}@{slug}.test")
            MembershipFactory(organization=self.org, user=user, role=role)
            self.users[role] = user
        self.member_participant = ParticipantFactory(organization=self.org, user=self.users[Role.MEMBER])

    def client(self, role: Role) -> APIClient:
        client = APIClient()
        client.force_authenticate(self.users[role])
        return client


@pytest.fixture
def world_a(db):
    return World("alpha")


@pytest.fixture
def world_b(db):
    return World("bravo")


@pytest.fixture
def api_client():
    return APIClient()


def service_required(name: str) -> None:
    """Skip when a real service is unreachable on a developer machine; fail in CI."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{name} is required in CI but is not reachable")
    pytest.skip(f"{name} is not reachable on this machine")
