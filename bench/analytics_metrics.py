"""Benchmark analytics.engine.metrics: vectorized batch vs a plain one-night-at-a-time loop.

    .venv/bin/python bench/analytics_metrics.py                 # 1,000,000 nights of ~8 h
    .venv/bin/python bench/analytics_metrics.py --nights 100000 --threads 1 2

Builds N synthetic nights (semi-Markov stage runs: wake before sleep onset, N1/N2/N3/REM
runs with realistic lengths, ~1 % artefact bursts, 30 % wearable nights with Light instead
of N1/N2; ~960 epochs of 30 s, ~110 stage runs a night), generated chunk by chunk straight
into one flat int8 array (1 byte per epoch: ~1 GB for 1 M nights, the only big allocation).
Then times ``night_metrics`` on all nights, and a plain Python loop computing the same
metrics one night at a time (numpy per night, as YASA does) on a subsample, extrapolated
per night. Prints a table; no asserts (style.md rule 40: timings belong here, not in tests).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analytics.engine.metrics import (
    LONG_AWAKENING_SECONDS,
    METRIC_COLUMNS,
    PERSISTENT_SLEEP_EPOCHS,
    night_metrics,
    single_night_metrics,
)

# Stage transition probabilities between runs (W, N1, N2, N3, REM) and mean run lengths in
# 30-s epochs: gives ~110 runs a night, 60 % light, 15-20 % N3 and REM, a few % wake.
TRANSITIONS = np.array(
    [
        [0.00, 0.70, 0.20, 0.00, 0.10],
        [0.25, 0.00, 0.65, 0.02, 0.08],
        [0.10, 0.15, 0.00, 0.45, 0.30],
        [0.10, 0.05, 0.80, 0.00, 0.05],
        [0.25, 0.20, 0.55, 0.00, 0.00],
    ]
)
MEAN_RUN_EPOCHS = np.array([3.0, 2.5, 12.0, 10.0, 12.0])
MEAN_SLEEP_ONSET_EPOCHS = 20
ARTEFACT_RUN_P = 0.01
WEARABLE_FRACTION = 0.3
MAX_RUNS = 256  # per night; the rare night that runs out is padded with final wake
GENERATION_CHUNK = 20_000  # nights generated at a time: keeps generator temporaries ~200 MB


def synthetic_lengths(rng: np.random.Generator, n_nights: int) -> np.ndarray:
    """Epochs per night: ~8 h at 30 s (mean 960, sd 60), at least 60."""
    return np.clip(np.rint(rng.normal(960, 60, n_nights)), 60, None).astype(np.int64)


def fill_synthetic_nights(rng: np.random.Generator, lengths: np.ndarray, out: np.ndarray) -> None:
    """Write synthetic nights of the given lengths, concatenated, into ``out`` (int8)."""
    n = lengths.size
    # Markov chain over runs, vectorized over nights: searchsorted into a flat table where
    # state s owns the interval [s, s + 1) split by its cumulative transition probabilities.
    table = (np.arange(5)[:, None] + np.cumsum(TRANSITIONS, axis=1)).ravel()
    table[4::5] = np.arange(1, 6)  # exact row ends despite rounding
    values = np.empty((n, MAX_RUNS), np.int8)
    values[:, 0] = 0
    state = np.zeros(n, np.int64)
    for k in range(1, MAX_RUNS):
        state = np.searchsorted(table, state + rng.random(n), side="right") - 5 * state
        np.minimum(state, 4, out=state)
        values[:, k] = state
    durations = rng.geometric(1.0 / MEAN_RUN_EPOCHS[values]).astype(np.int32)
    durations[:, 0] = rng.geometric(1.0 / MEAN_SLEEP_ONSET_EPOCHS, n)
    artefact = rng.random((n, MAX_RUNS)) < ARTEFACT_RUN_P
    values[artefact] = -1
    durations[artefact] = np.minimum(durations[artefact], 4)
    wearable = rng.random(n) < WEARABLE_FRACTION
    light = wearable[:, None] & ((values == 1) | (values == 2))
    values[light] = 5
    ends = np.cumsum(durations, axis=1, dtype=np.int64)
    clipped = np.clip(np.minimum(ends, lengths[:, None]) - (ends - durations), 0, None)
    short = ends[:, -1] < lengths
    values[short, -1] = 0
    clipped[short, -1] += (lengths - ends[:, -1])[short]
    out[:] = np.repeat(values.ravel(), clipped.ravel())


def synthetic_nights(n_nights: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(flat int8 stages, lengths) for n_nights, generated in chunks into one array."""
    rng = np.random.default_rng(seed)
    lengths = synthetic_lengths(rng, n_nights)
    flat = np.empty(int(lengths.sum()), np.int8)
    ends = np.cumsum(lengths)
    for lo in range(0, n_nights, GENERATION_CHUNK):
        hi = min(lo + GENERATION_CHUNK, n_nights)
        start = ends[lo - 1] if lo else 0
        fill_synthetic_nights(rng, lengths[lo:hi], flat[start : ends[hi - 1]])
    return flat, lengths


