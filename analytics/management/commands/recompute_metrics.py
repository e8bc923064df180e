"""Recompute NightlyMetrics (and scores) after a metric definition changed.

    python manage.py recompute_metrics                 # rows older than METRICS_VERSION, every org
    python manage.py recompute_metrics --org acme      # one organization
    python manage.py recompute_metrics --all           # every night, whatever its version

Works per organization, in batches of session ids ordered by start time (so each batch's
score history, the 14 nights before, is already recomputed), through the same service the
sync uses: ``analytics.services.nightly_metrics_compute``. Sessions without a metrics row
are computed too. Safe to interrupt and re-run: a finished batch carries the new version.
"""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q

from analytics.models import METRICS_VERSION, SleepSession
from analytics.services import nightly_metrics_compute
from tenants.models import Organization

# Sessions per service call: one vectorized metrics call and one bulk upsert each
# (about 1 KB of stages a night: ~2 MB of hypnograms in memory per batch).
DEFAULT_BATCH_SIZE = 2000


class Command(BaseCommand):
    help = "Recompute nightly metrics and scores whose metrics_version is older than the code's (or all)."

    def add_arguments(self, parser):
        parser.add_argument("--org", help="organization slug (default: every organization)")
        parser.add_argument("--all", action="store_true", help="recompute every night, not only outdated ones")
        parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)

    def handle(self, *args, **options):
        batch_size = options["batch_size"]
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        organizations = Organization.objects.order_by("slug")
        if options["org"]:
            organizations = organizations.filter(slug=options["org"])
            if not organizations.exists():
                raise CommandError(f"no organization with slug {options['org']!r}")
        total_sessions = total_rows = 0
        for organization in organizations:
            started = time.monotonic()
            ids = self._session_ids(organization, recompute_all=options["all"])
            rows = 0
            for i in range(0, len(ids), batch_size):
                rows += nightly_metrics_compute(organization=organization, session_ids=ids[i : i + batch_size])
            total_sessions += len(ids)
            total_rows += rows
            self.stdout.write(
                f"{organization.slug}: {len(ids)} sessions selected, {rows} metric rows written "
                f"(version {METRICS_VERSION}) in {time.monotonic() - started:.1f} s"
            )
        self.stdout.write(f"total: {total_sessions} sessions, {total_rows} metric rows written")

    @staticmethod
    def _session_ids(organization, *, recompute_all: bool) -> list[int]:
        queryset = SleepSession.objects.for_org(organization)
        if not recompute_all:
            queryset = queryset.filter(Q(metrics__isnull=True) | Q(metrics__metrics_version__lt=METRICS_VERSION))
        return list(queryset.order_by("start", "pk").values_list("pk", flat=True))
