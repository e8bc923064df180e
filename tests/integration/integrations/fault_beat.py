"""A real ``celery beat`` process for the fault tests (T10, T12), like ``celery_worker``."""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

from ..conftest import ROOT, database_url_for_subprocess, stop_process_group
from .conftest import FAULT_ENV


@contextmanager
def celery_beat(*, broker_url: str, folder: Path, name: str = "beat", **overrides):
    """Run ``celery -A config beat`` (own schedule file, own session); stop it after.

    ``SYNC_SCHEDULER_SECONDS`` and the other schedule knobs come in ``overrides``.
    """
    log_path = folder / f"{name}.log"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": database_url_for_subprocess(),
        "PYTHONUNBUFFERED": "1",
        **FAULT_ENV,
        "CELERY_BROKER_URL": broker_url,
        **{k: str(v) for k, v in overrides.items()},
    }
    command = [
        sys.executable, "-m", "celery", "-A", "config", "beat", "--loglevel", "INFO",
        "-s", str(folder / f"{name}-schedule"), "--pidfile", "",
    ]
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        process.log_path = log_path
        try:
            yield process
        finally:
            stop_process_group(process, timeout=10)