def loop_night_metrics(h: np.ndarray, e: float) -> dict:
    """The same metrics for one night, written the obvious per-night way (numpy, YASA-like)."""
    m = e / 60.0
    n = h.size
    nan = float("nan")
    counts = np.bincount(h.astype(np.int64) + 1, minlength=7)  # -1..5
    wake, n1, n2, n3, rem, lt = (int(c) for c in counts[1:])
    nodata = int(counts[0])
    tst = n1 + n2 + n3 + rem + lt
    sleep = h > 0
    idx = np.flatnonzero(sleep)
    out = {
        "tib_min": n * m,
        "tst_min": tst * m,
        "wake_min": wake * m,
        "n1_min": n1 * m,
        "n2_min": n2 * m,
        "n3_min": n3 * m,
        "rem_min": rem * m,
        "lt_min": lt * m,
        "light_min": (n1 + n2 + lt) * m,
        "deep_min": n3 * m,
        "nrem_min": (n1 + n2 + n3 + lt) * m,
        "nodata_min": nodata * m,
        "se_pct": 100.0 * tst / n,
    }
    for name, code in (("n1", 1), ("n2", 2), ("n3", 3), ("rem", 4)):
        where = np.flatnonzero(h == code)
        out[f"lat_{name}_min"] = where[0] * m if where.size else nan
    for name, k in (
        ("n1", n1),
        ("n2", n2),
        ("n3", n3),
        ("rem", rem),
        ("light", n1 + n2 + lt),
        ("deep", n3),
        ("nrem", n1 + n2 + n3 + lt),
    ):
        out[f"{name}_pct"] = 100.0 * k / tst if tst else nan
    transitions = int(np.count_nonzero(sleep[:-1] & (h[1:] == 0)))
    out["fragmentation_index"] = transitions * 3600.0 / (tst * e) if tst else nan
    if not idx.size:
        out.update(
            spt_min=0.0,
            waso_min=nan,
            sme_pct=nan,
            sol_min=nan,
            sol_persistent_min=nan,
            rem_latency_min=nan,
            awakenings=0,
            awakenings_5min=0,
            sleep_onset_offset_min=nan,
            sleep_offset_offset_min=nan,
            midsleep_offset_min=nan,
        )
        return out
    first, last = int(idx[0]), int(idx[-1])
    period = h[first : last + 1]
    out["spt_min"] = (last - first + 1) * m
    out["waso_min"] = int(np.count_nonzero(period == 0)) * m
    out["sme_pct"] = 100.0 * tst / (last - first + 1)
    out["sol_min"] = first * m
    out["rem_latency_min"] = out["lat_rem_min"] - first * m
    out["sleep_onset_offset_min"] = first * m
    out["sleep_offset_offset_min"] = (last + 1) * m
    out["midsleep_offset_min"] = (first + last + 1) * m / 2
    is_wake = np.concatenate(([0], (period == 0).astype(np.int8), [0]))
    edges = np.diff(is_wake)
    wake_runs = np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)
    out["awakenings"] = int(wake_runs.size)
    out["awakenings_5min"] = int(np.count_nonzero(wake_runs * e >= LONG_AWAKENING_SECONDS - 1e-9))
    is_sleep = np.concatenate(([0], sleep.astype(np.int8), [0]))
    edges = np.diff(is_sleep)
    run_starts = np.flatnonzero(edges == 1)
    run_lengths = np.flatnonzero(edges == -1) - run_starts
    long_runs = run_starts[run_lengths >= PERSISTENT_SLEEP_EPOCHS]
    out["sol_persistent_min"] = long_runs[0] * m if long_runs.size else nan
    return out


