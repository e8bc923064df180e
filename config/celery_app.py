"""The Celery app. Run: celery -A config worker / celery -A config beat."""

import logging
import os
import time

from celery import Celery
from celery.signals import task_failure

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")

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


@task_failure.connect
def _log_task_failure(sender=None, task_id=None, exception=None, **_kwargs):
    # Task name, id and exception type only: arguments may identify a person.
    logger.error(
        "task failed name=%s id=%s error=%s",
        getattr(sender, "name", "?"),
        task_id,
        type(exception).__name__,
    )
