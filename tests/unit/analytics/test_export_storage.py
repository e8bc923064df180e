"""Where export files are stored and for how long, chosen by environment variables."""

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
BASE_ENV = {"PATH": "/usr/bin:/bin", "PLATFORM_ENV_FILE": "/nonexistent",
            "PLATFORM_VAR_DIR": "/tmp/sleep-settings-test", "DJANGO_DEBUG": "true"}
PROBE = (
    "from django.conf import settings; from django.core.files.storage import storages; "
    "from analytics.models import Export; s = storages['exports']; "
    "print(type(s).__name__, type(Export._meta.get_field('file').storage).__name__, "
    "settings.EXPORT_RETENTION.total_seconds(), {attrs})"
)


def _probe(attrs: str, **env):
    return subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", PROBE.format(attrs=attrs)], cwd=ROOT, capture_output=True,
        text=True, env={**BASE_ENV, **env},
    )


def test_it_keeps_exports_on_the_filesystem_for_a_week_by_default(settings):
    from django.core.files.storage import FileSystemStorage, storages

    from analytics.models import Export

    storage = storages["exports"]
    assert isinstance(storage, FileSystemStorage) and storage.location == str(settings.MEDIA_ROOT)
    assert Export._meta.get_field("file").storage is storage  # resolved through the alias
    assert settings.EXPORT_RETENTION == timedelta(days=7)


def test_it_stores_exports_privately_on_s3_compatible_storage_when_configured():
    result = _probe(
        "s.bucket_name, s.endpoint_url, s.location, s.default_acl, s.querystring_auth, s.file_overwrite",
        EXPORT_STORAGE_BACKEND="s3", AWS_STORAGE_BUCKET_NAME="sleep-exports",
        AWS_S3_ENDPOINT_URL="http://127.0.0.1:9000", AWS_ACCESS_KEY_ID="key", AWS_SECRET_ACCESS_KEY="secret",
        AWS_LOCATION="tenant-files", EXPORT_RETENTION_DAYS="2",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == (
        "S3Storage S3Storage 172800.0 sleep-exports http://127.0.0.1:9000 tenant-files private True False"
    )


def test_it_refuses_an_unknown_storage_backend():
    result = _probe("None", EXPORT_STORAGE_BACKEND="ftp")
    assert result.returncode != 0
    assert "EXPORT_STORAGE_BACKEND must be 'filesystem' or 's3'" in result.stderr
