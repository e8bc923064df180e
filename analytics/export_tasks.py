"""Celery tasks for asynchronous report exports (thin: ids in, services in export_services).

Both are idempotent: a redelivered build finds its export done (skip) or running after its
worker died (rebuild); expiry re-checks each row's status with a conditional UPDATE.
"""

from celery import shared_task

__all__ = ["build_export_task", "expire_exports_task"]

# A cohort report over a year of a large organization builds in seconds; the limits only
# stop a runaway job well inside the global ones.
BUILD_TIME_LIMIT = 300
BUILD_SOFT_TIME_LIMIT = 270


@shared_task(name="analytics.build_export", time_limit=BUILD_TIME_LIMIT, soft_time_limit=BUILD_SOFT_TIME_LIMIT)
def build_export_task(organization_id: int, export_uuid: str) -> str | None:
    """Build one export's file (analytics.export_services.export_build)."""
    from analytics.export_services import export_build

    export = export_build(organization_id=organization_id, export_uuid=export_uuid)
    return export.status if export else None


@shared_task(name="analytics.expire_exports", time_limit=600, soft_time_limit=540)
def expire_exports_task() -> int:
    """Beat, hourly: delete the files of exports older than EXPORT_RETENTION."""
    from analytics.export_services import exports_expire

    return exports_expire()
