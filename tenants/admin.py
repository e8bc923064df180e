from django.contrib import admin
from django.utils.html import format_html

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
    list_display = ["name", "organization", "department", "enrolled_at", "weekly_email_opt_in", "dashboard_page"]
    list_filter = ["organization", "weekly_email_opt_in"]
    search_fields = ["name", "email", "department__name"]
    list_select_related = ["organization", "department"]
    raw_id_fields = ["user", "department"]
    readonly_fields = ["uuid", "dashboard_page"]

    @admin.display(description="Dashboard")
    def dashboard_page(self, obj):
        if obj.pk is None:
            return "-"
        return format_html('<a href="/o/{}/participants/{}/">nights</a>', obj.organization.slug, obj.uuid)


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "organization", "role"]
    list_filter = ["role", "organization"]
    raw_id_fields = ["user"]
