"""Settings of the worker process in the SMTP tests: the test settings, but sending through
the SMTP server named by EMAIL_URL (config.settings.test pins the in-memory backend)."""

from config.settings.test import *  # noqa: F403
from config.settings.base import env

vars().update(env.email_url("EMAIL_URL"))
