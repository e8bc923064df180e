"""The demo organization the README's first command starts with.

Idempotent: running it again keeps existing people and passwords. Names are synthetic.
"""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction

from .models import Department, Membership, Organization, Participant
from .roles import Role

DEMO_SLUG = "demo"
DEMO_DOMAIN = "demo.example"
DEMO_DEPARTMENTS = ["Engineering", "Sales", "Operations", "Customer Support", "Finance", "Research"]
DEMO_SITES = ["Berlin", "Lisbon", "Remote"]
DEMO_SHIFTS = ["day", "day", "day", "early", "late"]
_FIRST = ["Ada", "Ben", "Chloe", "Dev", "Elif", "Farid", "Grace", "Hugo", "Ines", "Jonas", "Kira",
          "Liam", "Maya", "Noah", "Olga", "Pablo", "Quinn", "Rosa", "Sami", "Tara", "Umar", "Vera",
          "Wen", "Yara", "Zoe"]
_LAST = ["Almeida", "Becker", "Costa", "Dubois", "Eriksen", "Fischer", "Garcia", "Haddad", "Ivanova",
         "Jansen", "Kowalski", "Lopes", "Meyer", "Nakamura", "Okafor", "Petrov", "Quist", "Rossi",
         "Schmidt", "Tanaka", "Usman", "Varga", "Weber", "Yilmaz", "Zhou"]


@dataclass(frozen=True)
class DemoLogin:
    url: str
    password: str
    users: dict[str, str]  # role -> username


def _password_file() -> Path:
    return Path(settings.VAR_DIR) / "demo-password.txt"


def _demo_password() -> str:
    path = _password_file()
    if path.exists():
        return path.read_text().strip()
    password = secrets.token_urlsafe(9)
    path.write_text(password + "\n")
    path.chmod(0o600)
    return password


@transaction.atomic
def demo_seed(*, participants: int = 200, seed: int = 7) -> DemoLogin:
    """Create (or complete) the demo organization, its departments, people and logins."""
    rng = random.Random(seed)
    User = get_user_model()
    password = _demo_password()
    organization, _ = Organization.objects.get_or_create(
        slug=DEMO_SLUG,
        defaults={"name": "Demo Corp", "timezone": "Europe/Berlin", "min_group_size": 5},
    )
    departments = [
        Department.objects.get_or_create(organization=organization, name=name)[0]
        for name in DEMO_DEPARTMENTS
    ]
    users = {}
    for role in (Role.OWNER, Role.ADMIN, Role.HR, Role.MEMBER):
        username = f"{role.value}@{DEMO_DOMAIN}"
        user, created = User.objects.get_or_create(username=username, defaults={"email": username})
        if created:
            user.set_password(password)
            # The owner is also the operator of this local install (Django admin).
            user.is_staff = user.is_superuser = role == Role.OWNER
            user.save()
        Membership.objects.get_or_create(organization=organization, user=user, defaults={"role": role})
        users[role.value] = username

    existing = Participant.objects.for_org(organization).count()
    start = date.today() - timedelta(days=120)
    new = []
    for index in range(existing, participants):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        new.append(
            Participant(
                organization=organization,
                department=departments[index % len(departments)] if index % 17 else rng.choice(departments),
                name=f"{first} {last}",
                email=f"p{index:04d}@{DEMO_DOMAIN}",
                attributes={
                    "site": rng.choice(DEMO_SITES),
                    "shift": rng.choice(DEMO_SHIFTS),
                    "age_band": rng.choice(["18-29", "30-44", "45-59", "60+"]),
                },
                birth_year=rng.randint(1962, 2003),
                enrolled_at=start + timedelta(days=rng.randint(0, 30)),
            )
        )
    Participant.objects.bulk_create(new, batch_size=500)
    member = User.objects.get(username=users[Role.MEMBER.value])
    first_participant = Participant.objects.for_org(organization).order_by("email").first()
    if first_participant and not Participant.objects.for_org(organization).filter(user=member).exists():
        first_participant.user = member
        first_participant.save(update_fields=["user", "updated_at"])
    return DemoLogin(url=settings.SITE_URL, password=password, users=users)
