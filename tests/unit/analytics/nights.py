"""Hand-built nights for the analytics API tests, stored through the real write path."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np

from analytics.services import sleep_sessions_upsert


@dataclass(frozen=True)
class Record:
    """A canonical record as a provider hands it over (analytics.services.CanonicalRecord)."""

    provider: str
    upstream_id: str
    start: datetime
    end: datetime
    timezone: str
    epoch_seconds: int
    stages: bytes
    upstream_updated_at: datetime | None
    upstream_stats: dict

    @classmethod
    def night(cls, upstream_id: str, start: datetime, stages, tz: str = "Europe/Berlin") -> Record:
        stages = np.asarray(stages, dtype=np.int8)
        return cls("asleep", upstream_id, start, start + timedelta(seconds=30 * stages.size), tz, 30,
                   stages.tobytes(), None, {})


def hypnogram(sleep_epochs: int, *, onset: int = 20, wake_inside: int = 0, final_wake: int = 10) -> np.ndarray:
    """Wake ``onset`` epochs, N2/N3/REM cycles, ``wake_inside`` epochs of WASO mid-night, final wake."""
    cycle = np.array([2] * 30 + [3] * 20 + [2] * 20 + [4] * 20, dtype=np.int8)
    sleep = np.resize(cycle, sleep_epochs)
    half = sleep_epochs // 2
    parts = [np.zeros(onset, np.int8), sleep[:half], np.zeros(wake_inside, np.int8), sleep[half:],
             np.zeros(final_wake, np.int8)]
    return np.concatenate(parts)


def store_nights(organization, participant, dates: list[date], *, sleep_epochs: int = 900, bed_hour: int = 22,
                 wake_inside: int = 0, prefix: str = "n") -> None:
    """One main sleep per wake-up date in ``dates`` (bed at ``bed_hour`` UTC the evening before)."""
    records = []
    for d in dates:
        start = datetime(d.year, d.month, d.day, bed_hour, tzinfo=UTC) - timedelta(days=1)
        stages = hypnogram(sleep_epochs, wake_inside=wake_inside)
        records.append((participant.pk, Record.night(f"{prefix}-{participant.pk}-{d}", start, stages), f"{d}"))
    sleep_sessions_upsert(organization=organization, records=records)


def days(first: date, count: int) -> list[date]:
    return [first + timedelta(days=i) for i in range(count)]
