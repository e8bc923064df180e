"""Report exports: request (row + audit + job), build (the Celery job's work), download, expiry.

Life of an export: ``export_request`` creates the Export row (pending) and its audit event
and enqueues ``analytics.build_export`` after commit; the job claims the row (running),
builds the report with ``analytics.reports`` (the API's figures), renders the file, stores
it in the ``exports`` storage and marks it done with ``expires_at = now + EXPORT_RETENTION``;
``analytics.expire_exports`` (hourly) deletes expired files. Downloads go through an
org-scoped view that records an audit event: a file is never served from a public URL.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.http import HttpResponse
from django.utils.http import content_disposition_header
from django.utils import timezone

from analytics import exports
from analytics.audit import EXPORT_DOWNLOADED, EXPORT_REQUESTED, audit_record
from analytics.models import Export
from analytics.reports import CohortParams, cohort_report_build
from tenants.models import Organization

logger = logging.getLogger(__name__)

KIND_COHORT = "cohort"
KINDS = (KIND_COHORT,)


@dataclass(frozen=True)
class ExportFormat:
    extension: str
    content_type: str
    label: str


FORMATS = {
    "csv": ExportFormat("csv", "text/csv; charset=utf-8", "CSV"),
    "xlsx": ExportFormat("xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "Excel (XLSX)"),
    "html": ExportFormat("html", "text/html; charset=utf-8", "Printable report (HTML)"),
}
# Progress milestones the page shows while the job runs (0..100).
PROGRESS_CLAIMED, PROGRESS_REPORT_BUILT, PROGRESS_FILE_RENDERED, PROGRESS_DONE = 10, 60, 90, 100
# Kept short and generic on the row: the full traceback goes to the worker log (ids only).
FAILURE_MESSAGE = "The export could not be built; please try again or contact an administrator."


class ExportNotReady(Exception):
    """The export has no file to download (still running, failed or expired)."""

    def __init__(self, export: Export):
        self.export = export
        super().__init__(f"export {export.uuid} is {export.status}")


def export_filename(export: Export, organization: Organization) -> str:
    """Download name, e.g. ``cohort-acme-2026-03-01-2026-03-14.xlsx`` (no personal data)."""
    params = export.params or {}
    extension = FORMATS[export.format].extension
    return f"{export.kind}-{organization.slug}-{params.get('start')}-{params.get('end')}.{extension}"


def _audit_params(export: Export) -> dict:
    return {"export": str(export.uuid), "kind": export.kind, "format": export.format, **(export.params or {})}


@transaction.atomic
def export_request(*, organization: Organization, user, kind: str, file_format: str, params: CohortParams) -> Export:
    """Create a pending export, audit it and enqueue its job once the transaction commits."""
    if kind not in KINDS or file_format not in FORMATS:
        raise ValueError(f"unsupported export {kind}.{file_format}")
    export = Export.objects.create(
        organization=organization, requested_by=user if user.is_authenticated else None,
        kind=kind, format=file_format, params=params.as_json(),
    )
    audit_record(organization=organization, actor=user, action=EXPORT_REQUESTED,
                 target=f"export:{export.uuid}", params=_audit_params(export))
    from analytics.export_tasks import build_export_task

    organization_id, export_uuid = organization.pk, str(export.uuid)
    transaction.on_commit(lambda: build_export_task.delay(organization_id, export_uuid))
    return export


def _set_progress(export: Export, progress: int) -> None:
    # Its own autocommitted UPDATE, so the page's polling sees it while the job goes on.
    Export.objects.filter(pk=export.pk, status=Export.Status.RUNNING).update(progress=progress)


def export_file_render(*, organization: Organization, export: Export, payload: dict, generated_at) -> bytes:
    """The file's bytes for the export's format, from the cohort payload."""
    if export.format == "csv":
        return exports.cohort_csv(payload)
    if export.format == "xlsx":
        return exports.cohort_xlsx(payload, generated_at=generated_at, organization_name=organization.name)
    if export.format == "html":
        from analytics.printable import cohort_printable_html

        return cohort_printable_html(organization=organization, payload=payload, generated_at=generated_at)
    raise ValueError(f"unknown export format {export.format!r}")


def export_build(*, organization_id: int, export_uuid: str) -> Export | None:
    """The job: build and store the export's file. Idempotent under redelivery: a done,
    failed or expired export is left alone; a running one (its worker died) is rebuilt."""
    organization = Organization.objects.filter(pk=organization_id).first()
    if organization is None:
        return None
    scoped = Export.objects.for_org(organization).filter(uuid=export_uuid)
    claimed = scoped.filter(status__in=[Export.Status.PENDING, Export.Status.RUNNING]).update(
        status=Export.Status.RUNNING, progress=PROGRESS_CLAIMED, error=""
    )
    if not claimed:
        logger.info("export %s not pending: skipped", export_uuid)
        return None
    export = scoped.get()
    started = timezone.now()
    try:
        params = CohortParams.from_json(export.params)
        payload = cohort_report_build(organization=organization, params=params)
        _set_progress(export, PROGRESS_REPORT_BUILT)
        content = export_file_render(organization=organization, export=export, payload=payload, generated_at=started)
        _set_progress(export, PROGRESS_FILE_RENDERED)
        if export.file:  # a previous attempt stored a file before its worker died
            export.file.delete(save=False)
        export.file.save(f"{export.uuid}.{FORMATS[export.format].extension}", ContentFile(content), save=False)
    except Exception:
        logger.exception("export %s failed", export_uuid)
        scoped.filter(status=Export.Status.RUNNING).update(
            status=Export.Status.FAILED, error=FAILURE_MESSAGE, finished_at=timezone.now()
        )
        return scoped.get()
    finished = timezone.now()
    updated = scoped.filter(status=Export.Status.RUNNING).update(
        status=Export.Status.DONE, progress=PROGRESS_DONE, file=export.file.name,
        finished_at=finished, expires_at=finished + settings.EXPORT_RETENTION,
    )
    if not updated:  # expired or removed meanwhile: don't leave an orphan file behind
        export.file.delete(save=False)
    logger.info("export %s built: %s bytes in %.2fs", export_uuid, len(content), (finished - started).total_seconds())
    return scoped.get()


def export_open_for_download(*, export: Export, user):
    """Open a done export's file and audit the download. Raises ExportNotReady otherwise."""
    now = timezone.now()
    if export.status != Export.Status.DONE or not export.file or (export.expires_at and export.expires_at <= now):
        raise ExportNotReady(export)
    handle = export.file.storage.open(export.file.name, "rb")
    audit_record(organization=export.organization, actor=user, action=EXPORT_DOWNLOADED,
                 target=f"export:{export.uuid}", params=_audit_params(export))
    return handle


