"""Celery tasks of the analytics app (autodiscovered): report exports and weekly emails.

The tasks live beside their services; this module only makes Celery find them.
"""

from analytics.export_tasks import *  # noqa: F401,F403
from analytics.email_tasks import *  # noqa: F401,F403
