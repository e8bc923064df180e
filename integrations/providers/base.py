"""Canonical records every provider maps into, and the helpers they share.

Canonical hypnogram (shared/design.md): one int8 per epoch, ``0`` Wake, ``1`` N1, ``2`` N2,
``3`` N3, ``4`` REM, ``5`` Light (a wearable's light sleep: N1 or N2 unknown), ``-1`` no data.
No Django import here: the sync engine turns these into model rows.
"""

from __future__ import annotations

import enum
import hashlib
import json
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Generic, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import UpstreamBadPayload

WAKE, N1, N2, N3, REM, LIGHT, NO_DATA = 0, 1, 2, 3, 4, 5, -1
CANONICAL_CODES = frozenset({WAKE, N1, N2, N3, REM, LIGHT, NO_DATA})
PROVIDERS = frozenset({"asleep", "beddit", "usleep", "grand_challenge"})

# Bump when the hashed fields or their encoding change, so every stored hash is stale at once.
CONTENT_HASH_VERSION = "v1"

# Stage names a PSG scorer may use (U-Time class maps, AASM and R&K): R&K stage 4 merges
# into N3 as AASM does.
STAGE_NAME_CODES = {
    "W": WAKE,
    "WAKE": WAKE,
    "N1": N1,
    "N2": N2,
    "N3": N3,
    "N4": N3,
    "REM": REM,
    "R": REM,
    "UNKNOWN": NO_DATA,
    "?": NO_DATA,
}
# U-Time's default class map, used when an upstream sends a bare list of integers.
UTIME_CLASSES = {"0": "W", "1": "N1", "2": "N2", "3": "N3", "4": "REM"}


class UpstreamModel(BaseModel):
    """Base for upstream JSON shapes: strict types, unknown keys ignored (upstreams add fields)."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


@dataclass(frozen=True, slots=True)
class CanonicalSession:
    provider: str  # "asleep" | "beddit" | "usleep" | "grand_challenge"
    upstream_id: str
    upstream_user_id: str
    start: datetime  # aware, UTC
    end: datetime  # aware, UTC
    timezone: str  # IANA
    epoch_seconds: int
    stages: bytes  # one int8 per epoch, canonical codes
    upstream_updated_at: datetime | None
    upstream_stats: dict  # JSON-safe extras (upstream score, resting HR, efficiency, ...)

    def __post_init__(self) -> None:
        # Invariants live here so every mapper gets them; a ValueError quarantines the record.
        if self.provider not in PROVIDERS:
            raise ValueError(f"unknown provider {self.provider!r}")
        if not self.upstream_id or not self.upstream_user_id:
            raise ValueError("upstream_id and upstream_user_id are required")
        for name in ("start", "end", "upstream_updated_at"):
            value = getattr(self, name)
            if value is None and name == "upstream_updated_at":
                continue
            if not isinstance(value, datetime) or value.utcoffset() != timedelta(0):
                raise ValueError(f"{name} must be an aware UTC datetime")
        if self.end <= self.start:
            raise ValueError("end must be after start")
        if not isinstance(self.epoch_seconds, int) or self.epoch_seconds <= 0:
            raise ValueError("epoch_seconds must be a positive int")
        if not isinstance(self.stages, bytes) or not self.stages:
            raise ValueError("stages must be non-empty bytes")
        if not set(np.frombuffer(self.stages, dtype=np.int8).tolist()) <= CANONICAL_CODES:
            raise ValueError("stages hold a non-canonical code")
        if not is_iana_timezone(self.timezone):
            raise ValueError("timezone must be an IANA name")
        if not isinstance(self.upstream_stats, dict):
            raise ValueError("upstream_stats must be a dict")
        json.dumps(self.upstream_stats, allow_nan=False)  # raises ValueError/TypeError

    @property
    def epoch_count(self) -> int:
        return len(self.stages)

    def stage_array(self) -> np.ndarray:
        """The stages as an int8 numpy array (read-only view)."""
        return np.frombuffer(self.stages, dtype=np.int8)


class ScoringState(str, enum.Enum):
    """Where a PSG scoring job stands (U-Sleep prediction, Grand Challenge algorithm job)."""

    PENDING = "pending"
    COMPLETED = "completed"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class ScoringPoll:
    state: ScoringState
    label: str  # the upstream's own status label, for the task log


@dataclass(frozen=True, slots=True)
class QuarantinedRecord:
    """A record that failed parsing: kept with its reason, never logged."""

    provider: str
    reason: str  # field paths and error types only, no input values
    payload: Any  # the raw record, JSON-safe (it came from JSON)
    upstream_id: str | None = None


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One list call's outcome: good items and quarantined records side by side.

    ``next_cursor`` is JSON-safe and provider-specific (see each provider); ``has_more`` says
    whether the caller should ask for another page.
    """

    items: tuple[T, ...] = ()
    quarantined: tuple[QuarantinedRecord, ...] = ()
    next_cursor: Any = None
    has_more: bool = False


def content_hash(session: CanonicalSession) -> str:
    """Stable hash of the canonical content, to skip writes on unchanged re-syncs.

    ``upstream_updated_at`` is left out on purpose: an upstream that bumps its timestamp
    without changing the night must not cause a rewrite and a metrics recompute.
    """
    doc = {
        "provider": session.provider,
        "upstream_id": session.upstream_id,
        "upstream_user_id": session.upstream_user_id,
        "start": session.start.astimezone(timezone.utc).isoformat(),
        "end": session.end.astimezone(timezone.utc).isoformat(),
        "timezone": session.timezone,
        "epoch_seconds": session.epoch_seconds,
        "stages": session.stages.hex(),
        "upstream_stats": session.upstream_stats,
    }
    encoded = json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return f"{CONTENT_HASH_VERSION}:" + hashlib.sha256(encoded.encode()).hexdigest()


