import pytest
from django.contrib.auth import authenticate

from tenants.demo import DEMO_SLUG, demo_seed
from tenants.models import Department, Membership, Participant


@pytest.mark.django_db
def test_it_seeds_a_demo_organization_once(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    first = demo_seed(participants=30)
    second = demo_seed(participants=30)
    assert first.password == second.password
    participants = Participant.objects.filter(organization__slug=DEMO_SLUG)
    assert participants.count() == 30
    assert Department.objects.filter(organization__slug=DEMO_SLUG).count() == 6
    assert sorted(Membership.objects.filter(organization__slug=DEMO_SLUG).values_list("role", flat=True)) == [
        "admin", "hr", "member", "owner"
    ]
    assert authenticate(username=first.users["hr"], password=first.password) is not None
    assert participants.filter(user__username=first.users["member"]).count() == 1
    assert (tmp_path / "demo-password.txt").stat().st_mode & 0o077 == 0
