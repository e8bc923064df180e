"""A tiny EDF writer and header reader (European Data Format, Kemp et al. 1992).

Enough EDF for the PSG-scoring simulators, the tests and the demo: ``make_edf`` writes a
valid file (256-byte header, 256 bytes per signal header, int16 little-endian data
records) with synthetic signals; ``read_header`` (from ``integrations/edf.py``, the
production parser) validates and parses one, raising only ``EdfError``.

Layout of the header (all fields ASCII, left-aligned, space-padded):
  8 version "0" | 80 patient id | 80 recording id | 8 start date dd.mm.yy |
  8 start time hh.mm.ss | 8 header bytes | 44 reserved | 8 number of data records |
  8 duration of a data record (s) | 4 number of signals (ns)
then, field by field for all ns signals: 16 label | 80 transducer | 8 physical dimension |
8 physical min | 8 physical max | 8 digital min | 8 digital max | 80 prefiltering |
8 samples per data record | 32 reserved.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np

# The header parser is production code (uploads are validated with it); re-exported here so
# the simulators and their tests keep one import.
from ..edf import (  # noqa: F401
    HEADER_BYTES,
    MAX_SIGNALS,
    SIGNAL_HEADER_BYTES,
    EdfError,
    EdfHeader,
    EdfSignal,
    read_header,
)

# (label, sampling rate Hz, physical dimension, physical min, physical max)
DEFAULT_CHANNELS: tuple[tuple[str, int, str, float, float], ...] = (
    ("EEG C3-M2", 64, "uV", -500.0, 500.0),
    ("EOG E1-M2", 64, "uV", -500.0, 500.0),
    ("EMG chin", 64, "uV", -250.0, 250.0),
)

# Per canonical stage (index = code + 1, so -1 no-data first): EEG, EOG and EMG amplitude
# in uV. Deep sleep has big slow waves, REM has eye movements and no chin tone.
_EEG_UV = np.array([5, 20, 30, 40, 90, 25, 35], dtype=np.float64)
_EOG_UV = np.array([5, 40, 20, 10, 10, 60, 15], dtype=np.float64)
_EMG_UV = np.array([2, 30, 15, 10, 8, 3, 10], dtype=np.float64)


def _field(value: object, width: int) -> bytes:
    text = str(value)
    if len(text) > width:
        text = text[:width]
    raw = text.encode("ascii", "replace")
    return raw.ljust(width, b" ")


def _num(value: float) -> str:
    """A number in at most 8 characters, as EDF wants it."""
    if float(value).is_integer():
        return str(int(value))
    text = f"{value:.6g}"
    return text[:8]


def make_edf(
    duration_s: int = 1800,
    *,
    channels: tuple[tuple[str, int, str, float, float], ...] = DEFAULT_CHANNELS,
    record_duration: int = 30,
    seed: int = 0,
    start: datetime | None = None,
    stages: np.ndarray | None = None,
    patient: str = "X X X X",
    recording: str | None = None,
) -> bytes:
    """An EDF file of ``duration_s`` seconds (rounded up to whole data records).

    Signals are seeded noise whose amplitude follows ``stages`` (a canonical hypnogram of
    30-s epochs) when given. Channel sampling rates must be whole samples per record.
    """
    start = start or datetime(2025, 1, 1, 23, 0, 0)
    n_records = max(1, -(-duration_s // record_duration))
    recording = recording or f"Startdate {start.strftime('%d-%b-%Y').upper()} X X X"
    ns = len(channels)
    if not 1 <= ns <= MAX_SIGNALS:
        raise EdfError("an EDF file needs 1 to 512 signals")

    header = b"".join(
        [
            _field("0", 8),
            _field(patient, 80),
            _field(recording, 80),
            _field(start.strftime("%d.%m.%y"), 8),
            _field(start.strftime("%H.%M.%S"), 8),
            _field(HEADER_BYTES + ns * SIGNAL_HEADER_BYTES, 8),
            _field("", 44),
            _field(n_records, 8),
            _field(record_duration, 8),
            _field(ns, 4),
        ]
    )
    spr = [int(fs * record_duration) for _, fs, _, _, _ in channels]
    columns = [
        [_field(label, 16) for label, *_ in channels],
        [_field("AgAgCl electrode", 80) for _ in channels],
        [_field(dim, 8) for _, _, dim, _, _ in channels],
        [_field(_num(pmin), 8) for *_, pmin, _ in channels],
        [_field(_num(pmax), 8) for *_, pmax in channels],
        [_field(-32768, 8) for _ in channels],
        [_field(32767, 8) for _ in channels],
        [_field("HP:0.3Hz LP:35Hz", 80) for _ in channels],
        [_field(n, 8) for n in spr],
        [_field("", 32) for _ in channels],
    ]
    header += b"".join(b"".join(col) for col in columns)

    rng = np.random.default_rng(seed)
    signals = []
    for (label, fs, _, pmin, pmax), n in zip(channels, spr, strict=True):
        samples = n * n_records
        amp = np.full(samples, 25.0)
        if stages is not None and len(stages):
            per_epoch = {"EEG": _EEG_UV, "EOG": _EOG_UV, "EMG": _EMG_UV}.get(
                label.split()[0].upper(), _EEG_UV
            )
            epoch_of_sample = np.minimum(
                (np.arange(samples) / fs // 30).astype(np.int64), len(stages) - 1
            )
            amp = per_epoch[np.asarray(stages, dtype=np.int64)[epoch_of_sample] + 1]
        x = rng.standard_normal(samples) * amp
        if label.upper().startswith("EEG"):
            t = np.arange(samples) / fs
            x += 0.6 * amp * np.sin(2 * np.pi * 1.5 * t + rng.uniform(0, 6.28))
        gain = 65535.0 / (pmax - pmin)
        digital = np.clip(np.round((x - pmin) * gain - 32768), -32768, 32767).astype("<i2")
        signals.append(digital.reshape(n_records, n))
    records = np.concatenate(signals, axis=1) if signals else np.zeros((n_records, 0), "<i2")
    return header + records.astype("<i2").tobytes()


def data_section(data: bytes, header: EdfHeader) -> bytes:
    """The data records only: unchanged by header anonymization, so a good content key."""
    return data[header.header_bytes : header.header_bytes + header.n_records * header.record_bytes]


def infer_channel_type(label: str) -> str:
    """EEG|EOG|EMG|MASTOID|OTHER from a channel label, like psg-utils' infer_channel_types."""
    text = label.upper().replace(" ", "-")
    parts = [p for p in text.replace(":", "-").split("-") if p]
    if any(p.startswith("EOG") or p in ("E1", "E2", "LOC", "ROC") for p in parts):
        return "EOG"
    if any(p.startswith("EMG") or p in ("CHIN",) for p in parts):
        return "EMG"
    if any(p.startswith("EEG") for p in parts):
        return "EEG"
    eeg_sites = {
        "C3",
        "C4",
        "F3",
        "F4",
        "O1",
        "O2",
        "FZ",
        "CZ",
        "PZ",
        "OZ",
        "FPZ",
        "FP1",
        "FP2",
        "T3",
        "T4",
        "P3",
        "P4",
    }
    if parts and parts[0] in eeg_sites:
        return "EEG"
    if parts and all(p in ("M1", "M2", "A1", "A2") for p in parts):
        return "MASTOID"
    return "OTHER"
