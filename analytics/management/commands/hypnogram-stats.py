"""python manage.py hypnogram-stats FILE... : per-night AASM metrics of hypnogram files as CSV.

For researchers: one stage per line or per CSV/TSV row (digits in the canonical encoding or
labels W/N1/N2/N3/R/REM/L...), 30-s epochs unless --epoch-seconds says otherwise. Metric
definitions: README "Per-night metrics" and analytics/engine/metrics.py.
"""

import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from analytics.engine.hypnogram_io import HypnogramFormatError, format_rows_csv, read_hypnogram
from analytics.engine.metrics import night_metrics_from_list


class Command(BaseCommand):
    help = "Print one CSV row of per-night sleep metrics (minutes and percent) per hypnogram file."

    def add_arguments(self, parser):
        parser.add_argument("files", nargs="+", type=Path)
        parser.add_argument("--epoch-seconds", type=float, default=30.0, help="epoch length (default 30)")
        parser.add_argument("--output", type=Path, help="write the CSV here instead of stdout")

    def handle(self, *args, files, epoch_seconds, output, **options):
        if epoch_seconds <= 0:
            raise CommandError("--epoch-seconds must be positive.")
        hypnograms = []
        for path in files:
            try:
                hypnograms.append(read_hypnogram(path))
            except FileNotFoundError:
                raise CommandError(f"{path}: no such file") from None
            except HypnogramFormatError as exc:
                raise CommandError(f"{path}: {exc}") from None
        frame = night_metrics_from_list(hypnograms, epoch_seconds)
        text = format_rows_csv(frame, [str(path) for path in files])
        if output:
            output.write_text(text)
        else:
            sys.stdout.write(text)
