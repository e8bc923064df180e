from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta

import numpy as np
import pytest

from analytics.models import NightlyMetrics, SleepSession
from analytics.services import nightly_metrics_compute, sleep_sessions_upsert

from ...factories import OrganizationFactory, ParticipantFactory


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

    @pytest.mark.parametrize("direction", [1, -1])
    def test_it_settles_the_date_a_revised_session_moves_away_from(self, direction):
        participant = ParticipantFactory()
        org = participant.organization
        # Both wake up on 2 March in Berlin: a's 8 h night is the main sleep, b's 2 h morning
        # sleep (from 09:00, before the nap window) is not.
        a = _night("a", datetime(2026, 3, 1, 22, tzinfo=UTC), [2] * 960)
        b = _night("b", datetime(2026, 3, 2, 8, tzinfo=UTC), [2] * 240)
        sleep_sessions_upsert(organization=org, records=[(participant.pk, a, "1"), (participant.pk, b, "1")])
        assert self._main_sleeps(org) == {"a": (date(2026, 3, 2), True), "b": (date(2026, 3, 2), False)}

        # The upstream revises a: it now wakes up a day later (or earlier), b is left alone on 2 March.
        moved = replace(a, start=a.start + timedelta(days=direction), end=a.end + timedelta(days=direction))
        sleep_sessions_upsert(organization=org, records=[(participant.pk, moved, "2")])
        assert self._main_sleeps(org) == {
            "a": (date(2026, 3, 2) + timedelta(days=direction), True),
            "b": (date(2026, 3, 2), True),
        }

    @staticmethod
    def _main_sleeps(org) -> dict[str, tuple[date, bool]]:
        rows = NightlyMetrics.objects.for_org(org).values_list("session__upstream_id", "night_date", "is_main_sleep")
        return {upstream_id: (night_date, is_main) for upstream_id, night_date, is_main in rows}

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


def _varied_night(rng, sleep_epochs: int) -> np.ndarray:
    """A realistic hypnogram: onset wake, cycles of light/N2/N3/REM with a little wake and no data."""
    cycle = np.array([1] * 6 + [2] * 30 + [3] * 20 + [2] * 14 + [4] * 20 + [5] * 10, dtype=np.int8)
    sleep = np.resize(np.roll(cycle, int(rng.integers(0, cycle.size))), sleep_epochs)
    for at in rng.integers(0, sleep_epochs, 4):
        sleep[at:at + int(rng.integers(1, 14))] = 0  # awakenings, some of them >= 5 min
    sleep[int(rng.integers(0, sleep_epochs))] = -1
    onset = np.zeros(int(rng.integers(4, 40)), dtype=np.int8)
    return np.concatenate([onset, sleep, np.zeros(int(rng.integers(2, 20)), dtype=np.int8)])


def _mixed_records(rng, seconds: bool = False) -> dict[str, list[Record]]:
    """Three weeks of two people's sleeps with the cases the store must decide: a nap, two
    sleeps ending on one date, a night without sleep, a DST change, 20-second epochs; with
    ``seconds``, start times off the whole minute."""
    records = {"a": [], "b": []}
    for day in range(21):
        evening = datetime(2026, 3, 15, 21, tzinfo=UTC) + timedelta(days=day)
        for person, epoch in (("a", 30), ("b", 20)):
            start = evening + timedelta(minutes=int(rng.integers(0, 150)))
            if seconds:
                start += timedelta(seconds=int(rng.integers(1, 60)))
            epochs = int(rng.integers(6, 9) * 3600 / epoch)
            stages = _varied_night(rng, epochs)
            if person == "a" and day == 9:
                stages = np.zeros_like(stages)  # in bed, never asleep
            records[person].append(replace(
                _night(f"{person}-{day}", start, stages), epoch_seconds=epoch,
                end=start + timedelta(seconds=epoch * stages.size),
            ))
    # A nap (13:00 in New York, a's zone) and, for b, a short sleep before the main one on the
    # same wake date.
    records["a"].append(_night("a-nap", datetime(2026, 3, 20, 17, tzinfo=UTC), [2] * 120))
    short = _varied_night(rng, 200)
    records["b"].append(replace(_night("b-short", datetime(2026, 3, 24, 1, tzinfo=UTC), short),
                                epoch_seconds=20, end=datetime(2026, 3, 24, 1, tzinfo=UTC)
                                + timedelta(seconds=20 * short.size)))
    return records


def _stored(org) -> dict[tuple[str, str], dict]:
    fields = [f.name for f in NightlyMetrics._meta.concrete_fields
              if f.name not in ("session", "organization", "participant", "computed_at")]
    rows = NightlyMetrics.objects.for_org(org).values("participant__name", "session__upstream_id", *fields)
    return {(row.pop("participant__name"), row.pop("session__upstream_id")): row for row in rows}


