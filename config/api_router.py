"""Every tenant-owned collection, registered under /api/v1/orgs/<org>/.

Apps register here (config wires the apps; the apps don't import each other upward).
The isolation test walks these routes, so a new registration is covered automatically.
"""

from rest_framework.routers import SimpleRouter

from analytics.api import (
    CohortReportViewSet,
    NightViewSet,
    TrendReportViewSet,
    WeeklyParticipantReportViewSet,
    WeeklyReportViewSet,
)
from analytics.api_exports import AuditEventViewSet, ExportViewSet
from integrations.api import ConnectionViewSet, ParticipantLinkViewSet, QuarantinedRecordViewSet, SyncRunViewSet
from integrations.api_psg import PsgRecordingViewSet
from tenants.api.views import DepartmentViewSet, MembershipViewSet, ParticipantViewSet

org_router = SimpleRouter()
org_router.register("members", MembershipViewSet, basename="member")
org_router.register("departments", DepartmentViewSet, basename="department")
org_router.register("participants", ParticipantViewSet, basename="participant")
org_router.register("connections", ConnectionViewSet, basename="connection")
org_router.register("participant-links", ParticipantLinkViewSet, basename="participant-link")
org_router.register("sync-runs", SyncRunViewSet, basename="sync-run")
org_router.register("quarantined-records", QuarantinedRecordViewSet, basename="quarantined-record")
org_router.register("psg-recordings", PsgRecordingViewSet, basename="psg-recording")
org_router.register("nights", NightViewSet, basename="night")
org_router.register("reports/cohort", CohortReportViewSet, basename="report-cohort")
org_router.register("reports/weekly/participants", WeeklyParticipantReportViewSet, basename="report-weekly-participant")
org_router.register("reports/weekly", WeeklyReportViewSet, basename="report-weekly")
org_router.register("reports/trends", TrendReportViewSet, basename="report-trends")
org_router.register("exports", ExportViewSet, basename="export")
org_router.register("audit-events", AuditEventViewSet, basename="audit-event")
