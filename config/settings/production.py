"""Production: the base settings with secure defaults switched on.

Everything is still controlled by the environment; this module only flips the defaults
that must be on behind TLS (see platform/.env.example).
"""

import os

os.environ.setdefault("DJANGO_DEBUG", "false")
os.environ.setdefault("DJANGO_HTTPS", "true")
os.environ.setdefault("DJANGO_BEHIND_PROXY", "true")
os.environ.setdefault("LOG_FORMAT", "json")

from .base import *  # noqa: E402,F403