@pytest.mark.django_db
class NightlyMetricsBatchTests:
    """One upsert of many nights (history and main-sleep rivals taken from the batch) must
    store exactly what storing the same nights one call each, in order, stores."""

    @pytest.mark.parametrize("seconds", [False, True], ids=["whole minutes", "with seconds"])
    def test_it_stores_what_a_night_by_night_computation_stores(self, seconds):
        rng = np.random.default_rng(20260315)
        records = _mixed_records(rng, seconds)
        # Then revised: b's short sleep grows past its date's main sleep; a night is rescored.
        short, night = records["b"][-1], records["a"][12]
        longer = _varied_night(rng, 1500)  # 500 min of sleep at 20-s epochs
        revised = {
            "b-short": replace(short, stages=longer.tobytes(), end=short.start + timedelta(seconds=20 * longer.size)),
            "a-12": replace(night, stages=np.roll(np.frombuffer(night.stages, np.int8), 7).tobytes()),
        }
        stored = []
        for mode in ("batch", "night by night"):
            org = OrganizationFactory(score_weights={"duration": 2, "regularity": 1, "depth": 1})
            people = {
                "a": ParticipantFactory(organization=org, name="a", timezone="America/New_York", birth_year=1950),
                "b": ParticipantFactory(organization=org, name="b", birth_year=None),
            }
            rows = [(people[p].pk, r, r.upstream_id) for p, rs in records.items() for r in rs]
            changes = [(pid, revised[r.upstream_id], "revised") for pid, r, _ in rows if r.upstream_id in revised]
            if mode == "batch":
                rng.shuffle(rows)  # ids in no particular date order
                sleep_sessions_upsert(organization=org, records=rows)
                sleep_sessions_upsert(organization=org, records=changes)
            else:
                for row in sorted(rows, key=lambda row: row[1].start) + changes:
                    sleep_sessions_upsert(organization=org, records=[row])
            stored.append(_stored(org))

        batch, single = stored
        assert batch.keys() == single.keys() and len(batch) == 44
        for key, values in single.items():
            assert batch[key] == values, key  # floats bit for bit, NULL where NULL
        assert not single[("a", "a-nap")]["is_main_sleep"] and single[("a", "a-nap")]["score"] is None
        assert single[("b", "b-short")]["is_main_sleep"] and not single[("b", "b-8")]["is_main_sleep"]
        assert single[("a", "a-9")]["score"] == 0
        assert sum(v["score_regularity"] is not None for v in single.values()) > 30  # history used


@pytest.mark.django_db
class SleepSessionWriteTests:
    def test_it_writes_every_field_of_a_session(self):
        # A new SleepSession field must be written by the PostgreSQL path of
        # analytics.services (_sessions_write_postgresql) too, not only by bulk_create.
        assert {f.name for f in SleepSession._meta.concrete_fields} == {
            "id", "uuid", "organization", "participant", "provider", "upstream_id", "start", "end",
            "timezone", "epoch_seconds", "stages", "upstream_stats", "upstream_updated_at",
            "content_hash", "created_at", "updated_at",
        }
        participant = ParticipantFactory()
        org = participant.organization
        updated_at = datetime(2026, 3, 2, 7, 15, 30, 123456, tzinfo=UTC)
        record = replace(_night("s1", datetime(2026, 3, 1, 22, 0, 0, 250000, tzinfo=UTC), EXAMPLE, tz="Asia/Tokyo"),
                         upstream_stats={"score": 81, "hr": [50.5, None], "note": "ü \"q\""},
                         upstream_updated_at=updated_at)
        result = sleep_sessions_upsert(organization=org, records=[(participant.pk, record, "h1")])
        session = SleepSession.objects.get()
        assert result.session_ids == [session.pk]
        assert (session.organization_id, session.participant_id, session.provider, session.upstream_id) == (
            org.pk, participant.pk, "asleep", "s1")
        assert (session.start, session.end, session.timezone, session.epoch_seconds) == (
            record.start, record.end, "Asia/Tokyo", 30)
        assert bytes(session.stages) == record.stages
        assert session.upstream_stats == record.upstream_stats
        assert (session.upstream_updated_at, session.content_hash) == (updated_at, "h1")
        assert session.uuid is not None and session.created_at is not None
        assert session.updated_at >= session.created_at

        sleep_sessions_upsert(organization=org, records=[(participant.pk, replace(record, upstream_stats={}), "h2")])
        again = SleepSession.objects.get()
        assert (again.uuid, again.created_at) == (session.uuid, session.created_at)  # kept on update
        assert (again.upstream_stats, again.content_hash) == ({}, "h2")
        assert again.updated_at >= session.updated_at
