"""Beddit Cloud API: password login and incremental sync of sleep objects.

Reference: shared/upstreams.md §4.

A sleep object is one night per user and date, so ``upstream_id`` is its ``date``
(``YYYY-MM-DD``): ``start_timestamp`` can move when Beddit re-analyses a night, the date does not.

Stages come from ``time_value_tracks.sleep_stages``, a *transition* track of
``[absolute unix seconds, ASCII code]`` pairs (§4.2). Each 30-s epoch from
``start_timestamp`` takes the state in effect at its midpoint (the last transition at or
before it; none yet → no data). Codes:

- 87 ``W`` awake → Wake (0)
- 83 ``S`` sleep → Light (5): Beddit does not split sleep into stages, and Light is the
  canonical "sleep, N1/N2 unknown" code wearables use.
- 82 ``R`` restless → Light (5): restless is sleep with movement; Beddit counts it in sleep
  time (``stage_duration_R`` beside ``_S``), and calling it Wake would inflate WASO.
- 65 ``A`` away → leading and trailing runs are cropped (the canonical night is time in bed,
  shared/science.md); an away run inside the night is a bed exit, i.e. the person is
  awake → Wake (0).
- 78 ``N`` no signal, 71 ``G`` gap → no data (-1).

Any other code quarantines the record. ``start``/``end`` snap to the epoch grid after cropping.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Annotated, Any

import httpx
import numpy as np
from pydantic import Field, StringConstraints, TypeAdapter, ValidationError

from .base import (
    LIGHT,
    NO_DATA,
    RECORD_ERRORS,
    WAKE,
    CanonicalSession,
    Page,
    QuarantinedRecord,
    UpstreamModel,
    bad_payload_on_error,
    from_unix,
    is_iana_timezone,
    parse_records,
    raw_id,
    validate_as,
)
from .errors import (
    UpstreamAuthFailed,
    UpstreamBadPayload,
    UpstreamError,
    UpstreamNotFound,
    UpstreamRejected,
)
from .transport import ProviderClient, build_client, error_for_status, json_or_none, parse_json

PROVIDER = "beddit"
BASE_URL = "https://cloudapi.beddit.com"
EPOCH_SECONDS = 30
# Re-ask for this many seconds before the cursor: covers an upstream whose updated_after is
# strict (>) and float rounding of microsecond timestamps; the overlap is de-duplicated by key.
CURSOR_LOOKBACK_SECONDS = 1.0

AWAY, SLEEP, RESTLESS, AWAKE, NO_SIGNAL, GAP = 65, 83, 82, 87, 78, 71
STAGE_MAP = {
    AWAKE: WAKE,
    SLEEP: LIGHT,
    RESTLESS: LIGHT,
    AWAY: WAKE,
    NO_SIGNAL: NO_DATA,
    GAP: NO_DATA,
}
# The properties the platform keeps beside its own metrics (score, heart, breathing, efficiency).
KEPT_PROPERTIES = (
    "total_sleep_score",
    "sleep_efficiency",
    "sleep_latency",
    "resting_heart_rate",
    "short_term_resting_heart_rate",
    "average_respiration_rate",
    "short_term_average_respiration_rate",
    "activity_index",
    "sleep_time_target",
    "away_episode_count",
    "total_snoring_episode_duration",
    "total_nap_duration",
    "stage_duration_A",
    "stage_duration_S",
    "stage_duration_R",
    "stage_duration_W",
    "stage_duration_N",
    "stage_duration_G",
)

Number = int | float
Pair = Annotated[list[Number], Field(min_length=2, max_length=2)]


# --- upstream shapes --------------------------------------------------------------------------


class Login(UpstreamModel):
    user: int
    access_token: str = Field(min_length=1)
    token_type: str | None = None
    expires_in: Number | None = None


class Track(UpstreamModel):
    value_data_type: str | None = None
    items: list[Pair]


class Tracks(UpstreamModel):
    sleep_stages: Track


class Properties(UpstreamModel):
    total_sleep_score: Number | None = None
    sleep_score_version: int | None = None
    sleep_efficiency: Number | None = Field(None, ge=0, le=1)
    sleep_latency: Number | None = None
    resting_heart_rate: Number | None = None
    short_term_resting_heart_rate: Number | None = None
    average_respiration_rate: Number | None = None
    short_term_average_respiration_rate: Number | None = None
    activity_index: Number | None = None
    sleep_time_target: Number | None = None
    away_episode_count: Number | None = None
    total_snoring_episode_duration: Number | None = None
    total_nap_duration: Number | None = None
    stage_duration_A: Number | None = None
    stage_duration_S: Number | None = None
    stage_duration_R: Number | None = None
    stage_duration_W: Number | None = None
    stage_duration_N: Number | None = None
    stage_duration_G: Number | None = None


class Sleep(UpstreamModel):
    user: int | None = None
    date: Annotated[str, StringConstraints(pattern=r"^\d{4}-\d{2}-\d{2}$")]
    timezone: str
    start_timestamp: Number
    end_timestamp: Number
    updated: Number
    tags: list[str] = []
    properties: Properties = Properties()
    time_value_tracks: Tracks


# A sleep list validated whole, straight from its bytes: pydantic's JSON parser skips the
# tracks the platform does not keep (heart rate, actigram, ...) instead of building Python
# floats for them, 4-5x faster than json.loads then validation.
SLEEP_LIST = TypeAdapter(list[Sleep])
# pydantic's JSON parser accepts NaN and Infinity; json.loads is told to refuse them
# (transport.parse_json), so a body holding them takes that path.
NON_STANDARD_JSON = (b"NaN", b"Infinity")


@dataclass(frozen=True, slots=True)
class SleepAnswer:
    """A sleep list answer: ``sleeps`` when every record validated (the fast path), else None."""

    response: httpx.Response
    sleeps: list[Sleep] | None


def read_sleep_answer(response: httpx.Response) -> SleepAnswer:
    content = response.content
    if not any(token in content for token in NON_STANDARD_JSON):
        try:
            return SleepAnswer(response, SLEEP_LIST.validate_json(content))
        except ValidationError:
            pass  # a malformed record, or not a list: the per-record path decides
    return SleepAnswer(response, None)


# --- cursor -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BedditCursor:
    """Incremental-sync position: the max ``updated`` seen, plus the keys near it.

    ``seen`` maps a sleep's date to its ``updated`` for records within the lookback window, so
    the overlap we re-ask for is dropped by key instead of being returned twice.
    """

    updated_after: float | None = None
    seen: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"updated_after": self.updated_after, "seen": dict(self.seen)}

    @classmethod
    def from_json(cls, value: Any) -> BedditCursor:
        if not value:
            return cls()
        if not isinstance(value, dict):
            raise ValueError("bad Beddit cursor")
        updated_after = value.get("updated_after")
        seen = value.get("seen") or {}
        if updated_after is not None and not isinstance(updated_after, (int, float)):
            raise ValueError("bad Beddit cursor")
        if not isinstance(seen, dict) or not all(
            isinstance(v, (int, float)) for v in seen.values()
        ):
            raise ValueError("bad Beddit cursor")
        return cls(
            float(updated_after) if updated_after is not None else None,
            {str(k): float(v) for k, v in seen.items()},
        )


def advance_cursor(cursor: BedditCursor, records: list[tuple[str, float]]) -> BedditCursor:
    """The cursor after a batch of (key, updated) pairs: ties kept by key, never moving back."""
    stamps = [u for _, u in records]
    if cursor.updated_after is not None:
        stamps.append(cursor.updated_after)
    if not stamps:
        return cursor
    top = max(stamps)
    merged = dict(cursor.seen)
    for key, updated in records:
        merged[key] = max(updated, merged.get(key, updated))
    window = {k: u for k, u in merged.items() if u >= top - CURSOR_LOOKBACK_SECONDS}
    return BedditCursor(top, window)


def _key_and_updated(raw: Any) -> tuple[str, float] | None:
    if isinstance(raw, Sleep):
        if not math.isfinite(raw.updated):
            raise ValueError("updated is not finite")  # the per-record path quarantines it
        return raw.date, float(raw.updated)
    if not isinstance(raw, dict):
        return None
    key, updated = raw.get("date"), raw.get("updated")
    if (
        not isinstance(key, str)
        or isinstance(updated, bool)
        or not isinstance(updated, (int, float))
    ):
        return None
    if not math.isfinite(updated):
        return None
    return key, float(updated)


# --- pure mapping -----------------------------------------------------------------------------


def transitions_to_epochs(
    items: list[list[float]], start: float, end: float, *, epoch_seconds: int = EPOCH_SECONDS
) -> np.ndarray:
    """Raw Beddit codes per epoch: the state in effect at each epoch's midpoint.

    An epoch is kept when its midpoint is at or before ``end``; before the first transition
    the state is ``N`` (no signal).
    """
    if not (math.isfinite(start) and math.isfinite(end)) or end <= start:
        raise ValueError("sleep end must be after start")
    count = int(math.floor((end - start) / epoch_seconds + 0.5))
    if count < 1:
        raise ValueError("sleep shorter than half an epoch")
    if count > 7 * 24 * 3600 // epoch_seconds:
        raise ValueError("sleep longer than a week")
    pairs = np.asarray(items, dtype=np.float64).reshape(-1, 2)
    if len(pairs) == 0:
        raise ValueError("sleep_stages track is empty")
    if not np.isfinite(pairs).all():
        raise ValueError("sleep_stages holds a non-finite value")
    codes = pairs[:, 1]
    if not np.array_equal(codes, np.round(codes)):
        raise ValueError("sleep_stages codes must be integers")
    order = np.argsort(pairs[:, 0], kind="stable")
    times, codes = pairs[order, 0], codes[order].astype(np.int64)
    mids = start + (np.arange(count) + 0.5) * epoch_seconds
    index = np.searchsorted(times, mids, side="right") - 1
    return np.where(index >= 0, codes[np.clip(index, 0, None)], NO_SIGNAL)


def epochs_to_canonical(raw: np.ndarray) -> tuple[int, np.ndarray]:
    """Crop leading/trailing away epochs and map codes; returns (first kept epoch, stages)."""
    unknown = set(np.unique(raw).tolist()) - set(STAGE_MAP)
    if unknown:
        raise ValueError(f"sleep_stages has unknown codes {sorted(unknown)[:5]}")
    present = np.flatnonzero(raw != AWAY)
    if present.size == 0:
        raise ValueError("no in-bed epochs (away all night)")
    first, last = int(present[0]), int(present[-1])
    kept = raw[first : last + 1]
    keys = np.array(sorted(STAGE_MAP), dtype=np.int64)
    values = np.array([STAGE_MAP[k] for k in keys], dtype=np.int8)
    return first, values[np.searchsorted(keys, kept)]


def sleep_to_canonical(sleep: Sleep, *, user_id: str) -> CanonicalSession:
    """One Beddit sleep object → CanonicalSession (see the module docstring for the mapping)."""
    if not is_iana_timezone(sleep.timezone):
        raise ValueError("timezone is not an IANA name")
    date.fromisoformat(sleep.date)
    raw = transitions_to_epochs(
        sleep.time_value_tracks.sleep_stages.items, sleep.start_timestamp, sleep.end_timestamp
    )
    first, stages = epochs_to_canonical(raw)
    start = from_unix(sleep.start_timestamp) + timedelta(seconds=first * EPOCH_SECONDS)
    properties = sleep.properties.model_dump()
    stats: dict[str, Any] = {
        k: properties[k] for k in KEPT_PROPERTIES if properties.get(k) is not None
    }
    stats["sleep_score_version"] = sleep.properties.sleep_score_version or 1  # missing means v1
    stats["tags"] = list(sleep.tags)
    return CanonicalSession(
        provider=PROVIDER,
        upstream_id=sleep.date,
        upstream_user_id=user_id,
        start=start,
        end=start + timedelta(seconds=len(stages) * EPOCH_SECONDS),
        timezone=sleep.timezone,
        epoch_seconds=EPOCH_SECONDS,
        stages=stages.tobytes(),
        upstream_updated_at=from_unix(sleep.updated),
        upstream_stats=stats,
    )


def parse_sleep(raw: Any, *, user_id: str) -> CanonicalSession:
    """Validate and map one sleep object; raises UpstreamBadPayload only."""
    sleep = validate_as(Sleep, raw, provider=PROVIDER, what="sleep")
    with bad_payload_on_error(raw, provider=PROVIDER, what="sleep"):
        return sleep_to_canonical(sleep, user_id=user_id)


def beddit_error(response: httpx.Response) -> UpstreamError | None:
    """Beddit's ``{"error", "description"}`` bodies → the error family (description unused)."""
    status = response.status_code
    if 200 <= status < 300:
        return None
    body = json_or_none(response)
    code = body.get("error") if isinstance(body, dict) else None
    if code in ("forbidden", "invalid_credentials", "no_such_user") or status == 403:
        return UpstreamAuthFailed(
            code if isinstance(code, str) and len(code) < 40 else "forbidden",
            provider=PROVIDER,
            status=status,
        )
    if code == "not_found":
        return UpstreamNotFound("not found", provider=PROVIDER, status=status)
    if code == "unsupported_api_version":
        return UpstreamRejected("unsupported API version", provider=PROVIDER, status=status)
    return error_for_status(response, provider=PROVIDER)


