"""The Celery app. Run: celery -A config worker / celery -A config beat."""

import gc
import importlib
import logging
import os
import time

from celery import Celery
from celery.signals import task_failure, worker_before_create_process, worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")
# Celery's Django fixup runs Django's system checks when a worker starts and discards their
# result; the URL checks import the whole URLconf (every view, the API, openpyxl, django.test
# ...), about 25 MB of an idle worker's PSS that no task needs. The web process and `manage.py
# check --deploy` run the checks; CELERY_SKIP_CHECKS="" (read by Celery) brings them back.
os.environ.setdefault("CELERY_SKIP_CHECKS", "1")

app = Celery("sleep_platform")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

logger = logging.getLogger(__name__)

HEARTBEAT_CACHE_KEY = "platform:worker-heartbeat"


@app.task(name="platform.heartbeat", acks_late=False, time_limit=30, soft_time_limit=20)
def heartbeat_task(token: str | None = None) -> float:
    """Record that a worker is alive (read by /healthz); with a token, answer a probe."""
    from django.core.cache import cache

    now = time.time()
    cache.set(HEARTBEAT_CACHE_KEY, now, timeout=600)
    if token:
        cache.set(f"platform:probe:{token}", now, timeout=600)
    return now


# What every sync imports (pandas, numpy, httpx, pydantic, the providers): loaded once in the
# worker's main process before the pool forks, so the children share these pages instead of
# each importing its own copy on its first sync. Only what syncs need: the export (openpyxl)
# and email chart (matplotlib) modules stay lazy, loaded by the child that runs such a task.
WORKER_PRELOAD_MODULES = ("integrations.sync",)


@worker_init.connect
def _preload_sync_modules(**_kwargs):
    for name in WORKER_PRELOAD_MODULES:
        importlib.import_module(name)


@worker_before_create_process.connect
def _freeze_heap_before_fork(**_kwargs):
    # Prefork children share the parent's memory until a page is written. Celery runs a full
    # gc.collect() before each fork; it writes every tracked object's GC header, so the pages
    # an earlier child still shares are copied (~40 MB of the first child's memory became
    # private). Collect once, then freeze: frozen objects are never scanned again, in the
    # parent or the children (https://docs.python.org/3/library/gc.html#gc.freeze).
    gc.collect()
    gc.freeze()


@task_failure.connect
def _log_task_failure(sender=None, task_id=None, exception=None, **_kwargs):
    # Task name, id and exception type only: arguments may identify a person.
    logger.error(
        "task failed name=%s id=%s error=%s",
        getattr(sender, "name", "?"),
        task_id,
        type(exception).__name__,
    )
