"""Writes to organizations, memberships, departments and participants.

Keyword-only, typed, atomic. Views validate input, call one of these, serialize output.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction

from tenants.api.errors import ApplicationError
from tenants.models import Department, Membership, Organization, Participant
from tenants.roles import Role

User = get_user_model()

LAST_OWNER = "An organization must keep at least one owner."
ADMIN_CANNOT_TOUCH_OWNER = "Only an owner may grant, change or remove the owner role."
ALREADY_MEMBER = "This person is already a member of the organization."


def _apply(instance, fields: dict[str, Any]):
    for name, value in fields.items():
        setattr(instance, name, value)
    instance.full_clean()
    instance.save()
    return instance


@transaction.atomic
def organization_create(*, creator, slug: str, name: str, **fields: Any) -> Organization:
    """Create an organization; its creator becomes its first owner."""
    organization = Organization(slug=slug, name=name, **fields)
    organization.full_clean()
    organization.save()
    Membership.objects.create(organization=organization, user=creator, role=Role.OWNER)
    return organization


@transaction.atomic
def organization_update(*, organization: Organization, **fields: Any) -> Organization:
    return _apply(organization, fields)


@transaction.atomic
def organization_delete(*, organization: Organization) -> None:
    organization.delete()


def _user_for_email(email: str):
    email = email.strip().lower()
    user = User.objects.filter(email__iexact=email).order_by("id").first()
    if user is None:
        user = User(username=email, email=email)
        # No password yet: the person sets one through the password-reset flow.
        user.set_unusable_password()
        user.save()
    return user


def _check_owner_rule(actor: Membership, *roles: str) -> None:
    if actor.role != Role.OWNER and Role.OWNER in roles:
        raise ApplicationError(ADMIN_CANNOT_TOUCH_OWNER, code="owner_only", status_code=403)


def _other_owners_exist(membership: Membership) -> bool:
    return (
        Membership.objects.for_org(membership.organization)
        .filter(role=Role.OWNER)
        .exclude(pk=membership.pk)
        .exists()
    )


@transaction.atomic
def membership_create(*, organization: Organization, actor: Membership, email: str, role: str) -> Membership:
    _check_owner_rule(actor, role)
    user = _user_for_email(email)
    if Membership.objects.for_org(organization).filter(user=user).exists():
        raise ApplicationError(ALREADY_MEMBER, code="already_member")
    return Membership.objects.create(organization=organization, user=user, role=role)


@transaction.atomic
def membership_update(*, membership: Membership, actor: Membership, role: str) -> Membership:
    _check_owner_rule(actor, role, membership.role)
    # Lock the organization's owner rows so two concurrent demotions can't both pass.
    list(Membership.objects.for_org(membership.organization).filter(role=Role.OWNER).select_for_update())
    if membership.role == Role.OWNER and role != Role.OWNER and not _other_owners_exist(membership):
        raise ApplicationError(LAST_OWNER, code="last_owner")
    membership.role = role
    membership.save(update_fields=["role", "updated_at"])
    return membership


@transaction.atomic
def membership_delete(*, membership: Membership, actor: Membership) -> None:
    _check_owner_rule(actor, membership.role)
    list(Membership.objects.for_org(membership.organization).filter(role=Role.OWNER).select_for_update())
    if membership.role == Role.OWNER and not _other_owners_exist(membership):
        raise ApplicationError(LAST_OWNER, code="last_owner")
    membership.delete()


@transaction.atomic
def department_create(*, organization: Organization, name: str) -> Department:
    department = Department(organization=organization, name=name)
    department.full_clean()
    department.save()
    return department


@transaction.atomic
def department_update(*, department: Department, **fields: Any) -> Department:
    return _apply(department, fields)


@transaction.atomic
def department_delete(*, department: Department) -> None:
    department.delete()  # its participants keep their data, with no department


def _check_same_org(organization: Organization, fields: dict[str, Any]) -> None:
    # Defence in depth: serializers already resolve related ids inside the organization.
    department = fields.get("department")
    if department is not None and department.organization_id != organization.pk:
        raise ApplicationError("Unknown department.", code="invalid", status_code=400)


@transaction.atomic
def participant_enroll(*, organization: Organization, **fields: Any) -> Participant:
    _check_same_org(organization, fields)
    participant = Participant(organization=organization, **fields)
    participant.full_clean()
    participant.save()
    return participant


@transaction.atomic
def participant_update(*, participant: Participant, **fields: Any) -> Participant:
    _check_same_org(participant.organization, fields)
    return _apply(participant, fields)


@transaction.atomic
def participant_delete(*, participant: Participant) -> None:
    participant.delete()
