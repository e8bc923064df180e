"""Settings for every environment, read from the environment (12-factor).

Behaviour switches by environment variables, never by editing this file. Unset URLs fall
back to embedded defaults: SQLite, a filesystem Celery broker, a file cache and console
email, so the platform runs with no external service. With DJANGO_DEBUG off (the default),
DJANGO_SECRET_KEY and FIELD_ENCRYPTION_KEYS have no default: the process refuses to start.
"""

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(environ.Env().str("PLATFORM_VAR_DIR", default=str(BASE_DIR / "var")))

env = environ.Env()
# A local env file (written by platform/start.sh on first run) is read if present;
# real environment variables win over it.
_env_file = env.str("PLATFORM_ENV_FILE", default=str(VAR_DIR / "local.env"))
if Path(_env_file).is_file():
    environ.Env.read_env(_env_file, overwrite=False)


def env_secret(name: str, *, default: str | None = None) -> str | None:
    """Read NAME, or the contents of the file named by NAME_FILE (Docker/K8s secrets)."""
    file_path = env.str(f"{name}_FILE", default="")
    if file_path:
        try:
            return Path(file_path).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE points at an unreadable file") from exc
    return env.str(name, default=default)


# GENERAL
# ------------------------------------------------------------------------------
DEBUG = env.bool("DJANGO_DEBUG", default=False)
_DEV_ONLY = "dev-only-insecure-key-never-use-in-production-" + "x" * 20
SECRET_KEY = env_secret("DJANGO_SECRET_KEY", default=_DEV_ONLY if DEBUG else None)
if not SECRET_KEY:
    raise ImproperlyConfigured(
        "DJANGO_SECRET_KEY (or DJANGO_SECRET_KEY_FILE) must be set when DJANGO_DEBUG is off."
    )
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])
TIME_ZONE = "UTC"  # internal time is UTC; each organization and participant has its own zone
USE_TZ = True
LANGUAGE_CODE = "en-us"
USE_I18N = False
SITE_URL = env.str("PLATFORM_SITE_URL", default="http://127.0.0.1:8000")

# Credentials of upstream APIs are encrypted with the first of these Fernet keys and
# decrypted with any of them (MultiFernet), so keys rotate without downtime.
_DEV_FERNET = "ZGV2LW9ubHktZmVybmV0LWtleS1ub3QtZm9yLXByb2Q="  # base64 of 32 bytes
_keys = env_secret("FIELD_ENCRYPTION_KEYS", default=_DEV_FERNET if DEBUG else "") or ""
FIELD_ENCRYPTION_KEYS = [key.strip() for key in _keys.split(",") if key.strip()]
if not FIELD_ENCRYPTION_KEYS:
    raise ImproperlyConfigured("FIELD_ENCRYPTION_KEYS must be set when DJANGO_DEBUG is off.")

# DATABASES
# ------------------------------------------------------------------------------
VAR_DIR.mkdir(parents=True, exist_ok=True)
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL + a busy timeout let the web server and the worker processes share the file.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 30, "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"}
    )
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# APPS
# ------------------------------------------------------------------------------
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "knox",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "tenants",
    "analytics",
    "integrations",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Content-Security-Policy header (django-csp; policy under SECURITY below).
    "csp.middleware.CSPMiddleware",
    # Dashboard views answer 403/404 with an HTML page; API routes keep their JSON errors.
    "analytics.views.errors.DashboardErrorPagesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "config" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

# STATIC (served by whitenoise from the app folders: no collectstatic needed locally)
# ------------------------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
WHITENOISE_USE_FINDERS = True
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
MEDIA_ROOT = Path(env.str("PLATFORM_MEDIA_ROOT", default=str(VAR_DIR / "media")))
MEDIA_URL = "/media/"

# AUTH
# ------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# The dashboard's sign-in page; the Django admin keeps its own at /admin/login/.
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"