def export_http_response(*, export: Export, organization: Organization, handle) -> HttpResponse:
    """The download as an attachment (never rendered in the platform's origin), not cached.

    Read whole: a cohort report file is small (bounded by the number of groups, a few MB at
    most), and a plain response keeps every test client and middleware simple."""
    with handle:
        content = handle.read()
    response = HttpResponse(content, content_type=FORMATS[export.format].content_type)
    response["Content-Disposition"] = content_disposition_header(True, export_filename(export, organization))
    response["Cache-Control"] = "private, no-store"
    return response


def exports_expire(*, now=None) -> int:
    """Delete the files of exports past ``expires_at`` and mark them expired; returns how many."""
    now = now or timezone.now()
    expired = 0
    due = Export.objects.filter(expires_at__lte=now).exclude(status=Export.Status.EXPIRED).order_by("pk")
    for export in due.iterator(chunk_size=200):
        # Mark first (conditional UPDATE), then delete: a download racing with expiry is
        # refused by status before the file disappears under it.
        if not Export.objects.filter(pk=export.pk).exclude(status=Export.Status.EXPIRED).update(
            status=Export.Status.EXPIRED, file=""
        ):
            continue
        if export.file:
            export.file.storage.delete(export.file.name)
        expired += 1
    if expired:
        logger.info("expired %s exports", expired)
    return expired
