"""A tiny EDF writer and header reader (European Data Format, Kemp et al. 1992).

Enough EDF for the PSG-scoring simulators, the tests and the demo: ``make_edf`` writes a
valid file (256-byte header, 256 bytes per signal header, int16 little-endian data
records) with synthetic signals; ``read_header`` validates and parses one, raising only
``EdfError``.

Layout of the header (all fields ASCII, left-aligned, space-padded):
  8 version "0" | 80 patient id | 80 recording id | 8 start date dd.mm.yy |
  8 start time hh.mm.ss | 8 header bytes | 44 reserved | 8 number of data records |
  8 duration of a data record (s) | 4 number of signals (ns)
then, field by field for all ns signals: 16 label | 80 transducer | 8 physical dimension |
8 physical min | 8 physical max | 8 digital min | 8 digital max | 80 prefiltering |
8 samples per data record | 32 reserved.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np

HEADER_BYTES = 256
SIGNAL_HEADER_BYTES = 256
MAX_SIGNALS = 512

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


class EdfError(ValueError):
    """The bytes are not a valid EDF file."""


@dataclass(frozen=True, slots=True)
class EdfSignal:
    label: str
    transducer: str
    physical_dimension: str
    physical_min: float
    physical_max: float
    digital_min: int
    digital_max: int
    prefiltering: str
    samples_per_record: int

    def sampling_rate(self, record_duration: float) -> float:
        return self.samples_per_record / record_duration


@dataclass(frozen=True, slots=True)
class EdfHeader:
    patient: str
    recording: str
    start: datetime  # naive local time, as EDF stores it
    header_bytes: int
    reserved: str
    n_records: int
    record_duration: float  # seconds
    signals: tuple[EdfSignal, ...]

    @property
    def duration(self) -> float:
        """Recording length in seconds."""
        return self.n_records * self.record_duration

    @property
    def record_bytes(self) -> int:
        return 2 * sum(s.samples_per_record for s in self.signals)

    @property
    def labels(self) -> list[str]:
        return [s.label for s in self.signals]


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


def _ascii(raw: bytes, what: str) -> str:
    try:
        return raw.decode("ascii").strip()
    except UnicodeDecodeError:
        raise EdfError(f"{what} is not ASCII") from None


def _int(raw: bytes, what: str) -> int:
    text = _ascii(raw, what)
    try:
        return int(text)
    except ValueError:
        raise EdfError(f"{what} is not an integer: {text!r}") from None


def _float(raw: bytes, what: str) -> float:
    text = _ascii(raw, what)
    try:
        value = float(text)
    except ValueError:
        raise EdfError(f"{what} is not a number: {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise EdfError(f"{what} is not a finite number")
    return value


def read_header(data: bytes, *, check_size: bool = True) -> EdfHeader:
    """Parse and validate the header of an EDF file held in ``data``.

    With ``check_size`` the data section must hold every declared data record.
    """
    if len(data) < HEADER_BYTES:
        raise EdfError("shorter than an EDF header (256 bytes)")
    if data[:8] != b"0       ":
        raise EdfError("not an EDF file (version field is not '0')")
    patient = _ascii(data[8:88], "patient id")
    recording = _ascii(data[88:168], "recording id")
    d, t = _ascii(data[168:176], "start date"), _ascii(data[176:184], "start time")
    try:
        start = datetime.strptime(f"{d} {t}", "%d.%m.%y %H.%M.%S")
    except ValueError:
        raise EdfError(f"bad start date/time {d!r} {t!r}") from None
    header_bytes = _int(data[184:192], "header bytes")
    reserved = _ascii(data[192:236], "reserved")
    n_records = _int(data[236:244], "number of data records")
    record_duration = _float(data[244:252], "data record duration")
    ns = _int(data[252:256], "number of signals")
    if not 1 <= ns <= MAX_SIGNALS:
        raise EdfError(f"number of signals {ns} out of range 1..{MAX_SIGNALS}")
    if header_bytes != HEADER_BYTES + ns * SIGNAL_HEADER_BYTES:
        raise EdfError("header byte count does not match the number of signals")
    if len(data) < header_bytes:
        raise EdfError("truncated signal headers")
    if not 0 < record_duration <= 86400:
        raise EdfError("data record duration must be positive")

    pos = HEADER_BYTES
    widths = (16, 80, 8, 8, 8, 8, 8, 80, 8, 32)
    cols: list[list[bytes]] = []
    for w in widths:
        cols.append([data[pos + i * w : pos + (i + 1) * w] for i in range(ns)])
        pos += w * ns
    signals = []
    for i in range(ns):
        sig = EdfSignal(
            label=_ascii(cols[0][i], "label"),
            transducer=_ascii(cols[1][i], "transducer"),
            physical_dimension=_ascii(cols[2][i], "physical dimension"),
            physical_min=_float(cols[3][i], "physical minimum"),
            physical_max=_float(cols[4][i], "physical maximum"),
            digital_min=_int(cols[5][i], "digital minimum"),
            digital_max=_int(cols[6][i], "digital maximum"),
            prefiltering=_ascii(cols[7][i], "prefiltering"),
            samples_per_record=_int(cols[8][i], "samples per record"),
        )
        if sig.samples_per_record <= 0 or sig.samples_per_record > 10_000_000:
            raise EdfError(f"signal {i}: samples per record out of range")
        if sig.digital_min >= sig.digital_max or sig.physical_min == sig.physical_max:
            raise EdfError(f"signal {i}: empty digital or physical range")
        signals.append(sig)

    record_bytes = 2 * sum(s.samples_per_record for s in signals)
    available = (len(data) - header_bytes) // record_bytes
    if n_records == -1:  # "unknown" is allowed while recording; count what is there
        n_records = available
    if n_records <= 0:
        raise EdfError("no data records")
    if check_size and available < n_records:
        raise EdfError(f"file holds {available} data records, header declares {n_records}")
    return EdfHeader(
        patient=patient,
        recording=recording,
        start=start,
        header_bytes=header_bytes,
        reserved=reserved,
        n_records=n_records,
        record_duration=record_duration,
        signals=tuple(signals),
    )


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
