from django.contrib import admin

from .models import Department, Membership, Organization, Participant


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "timezone", "min_group_size"]
    search_fields = ["name", "slug"]
    inlines = [MembershipInline]


@admin.register(Department)
class DepartmentAdmin(admin.ModelAdmin):
    list_display = ["name", "organization"]
    list_filter = ["organization"]
    search_fields = ["name"]


@admin.register(Participant)
class ParticipantAdmin(admin.ModelAdmin):
    list_display = ["name", "organization", "department", "enrolled_at", "weekly_email_opt_in"]
    list_filter = ["organization", "weekly_email_opt_in"]
    search_fields = ["name", "email"]
    list_select_related = ["organization", "department"]
    raw_id_fields = ["user", "department"]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "organization", "role"]
    list_filter = ["role", "organization"]
    raw_id_fields = ["user"]
