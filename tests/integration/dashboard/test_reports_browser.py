"""The reports page in headless Chromium: HR sees the cohort report and exports it.

The export runs for real: the page's script posts the request, a `celery worker` process
(kombu filesystem broker of this test) builds the file into the shared MEDIA_ROOT, the
page polls the status endpoint until the download link appears, and the browser downloads
the file through the org-scoped view. Screenshots land in TEST_ARTIFACTS_DIR.
"""

from __future__ import annotations

import openpyxl
import pytest
from kombu import Connection

from analytics.export_tasks import build_export_task
from tenants.models import AuditEvent
from tenants.roles import Role

from ...unit.analytics.export_fixtures import PERIOD, person_markers, staff_organization
from ..conftest import celery_worker
from .conftest import PASSWORD, canvas_has_pixels, log_in, screenshot

pytestmark = pytest.mark.integration
EXPORT_TIMEOUT_MS = 90_000


@pytest.fixture
def hr_site(transactional_db, world_a):
    staff_organization(world_a)
    hr = world_a.users[Role.HR]
    hr.set_password(PASSWORD)
    hr.save()
    return world_a


@pytest.fixture
def worker_broker(tmp_path, monkeypatch):
    """A real worker on a private filesystem broker; build jobs are sent to it."""
    var_dir = tmp_path / "var"
    folders = {name: var_dir / "broker" / name for name in ("queue", "processed", "control")}
    for folder in folders.values():
        folder.mkdir(parents=True)
    options = {"data_folder_in": str(folders["queue"]), "data_folder_out": str(folders["queue"]),
               "processed_folder": str(folders["processed"]), "control_folder": str(folders["control"])}
    env = {"CELERY_BROKER_URL": "filesystem://", "PLATFORM_VAR_DIR": str(var_dir), "REDIS_URL": "",
           "CACHE_URL": f"filecache://{tmp_path / 'cache'}"}
    with Connection("filesystem://", transport_options=options) as broker:
        monkeypatch.setattr(build_export_task, "delay",
                            lambda *args: build_export_task.apply_async(args=args, connection=broker))
        with celery_worker(env=env, log_path=tmp_path / "worker.log"):
            yield tmp_path / "worker.log"


def test_hr_sees_the_report_and_downloads_an_export_built_by_a_worker(page, live_server, hr_site, worker_broker,
                                                                      tmp_path):
    csp_errors = []
    page.on("console", lambda msg: csp_errors.append(msg.text) if "Content Security Policy" in msg.text else None)
    log_in(page, live_server, hr_site.users[Role.HR])
    assert page.url.endswith("/o/alpha/reports/")  # HR lands on the reports page

    query = f"start={PERIOD['start']}&end={PERIOD['end']}&group1=department&group2=attr:site"
    page.goto(f"{live_server.url}/o/alpha/reports/?{query}")
    page.wait_for_function("() => Chart.getChart(document.getElementById('chart-score-iqr')) !== undefined")
    assert canvas_has_pixels(page, "canvas[data-report-chart]")
    body = page.inner_text("body")
    assert "Withheld: fewer than 5 people" in body
    assert "Withheld: could be derived by subtraction" in body
    html = page.content()
    assert not any(marker in html for marker in person_markers(hr_site.org))
    screenshot(page, "reports-cohort")

    page.click("button[name=format][value=xlsx]")
    link = page.locator("[data-exports-table] tbody tr").first.locator("[data-export-file] a")
    try:
        link.wait_for(timeout=EXPORT_TIMEOUT_MS)
    except Exception:
        raise AssertionError(worker_broker.read_text()[-3000:]) from None
    assert page.locator("[data-exports-table] tbody tr").first.locator("progress").get_attribute("value") == "100"
    screenshot(page, "reports-export-ready")
    with page.expect_download() as download_info:
        link.click()
    download = download_info.value
    assert download.suggested_filename == "cohort-alpha-2026-03-01-2026-03-14.xlsx"
    target = tmp_path / download.suggested_filename
    download.save_as(target)
    workbook = openpyxl.load_workbook(target)
    assert workbook.sheetnames == ["Overall", "By department", "By department and site", "Notes"]
    actions = sorted(AuditEvent.objects.filter(organization=hr_site.org).values_list("action", flat=True))
    assert actions == ["export.downloaded", "export.requested"]

    # The printable report: built by the worker too, self-contained, drawn for paper.
    page.click("button[name=format][value=html]")
    page.wait_for_function("() => document.querySelectorAll('[data-exports-table] [data-export-file] a').length === 2",
                           timeout=EXPORT_TIMEOUT_MS)
    with page.expect_download() as download_info:
        page.locator("[data-exports-table] tbody tr").first.locator("[data-export-file] a").click()
    printable = tmp_path / "printable.html"
    download_info.value.save_as(printable)
    assert not page.external_requests and not csp_errors
    page.goto("about:blank")  # leave the platform's page: its CSP would block the file's inline style
    page.set_content(printable.read_text())
    assert page.locator("svg").count() == 2
    assert "Withheld: fewer than 5 people" in page.inner_text("body")
    screenshot(page, "reports-printable")
    header_border = "() => getComputedStyle(document.querySelector('thead th')).borderBottomWidth"
    assert page.evaluate(header_border) == "1px"
    page.emulate_media(media="print")
    assert page.evaluate(header_border) == "2px"  # the print stylesheet applies
    screenshot(page, "reports-printable-print-media")
    assert not page.external_requests  # the file asked for nothing
