from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta

import numpy as np
import pytest

from analytics.models import NightlyMetrics, SleepSession
from analytics.services import nightly_metrics_compute, sleep_sessions_upsert

from ...factories import ParticipantFactory


@dataclass(frozen=True)
class Record:
    provider: str
    upstream_id: str
    start: datetime
    end: datetime
    timezone: str
    epoch_seconds: int
    stages: bytes
    upstream_updated_at: datetime | None
    upstream_stats: dict


def _night(upstream_id, start, stages, tz="Europe/Berlin"):
    stages = np.asarray(stages, dtype=np.int8)
    return Record("asleep", upstream_id, start, start + timedelta(seconds=30 * stages.size), tz, 30,
                  stages.tobytes(), None, {})


# science.md worked example 1: TIB 10, TST 8, SOL 1.0
EXAMPLE = [0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 2, 3, 3, 4, 4, 4, 4, 0, 0]


@pytest.mark.django_db
class SleepSessionsUpsertTests:
    def test_it_creates_then_skips_unchanged_then_updates_changed_nights(self):
        participant = ParticipantFactory()
        org = participant.organization
        record = _night("s1", datetime(2026, 3, 1, 22, tzinfo=UTC), EXAMPLE)
        first = sleep_sessions_upsert(organization=org, records=[(participant.pk, record, "h1")])
        assert (first.created, first.updated, first.unchanged) == (1, 0, 0)
        again = sleep_sessions_upsert(organization=org, records=[(participant.pk, record, "h1")])
        assert (again.created, again.updated, again.unchanged) == (0, 0, 1)
        revised = replace(record, stages=np.asarray([0] * 20, dtype=np.int8).tobytes())
        third = sleep_sessions_upsert(organization=org, records=[(participant.pk, revised, "h2")])
        assert (third.created, third.updated, third.unchanged) == (0, 1, 0)
        assert SleepSession.objects.count() == 1
        metrics = NightlyMetrics.objects.get()
        assert metrics.tst_min == 0 and metrics.sol_min is None  # recomputed for the revision

    def test_it_keeps_the_last_copy_of_a_key_repeated_in_one_batch(self):
        participant = ParticipantFactory()
        start = datetime(2026, 3, 1, 22, tzinfo=UTC)
        old, new = _night("s1", start, [0] * 20), _night("s1", start, EXAMPLE)
        result = sleep_sessions_upsert(
            organization=participant.organization, records=[(participant.pk, old, "a"), (participant.pk, new, "b")]
        )
        assert result.created == 1
        assert NightlyMetrics.objects.get().tst_min == 8.0

    def test_it_stores_the_engines_metrics_and_local_clock_times(self):
        participant = ParticipantFactory()
        record = _night("s1", datetime(2026, 3, 1, 21, 50, tzinfo=UTC), EXAMPLE)  # 22:50 in Berlin
        sleep_sessions_upsert(organization=participant.organization, records=[(participant.pk, record, "h")])
        m = NightlyMetrics.objects.get()
        assert (m.tib_min, m.spt_min, m.tst_min, m.sol_min, m.lat_rem_min, m.rem_latency_min) == (10, 8, 8, 1, 7, 6)
        assert (m.n3_pct, m.se_pct, m.sme_pct, m.awakenings) == (31.25, 80, 100, 0)
        assert m.night_date == date(2026, 3, 1)
        assert m.bedtime_local == time(22, 50)
        assert m.sleep_onset_local == time(22, 51)
        assert m.wake_time_local == time(23, 0)
        assert m.metrics_version >= 1

    def test_it_marks_one_main_sleep_per_night_date(self):
        participant = ParticipantFactory()
        org = participant.organization
        short = _night("a", datetime(2026, 3, 1, 23, tzinfo=UTC), [2] * 240)  # 2 h
        long = _night("b", datetime(2026, 3, 2, 1, 30, tzinfo=UTC), [2] * 600)  # 5 h, same wake date
        sleep_sessions_upsert(organization=org, records=[(participant.pk, short, "1")])
        assert NightlyMetrics.objects.get().is_main_sleep
        sleep_sessions_upsert(organization=org, records=[(participant.pk, long, "2")])
        flags = dict(NightlyMetrics.objects.values_list("session__upstream_id", "is_main_sleep"))
        assert flags == {"a": False, "b": True}

    def test_it_recomputes_in_a_constant_number_of_queries(self):
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        participant = ParticipantFactory()
        org = participant.organization
        records = [
            (participant.pk, _night(f"n{i}", datetime(2026, 1, 1, 22, tzinfo=UTC) + timedelta(days=i), EXAMPLE), f"h{i}")
            for i in range(60)
        ]
        sleep_sessions_upsert(organization=org, records=records)
        ids = list(SleepSession.objects.order_by("start").values_list("pk", flat=True))
        counts = []
        for batch in (ids[:10], ids):
            with CaptureQueriesContext(connection) as queries:
                assert nightly_metrics_compute(organization=org, session_ids=batch) == len(batch)
            counts.append(len(queries))
        # No query per night: only SQLite's 999-parameter limit splits the bulk insert
        # (about 18 rows of ~55 columns per statement); PostgreSQL writes it in one.
        assert counts[1] - counts[0] <= (len(ids) - 10) // 15
        assert NightlyMetrics.objects.filter(tst_min=8.0).count() == 60

    def test_it_scores_each_night(self):
        participant = ParticipantFactory(birth_year=1990)
        eight_hours = [0] * 20 + [2] * 600 + [3] * 180 + [4] * 180 + [0] * 10
        record = _night("s1", datetime(2026, 3, 1, 22, tzinfo=UTC), eight_hours)
        sleep_sessions_upsert(organization=participant.organization, records=[(participant.pk, record, "h")])
        m = NightlyMetrics.objects.get()
        assert m.score_duration == 100  # 8 h inside the adult band
        assert m.score_depth == 100  # 90 min N3 and 90 min REM
        assert 0 < m.score <= 100
        assert m.score_regularity is None  # no history yet: left out, weights renormalized