class PeakRss:
    """Samples this process's resident memory every few ms while active (Linux /proc)."""

    def __init__(self, interval: float = 0.005):
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def current() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.current())
            time.sleep(self.interval)

    def __enter__(self):
        self.peak = self.current()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.current())


def gib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:.2f} GiB"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nights", type=int, default=1_000_000)
    parser.add_argument("--loop-nights", type=int, default=2_000, help="subsample for the loop")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeat", type=int, default=1, help="best of N vectorized runs")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    e = 30.0

    t0 = time.perf_counter()
    flat, lengths = synthetic_nights(args.nights, args.seed)
    gen_s = time.perf_counter() - t0
    step = 1 << 26  # count stage changes in slices: no 1-GB boolean temporary
    last = flat.size - 1
    changes = sum(
        int(
            np.count_nonzero(flat[i + 1 : min(i + step, last) + 1] != flat[i : min(i + step, last)])
        )
        for i in range(0, last, step)
    )
    runs = changes + lengths.size  # upper bound: a night start may coincide with a change
    print(
        f"{args.nights:,} synthetic nights, {flat.size:,} epochs ({gib(flat.nbytes)} int8), "
        f"{flat.size / args.nights:.0f} epochs and {runs / args.nights:.0f} stage runs a night, "
        f"generated in {gen_s:.1f} s; {os.cpu_count()} CPUs; numpy {np.__version__}, "
        f"pandas {pd.__version__}"
    )
    baseline = PeakRss.current()

    rows = []
    result = None
    for threads in args.threads:
        best = float("inf")
        for _ in range(args.repeat):
            result = None  # do not hold the previous frame while measuring memory
            with PeakRss() as rss:
                t = time.perf_counter()
                result = night_metrics(flat, lengths, e, threads=threads)
                best = min(best, time.perf_counter() - t)
        rows.append((f"vectorized, threads={threads}", args.nights, best, rss.peak))

    k = min(args.loop_nights, args.nights)
    pick = np.sort(np.random.default_rng(args.seed + 1).choice(args.nights, k, replace=False))
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    sample = [flat[s : s + n] for s, n in zip(starts[pick], lengths[pick])]
    with PeakRss() as rss:
        t = time.perf_counter()
        looped = pd.DataFrame(
            [loop_night_metrics(h, e) for h in sample], columns=list(METRIC_COLUMNS)
        )
        loop_s = time.perf_counter() - t
    rows.append((f"plain loop (numpy per night, {k:,} sampled)", k, loop_s, rss.peak))
    with PeakRss() as rss:
        t = time.perf_counter()
        for h in sample:
            single_night_metrics(h, e)
        single_s = time.perf_counter() - t
    rows.append((f"loop of single_night_metrics ({k:,} sampled)", k, single_s, rss.peak))

    agree = np.allclose(
        looped.to_numpy(float), result.iloc[pick].to_numpy(float), rtol=1e-12, equal_nan=True
    )
    loop_rate = k / loop_s
    print(f"\nloop and vectorized results agree on the sample: {'yes' if agree else 'NO'}")
    print(f"input array {gib(flat.nbytes)}; RSS before timing {gib(baseline)}\n")
    header = f"{'method':<48} {'nights/s':>12} {'x loop':>8} {'1M nights':>10} {'peak RSS':>10}"
    print(header)
    print("-" * len(header))
    for name, n, seconds, peak in rows:
        rate = n / seconds
        print(
            f"{name:<48} {rate:>12,.0f} {rate / loop_rate:>8.1f} "
            f"{1e6 / rate:>9.1f}s {gib(peak):>10}"
        )
    print(
        f"\nprocess max RSS (incl. generation): "
        f"{gib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)}"
    )


if __name__ == "__main__":
    main()
