"""A real Celery worker process consumes tasks from a real broker.

Both brokers the platform supports: Redis (production) and kombu's filesystem transport
(the embedded default, which needs no server).
"""

import uuid

import environ
import pytest
from django.core.cache import caches
from kombu import Connection

from config.celery_app import app

from ..conftest import celery_worker, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _probe(broker: Connection, cache_url: str, env: dict, tmp_path) -> None:
    token = uuid.uuid4().hex
    with celery_worker(env={"CACHE_URL": cache_url, **env}, log_path=tmp_path / "worker.log"):
        app.send_task("platform.heartbeat", args=[token], connection=broker)
        cache = caches.create_connection("default")
        try:
            wait_for(lambda: cache.get(f"platform:probe:{token}"), timeout=60, what="the task to run")
        except AssertionError:
            raise AssertionError((tmp_path / "worker.log").read_text()[-3000:]) from None


def test_it_runs_a_task_on_a_real_worker_through_redis(redis_url, tmp_path, settings):
    cache_url = redis_url.replace("redis://", "rediscache://").rsplit("/", 1)[0] + "/14"
    settings.CACHES = {"default": environ.Env.cache_url_config(cache_url)}
    with Connection(redis_url) as broker:
        _probe(broker, cache_url, {"CELERY_BROKER_URL": redis_url, "REDIS_URL": redis_url}, tmp_path)


def test_it_runs_a_task_on_a_real_worker_through_the_filesystem_broker(tmp_path, settings):
    var_dir = tmp_path / "var"
    queue, processed, control = (var_dir / "broker" / name for name in ("queue", "processed", "control"))
    for folder in (queue, processed, control):
        folder.mkdir(parents=True)
    cache_url = f"filecache://{tmp_path / 'cache'}"
    settings.CACHES = {"default": environ.Env.cache_url_config(cache_url)}
    options = {"data_folder_in": str(queue), "data_folder_out": str(queue), "processed_folder": str(processed),
               "control_folder": str(control)}
    env = {"CELERY_BROKER_URL": "filesystem://", "PLATFORM_VAR_DIR": str(var_dir)}
    env_without_redis = {"REDIS_URL": "", **env}
    with Connection("filesystem://", transport_options=options) as broker:
        _probe(broker, cache_url, env_without_redis, tmp_path)
