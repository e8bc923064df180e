from django.contrib import admin

from .models import NightlyMetrics, SleepSession


@admin.register(SleepSession)
class SleepSessionAdmin(admin.ModelAdmin):
    list_display = ["uuid", "organization", "provider", "start", "end"]
    list_filter = ["provider", "organization"]
    raw_id_fields = ["participant"]
    # The hypnogram is binary; operators read it through the API or the dashboard.
    exclude = ["stages"]
    readonly_fields = ["uuid", "content_hash", "created_at", "updated_at"]


@admin.register(NightlyMetrics)
class NightlyMetricsAdmin(admin.ModelAdmin):
    list_display = ["session", "participant", "night_date", "tst_min", "se_pct", "score"]
    list_filter = ["organization", "is_nap"]
    raw_id_fields = ["session", "participant"]
    date_hierarchy = "night_date"
