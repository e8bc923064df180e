"""Export jobs on a real Celery worker process, through the broker of the configuration.

The web side requests exports (service + API), the task message goes through the broker
(kombu's filesystem transport, or Redis when REDIS_URL is set), a separate `celery worker`
process builds the files into the shared MEDIA_ROOT, and the expiry task, sent the way beat
sends it, deletes them. The files are compared with the cohort API's answer.
"""

import csv
import io
import os
from datetime import timedelta

import openpyxl
import pytest
from django.utils import timezone
from kombu import Connection

from analytics import export_services
from analytics.export_tasks import build_export_task
from analytics.models import Export
from analytics.reports import cohort_params_validate
from config.celery_app import app
from tenants.models import AuditEvent
from tenants.roles import Role

from ...conftest import World
from ...unit.analytics.export_fixtures import PERIOD, staff_organization
from ..conftest import celery_worker, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
JOB_TIMEOUT = 90


def _send_through(monkeypatch, broker: Connection) -> None:
    """Enqueue build jobs on this test's private broker (the task and its message are real)."""
    monkeypatch.setattr(build_export_task, "delay",
                        lambda *args: build_export_task.apply_async(args=args, connection=broker))


def _exercise(world, other, broker: Connection, env: dict, tmp_path) -> None:
    log = tmp_path / "worker.log"
    params = cohort_params_validate(organization=world.org, data={**PERIOD, "group_by": "department,attr:site"})
    hr = world.users[Role.HR]
    with celery_worker(env=env, log_path=log):
        exports = [
            export_services.export_request(organization=world.org, user=hr, kind="cohort", file_format=fmt,
                                           params=params)
            for fmt in ("csv", "xlsx", "html")
        ]
        uuids = [str(e.uuid) for e in exports]

        def all_done():
            statuses = list(Export.objects.filter(uuid__in=uuids).values_list("status", flat=True))
            assert "failed" not in statuses, log.read_text()[-3000:]
            return statuses == ["done"] * 3

        try:
            wait_for(all_done, timeout=JOB_TIMEOUT, what="the export jobs")
        except AssertionError:
            raise AssertionError(log.read_text()[-3000:]) from None

        done = {e.format: e for e in Export.objects.filter(uuid__in=uuids)}
        assert all(e.progress == 100 and e.expires_at > timezone.now() for e in done.values())
        client = world.client(Role.HR)
        api = client.get(f"/api/v1/orgs/{world.org.slug}/reports/cohort/",
                         {**PERIOD, "group_by": "department,attr:site", "format": "csv"}).content
        download = client.get(f"/api/v1/orgs/{world.org.slug}/exports/{done['csv'].uuid}/download/")
        assert download.status_code == 200 and download.content == api
        rows = list(csv.DictReader(io.StringIO(download.content.decode("utf-8-sig"))))
        assert any(row["suppressed"] == "true" and row["score_mean"] == "" for row in rows)
        with done["xlsx"].file.storage.open(done["xlsx"].file.name, "rb") as handle:
            workbook = openpyxl.load_workbook(handle)
        assert workbook.sheetnames[-1] == "Notes" and len(workbook.sheetnames) == 4
        assert b"@media print" in done["html"].file.storage.open(done["html"].file.name).read()

        # Another organization sees none of it.
        outsider = other.client(Role.OWNER)
        assert outsider.get(f"/api/v1/orgs/{other.org.slug}/exports/{done['csv'].uuid}/download/").status_code == 404
        assert outsider.get(f"/api/v1/orgs/{world.org.slug}/exports/").status_code == 404
        assert outsider.get(f"/api/v1/orgs/{other.org.slug}/exports/").json()["results"] == []

        actions = sorted(AuditEvent.objects.filter(organization=world.org).values_list("action", flat=True))
        assert actions == ["export.downloaded"] + ["export.requested"] * 3
        assert not AuditEvent.objects.filter(organization=other.org).exists()

        # Retention over: the hourly beat task, run by the worker, deletes every file.
        files = [(e.file.storage, e.file.name) for e in done.values()]
        Export.objects.filter(uuid__in=uuids).update(expires_at=timezone.now() - timedelta(minutes=1))
        app.send_task("analytics.expire_exports", connection=broker)
        wait_for(lambda: set(Export.objects.filter(uuid__in=uuids).values_list("status", flat=True)) == {"expired"},
                 timeout=JOB_TIMEOUT, what="the expiry task")
        assert not any(storage.exists(name) for storage, name in files)
        assert client.get(f"/api/v1/orgs/{world.org.slug}/exports/{done['csv'].uuid}/download/").status_code == 410


@pytest.fixture
def worlds(transactional_db):
    return staff_organization(World("alpha")), World("bravo")


def _filesystem_broker(tmp_path):
    var_dir = tmp_path / "var"
    queue, processed, control = (var_dir / "broker" / name for name in ("queue", "processed", "control"))
    for folder in (queue, processed, control):
        folder.mkdir(parents=True)
    options = {"data_folder_in": str(queue), "data_folder_out": str(queue), "processed_folder": str(processed),
               "control_folder": str(control)}
    env = {"CELERY_BROKER_URL": "filesystem://", "PLATFORM_VAR_DIR": str(var_dir), "REDIS_URL": "",
           "CACHE_URL": f"filecache://{tmp_path / 'cache'}"}
    return Connection("filesystem://", transport_options=options), env


def test_it_builds_and_expires_exports_on_a_real_worker(worlds, tmp_path, monkeypatch, request):
    """The platform's broker of this configuration: Redis when REDIS_URL is set (the
    PostgreSQL + Redis run), else the embedded filesystem transport (platform/test.sh runs
    both configurations, so both brokers are covered without starting two workers each)."""
    if os.environ.get("REDIS_URL"):
        redis_url = request.getfixturevalue("redis_url")  # this run's own Redis db, flushed
        broker, env = Connection(redis_url), {"CELERY_BROKER_URL": redis_url, "REDIS_URL": redis_url}
    else:
        broker, env = _filesystem_broker(tmp_path)
    with broker:
        _send_through(monkeypatch, broker)
        _exercise(*worlds, broker, env, tmp_path)
