"""Per-night sleep statistics from canonical hypnograms, many nights in one call.

Pure numpy/pandas, no Django import (shared/style.md rules 25-27). Definitions follow
shared/science.md §1 (AASM terms); the reference implementation is YASA
(raphaelvallat/yasa 0.8.1: ``yasa.sleep_statistics`` and ``yasa.Hypnogram.sleep_statistics``),
with which every shared metric agrees to the epoch on hypnograms YASA accepts
(tests/unit/analytics/engine/test_metrics_vs_yasa.py). Differences are listed below.

Input
-----
The canonical hypnogram (shared/design.md), cropped to time in bed: one int8 per epoch,
``0`` Wake, ``1`` N1, ``2`` N2, ``3`` N3, ``4`` REM, ``5`` Light (a wearable's light sleep,
N1 or N2 unknown), ``-1`` no data / artefact. ``-2`` (YASA's "unscored") is accepted and
treated exactly like ``-1``; any other value is a ``ValueError``.
Sleep = {1, 2, 3, 4, 5}. Non-sleep = Wake and no data.

``night_metrics(stages, lengths, epoch_seconds)`` takes every night's epochs concatenated
into one flat array plus the number of epochs of each night (a night of 0 epochs is
allowed) and the epoch length in seconds (one scalar, or one value per night).
``night_metrics_from_list`` takes a list of per-night arrays; ``single_night_metrics``
one night. Nights are processed in blocks of whole nights (``BLOCK_EPOCHS``); within a
block every step is a whole-array numpy operation over epochs or over runs of equal
stages (run-length encoding: one entry per maximal run of one value, about 10 x fewer
than epochs), never a Python loop over nights.

Output
------
A DataFrame, one row per night, in input order (index ``index`` if given, else 0..N-1).
Durations are minutes (epochs x epoch seconds / 60), percentages are 0-100, all columns
float64 except the two counts (int64). NaN means "undefined" (science.md), never 0.

Notation: ``first`` / ``last`` = index of the first / last sleep epoch; the sleep period
is epochs ``first..last`` inclusive; "no sleep" = the night has no sleep epoch.

=========================  =================================================================
column                     definition
=========================  =================================================================
tib_min                    time in bed = total recording time: all epochs, no data included
spt_min                    sleep period time: ``last - first + 1`` epochs (no data inside
                           counts); 0 with no sleep
tst_min                    total sleep time: sleep epochs (all lie inside the sleep period);
                           no-data epochs never count; 0 with no sleep
waso_min                   Wake epochs inside the sleep period (no data excluded); NaN with
                           no sleep
se_pct                     sleep efficiency 100 x TST / TIB; 0 with no sleep; NaN if TIB = 0
sme_pct                    sleep maintenance efficiency 100 x TST / SPT; NaN with no sleep
sol_min                    sleep onset latency: ``first`` epochs (Wake and no data before the
                           first sleep epoch); NaN with no sleep
sol_persistent_min         start of the first run of >= ``PERSISTENT_SLEEP_EPOCHS`` consecutive
                           sleep epochs (any sleep stages; no data breaks the run); NaN if none
lat_n1_min .. lat_rem_min  first epoch of N1 / N2 / N3 / REM from the start of the recording
                           (not from sleep onset); NaN if the stage never occurs
rem_latency_min            AASM REM latency = lat_rem_min - sol_min (from sleep onset); NaN
                           without REM
wake_min                   all Wake epochs of the night (before, inside and after the sleep
                           period)
n1_min, n2_min, n3_min,    epochs of that stage over the whole night (every sleep epoch is in
rem_min, lt_min            the sleep period); lt_min = Light (code 5) only
light_min                  N1 + N2 + Light
deep_min                   N3
nrem_min                   N1 + N2 + N3 + Light
nodata_min                 no-data / artefact epochs over the whole night
n1_pct .. nrem_pct         100 x the stage's minutes / TST (n1, n2, n3, rem, light, deep,
                           nrem); NaN when TST = 0
awakenings                 number of maximal Wake runs inside the sleep period (sleep -> wake
                           -> sleep; the final wake after ``last`` does not count); 0 with no
                           sleep. A no-data epoch splits a Wake run: we do not guess what the
                           gap held
awakenings_5min            those awakenings lasting >= ``LONG_AWAKENING_SECONDS`` (run length x
                           epoch seconds; 10 epochs at 30 s)
fragmentation_index        sleep -> Wake transitions over the whole night (a sleep epoch
                           directly followed by a Wake epoch; the final awakening counts,
                           sleep -> no data -> Wake does not) per hour of TST; NaN when TST = 0
sleep_onset_offset_min     minutes from the recording start to the first sleep epoch's start
                           (= ``first`` epochs, the same number as sol_min); NaN with no sleep
sleep_offset_offset_min    minutes from the recording start to the end of the last sleep
                           epoch, ``(last + 1)`` epochs; NaN with no sleep
midsleep_offset_min        halfway between the two above; NaN with no sleep
=========================  =================================================================

Wall-clock bedtime, wake time and midsleep (science.md §1) are the recording start plus
0, TIB and midsleep_offset_min; the caller adds the session's start and time zone.

Agreement with YASA 0.8.1, and where we differ
----------------------------------------------
YASA's integer encoding is ours minus Light (``-2`` unscored, ``-1`` artefact, 0-4), and its
4-stage ``Hypnogram`` (WAKE, LIGHT, DEEP, REM) matches a wearable night (0, 5, 3, 4).
Equal to the epoch: TIB, SPT, WASO, TST, SE, SME, SOL (YASA ``SOL``), per-stage minutes
(``WAKE``, ``N1``, ``N2``, ``N3``, ``REM``; ``LIGHT``/``DEEP``; ``NREM``), their percentages
of TST, latencies (``Lat_N1`` .. ``Lat_REM``, also from the recording start), nodata_min
(YASA's ``ART`` + ``UNS``), fragmentation_index (``Hypnogram``'s ``SFI``, also counting only
a sleep epoch directly followed by Wake). YASA treats artefact/unscored epochs as science.md
does: inside TIB and SPT, never in TST, WASO or a stage. Differences:

- sol_persistent_min vs ``SOL_5min``: science.md fixes the run at 10 *epochs*; YASA asks for
  5 *minutes* (rounded up to whole epochs). Identical at 30-s epochs; at other lengths YASA
  needs ``ceil(300 / epoch_seconds)`` epochs (20 at 15 s, where we need 10 = 2.5 min).
  We follow science.md.
- ``yasa.sleep_statistics`` rejects a one-epoch night and YASA rejects an empty one; we
  return a row for both (an empty night: TIB 0, SE NaN, every other duration 0 or NaN).
- ``Hypnogram.sleep_statistics`` rounds to 4 decimals; we do not round.
- Not in YASA: awakenings, awakenings_5min, rem_latency_min (YASA documents it as
  ``Lat_REM - SOL``), Light / light / deep / nrem with Light, onset/offset/midsleep offsets.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd

# Canonical stage codes (shared/design.md).
WAKE, N1, N2, N3, REM, LIGHT = 0, 1, 2, 3, 4, 5
NO_DATA = -1
UNSCORED = -2  # YASA's code; accepted so its integer hypnograms can be fed as they are
MIN_CODE, MAX_CODE = UNSCORED, LIGHT

# science.md §1: persistent sleep starts at the first run of >= 10 consecutive sleep epochs
# (5 min at 30 s). Counted in epochs, as science.md words it, not in minutes (YASA uses 5 min).
PERSISTENT_SLEEP_EPOCHS = 10
# science.md §1: "awakenings lasting >= 5 min"; a duration, so it holds for any epoch length.
LONG_AWAKENING_SECONDS = 300.0
# Nights are processed in blocks of about this many epochs (whole nights; a longer night is
# its own block). ~1 M epochs keeps every temporary (a few bytes per epoch, ~40 bytes per run)
# inside the CPU cache; larger blocks measured slower, smaller ones pay Python overhead.
BLOCK_EPOCHS = 1 << 20
# Tolerance when turning LONG_AWAKENING_SECONDS into whole epochs, so 300 / 30 is exactly 10
# even if the epoch length arrives as a float with rounding noise.
_EPOCH_ROUNDING_SLACK = 1e-9

STAGE_COLUMNS = ("wake_min", "n1_min", "n2_min", "n3_min", "rem_min", "lt_min")
METRIC_COLUMNS = (
    "tib_min",
    "spt_min",
    "tst_min",
    "waso_min",
    "se_pct",
    "sme_pct",
    "sol_min",
    "sol_persistent_min",
    "lat_n1_min",
    "lat_n2_min",
    "lat_n3_min",
    "lat_rem_min",
    "rem_latency_min",
    *STAGE_COLUMNS,
    "light_min",
    "deep_min",
    "nrem_min",
    "nodata_min",
    "n1_pct",
    "n2_pct",
    "n3_pct",
    "rem_pct",
    "light_pct",
    "deep_pct",
    "nrem_pct",
    "awakenings",
    "awakenings_5min",
    "fragmentation_index",
    "sleep_onset_offset_min",
    "sleep_offset_offset_min",
    "midsleep_offset_min",
)
INT_COLUMNS = ("awakenings", "awakenings_5min")

# Per-night epoch counts produced by _block_counts, one column each in an int64 matrix.
# -1 marks "does not exist" for the index-valued ones (first, last, latencies, persistent).
_C_STAGE = 0  # columns 0..5: Wake, N1, N2, N3, REM, Light epochs (index = stage code)
_C_NODATA = 6
_C_FIRST = 7
_C_LAST = 8
_C_WASO = 9
_C_AWAKENINGS = 10
_C_AWAKENINGS_LONG = 11
_C_SLEEP_TO_WAKE = 12
_C_LAT = 13  # columns 13..16: first N1, N2, N3, REM epoch
_C_PERSISTENT = 17
_N_COUNTS = 18


def night_metrics(
    stages: np.ndarray | Sequence[int],
    lengths: np.ndarray | Sequence[int],
    epoch_seconds: float | np.ndarray | Sequence[float] = 30.0,
    *,
    index: pd.Index | Sequence | None = None,
    threads: int = 1,
) -> pd.DataFrame:
    """Sleep statistics of many nights, one row per night (module docstring: columns).

    Parameters
    ----------
    stages : 1-D integer array, every night's canonical hypnogram concatenated in order
        (int8 avoids a copy; other integer dtypes are converted after a range check).
    lengths : 1-D non-negative integers, epochs per night; ``sum(lengths) == len(stages)``.
    epoch_seconds : epoch length in seconds, > 0: a scalar for all nights or one per night.
    index : optional index for the result (e.g. session ids), one label per night.
    threads : worker threads over blocks of nights (numpy releases the GIL). Keep 1 inside
        a process pool (Celery prefork) so workers do not oversubscribe the cores.

    Returns
    -------
    DataFrame with ``METRIC_COLUMNS``; minutes, percentages, counts per hour of TST;
    NaN where science.md §1 leaves a metric undefined.

    Raises
    ------
    ValueError / TypeError for malformed input (values outside -2..5, lengths that do not
    add up, non-positive epoch length). Undefined metrics are NaN, never an exception.
    """
    stages = _as_stage_array(stages)
    lengths = np.asarray(lengths)
    if lengths.ndim != 1 or (lengths.size and not np.issubdtype(lengths.dtype, np.integer)):
        raise TypeError("lengths must be a 1-D integer array")
    lengths = lengths.astype(np.int64, copy=False)
    if lengths.size and lengths.min() < 0:
        raise ValueError("lengths must be non-negative")
    if int(lengths.sum()) != stages.size:
        raise ValueError(
            f"lengths add up to {int(lengths.sum())} epochs but stages has {stages.size}"
        )
    n_nights = lengths.size
    epoch_s = _as_epoch_seconds(epoch_seconds, n_nights)
    if index is not None and len(index) != n_nights:
        raise ValueError(f"index has {len(index)} labels for {n_nights} nights")

    counts = _all_counts(stages, lengths, epoch_s, threads)
    return _to_frame(counts, lengths, epoch_s, index)


def night_metrics_from_list(
    hypnograms: Sequence[np.ndarray | Sequence[int]],
    epoch_seconds: float | np.ndarray | Sequence[float] = 30.0,
    *,
    index: pd.Index | Sequence | None = None,
    threads: int = 1,
) -> pd.DataFrame:
    """``night_metrics`` over a list of per-night hypnograms.

    hypnograms : sequence of 1-D integer arrays in the canonical encoding, one per night.
    epoch_seconds, index, threads : as for ``night_metrics``.
    Returns the same DataFrame, one row per hypnogram in order.
    """
    arrays = [_as_stage_array(h) for h in hypnograms]
    lengths = np.fromiter((a.size for a in arrays), dtype=np.int64, count=len(arrays))
    stages = np.concatenate(arrays) if arrays else np.empty(0, np.int8)
    return night_metrics(stages, lengths, epoch_seconds, index=index, threads=threads)


def single_night_metrics(
    hypnogram: np.ndarray | Sequence[int], epoch_seconds: float = 30.0
) -> dict[str, float | int]:
    """One night's statistics (``night_metrics`` for a single hypnogram) as a dict.

    hypnogram : 1-D integer array in the canonical encoding; epoch_seconds : > 0.
    Returns ``{column: value}`` in ``METRIC_COLUMNS`` order: floats (minutes, %, per hour;
    NaN if undefined) and ints for ``awakenings`` and ``awakenings_5min``.
    """
    stages = _as_stage_array(hypnogram)
    row = night_metrics(stages, [stages.size], epoch_seconds).iloc[0]
    return {c: (int(row[c]) if c in INT_COLUMNS else float(row[c])) for c in METRIC_COLUMNS}


def _as_stage_array(stages) -> np.ndarray:
    """Validate codes (-2..5) and return a 1-D int8 array (no copy when already int8)."""
    arr = np.asarray(stages)
    if arr.ndim != 1:
        raise ValueError(f"a hypnogram must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        return arr.astype(np.int8, copy=False)
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"stages must be integers in our encoding, got dtype {arr.dtype}")
    lo, hi = arr.min(), arr.max()
    if lo < MIN_CODE or hi > MAX_CODE:
        bad = np.flatnonzero((arr < MIN_CODE) | (arr > MAX_CODE))[0]
        raise ValueError(
            f"stage code {int(arr[bad])} at epoch {bad} is not in the canonical encoding "
            f"(-1 no data, 0 Wake, 1 N1, 2 N2, 3 N3, 4 REM, 5 Light; -2 accepted as no data)"
        )
    return arr.astype(np.int8, copy=False)


def _as_epoch_seconds(epoch_seconds, n_nights: int) -> np.ndarray:
    """Epoch lengths as a float64 array of one value per night, all finite and > 0."""
    e = np.asarray(epoch_seconds, dtype=np.float64)
    if e.ndim == 0:
        e = np.full(n_nights, float(e))
    elif e.shape != (n_nights,):
        raise ValueError(f"epoch_seconds must be a scalar or have one value per night ({n_nights})")
    if e.size and not (np.isfinite(e).all() and (e > 0).all()):
        raise ValueError("epoch_seconds must be finite and > 0")
    return e


def _all_counts(stages, lengths, epoch_s, threads) -> np.ndarray:
    """Per-night epoch counts (``_C_*`` columns) for all nights, computed block by block."""
    out = np.zeros((lengths.size, _N_COUNTS), np.int64)
    out[:, _C_FIRST:] = -1
    out[:, _C_WASO:_C_LAT] = 0
    nonempty = np.flatnonzero(lengths > 0)  # empty nights keep the defaults above
    if nonempty.size == 0:
        return out
    lens = lengths[nonempty]
    ends = np.cumsum(lens)
    # Block boundaries (positions in `nonempty`): the first night ending past each multiple
    # of BLOCK_EPOCHS closes a block, so blocks hold whole nights.
    cuts = np.searchsorted(ends, np.arange(BLOCK_EPOCHS, ends[-1], BLOCK_EPOCHS), "left") + 1
    bounds = np.unique(np.concatenate(([0], cuts, [lens.size])))
    # Epochs a Wake run needs to last LONG_AWAKENING_SECONDS, per night (10 at 30 s).
    long_wake_epochs = np.ceil(LONG_AWAKENING_SECONDS / epoch_s - _EPOCH_ROUNDING_SLACK)
    long_wake_epochs = long_wake_epochs.astype(np.int64)

    def run(b: int) -> None:
        lo, hi = bounds[b], bounds[b + 1]
        first_epoch = ends[lo - 1] if lo else 0
        rows = nonempty[lo:hi]
        out[rows] = _block_counts(
            stages[first_epoch : ends[hi - 1]], lens[lo:hi], long_wake_epochs[rows]
        )

    n_blocks = bounds.size - 1
    if threads > 1 and n_blocks > 1:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(run, range(n_blocks)))
    else:
        for b in range(n_blocks):
            run(b)
    return out


def _first_in_range(idx: np.ndarray, run_bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For sorted run indices ``idx`` of one kind: where each night's share starts in ``idx``.

    ``run_bounds`` holds each night's first run index plus a final sentinel (total runs), so
    night k owns ``idx[pos[k]:pos[k + 1]]`` and has such a run iff ``pos[k + 1] > pos[k]``.
    Returns (pos, present).
    """
    pos = np.searchsorted(idx, run_bounds)
    return pos, pos[1:] > pos[:-1]


