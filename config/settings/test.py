"""Test settings: the base settings with speed-ups only; behaviour is the same."""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("DJANGO_DEBUG", "false")
os.environ.setdefault("DJANGO_SECRET_KEY", "test-secret-key-only-for-the-test-suite-0123456789abcdef")
os.environ.setdefault("FIELD_ENCRYPTION_KEYS", "dGVzdC1vbmx5LWZlcm5ldC1rZXktMzItYnl0ZXMtISE=")
os.environ.setdefault("PLATFORM_ENV_FILE", "/nonexistent")
if "PLATFORM_MEDIA_ROOT" not in os.environ:
    # Uploads (PSG recordings) land in a folder of this run, not in the repository's var/;
    # worker subprocesses inherit the variable, so they read the same files.
    os.environ["PLATFORM_MEDIA_ROOT"] = tempfile.mkdtemp(prefix="sleep-test-media-")
    atexit.register(shutil.rmtree, os.environ["PLATFORM_MEDIA_ROOT"], ignore_errors=True)

from .base import *  # noqa: E402,F403
from .base import DATABASES, REST_FRAMEWORK, VAR_DIR  # noqa: E402

# Fast hashing: the suite creates many users.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not :memory:, so worker subprocesses in integration tests see the same data.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")}
if "CACHE_URL" not in os.environ and "REDIS_URL" not in os.environ:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
REST_FRAMEWORK = {
    **REST_FRAMEWORK,
    "DEFAULT_THROTTLE_RATES": {"anon": "1000/min", "user": "100000/min", "login": "1000/min"},
}
