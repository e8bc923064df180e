"""Deterministic synthetic nights: what the simulated upstreams serve.

A night is a function of ``(upstream user id, night_of date, revision)`` only, so the
simulators, the tests and the benchmarks can all regenerate the same ground truth without
storing it. ``night_of`` is the calendar date of the *evening* the night starts (local
time); the night belongs to the wake-up date (shared/science.md §2), usually
``night_of + 1``.

What a night looks like (shared/science.md, AASM):
- bedtime around the user's chronotype, later on free nights (Friday and Saturday night,
  social jet lag about 1 h), with a personal night-to-night spread;
- sleep onset latency (lognormal, median 6–20 min per user);
- 4–6 NREM/REM cycles of about 90 min; N3 concentrated in the first cycles; REM episodes
  lengthening toward morning; brief awakenings at cycle ends and inside N2;
- occasional bad nights (insomnia-like: 40–110 min latency, 30–90 min extra WASO),
  occasional missing nights (``generate_night`` returns None), rare short artefact runs
  (``-1``), and a per-user IANA timezone.

Output is the canonical hypnogram of shared/design.md: 30-s epochs, int8,
``0 W, 1 N1, 2 N2, 3 N3, 4 REM, 5 Light, -1 no data``. The generator is PSG-like, so it
never emits ``5``; the provider views below map it to each upstream's own encoding.

Speed: one night costs a few tens of microseconds (pure-Python draws from one seeded
``random.Random`` and a single ``np.repeat``), so 90,000 nights take a few seconds.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np

EPOCH_SECONDS = 30
EPOCHS_PER_MINUTE = 60 // EPOCH_SECONDS

# Canonical codes (shared/design.md "Canonical hypnogram").
WAKE, N1, N2, N3, REM, LIGHT, NO_DATA = 0, 1, 2, 3, 4, 5, -1

# Timezones a simulated user may live in (a spread of offsets and DST rules).
TIMEZONES = (
    "Europe/Berlin",
    "Europe/London",
    "Europe/Copenhagen",
    "Europe/Amsterdam",
    "America/New_York",
    "America/Chicago",
    "America/Los_Angeles",
    "America/Sao_Paulo",
    "Asia/Seoul",
    "Asia/Tokyo",
    "Asia/Kolkata",
    "Australia/Sydney",
)

# Target N3 minutes per cycle, before the personal deep-sleep factor: slow-wave sleep is
# front-loaded (most of it in the first two cycles, almost none after the third).
N3_MINUTES_BY_CYCLE = (36.0, 22.0, 9.0, 3.0, 0.0, 0.0)
# A REM episode lasts about 5-10 min in the first cycle and 25-40 min in the last one.
REM_FIRST_MINUTES = 10.0
REM_GROWTH_MINUTES = 30.0
# Awake runs of at least this many epochs inside the sleep period count as long awakenings.
MERGE_REM_GAP_EPOCHS = 30  # REM runs closer than 15 min belong to one REM episode


def _seed(*parts: object) -> int:
    """A 64-bit seed from any printable parts (stable across processes, unlike hash())."""
    text = "|".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little")


@dataclass(frozen=True, slots=True)
class Chronotype:
    """A simulated person's sleep habits, derived from the user id alone."""

    user_id: str
    timezone: str
    bedtime_min: float  # workday bedtime, minutes after local midnight of night_of
    bedtime_sd_min: float  # night-to-night spread of bedtime
    weekend_delay_min: float  # later bedtime on free nights (social jet lag)
    weekend_extra_sleep_min: float  # and a longer sleep on free nights
    sleep_period_min: float  # workday sleep period (onset to final awakening)
    sol_median_min: float  # median sleep onset latency
    cycle_min: float  # personal NREM/REM cycle length
    deep_factor: float  # N3 amount (younger people: more)
    rem_factor: float
    arousal_rate: float  # chance of a brief awakening at each cycle end
    bad_night_rate: float
    missing_rate: float
    artefact_rate: float
    resting_hr: float  # beats per minute
    snorer: bool

    @property
    def zone(self) -> ZoneInfo:
        return _zone(self.timezone)


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


