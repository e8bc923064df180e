"""What a Celery worker imports: a sync must not pay for exports, email charts or the URLconf.

Every module a worker loads costs memory in its main process and in each pool child, and the
bench target is the whole worker's PSS during a big sync (bench/ingest.py). The export
(openpyxl, Pillow) and email chart (matplotlib) libraries load on first use, in the child
that builds an export or sends an email.
"""

import gc
import json
import os
import subprocess
import sys
from pathlib import Path

from celery.signals import worker_before_create_process

ROOT = Path(__file__).resolve().parents[3]

# What `celery -A config worker` does before it forks (the Celery app, whose Django fixup sets
# Django up and imports every app's tasks module), then what a sync imports in a pool child.
# A fresh interpreter: this test process has imported the URLconf and more.
WORKER_BOOT = """
import json, sys
import django
django.setup()
from config.celery_app import app
app.loader.import_default_modules()
import analytics.tasks, integrations.sync, integrations.tasks
json.dump(sorted(sys.modules), open(sys.argv[1], "w"))
"""

NOT_FOR_SYNCS = ("matplotlib", "openpyxl", "PIL", "playwright", "boto3", "storages", "config.urls")


def worker_modules(tmp_path: Path) -> set[str]:
    env = {name: value for name, value in os.environ.items() if name != "CELERY_SKIP_CHECKS"}
    env["DJANGO_SETTINGS_MODULE"] = "config.settings.test"
    out = tmp_path / "modules.json"
    result = subprocess.run([sys.executable, "-c", WORKER_BOOT, str(out)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return set(json.loads(out.read_text()))


class WorkerImportsTests:
    def test_it_does_not_load_export_chart_or_url_modules_on_the_sync_path(self, tmp_path):
        modules = worker_modules(tmp_path)
        assert "integrations.sync" in modules
        assert [name for name in NOT_FOR_SYNCS if name in modules] == []

    def test_it_freezes_the_heap_before_the_pool_forks(self):
        try:
            worker_before_create_process.send(sender=None)
            assert gc.get_freeze_count() > 0
        finally:
            gc.unfreeze()