# --- client -----------------------------------------------------------------------------------


class BedditClient(ProviderClient):
    """Logs in with a password when it has none or its token is refused (once per call)."""

    provider = PROVIDER

    def __init__(
        self,
        *,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        user_id: int | None = None,
        base_url: str = BASE_URL,
        allow_private: bool = False,
        http: httpx.Client | None = None,
    ):
        if not token and not (username and password):
            raise ValueError("a token or a username and password are required")
        self._username = username
        self._password = password
        self.token = token
        self.user_id = user_id
        super().__init__(http or build_client(base_url, allow_private=allow_private))

    def _error_for(self, response: httpx.Response) -> UpstreamError | None:
        return beddit_error(response)

    # Reference: shared/upstreams.md §4.1 "Password login"
    def login(self) -> Login:
        if not (self._username and self._password):
            raise UpstreamAuthFailed(
                "token refused and no password to log in again", provider=PROVIDER
            )
        payload = self._json(
            "POST",
            "/api/v1/auth/authorize",
            data={"grant_type": "password", "username": self._username, "password": self._password},
        )
        login = validate_as(Login, payload, provider=PROVIDER, what="login")
        self.token = login.access_token
        self.user_id = login.user
        return login

    # Reference: shared/upstreams.md §4.1 (UserToken header; 403 forbidden = token bad/expired)
    def _authorized(
        self,
        method: str,
        url: str,
        parse: Callable[[httpx.Response], Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        """A call with the user token, its body read by ``parse`` (default: JSON); a 403 gets
        one fresh login, then auth failed."""
        if not self.token:
            self.login()
        parse = parse or (lambda response: parse_json(response, provider=PROVIDER))
        for attempt in (1, 2):
            try:
                headers = {"Authorization": f"UserToken {self.token}"}
                return self._parsed(method, url, parse, headers=headers, **kwargs)
            except UpstreamAuthFailed as exc:
                if attempt == 2 or exc.status != 403 or not (self._username and self._password):
                    raise
                self.login()
        raise AssertionError("unreachable")

    def _user(self, user_id: int | None) -> int:
        if user_id is not None:
            return user_id
        if self.user_id is None:
            self.login()
        assert self.user_id is not None
        return self.user_id

    # Reference: shared/upstreams.md §4.2 "GET /api/v1/user/:id/sleep" (updated_after)
    def fetch_sleeps(
        self, cursor: BedditCursor | None = None, *, user_id: int | None = None
    ) -> Page[CanonicalSession]:
        """Every night updated since the cursor (first call: full history) in one bare array.

        No ``limit`` is sent: the order of an updated_after result is undocumented, so a cut
        page whose max ``updated`` became the cursor could skip records. ``next_cursor`` is a
        ``BedditCursor.to_json()`` value; store it only after the page is committed. An
        upstream that caps its answers anyway needs ``iter_sleeps``.
        """
        return self._fetch_since(cursor or BedditCursor(), self._user(user_id), None)[0]

    def iter_sleeps(
        self, cursor: BedditCursor | None = None, *, user_id: int | None = None
    ) -> Iterator[Page[CanonicalSession]]:
        """Pages of everything updated since the cursor, even from an upstream that caps answers.

        The first answer is ``fetch_sleeps``'s; the first page is yielded even when empty,
        later ones only with records. The next question is always ``updated >=`` the newest
        ``updated`` of the last answer (``updated_after`` one float step below it): nights
        that tie with it across a cut are read, their delivered twins dropped by key, and an
        answer of delivered nights only (a lookback window fuller than one answer) is stepped
        past. It ends with an empty answer, or one with nothing new to a question already at
        the newest ``updated`` known (so a sync that finds nothing new asks twice). The one
        thing this cannot page through is more nights sharing a single ``updated`` value
        than the upstream serves at once; those beyond the cap are read when they change.
        """
        cursor = cursor or BedditCursor()
        uid = self._user(user_id)
        since: float | None = None
        first = True
        while True:
            page, asked, newest, fresh = self._fetch_since(cursor, uid, since)
            if first or page.items or page.quarantined:
                yield page
            first = False
            cursor = BedditCursor.from_json(page.next_cursor)
            if newest is None or cursor.updated_after is None:
                return  # an empty answer: nothing after `asked`
            if not fresh and asked >= math.nextafter(cursor.updated_after, -math.inf):
                return  # asked from the newest known on and got nothing new
            step = math.nextafter(newest, -math.inf)  # next: updated >= newest
            if step <= asked:
                step = newest  # the whole answer tied at one value: go past it
            since = step

    def _fetch_since(
        self, cursor: BedditCursor, uid: int, since: float | None
    ) -> tuple[Page[CanonicalSession], float, float | None, int]:
        """One updated_after call: (page, the updated_after asked, newest updated, new nights).

        ``since`` None asks from the cursor minus the lookback.
        """
        if since is None:
            since = (
                0.0
                if cursor.updated_after is None
                else max(0.0, cursor.updated_after - CURSOR_LOOKBACK_SECONDS)
            )
        answer = self._authorized(
            "GET",
            f"/api/v1/user/{uid}/sleep",
            read_sleep_answer,
            params={"updated_after": repr(since)},
        )
        if answer.sleeps is not None:
            try:
                return self._page_since(cursor, since, answer.sleeps, uid)
            except RECORD_ERRORS:
                pass  # a record well formed but wrong in meaning: the per-record path below
        payload = parse_json(answer.response, provider=PROVIDER)
        if not isinstance(payload, list):
            raise UpstreamBadPayload(
                "sleep list is not an array", payload=payload, provider=PROVIDER
            )
        return self._page_since(cursor, since, payload, uid)

    def _page_since(
        self, cursor: BedditCursor, since: float, records: list[Any], uid: int
    ) -> tuple[Page[CanonicalSession], float, float | None, int]:
        """The page of one updated_after answer: raw records (each parsed on its own, a bad
        one quarantined) or, on the fast path, Sleep models (mapping errors propagate)."""
        keyed: dict[str, tuple[float, Any]] = {}
        unkeyed, stamps = [], []
        newest: float | None = None
        for raw in records:
            key_updated = _key_and_updated(raw)
            if key_updated is None:
                unkeyed.append(raw)  # malformed: it will be quarantined
                continue
            key, updated = key_updated
            newest = updated if newest is None else max(newest, updated)
            if key in cursor.seen and updated <= cursor.seen[key]:
                continue  # the overlap we asked for again: already delivered
            stamps.append(key_updated)
            if key not in keyed or updated >= keyed[key][0]:
                keyed[key] = (updated, raw)  # one record per night per batch, the newest
        good, bad = self._parse([raw for _, raw in keyed.values()] + unkeyed, uid)
        page = Page(tuple(good), tuple(bad), advance_cursor(cursor, stamps).to_json(), False)
        return page, since, newest, len(stamps)

    # Reference: shared/upstreams.md §4.2 "GET /api/v1/user/:id/sleep" (start_date, end_date)
    def fetch_sleeps_between(
        self, start_date: date, end_date: date, *, user_id: int | None = None
    ) -> Page[CanonicalSession]:
        """Nights in a date range (backfill, reconciliation); leaves any cursor alone."""
        uid = self._user(user_id)
        payload = self._authorized(
            "GET",
            f"/api/v1/user/{uid}/sleep",
            params={"start_date": start_date.isoformat(), "end_date": end_date.isoformat()},
        )
        if not isinstance(payload, list):
            raise UpstreamBadPayload(
                "sleep list is not an array", payload=payload, provider=PROVIDER
            )
        good, bad = self._parse(payload, uid)
        return Page(tuple(good), tuple(bad), None, False)

    def _parse(
        self, raw_records: list[Any], uid: int
    ) -> tuple[list[CanonicalSession], list[QuarantinedRecord]]:
        if all(isinstance(raw, Sleep) for raw in raw_records):
            return [sleep_to_canonical(sleep, user_id=str(uid)) for sleep in raw_records], []
        return parse_records(
            raw_records,
            lambda raw: parse_sleep(raw, user_id=str(uid)),
            provider=PROVIDER,
            id_of=lambda raw: raw_id(raw, "date"),
        )