# SECURITY (https://docs.djangoproject.com/en/5.2/ref/checks/#security)
# ------------------------------------------------------------------------------
# DJANGO_HTTPS=true behind TLS (production): secure cookies, HSTS, redirect to https.
HTTPS = env.bool("DJANGO_HTTPS", default=False)
SECURE_SSL_REDIRECT = HTTPS
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = env.int("DJANGO_HSTS_SECONDS", default=31536000 if HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = env.bool("DJANGO_HSTS_PRELOAD", default=False)
# Preloading commits the operator's whole domain to HTTPS in browsers for months: an
# explicit choice (DJANGO_HSTS_PRELOAD=true), so its reminder is silenced until then.
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]
if env.bool("DJANGO_BEHIND_PROXY", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Content-Security-Policy (django-csp): scripts, styles, images and fonts from this origin
# only, so no inline script can run and no page can reach a CDN. Dashboard charts read
# their data from json_script blocks (type application/json, not executed). Swagger UI and
# Redoc start from inline scripts and styles: their two pages are left out.
CONTENT_SECURITY_POLICY = {
    "EXCLUDE_URL_PREFIXES": ["/api/docs/", "/api/redoc/"],
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}
# Request bodies above this are refused with 413 before any parsing (PSG uploads use
# their own streamed upload limit).
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=1024 * 1024)

# CACHE: Redis when REDIS_URL is set; otherwise a file cache that every local process
# (web, worker, beat) shares, so throttles and heartbeats agree across processes.
# ------------------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
if env.str("CACHE_URL", default=""):
    CACHES = {"default": env.cache("CACHE_URL")}
elif REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {"CLIENT_CLASS": "django_redis.client.DefaultClient"},
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
        }
    }

# EMAIL
# ------------------------------------------------------------------------------
EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://")
vars().update(EMAIL_CONFIG)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Sleep Platform <noreply@localhost>")

# CELERY (https://docs.celeryq.dev/en/stable/userguide/configuration.html)
# ------------------------------------------------------------------------------
# Broker: Redis when REDIS_URL (or CELERY_BROKER_URL) is set; otherwise kombu's filesystem
# transport, which needs no server and still runs real worker processes.
BROKER_DIR = VAR_DIR / "broker"
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL or "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    for sub in ("queue", "processed", "control"):
        (BROKER_DIR / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        # Exchange tables; kombu's default is ./control in the current directory.
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
    }
else:
    # Keep task_time_limit below the visibility timeout, or a long task is redelivered
    # while it still runs (shared/reliability.md §1). Same value in every place.
    CELERY_VISIBILITY_TIMEOUT = env.int("CELERY_VISIBILITY_TIMEOUT", default=3600)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": CELERY_VISIBILITY_TIMEOUT,
        # A worker sweeps `unacked` for messages past the visibility timeout every
        # interval × throttle seconds (kombu: 10 × 10); a short timeout needs a faster sweep.
        "unacked_restore_interval": env.int("CELERY_UNACKED_RESTORE_INTERVAL", default=10),
        "unacked_restore_throttle": env.int("CELERY_UNACKED_RESTORE_THROTTLE", default=10),
    }
    CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_VISIBILITY_TIMEOUT}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = "UTC"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
# We never read results: tasks record their outcome in the database.
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default="") or None
# Delivery is at least once: tasks are idempotent, acked after they finish, and requeued
# if their worker process dies (the message is not lost with it).
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Hard limit kills the child; the soft limit raises SoftTimeLimitExceeded first so a task
# can record its state, but it should exit as soon as possible.
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=600)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=540)
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT = env.float("CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT", default=30)
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_WORKER_SEND_TASK_EVENTS = False
CELERY_TASK_DEFAULT_QUEUE = "default"
# Routes live here, never in @task(queue=...), so one place shows what runs where.
CELERY_TASK_ROUTES: dict[str, dict] = {}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE = {
    "platform-heartbeat": {"task": "platform.heartbeat", "schedule": 60.0},
    "integrations-average-stats-daily": {
        "task": "integrations.schedule_average_stats",
        "schedule": 24 * 3600.0,
    },
    "integrations-schedule-due-syncs": {
        "task": "integrations.schedule_due_syncs",
        "schedule": env.float("SYNC_SCHEDULER_SECONDS", default=60.0),
    },
    # Re-enqueues PSG recordings whose task chain was lost (e.g. a flushed broker).
    "integrations-psg-sweep-stranded": {
        "task": "integrations.psg_sweep_stranded",
        "schedule": env.float("PSG_SWEEP_SECONDS", default=300.0),
    },
    # Sends the weekly emails of every organization whose local weekday and hour have come
    # (WeeklyDigest rows make each person's email exactly-once, whatever runs twice).
    "analytics-weekly-emails": {
        "task": "analytics.schedule_weekly_emails",
        "schedule": env.float("WEEKLY_EMAIL_SCHEDULER_SECONDS", default=300.0),
    },
    "analytics-expire-exports": {"task": "analytics.expire_exports", "schedule": 3600.0},
}

