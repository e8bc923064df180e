"""Organization scoping for tenant-owned models.

Every tenant-owned table has a non-null ``organization`` foreign key; reads go through
``Model.objects.for_org(org)``. The API base view (tenants/api/base.py) is the only place
that resolves an organization, from the URL and the caller's membership.
"""

from django.db import models


class OrgScopedQuerySet(models.QuerySet):
    def for_org(self, organization) -> "OrgScopedQuerySet":
        if organization is None or organization.pk is None:
            # Fail closed: a missing scope never means "everything".
            return self.none()
        return self.filter(organization_id=organization.pk)


OrgScopedManager = models.Manager.from_queryset(OrgScopedQuerySet)