def stages_to_bytes(values: Iterable[int]) -> bytes:
    """Pack canonical codes into bytes (one int8 each); refuses non-canonical codes."""
    array = np.fromiter((int(v) for v in values), dtype=np.int64)
    if not set(np.unique(array).tolist()) <= CANONICAL_CODES:
        raise ValueError("non-canonical stage code")
    return array.astype(np.int8).tobytes()


def map_codes(values: Sequence[int], mapping: Mapping[int, int], *, what: str) -> bytes:
    """Map upstream integer codes to canonical bytes through ``mapping`` (vectorised)."""
    array = np.asarray(values, dtype=np.int64)
    if array.ndim != 1:
        raise ValueError(f"{what} must be a flat list")
    unknown = set(np.unique(array).tolist()) - set(mapping)
    if unknown:
        raise ValueError(f"{what} has unknown codes {sorted(unknown)[:5]}")
    keys = np.fromiter(mapping.keys(), dtype=np.int64)
    codes = np.fromiter(mapping.values(), dtype=np.int64)
    order = np.argsort(keys)
    mapped = codes[order][np.searchsorted(keys[order], array)]
    return mapped.astype(np.int8).tobytes()


def map_named_hypnogram(values: Sequence[int], classes: Mapping[str, str]) -> bytes:
    """Map a hypnogram of class indices plus a ``{"0": "W", ...}`` class map to canonical bytes."""
    mapping: dict[int, int] = {}
    for key, name in classes.items():
        try:
            index = int(key)
        except (TypeError, ValueError):
            raise ValueError(f"class key {key!r} is not an integer") from None
        code = STAGE_NAME_CODES.get(str(name).strip().upper())
        if code is None:
            raise ValueError(f"unknown stage name {str(name)[:20]!r}")
        mapping[index] = code
    return map_codes(values, mapping, what="hypnogram")


def is_iana_timezone(name: Any) -> bool:
    if not isinstance(name, str) or not name or len(name) > 64:
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def to_utc(value: datetime, *, assume_tz: str = "UTC") -> datetime:
    """Aware UTC datetime; naive values are read in ``assume_tz``."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo(assume_tz))
    return value.astimezone(timezone.utc)


# Unix timestamps outside 1970..2999 are garbage, and far ones make the OS raise OSError.
MAX_UNIX_SECONDS = 32503680000.0


def from_unix(seconds: float) -> datetime:
    """Aware UTC datetime from Unix seconds; ValueError outside 1970..2999."""
    if not math.isfinite(seconds) or not 0 <= seconds < MAX_UNIX_SECONDS:
        raise ValueError("timestamp out of range")
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


def describe_error(exc: BaseException) -> str:
    """A quarantine reason: field paths and error types, never the offending input values."""
    if isinstance(exc, ValidationError):
        parts = []
        for error in exc.errors(include_input=False, include_url=False)[:5]:
            loc = ".".join(str(p) for p in error["loc"]) or "<root>"
            parts.append(f"{loc}: {error['msg']}")
        more = exc.error_count() - len(parts)
        return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")
    if isinstance(exc, UpstreamBadPayload):
        # Strip the "provider: " prefix; the record already carries its provider.
        text = str(exc)
        return text.split(": ", 1)[1] if exc.provider and ": " in text else text
    return f"{type(exc).__name__}: {exc}"[:300]


# What a mapper may raise for a bad record; anything else is a bug and must surface.
RECORD_ERRORS = (
    ValidationError,
    ValueError,
    TypeError,
    KeyError,
    OverflowError,
    UpstreamBadPayload,
)


def parse_records(
    raw_records: Iterable[Any],
    parse_one: Callable[[Any], T | None],
    *,
    provider: str,
    id_of: Callable[[Any], str | None],
) -> tuple[list[T], list[QuarantinedRecord]]:
    """Parse each record on its own: a bad one is quarantined with its reason, the rest go on.

    ``parse_one`` may return None for a record that is valid but not (yet) a session.
    """
    good: list[T] = []
    bad: list[QuarantinedRecord] = []
    for raw in raw_records:
        try:
            parsed = parse_one(raw)
        except RECORD_ERRORS as exc:
            bad.append(
                QuarantinedRecord(
                    provider=provider,
                    reason=describe_error(exc),
                    payload=raw,
                    upstream_id=id_of(raw),
                )
            )
            continue
        if parsed is not None:
            good.append(parsed)
    return good, bad


def raw_id(raw: Any, *keys: str) -> str | None:
    """Best-effort id of a raw record for the quarantine row (first scalar found under keys)."""
    if not isinstance(raw, dict):
        return None
    for key in keys:
        value = raw.get(key)
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            return str(value)[:200]
    return None


@contextmanager
def bad_payload_on_error(payload: Any, *, provider: str, what: str) -> Iterator[None]:
    """Turn any record-level failure inside the block into UpstreamBadPayload (with payload)."""
    try:
        yield
    except UpstreamBadPayload:
        raise
    except RECORD_ERRORS as exc:
        raise UpstreamBadPayload(
            f"{what}: {describe_error(exc)}", payload=payload, provider=provider
        ) from None


def validate_as(model: type[BaseModel], payload: Any, *, provider: str, what: str) -> Any:
    """Validate a whole response; a mismatch becomes UpstreamBadPayload carrying the payload."""
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise UpstreamBadPayload(
            f"{what}: {describe_error(exc)}", payload=payload, provider=provider
        ) from None
