"""The synthetic-night generator: realism (shared/science.md) and determinism."""

from datetime import UTC, date, timedelta

import numpy as np
import pytest

from integrations.simulators import nights as N

LAST = date(2025, 3, 30)


@pytest.fixture(scope="module")
def population() -> list[N.Night]:
    out: list[N.Night] = []
    for u in range(60):
        out += N.generate_nights(f"user-{u}", LAST, 60)
    return out


def _normal(nights: list[N.Night]) -> list[N.Night]:
    return [n for n in nights if not n.bad and not (n.stages == N.NO_DATA).any()]


def _sleep_period(stages: np.ndarray) -> np.ndarray:
    sleep = np.flatnonzero(stages > 0)
    return stages[sleep[0] : sleep[-1] + 1]


class NightShapeTests:
    def test_it_outputs_canonical_int8_epochs(self, population):
        n = population[0]
        assert n.stages.dtype == np.int8
        assert n.epoch_seconds == 30
        assert n.start.tzinfo is not None and n.start.utcoffset() == timedelta(0)
        assert n.end - n.start == timedelta(seconds=30 * n.n_epochs)
        assert set(np.unique(np.concatenate([x.stages for x in population]))) <= {-1, 0, 1, 2, 3, 4}

    def test_it_gives_each_user_an_iana_timezone(self, population):
        zones = {n.timezone for n in population}
        assert zones <= set(N.TIMEZONES) and len(zones) > 3
        assert len({n.timezone for n in population if n.user_id == "user-0"}) == 1

    def test_normal_nights_have_four_to_six_cycles(self, population):
        counts = [N.count_cycles(n.stages) for n in _normal(population)]
        assert min(counts) >= 4 and max(counts) <= 6

    def test_n3_sits_mostly_in_the_first_third(self, population):
        shares = []
        for n in _normal(population):
            sp = _sleep_period(n.stages)
            total = (sp == N.N3).sum()
            if total:
                shares.append((sp[: len(sp) // 3] == N.N3).sum() / total)
        assert np.mean(shares) > 0.6
        assert np.median(shares) > 0.6

    def test_rem_share_rises_toward_morning(self, population):
        first, last = [], []
        for n in _normal(population):
            sp = _sleep_period(n.stages)
            third = len(sp) // 3
            first.append((sp[:third] == N.REM).mean())
            last.append((sp[-third:] == N.REM).mean())
        assert np.mean(last) > 2 * np.mean(first)
        assert np.mean(np.array(last) > np.array(first)) > 0.9

    def test_rem_episodes_lengthen(self, population):
        firsts, lasts = [], []
        for n in _normal(population):
            eps = N.rem_episodes(n.stages)
            firsts.append(eps[0][1] - eps[0][0])
            lasts.append(eps[-1][1] - eps[-1][0])
        assert np.mean(lasts) > 1.5 * np.mean(firsts)

    def test_totals_look_like_adult_nights(self, population):
        normal = _normal(population)
        tst_h = np.array([(n.stages > 0).sum() / 120 for n in normal])
        sol_min = np.array([np.flatnonzero(n.stages > 0)[0] / 2 for n in normal])
        assert 6.5 < tst_h.mean() < 8.5
        assert 4 < np.median(sol_min) < 25
        st = np.concatenate([_sleep_period(n.stages) for n in normal])
        pct = {k: (st == k).sum() / (st > 0).sum() * 100 for k in (1, 2, 3, 4)}
        assert 1 < pct[1] < 10 and 40 < pct[2] < 65 and 8 < pct[3] < 28 and 15 < pct[4] < 30

    def test_weekend_bedtimes_are_about_an_hour_later(self, population):
        def clock(n: N.Night) -> float:  # hours past noon, local
            t = n.local_start
            return (t.hour - 12) % 24 + t.minute / 60

        free = [clock(n) for n in population if n.night_of.weekday() in (4, 5)]
        work = [clock(n) for n in population if n.night_of.weekday() not in (4, 5)]
        assert 0.6 < np.mean(free) - np.mean(work) < 1.6

    def test_bad_nights_have_long_latency_and_waso(self, population):
        bad = [n for n in population if n.bad]
        assert 0.01 < len(bad) / len(population) < 0.2
        sol = [np.flatnonzero(n.stages > 0)[0] / 2 for n in bad]
        waso = [(_sleep_period(n.stages) == N.WAKE).sum() / 2 for n in bad]
        assert np.median(sol) >= 40 and np.median(waso) >= 30

    def test_some_nights_are_missing(self):
        got = N.generate_nights("user-7", LAST, 365)
        assert 300 < len(got) < 365

    def test_wake_date_is_the_morning_after(self, population):
        assert all(n.wake_date == n.night_of + timedelta(days=1) for n in population)


class DeterminismTests:
    def test_same_seed_same_night(self):
        a = N.generate_night("alice", date(2025, 1, 10))
        b = N.generate_night("alice", date(2025, 1, 10))
        assert a is not None and b is not None
        assert a.start == b.start and a.timezone == b.timezone
        assert np.array_equal(a.stages, b.stages)
        assert a.content_hash() == b.content_hash()

    def test_different_users_differ(self):
        a = N.generate_nights("alice", LAST, 10)
        b = N.generate_nights("bob", LAST, 10)
        assert {n.content_hash() for n in a}.isdisjoint(n.content_hash() for n in b)

    def test_revision_keeps_times_and_changes_stages(self):
        a = N.generate_night("alice", date(2025, 1, 10), allow_missing=False)
        r1 = N.generate_night("alice", date(2025, 1, 10), allow_missing=False, revision=1)
        r2 = N.generate_night("alice", date(2025, 1, 10), allow_missing=False, revision=2)
        assert (a.start, a.end) == (r1.start, r1.end) == (r2.start, r2.end)
        assert len({a.content_hash(), r1.content_hash(), r2.content_hash()}) == 3
        assert (a.stages != r1.stages).mean() < 0.1

    def test_timezone_override_moves_the_clock_not_the_habits(self):
        ct = N.chronotype("carol", "Asia/Tokyo")
        n = N.generate_night("carol", date(2025, 1, 8), ct=ct, allow_missing=False)
        assert n.timezone == "Asia/Tokyo"
        assert 20 <= n.local_start.hour or n.local_start.hour <= 3
        assert n.start.astimezone(UTC).tzinfo == UTC


class ProviderViewTests:
    stages = np.array([-1, 0, 1, 2, 3, 4, 5], dtype=np.int8)

    def test_asleep_four_stage(self):
        assert N.to_asleep(self.stages).tolist() == [-1, 0, 1, 1, 2, 3, 1]
        assert N.asleep_to_canonical(N.to_asleep(self.stages)).tolist() == [-1, 0, 5, 5, 3, 4, 5]

    def test_usleep_classes(self):
        assert N.to_usleep(self.stages[1:6]).tolist() == [0, 1, 2, 3, 4]

    def test_beddit_codes_and_transitions(self):
        s = np.array([0, 0, 1, 2, 2, 0] + [0] * 12 + [1, 2, 4, 0], dtype=np.int8)
        codes = N.to_beddit_codes(s)
        assert (
            chr(codes[0]) == "W"
            and chr(codes[2]) == "R"
            and chr(codes[3]) == "S"
            and chr(codes[18]) == "R"
        )
        assert chr(codes[10]) == "A"  # a long awakening inside the sleep period: out of bed
        track = N.beddit_transitions(codes, 1000.0)
        assert track[0] == [1000.0, 87]
        assert all(a[1] != b[1] for a, b in zip(track, track[1:], strict=False))

    def test_synthetic_hypnogram_has_the_asked_length(self):
        for n in (0, 5, 40, 61, 960):
            h = N.synthetic_hypnogram(b"abc", n)
            assert h.shape == (n,) and h.dtype == np.int8
        assert np.array_equal(N.synthetic_hypnogram(b"x", 900), N.synthetic_hypnogram(b"x", 900))
        assert not np.array_equal(
            N.synthetic_hypnogram(b"x", 900), N.synthetic_hypnogram(b"y", 900)
        )


class ArtefactSwitchTests:
    def test_switching_artefacts_off_changes_nothing_else(self):
        with_gaps = N.generate_nights("user-3", LAST, 200)
        gapped = [n for n in with_gaps if (n.stages == N.NO_DATA).any()]
        assert gapped
        for n in gapped:
            clean = N.generate_night(n.user_id, n.night_of, artefacts=False)
            assert clean.start == n.start and clean.n_epochs == n.n_epochs
            assert not (clean.stages == N.NO_DATA).any()
            same = n.stages != N.NO_DATA
            assert (clean.stages[same] == n.stages[same]).all()
