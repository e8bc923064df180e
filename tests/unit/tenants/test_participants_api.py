from tenants.models import Participant
from tenants.roles import Role

from ...factories import DepartmentFactory, ParticipantFactory


def _url(world, participant=None):
    base = f"/api/v1/orgs/{world.org.slug}/participants/"
    return f"{base}{participant.uuid}/" if participant else base


class ParticipantApiTests:
    def test_it_enrolls_a_participant_in_a_department_of_the_organization(self, world_a):
        department = DepartmentFactory(organization=world_a.org)
        response = world_a.client(Role.ADMIN).post(
            _url(world_a),
            {"name": "Ada", "email": "ada@example.test", "department": str(department.uuid),
             "attributes": {"site": "Lisbon"}},
            format="json",
        )
        assert response.status_code == 201, response.content
        participant = Participant.objects.get(uuid=response.json()["uuid"])
        assert participant.organization == world_a.org
        assert participant.department == department
        assert participant.weekly_email_opt_in is True

    def test_it_shows_a_member_only_their_own_record(self, world_a):
        others = [ParticipantFactory(organization=world_a.org) for _ in range(3)]
        client = world_a.client(Role.MEMBER)
        listed = client.get(_url(world_a)).json()["results"]
        assert [p["uuid"] for p in listed] == [str(world_a.member_participant.uuid)]
        assert client.get(_url(world_a, others[0])).status_code == 404
        assert client.get(_url(world_a, world_a.member_participant)).status_code == 200

    def test_it_filters_by_department_and_paginates(self, world_a):
        department = DepartmentFactory(organization=world_a.org)
        for _ in range(7):
            ParticipantFactory(organization=world_a.org, department=department)
        client = world_a.client(Role.ADMIN)
        page = client.get(_url(world_a), {"department": str(department.uuid), "page_size": 5}).json()
        assert page["count"] == 7
        assert len(page["results"]) == 5
        assert page["next"]
        assert all(p["department"] == str(department.uuid) for p in page["results"])

    def test_it_caps_the_page_size(self, world_a):
        for _ in range(3):
            ParticipantFactory(organization=world_a.org)
        page = world_a.client(Role.ADMIN).get(_url(world_a), {"page_size": 100000}).json()
        assert page["count"] == 4 and len(page["results"]) == 4  # capped at 500, not refused

    def test_it_lists_participants_without_n_plus_one(self, world_a, django_assert_max_num_queries):
        for _ in range(20):
            ParticipantFactory(organization=world_a.org)
        client = world_a.client(Role.ADMIN)
        with django_assert_max_num_queries(4):
            response = client.get(_url(world_a))
        assert response.json()["count"] == 21

    def test_it_keeps_the_participants_data_when_their_department_is_deleted(self, world_a):
        participant = ParticipantFactory(organization=world_a.org)
        department = participant.department
        assert world_a.client(Role.ADMIN).delete(
            f"/api/v1/orgs/{world_a.org.slug}/departments/{department.uuid}/"
        ).status_code == 204
        participant.refresh_from_db()
        assert participant.department is None