# DJANGO REST FRAMEWORK
# ------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "knox.auth.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PAGINATION_CLASS": "tenants.api.pagination.StandardPagination",
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_THROTTLE_CLASSES": [
        "rest_framework.throttling.AnonRateThrottle",
        "rest_framework.throttling.UserRateThrottle",
        "rest_framework.throttling.ScopedRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env.str("THROTTLE_ANON", default="60/min"),
        "user": env.str("THROTTLE_USER", default="1200/min"),
        "login": env.str("THROTTLE_LOGIN", default="10/min"),
    },
    "EXCEPTION_HANDLER": "tenants.api.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
REST_KNOX = {
    # One hashed token per login; listable and revocable (logout / logout-all).
    "TOKEN_TTL": __import__("datetime").timedelta(hours=env.int("API_TOKEN_TTL_HOURS", default=720)),
    "AUTO_REFRESH": False,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Sleep Analytics Platform API",
    "DESCRIPTION": "Multi-tenant sleep analytics. Everything tenant-owned lives under "
    "/api/v1/orgs/{org}/; the organization comes from the URL and your membership.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI and Redoc assets come from the sidecar package: no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

# LOGGING: ids, counts and durations only; never names, emails, hypnograms or payloads.
# ------------------------------------------------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "config.log_format.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": env.str("LOG_FORMAT", default="text"),
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # httpx logs every request's URL at INFO: upstream user and session ids, thousands a
        # sync. The sync logs its own summary per run instead.
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
    },
}

# PLATFORM
# ------------------------------------------------------------------------------
# Smallest cohort HR may see, unless an organization sets a larger one.
MIN_GROUP_SIZE_FLOOR = env.int("MIN_GROUP_SIZE_FLOOR", default=3)
# A sync's lease outlives the hard task limit, so only a dead worker's lease expires.
SYNC_LEASE_SECONDS = env.int("SYNC_LEASE_SECONDS", default=CELERY_TASK_TIME_LIMIT + 60)
# Sync throughput (integrations/sync.py): nights per commit, pages fetched ahead, links paged
# at once, report reads in flight, and the number of links from which a connection pipelines.
SYNC_COMMIT_SESSIONS = env.int("SYNC_COMMIT_SESSIONS", default=2000)
SYNC_FETCH_AHEAD_PAGES = env.int("SYNC_FETCH_AHEAD_PAGES", default=16)
SYNC_FETCH_LINKS = env.int("SYNC_FETCH_LINKS", default=4)
SYNC_HTTP_CONCURRENCY = env.int("SYNC_HTTP_CONCURRENCY", default=8)
SYNC_PIPELINE_MIN_LINKS = env.int("SYNC_PIPELINE_MIN_LINKS", default=50)
# A connection of at least SYNC_SHARD_MIN_LINKS links is synced by SYNC_SHARDS tasks at once
# (integrations/sync_shards.py): match SYNC_SHARDS to the worker's pool size.
SYNC_SHARD_MIN_LINKS = env.int("SYNC_SHARD_MIN_LINKS", default=200)
SYNC_SHARDS = env.int("SYNC_SHARDS", default=2)
# Beat hands connections of at most SYNC_BATCH_MAX_LINKS links (a person's own account) out
# SYNC_BATCH_CONNECTIONS to a task (integrations/sync_batch.py); a batch fetches
# SYNC_BATCH_FETCH_CONNECTIONS connections at once, each SYNC_BATCH_AHEAD_PAGES pages ahead.
SYNC_BATCH_MAX_LINKS = env.int("SYNC_BATCH_MAX_LINKS", default=4)
SYNC_BATCH_CONNECTIONS = env.int("SYNC_BATCH_CONNECTIONS", default=25)
SYNC_BATCH_FETCH_CONNECTIONS = env.int("SYNC_BATCH_FETCH_CONNECTIONS", default=1)
SYNC_BATCH_AHEAD_PAGES = env.int("SYNC_BATCH_AHEAD_PAGES", default=1)
# Upstream base URLs on loopback/private networks are refused unless allowed (SSRF guard).
# The local demo and the tests talk to simulators on 127.0.0.1.
UPSTREAM_ALLOW_PRIVATE = env.bool("UPSTREAM_ALLOW_PRIVATE", default=False)
# PSG recordings (EDF) uploaded for scoring: larger uploads are refused with 413 while they
# stream in. A full-night PSG at 256 Hz with ~20 channels is about 200-300 MiB.
PSG_MAX_UPLOAD_BYTES = env.int("PSG_MAX_UPLOAD_BYTES", default=512 * 1024 * 1024)
# A PSG recording without progress for this long has lost its task chain: the sweep re-enqueues it.
PSG_STRANDED_SECONDS = env.int("PSG_STRANDED_SECONDS", default=900)
# CA bundle (PEM) trusted for upstream TLS besides the system store: a self-signed scorer
# such as the local Grand Challenge simulator. Empty: the system trust store only.
UPSTREAM_CA_BUNDLE = env.str("UPSTREAM_CA_BUNDLE", default="")
# The OpenAPI schema names each model's status enum ("status" fields differ per model;
# without names drf-spectacular warns and `check --deploy` fails).
SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"] = {
    **SPECTACULAR_SETTINGS.get("ENUM_NAME_OVERRIDES", {}),
    "ConnectionStatusEnum": "integrations.models.ConnectionStatus",
    "SyncRunStatusEnum": "integrations.models.SyncRunStatus",
    "PsgRecordingStatusEnum": "integrations.models.PsgStatus",
}