@lru_cache(maxsize=65536)
def chronotype(user_id: str, timezone: str | None = None) -> Chronotype:
    """The habits of ``user_id``; ``timezone`` overrides the seeded IANA zone."""
    rng = random.Random(_seed("chronotype", user_id))
    tz = rng.choice(TIMEZONES)
    return Chronotype(
        user_id=user_id,
        timezone=timezone or tz,
        bedtime_min=min(max(rng.gauss(23.2 * 60, 40), 21.5 * 60), 25.0 * 60),
        bedtime_sd_min=rng.uniform(12, 40),
        weekend_delay_min=rng.uniform(40, 85),
        weekend_extra_sleep_min=rng.uniform(15, 50),
        sleep_period_min=min(max(rng.gauss(445, 30), 370), 530),
        sol_median_min=rng.uniform(6, 20),
        cycle_min=rng.uniform(85, 100),
        deep_factor=rng.uniform(0.65, 1.3),
        rem_factor=rng.uniform(0.85, 1.15),
        arousal_rate=rng.uniform(0.25, 0.7),
        bad_night_rate=rng.uniform(0.02, 0.12),
        missing_rate=rng.uniform(0.02, 0.08),
        artefact_rate=0.03,
        resting_hr=rng.uniform(48, 68),
        snorer=rng.random() < 0.3,
    )


@dataclass(frozen=True, slots=True, eq=False)
class Night:
    """One canonical night (shared/design.md): what a connector should end up storing."""

    user_id: str
    night_of: date
    start: datetime  # aware, UTC, time in bed starts
    end: datetime  # aware, UTC, = start + len(stages) * epoch_seconds
    timezone: str  # IANA
    stages: np.ndarray = field(repr=False)  # int8, canonical codes, one per epoch
    epoch_seconds: int = EPOCH_SECONDS
    revision: int = 0  # how many times the upstream re-scored it
    bad: bool = False  # an insomnia-like night

    @property
    def n_epochs(self) -> int:
        return int(self.stages.shape[0])

    @property
    def start_ts(self) -> float:
        return self.start.timestamp()

    @property
    def end_ts(self) -> float:
        return self.end.timestamp()

    @property
    def local_start(self) -> datetime:
        return self.start.astimezone(_zone(self.timezone))

    @property
    def local_end(self) -> datetime:
        return self.end.astimezone(_zone(self.timezone))

    @property
    def wake_date(self) -> date:
        """The date the night belongs to (local wake-up date, shared/science.md §2)."""
        return self.local_end.date()

    def content_hash(self) -> str:
        """sha256 over start, end, timezone, epoch length and the canonical stage bytes."""
        h = hashlib.sha256()
        h.update(
            f"{int(self.start_ts)}|{int(self.end_ts)}|{self.timezone}|{self.epoch_seconds}|".encode()
        )
        h.update(self.stages.astype(np.int8).tobytes())
        return h.hexdigest()


# --------------------------------------------------------------------------- generation


