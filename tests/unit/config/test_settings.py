"""Settings come from the environment, fail loudly when unsafe, and pass `check --deploy`."""

import subprocess
import sys
from pathlib import Path

from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[3]
BASE_ENV = {"PATH": "/usr/bin:/bin", "PLATFORM_ENV_FILE": "/nonexistent", "PLATFORM_VAR_DIR": "/tmp/sleep-settings-test"}


def _manage(*args, **env):
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, capture_output=True, text=True, env={**BASE_ENV, **env}
    )


def test_it_refuses_to_start_without_a_secret_key_when_debug_is_off():
    result = _manage("check", FIELD_ENCRYPTION_KEYS=Fernet.generate_key().decode())
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr


def test_it_refuses_to_start_without_an_encryption_key_when_debug_is_off():
    result = _manage("check", DJANGO_SECRET_KEY="x" * 60)
    assert result.returncode != 0
    assert "FIELD_ENCRYPTION_KEYS" in result.stderr


def test_it_reads_the_secret_key_from_a_file(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("s3cr3t-" * 10)
    result = _manage(
        "shell", "-c", "from django.conf import settings; print(settings.SECRET_KEY)",
        DJANGO_SECRET_KEY_FILE=str(secret), FIELD_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "s3cr3t-" * 10


def test_it_passes_the_deployment_checks_with_production_settings():
    result = _manage(
        "check", "--deploy", "--fail-level", "WARNING",
        DJANGO_SETTINGS_MODULE="config.settings.production",
        DJANGO_SECRET_KEY="a-long-random-production-secret-" + "Zq8#xL2$vN5&" * 4,
        FIELD_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
        DJANGO_ALLOWED_HOSTS="sleep.example.com",
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_it_switches_database_and_broker_by_environment():
    probe = (
        "from django.conf import settings; "
        "print(settings.DATABASES['default']['ENGINE'], settings.CELERY_BROKER_URL.split(':')[0])"
    )
    embedded = _manage("shell", "-c", probe, DJANGO_DEBUG="true")
    assert embedded.stdout.strip().splitlines()[-1].split() == ["django.db.backends.sqlite3", "filesystem"], embedded.stderr
    served = _manage(
        "shell", "-c", probe, DJANGO_DEBUG="true",
        DATABASE_URL="postgres://u@127.0.0.1:5432/db", REDIS_URL="redis://127.0.0.1:6379/0",
    )
    assert served.stdout.strip().splitlines()[-1].split() == ["django.db.backends.postgresql", "redis"], served.stderr
