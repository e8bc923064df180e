from tenants.models import Membership
from tenants.roles import Role

from ...factories import MembershipFactory


def _url(world, membership=None):
    base = f"/api/v1/orgs/{world.org.slug}/members/"
    return f"{base}{membership.uuid}/" if membership else base


def _owner_membership(world):
    return Membership.objects.get(organization=world.org, role=Role.OWNER)


class MembershipRuleTests:
    def test_it_keeps_the_last_owner(self, world_a):
        client = world_a.client(Role.OWNER)
        owner = _owner_membership(world_a)
        response = client.patch(_url(world_a, owner), {"role": "admin"}, format="json")
        assert response.status_code == 409
        assert response.json()["code"] == "last_owner"
        assert client.delete(_url(world_a, owner)).status_code == 409
        owner.refresh_from_db()
        assert owner.role == Role.OWNER

    def test_it_lets_an_owner_step_down_when_another_owner_exists(self, world_a):
        MembershipFactory(organization=world_a.org, role=Role.OWNER)
        owner = Membership.objects.get(user=world_a.users[Role.OWNER])
        response = world_a.client(Role.OWNER).patch(_url(world_a, owner), {"role": "admin"}, format="json")
        assert response.status_code == 200

    def test_it_stops_an_admin_from_granting_or_removing_owners(self, world_a):
        client = world_a.client(Role.ADMIN)
        response = client.post(_url(world_a), {"email": "boss@example.test", "role": "owner"}, format="json")
        assert response.status_code == 403
        assert not Membership.objects.filter(user__email="boss@example.test").exists()
        owner = _owner_membership(world_a)
        assert client.delete(_url(world_a, owner)).status_code == 403
        assert client.patch(_url(world_a, owner), {"role": "hr"}, format="json").status_code == 403
        hr = Membership.objects.get(user=world_a.users[Role.HR])
        assert client.patch(_url(world_a, hr), {"role": "owner"}, format="json").status_code == 403

    def test_it_adds_an_existing_user_by_email(self, world_a, world_b):
        email = world_b.users[Role.HR].email
        response = world_a.client(Role.ADMIN).post(_url(world_a), {"email": email, "role": "hr"}, format="json")
        assert response.status_code == 201
        assert Membership.objects.filter(user=world_b.users[Role.HR]).count() == 2

    def test_it_refuses_a_second_membership_in_the_same_organization(self, world_a):
        email = world_a.users[Role.HR].email
        response = world_a.client(Role.ADMIN).post(_url(world_a), {"email": email, "role": "admin"}, format="json")
        assert response.status_code == 409
        assert response.json()["code"] == "already_member"

    def test_it_lists_members_without_n_plus_one(self, world_a, django_assert_max_num_queries):
        for _ in range(10):
            MembershipFactory(organization=world_a.org)
        client = world_a.client(Role.ADMIN)
        with django_assert_max_num_queries(4):
            response = client.get(_url(world_a))
        assert response.json()["count"] == 14
