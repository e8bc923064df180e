"""gunicorn settings for the web process (also used by `manage.py run_platform`)."""

import multiprocessing
import os

# (2 x cores) + 1 sync workers is gunicorn's own starting point (docs/source/design.rst).
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2 + 1))
timeout = int(os.environ.get("WEB_TIMEOUT", 60))
graceful_timeout = 30
# Access log lines carry paths with organization slugs and uuids, never bodies.
accesslog = "-"
errorlog = "-"
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