def _segment_sums(values: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Sums of ``values[pos[k]:pos[k+1]]`` for every k, via one cumulative sum."""
    c = np.zeros(values.size + 1, np.int64)
    np.cumsum(values, out=c[1:])
    return c[pos[1:]] - c[pos[:-1]]


def _block_counts(x: np.ndarray, lengths: np.ndarray, long_wake_epochs: np.ndarray) -> np.ndarray:
    """Epoch counts and indices for a block of non-empty nights (``_C_*`` columns).

    x : int8, the block's epochs concatenated; lengths : epochs per night (all > 0);
    long_wake_epochs : per night, epochs a Wake run needs to count as a >= 5-min awakening.

    The block is run-length encoded once (runs never cross a night boundary); every metric
    is then a few whole-array operations over runs of one kind (Wake runs, sleep runs,
    runs of one stage), located per night with ``searchsorted`` on sorted run indices.
    """
    n_epochs, n_nights = x.size, lengths.size
    out = np.empty((n_nights, _N_COUNTS), np.int64)
    night_start = np.zeros(n_nights + 1, np.int64)
    np.cumsum(lengths, out=night_start[1:])
    starts = night_start[:-1]

    # Run-length encoding: a run starts where the value changes or a night starts.
    change = np.empty(n_epochs, bool)
    change[0] = True
    np.not_equal(x[1:], x[:-1], out=change[1:])
    change[starts] = True
    run_start = np.flatnonzero(change)
    n_runs = run_start.size
    run_val = x[run_start]
    run_len = np.empty(n_runs, np.int64)
    np.subtract(run_start[1:], run_start[:-1], out=run_len[:-1])
    run_len[-1] = n_epochs - run_start[-1]
    # First run of each night, plus a sentinel; runs of night k are run_bounds[k]:[k+1].
    run_bounds = np.searchsorted(run_start, night_start)
    opens_night = np.zeros(n_runs, bool)
    opens_night[run_bounds[:-1]] = True

    # Stage minutes and first-epoch latencies, one stage at a time over that stage's runs.
    for code in (WAKE, N1, N2, N3, REM, LIGHT):
        idx = np.flatnonzero(run_val == code)
        pos, present = _first_in_range(idx, run_bounds)
        out[:, _C_STAGE + code] = _segment_sums(run_len[idx], pos)
        if code == WAKE:
            wake_idx, wake_pos = idx, pos
        elif code != LIGHT:
            first = run_start[idx[np.minimum(pos[:-1], idx.size - 1)]] if idx.size else 0
            out[:, _C_LAT + code - 1] = np.where(present, first - starts, -1)
    out[:, _C_NODATA] = lengths - out[:, _C_STAGE : _C_STAGE + 6].sum(axis=1)

    # Sleep period: first and last sleep run of each night.
    sleep_idx = np.flatnonzero(run_val > 0)
    sleep_pos, has_sleep = _first_in_range(sleep_idx, run_bounds)
    last_sleep_i = max(sleep_idx.size - 1, 0)
    if sleep_idx.size:
        first_run = sleep_idx[np.minimum(sleep_pos[:-1], last_sleep_i)]
        last_run = sleep_idx[np.clip(sleep_pos[1:] - 1, 0, last_sleep_i)]
    else:  # no sleep in the whole block: any valid run index will do, results are masked
        first_run = last_run = run_bounds[:-1]
    out[:, _C_FIRST] = np.where(has_sleep, run_start[first_run] - starts, -1)
    out[:, _C_LAST] = np.where(has_sleep, run_start[last_run] + run_len[last_run] - 1 - starts, -1)

    # Wake runs strictly between the first and last sleep runs: WASO and awakenings. Runs
    # are maximal, so every Wake run there is one awakening (sleep/no data on both sides).
    wake_len = run_len[wake_idx]
    a = np.searchsorted(wake_idx, first_run)
    b = np.searchsorted(wake_idx, last_run)
    csum = np.zeros(wake_idx.size + 1, np.int64)
    np.cumsum(wake_len, out=csum[1:])
    out[:, _C_WASO] = np.where(has_sleep, csum[b] - csum[a], 0)
    out[:, _C_AWAKENINGS] = np.where(has_sleep, b - a, 0)
    wake_threshold = np.repeat(long_wake_epochs, np.diff(wake_pos))
    long_c = np.zeros(wake_idx.size + 1, np.int64)
    np.cumsum(wake_len >= wake_threshold, out=long_c[1:])
    out[:, _C_AWAKENINGS_LONG] = np.where(has_sleep, long_c[b] - long_c[a], 0)

    # Sleep -> Wake transitions: Wake runs whose previous run, in the same night, is sleep.
    # (A Wake run at index 0 opens its night, so wake_idx - 1 = -1 is masked out.)
    after_sleep = (run_val[wake_idx - 1] > 0) & ~opens_night[wake_idx]
    out[:, _C_SLEEP_TO_WAKE] = _segment_sums(after_sleep, wake_pos)

    # Persistent sleep: merge consecutive sleep runs of the same night into sleep stretches.
    breaks = np.empty(sleep_idx.size + 1, bool)
    breaks[0] = breaks[-1] = True
    np.not_equal(sleep_idx[1:], sleep_idx[:-1] + 1, out=breaks[1:-1])
    breaks[1:-1] |= opens_night[sleep_idx[1:]]
    cut = np.flatnonzero(breaks)
    stretch_first = sleep_idx[cut[:-1]]
    stretch_last = sleep_idx[cut[1:] - 1]
    stretch_len = run_start[stretch_last] + run_len[stretch_last] - run_start[stretch_first]
    persistent = stretch_first[stretch_len >= PERSISTENT_SLEEP_EPOCHS]
    pos, present = _first_in_range(persistent, run_bounds)
    if persistent.size:
        first = run_start[persistent[np.minimum(pos[:-1], persistent.size - 1)]] - starts
        out[:, _C_PERSISTENT] = np.where(present, first, -1)
    else:
        out[:, _C_PERSISTENT] = -1
    return out


def _to_frame(counts, lengths, epoch_s, index) -> pd.DataFrame:
    """Turn per-night epoch counts into the documented columns (minutes, %, rates)."""
    has_sleep = counts[:, _C_FIRST] >= 0
    stage = counts[:, _C_STAGE : _C_STAGE + 6].astype(np.float64)
    tst = stage[:, 1:].sum(axis=1)  # epochs
    tib = lengths.astype(np.float64)
    first = np.where(has_sleep, counts[:, _C_FIRST], np.nan)
    last = np.where(has_sleep, counts[:, _C_LAST], np.nan)
    spt = np.where(has_sleep, last - first + 1, 0.0)

    def minutes(epochs):
        # epochs x seconds is exact for whole seconds; one rounding in the division
        return epochs * epoch_s / 60.0

    def index_minutes(col):
        v = counts[:, col]
        return minutes(np.where(v >= 0, v, np.nan))

    with np.errstate(divide="ignore", invalid="ignore"):
        tst_safe = np.where(tst > 0, tst, np.nan)

        def pct_of_tst(epochs):
            return 100.0 * epochs / tst_safe

        n1, n2, n3, rem, lt = (stage[:, k] for k in (N1, N2, N3, REM, LIGHT))
        light = n1 + n2 + lt
        nrem = light + n3
        lat_rem = index_minutes(_C_LAT + REM - 1)
        onset = minutes(first)
        offset = minutes(last + 1)
        cols = {
            "tib_min": minutes(tib),
            "spt_min": minutes(spt),
            "tst_min": minutes(tst),
            "waso_min": np.where(has_sleep, minutes(counts[:, _C_WASO]), np.nan),
            "se_pct": 100.0 * tst / np.where(tib > 0, tib, np.nan),
            "sme_pct": 100.0 * tst / np.where(has_sleep, spt, np.nan),
            "sol_min": onset,
            "sol_persistent_min": index_minutes(_C_PERSISTENT),
            "lat_n1_min": index_minutes(_C_LAT + N1 - 1),
            "lat_n2_min": index_minutes(_C_LAT + N2 - 1),
            "lat_n3_min": index_minutes(_C_LAT + N3 - 1),
            "lat_rem_min": lat_rem,
            "rem_latency_min": lat_rem - onset,
            **{name: minutes(stage[:, k]) for k, name in enumerate(STAGE_COLUMNS)},
            "light_min": minutes(light),
            "deep_min": minutes(n3),
            "nrem_min": minutes(nrem),
            "nodata_min": minutes(counts[:, _C_NODATA]),
            "n1_pct": pct_of_tst(n1),
            "n2_pct": pct_of_tst(n2),
            "n3_pct": pct_of_tst(n3),
            "rem_pct": pct_of_tst(rem),
            "light_pct": pct_of_tst(light),
            "deep_pct": pct_of_tst(n3),
            "nrem_pct": pct_of_tst(nrem),
            "awakenings": counts[:, _C_AWAKENINGS].copy(),
            "awakenings_5min": counts[:, _C_AWAKENINGS_LONG].copy(),
            # transitions per hour of TST = n / (tst_epochs * epoch_s / 3600)
            "fragmentation_index": counts[:, _C_SLEEP_TO_WAKE] * 3600.0 / (tst_safe * epoch_s),
            "sleep_onset_offset_min": onset,
            "sleep_offset_offset_min": offset,
            "midsleep_offset_min": (onset + offset) / 2.0,
        }
    frame = pd.DataFrame(cols, index=index, columns=list(METRIC_COLUMNS), copy=False)
    return frame