def _build_stages(
    rng: random.Random,
    ct: Chronotype,
    *,
    sol_epochs: int,
    spt_epochs: int,
    final_wake_epochs: int,
    n_cycles: int,
    bad: bool,
    extra_waso_epochs: int,
) -> np.ndarray:
    """Lay out latency, cycles, awakenings and final wake as one int8 array."""
    randint, uniform, rand = rng.randint, rng.uniform, rng.random
    values: list[int] = []
    lengths: list[int] = []

    def add(stage: int, n: int) -> None:
        if n > 0:
            values.append(stage)
            lengths.append(n)

    # Sleep onset latency; on some nights a short N1 dip before falling asleep for real.
    if sol_epochs > 8 and rand() < (0.5 if bad else 0.15):
        dip = randint(1, 3)
        first = randint(1, sol_epochs - dip - 1)
        add(WAKE, first)
        add(N1, dip)
        add(WAKE, sol_epochs - first - dip)
    else:
        add(WAKE, sol_epochs)

    # Cycle lengths around spt / n, jittered, summing to spt exactly.
    raw = [uniform(0.88, 1.12) for _ in range(n_cycles)]
    scale = spt_epochs / sum(raw)
    cycle_lengths = [int(r * scale) for r in raw]
    cycle_lengths[-1] += spt_epochs - sum(cycle_lengths)

    # Long wake episodes of a bad night go in after some cycles (never before the first).
    long_wake_after: dict[int, int] = {}
    if bad and extra_waso_epochs > 0 and n_cycles > 1:
        k = randint(1, min(3, n_cycles - 1))
        cuts = sorted(rng.sample(range(n_cycles - 1), k))
        per = extra_waso_epochs // k
        for j, c in enumerate(cuts):
            long_wake_after[c] = per if j < k - 1 else extra_waso_epochs - per * (k - 1)

    debt = 0  # epochs a previous awakening took from this cycle
    last = n_cycles - 1
    for i, length in enumerate(cycle_lengths):
        length -= debt
        debt = 0
        pos = i / last if last else 0.0
        n1 = randint(4, 14) if i == 0 else randint(2, 8)
        n3 = int(
            N3_MINUTES_BY_CYCLE[min(i, 5)] * ct.deep_factor * uniform(0.7, 1.3) * EPOCHS_PER_MINUTE
        )
        if i == 0:
            rem_min = uniform(5, 12)
        else:
            rem_min = (REM_FIRST_MINUTES + REM_GROWTH_MINUTES * pos) * uniform(0.8, 1.2)
        rem = max(int(rem_min * ct.rem_factor * EPOCHS_PER_MINUTE), 6)
        n2 = length - n1 - n3 - rem
        if n2 < 8:  # a short cycle: shrink N3 and REM, keep some N2
            spare = max(length - n1 - 8, 6)
            f = spare / (n3 + rem)
            n3, rem = int(n3 * f), max(int(rem * f), 6)
            n2 = max(length - n1 - n3 - rem, 1)
        if n3 > 0:
            a = int(n2 * uniform(0.55, 0.8))
            add(N1, n1)
            add(N2, a)
            add(N3, n3)
            add(N2, n2 - a)
        else:
            add(N1, n1)
            add(N2, n2)
        if i == last and rand() < 0.35:
            rem = max(rem // 2, 4)  # the alarm cuts the last REM episode short
        add(REM, rem)
        if i in long_wake_after:
            add(WAKE, long_wake_after[i])
        elif i < last and rand() < ct.arousal_rate:
            w = randint(8, 24) if rand() < 0.12 else randint(1, 4)
            add(WAKE, w)
            debt = w

    add(WAKE, final_wake_epochs)
    stages = np.repeat(np.array(values, dtype=np.int8), np.array(lengths, dtype=np.int64))

    # Micro-arousals inside N2: one or two wake epochs followed by an N1 epoch.
    n_micro = randint(0, 3) + (randint(2, 5) if bad else 0)
    if n_micro:
        n = stages.shape[0]
        for _ in range(n_micro):
            j = randint(sol_epochs + 20, max(n - final_wake_epochs - 20, sol_epochs + 21))
            if j + 3 < n and stages[j] == N2 and stages[j + 2] == N2:
                stages[j] = WAKE
                stages[j + 1] = N1 if rand() < 0.5 else WAKE
                stages[j + 2] = N1
    return stages


def _night_plan(
    rng: random.Random, ct: Chronotype, night_of: date, bad: bool
) -> tuple[int, int, int, int, int]:
    """Bedtime (s after local midnight of night_of), SOL, SPT, final wake, extra WASO (epochs)."""
    free = night_of.weekday() in (4, 5)  # nights before Saturday and Sunday
    bed_min = ct.bedtime_min + rng.gauss(0, ct.bedtime_sd_min)
    spt_min = ct.sleep_period_min + rng.gauss(0, 28)
    if free:
        bed_min += ct.weekend_delay_min
        spt_min += ct.weekend_extra_sleep_min
    sol_min = min(max(ct.sol_median_min * math.exp(rng.gauss(0, 0.5)), 1.5), 55.0)
    final_min = rng.uniform(0.5, 12)
    extra_waso_min = 0.0
    if bad:
        sol_min = rng.uniform(40, 110)
        spt_min -= rng.uniform(20, 70)
        extra_waso_min = rng.uniform(30, 90)
    bed_s = int(bed_min * 60) + rng.randint(0, 59)
    e = EPOCHS_PER_MINUTE
    return (
        bed_s,
        int(sol_min * e),
        int(spt_min * e),
        max(int(final_min * e), 1),
        int(extra_waso_min * e),
    )


def generate_night(
    user_id: str,
    night_of: date,
    *,
    revision: int = 0,
    ct: Chronotype | None = None,
    allow_missing: bool = True,
    artefacts: bool = True,
) -> Night | None:
    """The night of ``user_id`` starting on the evening of ``night_of`` (None if missing).

    ``revision`` > 0 is the same night re-scored by the upstream: same bed and wake times,
    some stage boundaries moved. ``artefacts=False`` leaves out the rare no-data runs
    (everything else stays identical).
    """
    ct = ct or chronotype(user_id)
    rng = random.Random(_seed(user_id, night_of.toordinal()))
    missing = rng.random() < ct.missing_rate
    if missing and allow_missing:
        return None
    bad = rng.random() < ct.bad_night_rate
    bed_s, sol, spt, final, extra = _night_plan(rng, ct, night_of, bad)
    n_cycles = round(spt / (ct.cycle_min * EPOCHS_PER_MINUTE))
    n_cycles = min(max(n_cycles, 3 if bad else 4), 6)
    stages = _build_stages(
        rng,
        ct,
        sol_epochs=sol,
        spt_epochs=spt,
        final_wake_epochs=final,
        n_cycles=n_cycles,
        bad=bad,
        extra_waso_epochs=extra,
    )
    if rng.random() < ct.artefact_rate:  # the sensor lost the signal for a while
        n = stages.shape[0]
        k = rng.randint(2, 40)
        j = rng.randint(n // 5, max(n - k - 1, n // 5))
        if artefacts:
            stages[j : j + k] = NO_DATA
    if revision:
        stages = rescore(stages, _seed(user_id, night_of.toordinal(), "rev", revision))
    tz = ct.zone
    local_start = datetime(night_of.year, night_of.month, night_of.day, tzinfo=tz) + timedelta(
        seconds=bed_s
    )
    start = local_start.astimezone(UTC)
    end = start + timedelta(seconds=stages.shape[0] * EPOCH_SECONDS)
    return Night(
        user_id=user_id,
        night_of=night_of,
        start=start,
        end=end,
        timezone=ct.timezone,
        stages=stages,
        revision=revision,
        bad=bad,
    )


def generate_nights(
    user_id: str, last_night: date, count: int, *, ct: Chronotype | None = None
) -> list[Night]:
    """Nights of the ``count`` evenings ending with ``last_night`` (missing ones left out)."""
    ct = ct or chronotype(user_id)
    first = last_night - timedelta(days=count - 1)
    nights = (generate_night(user_id, first + timedelta(days=i), ct=ct) for i in range(count))
    return [n for n in nights if n is not None]


def rescore(stages: np.ndarray, seed: int) -> np.ndarray:
    """A re-scored copy: a few stage boundaries shift by 1-4 epochs, some N2 becomes N1."""
    rng = random.Random(seed)
    out = stages.copy()
    change = np.flatnonzero(out[1:] != out[:-1]) + 1
    if change.size:
        for j in rng.sample(list(change), min(len(change), rng.randint(3, 8))):
            shift = rng.randint(1, 4)
            if rng.random() < 0.5:  # the later stage starts earlier
                out[max(j - shift, 0) : j] = out[j]
            else:  # the earlier stage lasts longer
                out[j : j + shift] = out[j - 1]
    n2 = np.flatnonzero(out == N2)
    if n2.size:
        for j in rng.sample(list(n2), min(len(n2), rng.randint(1, 6))):
            out[j] = N1
    if np.array_equal(out, stages):  # never hand back an identical "revision"
        out[out.shape[0] // 2] = N1 if out[out.shape[0] // 2] != N1 else N2
    return out


def synthetic_hypnogram(seed: int | bytes | str, n_epochs: int) -> np.ndarray:
    """A realistic canonical hypnogram of exactly ``n_epochs`` epochs, for scoring results.

    Used by the PSG scoring simulators (U-Sleep, Grand Challenge): the recording's length
    fixes ``n_epochs`` and a hash of its content fixes ``seed``. No artefact epochs.
    """
    if n_epochs <= 0:
        return np.zeros(0, dtype=np.int8)
    rng = random.Random(_seed("psg", seed))
    ct = chronotype(f"psg:{rng.getrandbits(32)}")
    sol = min(
        int(ct.sol_median_min * EPOCHS_PER_MINUTE * math.exp(rng.gauss(0, 0.4))), n_epochs // 5
    )
    final = min(rng.randint(1, 20), n_epochs // 10)
    spt = n_epochs - sol - final
    if spt < 20:  # too short for a cycle structure: wake then light sleep
        out = np.full(n_epochs, N2, dtype=np.int8)
        out[: max(sol, 1)] = WAKE
        return out
    n_cycles = max(1, min(6, round(spt / (ct.cycle_min * EPOCHS_PER_MINUTE))))
    stages = _build_stages(
        rng,
        ct,
        sol_epochs=sol,
        spt_epochs=spt,
        final_wake_epochs=final,
        n_cycles=n_cycles,
        bad=False,
        extra_waso_epochs=0,
    )
    # Cycle bookkeeping can be off by a few epochs on very short recordings: fit exactly.
    if stages.shape[0] > n_epochs:
        stages = stages[:n_epochs]
    elif stages.shape[0] < n_epochs:
        stages = np.concatenate([stages, np.zeros(n_epochs - stages.shape[0], dtype=np.int8)])
    return stages


# --------------------------------------------------------------------------- analysis


def runs(stages: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run-length encoding: (values, starts, lengths)."""
    n = stages.shape[0]
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return stages[:0], empty, empty
    starts = np.concatenate([[0], np.flatnonzero(stages[1:] != stages[:-1]) + 1])
    lengths = np.diff(np.concatenate([starts, [n]]))
    return stages[starts], starts, lengths


def rem_episodes(
    stages: np.ndarray, merge_gap: int = MERGE_REM_GAP_EPOCHS
) -> list[tuple[int, int]]:
    """REM episodes as (first, last+1) epoch ranges, merging REM runs less than 15 min apart.

    No-data epochs take the value of the epoch before them, so an artefact inside a REM
    episode does not split it in two.
    """
    if stages.size and (stages < 0).any():
        idx = np.where(stages >= 0, np.arange(stages.shape[0]), 0)
        stages = stages[np.maximum.accumulate(idx)]
    vals, starts, lengths = runs(stages)
    episodes: list[list[int]] = []
    for v, s, n in zip(vals.tolist(), starts.tolist(), lengths.tolist(), strict=True):
        if v != REM:
            continue
        if episodes and s - episodes[-1][1] < merge_gap:
            episodes[-1][1] = s + n
        else:
            episodes.append([s, s + n])
    return [(a, b) for a, b in episodes]


def count_cycles(stages: np.ndarray) -> int:
    """NREM/REM cycles = REM episodes (each cycle ends with one)."""
    return len(rem_episodes(stages))


# --------------------------------------------------------------------------- provider views

# Lookup tables indexed by canonical code + 1 (so -1 no-data is index 0).
_ASLEEP = np.array([-1, 0, 1, 1, 2, 3, 1], dtype=np.int8)  # 0 wake, 1 light, 2 deep, 3 REM
_ASLEEP_BACK = {0: WAKE, 1: LIGHT, 2: N3, 3: REM, -1: NO_DATA}
_USLEEP = np.array([0, 0, 1, 2, 3, 4, 2], dtype=np.int8)  # W N1 N2 N3 REM; no-data -> W
USLEEP_CLASSES = {"0": "W", "1": "N1", "2": "N2", "3": "N3", "4": "REM"}

BEDDIT_AWAY, BEDDIT_SLEEP, BEDDIT_RESTLESS, BEDDIT_WAKE, BEDDIT_NO_SIGNAL, BEDDIT_GAP = (
    65,
    83,
    82,
    87,
    78,
    71,
)


def to_asleep(stages: np.ndarray) -> np.ndarray:
    """Asleep 4-stage plan: 0 wake, 1 light (N1/N2/Light), 2 deep (N3), 3 REM.

    ``-1`` (no data) is kept: the value the skills pack documents (upstreams.md §1.2 [I]).
    """
    return _ASLEEP[stages.astype(np.int64) + 1]


def asleep_to_canonical(codes: np.ndarray) -> np.ndarray:
    """Asleep 0/1/2/3 -> canonical 0/5/3/4 (shared/design.md)."""
    table = np.array([-1, 0, 5, 3, 4], dtype=np.int8)
    return table[np.asarray(codes, dtype=np.int64) + 1]


def to_usleep(stages: np.ndarray) -> np.ndarray:
    """U-Sleep classes 0 W, 1 N1, 2 N2, 3 N3, 4 REM (U-Time map)."""
    return _USLEEP[stages.astype(np.int64) + 1]


def to_beddit_codes(stages: np.ndarray) -> np.ndarray:
    """Per-epoch Beddit ASCII codes.

    W -> W; sleep -> S; the N1 epoch right after an awakening -> R (restless, a movement
    arousal); the middle of a wake run of 5 min or more inside the sleep period -> A (the
    person left the bed); no-data -> N.
    """
    codes = np.full(stages.shape[0], BEDDIT_SLEEP, dtype=np.uint8)
    codes[stages == WAKE] = BEDDIT_WAKE
    codes[stages == NO_DATA] = BEDDIT_NO_SIGNAL
    after_wake = np.zeros(stages.shape[0], dtype=bool)
    after_wake[1:] = (stages[1:] == N1) & (stages[:-1] == WAKE)
    codes[after_wake] = BEDDIT_RESTLESS
    sleep = np.flatnonzero(stages > 0)
    if sleep.size:
        first, last = sleep[0], sleep[-1]
        vals, starts, lengths = runs(stages)
        for v, s, n in zip(vals.tolist(), starts.tolist(), lengths.tolist(), strict=True):
            if v == WAKE and n >= 10 and s > first and s + n <= last:
                codes[s + 2 : s + n - 2] = BEDDIT_AWAY
    return codes


def beddit_transitions(
    codes: np.ndarray, start_ts: float, epoch_seconds: int = EPOCH_SECONDS
) -> list[list]:
    """Beddit's ``sleep_stages`` track: ``[[unix_ts, code], ...]`` at each change of code."""
    vals, starts, _ = runs(codes)
    return [
        [round(start_ts + s * epoch_seconds, 6), int(v)]
        for v, s in zip(vals.tolist(), starts.tolist(), strict=True)
    ]