# REPORT EXPORTS (analytics/export_services.py)
# ------------------------------------------------------------------------------
# Export files are deleted (status "expired") this long after they are built.
EXPORT_RETENTION = __import__("datetime").timedelta(days=env.float("EXPORT_RETENTION_DAYS", default=7))
# Where export files live: "filesystem" (MEDIA_ROOT/exports/, the default) or "s3" (any
# S3-compatible store through django-storages). Either way files are private: the platform
# streams them through an org-scoped download view, never a public or pre-signed URL.
EXPORT_STORAGE_BACKEND = env.str("EXPORT_STORAGE_BACKEND", default="filesystem")
if EXPORT_STORAGE_BACKEND == "filesystem":
    STORAGES["exports"] = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(MEDIA_ROOT)},
    }
elif EXPORT_STORAGE_BACKEND == "s3":
    STORAGES["exports"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": env.str("AWS_STORAGE_BUCKET_NAME"),
            "endpoint_url": env.str("AWS_S3_ENDPOINT_URL", default="") or None,  # MinIO, Ceph, R2...
            "region_name": env.str("AWS_S3_REGION_NAME", default="") or None,
            "access_key": env_secret("AWS_ACCESS_KEY_ID", default="") or None,
            "secret_key": env_secret("AWS_SECRET_ACCESS_KEY", default="") or None,
            "location": env.str("AWS_LOCATION", default=""),  # key prefix inside the bucket
            "default_acl": "private",
            "file_overwrite": False,
            "querystring_auth": True,
        },
    }
else:
    raise ImproperlyConfigured(
        f"EXPORT_STORAGE_BACKEND must be 'filesystem' or 's3', not {EXPORT_STORAGE_BACKEND!r}."
    )
SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"]["ExportStatusEnum"] = "analytics.models.Export.Status"

# WEEKLY EMAILS (analytics/email_tasks.py; links use SITE_URL, env PLATFORM_SITE_URL)
# ------------------------------------------------------------------------------
# An organization's emails go out from its local weekday/hour until this many hours later
# (a beat that was down for a while still sends; later than this, the week is skipped).
WEEKLY_EMAIL_MAX_DELAY_HOURS = env.int("WEEKLY_EMAIL_MAX_DELAY_HOURS", default=24)
if not 1 <= WEEKLY_EMAIL_MAX_DELAY_HOURS < 7 * 24:
    raise ImproperlyConfigured("WEEKLY_EMAIL_MAX_DELAY_HOURS must be between 1 and 167.")
WEEKLY_EMAIL_BATCH_SIZE = env.int("WEEKLY_EMAIL_BATCH_SIZE", default=200)
# A claim that never reached the SMTP hand-off is taken over after this long: longer than a
# task may live (hard time limit), so its worker is certainly gone.
WEEKLY_EMAIL_CLAIM_STALE_SECONDS = env.int(
    "WEEKLY_EMAIL_CLAIM_STALE_SECONDS", default=CELERY_TASK_TIME_LIMIT + 300
)
# Unsubscribe links (signed, no login) stop working after this many days.
WEEKLY_EMAIL_UNSUBSCRIBE_MAX_AGE_DAYS = env.int("WEEKLY_EMAIL_UNSUBSCRIBE_MAX_AGE_DAYS", default=180)
# "Send me a test" from the admin page: at most this many per admin per hour.
WEEKLY_EMAIL_TESTS_PER_HOUR = env.int("WEEKLY_EMAIL_TESTS_PER_HOUR", default=10)
