"""Roles within an organization and the sets the role matrix is built from."""

from django.db import models


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    HR = "hr", "HR analyst"
    MEMBER = "member", "Member"


ALL_ROLES = frozenset(Role)
MANAGERS = frozenset({Role.OWNER, Role.ADMIN})
OWNERS = frozenset({Role.OWNER})
# Roles that may see aggregate (cohort) figures; HR sees nothing else about people.
AGGREGATE_READERS = frozenset({Role.OWNER, Role.ADMIN, Role.HR})
NOBODY: frozenset[Role] = frozenset()
