"""EDF header parsing and validation (European Data Format, Kemp et al. 1992).

Production code validates an uploaded PSG recording with this before anything is sent
upstream; the simulators (``integrations/simulators/edf.py``) import it too and keep their
own writer. Pure Python, no Django. Everything raises ``EdfError`` only.

Layout of the header (all fields ASCII, left-aligned, space-padded):
  8 version "0" | 80 patient id | 80 recording id | 8 start date dd.mm.yy |
  8 start time hh.mm.ss | 8 header bytes | 44 reserved | 8 number of data records |
  8 duration of a data record (s) | 4 number of signals (ns)
then, field by field for all ns signals: 16 label | 80 transducer | 8 physical dimension |
8 physical min | 8 physical max | 8 digital min | 8 digital max | 80 prefiltering |
8 samples per data record | 32 reserved.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime
from typing import IO

HEADER_BYTES = 256
SIGNAL_HEADER_BYTES = 256
MAX_SIGNALS = 512
# EDF spec: two-digit years use 1985 as the clipping date (85-99 -> 19xx, 00-84 -> 20xx).
_CLIPPING_YEAR = 85
# Bytes 8..168 hold the patient and recording identification (names, ids, birth dates).
_IDENTIFICATION = slice(8, 168)
# EDF+ wants the fields' structure kept; "X" is its code for "unknown or anonymized".
_ANONYMOUS_PATIENT = b"X X X X".ljust(80)
_ANONYMOUS_RECORDING = b"Startdate X X X X".ljust(80)


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
    start: datetime  # naive local clock time, as EDF stores it
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
        raise EdfError(f"{what} is not an integer: {text[:8]!r}") from None


def _float(raw: bytes, what: str) -> float:
    text = _ascii(raw, what)
    try:
        value = float(text)
    except ValueError:
        raise EdfError(f"{what} is not a number: {text[:8]!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise EdfError(f"{what} is not a finite number")
    return value


def _start(date_text: str, time_text: str) -> datetime:
    try:
        day, month, yy = (int(p) for p in date_text.split("."))
        hour, minute, second = (int(p) for p in time_text.split("."))
        if not (len(date_text) == len(time_text) == 8 and 0 <= yy <= 99):
            raise ValueError
        year = 1900 + yy if yy >= _CLIPPING_YEAR else 2000 + yy
        return datetime(year, month, day, hour, minute, second)
    except ValueError:
        raise EdfError(f"bad start date/time {date_text[:8]!r} {time_text[:8]!r}") from None


def read_header(data: bytes, *, check_size: bool = True, file_size: int | None = None) -> EdfHeader:
    """Parse and validate the header of an EDF file whose first bytes are ``data``.

    With ``check_size`` the data section must hold every declared data record: the file is
    ``file_size`` bytes long when given (``data`` may then be the header alone), else
    ``len(data)``.
    """
    if len(data) < HEADER_BYTES:
        raise EdfError("shorter than an EDF header (256 bytes)")
    if data[:8] != b"0       ":
        raise EdfError("not an EDF file (version field is not '0')")
    patient = _ascii(data[8:88], "patient id")
    recording = _ascii(data[88:168], "recording id")
    start = _start(_ascii(data[168:176], "start date"), _ascii(data[176:184], "start time"))
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
    size = len(data) if file_size is None else file_size
    available = max(0, size - header_bytes) // record_bytes
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


def read_header_from(stream: IO[bytes], *, file_size: int) -> EdfHeader:
    """Validate the header of a file-like object of ``file_size`` bytes, reading only the
    header (a 512 MiB recording is never loaded into memory); rewinds the stream."""
    stream.seek(0)
    head = stream.read(HEADER_BYTES)
    try:
        ns = int(head[252:256].decode("ascii").strip()) if len(head) == HEADER_BYTES else 0
    except (UnicodeDecodeError, ValueError):
        ns = 0
    if 1 <= ns <= MAX_SIGNALS:
        head += stream.read(ns * SIGNAL_HEADER_BYTES)
    stream.seek(0)
    return read_header(head, file_size=file_size)


class AnonymizedEdf(io.RawIOBase):
    """A read-only view of an EDF stream whose patient and recording identification
    (header bytes 8..168) read as "X": what an upstream scorer needs is the signals, not who.

    Start date and time stay: they are not identifying on their own and scorers may use
    them. The data records are untouched, so scoring results are the same.
    """

    def __init__(self, stream: IO[bytes]):
        self._stream = stream
        self._pos = 0
        stream.seek(0)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._pos = self._stream.seek(offset, whence)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def readinto(self, buffer) -> int:
        chunk = self._stream.read(len(buffer))
        if not chunk:
            return 0
        start, end = self._pos, self._pos + len(chunk)
        if start < _IDENTIFICATION.stop and end > _IDENTIFICATION.start:
            replacement = _ANONYMOUS_PATIENT + _ANONYMOUS_RECORDING
            chunk = bytearray(chunk)
            lo, hi = max(start, _IDENTIFICATION.start), min(end, _IDENTIFICATION.stop)
            chunk[lo - start : hi - start] = replacement[lo - _IDENTIFICATION.start : hi - _IDENTIFICATION.start]
            chunk = bytes(chunk)
        buffer[: len(chunk)] = chunk
        self._pos = end
        return len(chunk)


def anonymized(stream: IO[bytes], *, buffer_size: int = 1024 * 1024) -> io.BufferedReader:
    """``stream`` with its identification fields blanked, buffered so ``read(n)`` returns n."""
    return io.BufferedReader(AnonymizedEdf(stream), buffer_size=buffer_size)
