"""Liveness and readiness for load balancers and operators: no personal data."""

import time

from django.core.cache import cache
from django.db import connection
from django.http import JsonResponse

from .celery_app import HEARTBEAT_CACHE_KEY

# Beat sends a heartbeat every 60 s; three missed ones means no worker is consuming.
WORKER_STALE_AFTER_SECONDS = 180


def healthz(request):
    """200 when the database answers; reports how long ago a worker was last seen."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        database = "ok"
    except Exception:  # noqa: BLE001 - any failure means "not ready"
        database = "unavailable"
    last_beat = cache.get(HEARTBEAT_CACHE_KEY)
    worker_age = None if last_beat is None else round(time.time() - last_beat, 1)
    worker = "ok" if worker_age is not None and worker_age < WORKER_STALE_AFTER_SECONDS else "unknown"
    status = 200 if database == "ok" else 503
    return JsonResponse(
        {"database": database, "worker": worker, "worker_seen_seconds_ago": worker_age},
        status=status,
    )
