"""Asleep API (asleep.ai SleepTrack): users, sessions, reports and average stats.

Reference: shared/upstreams.md §1.

Stage mapping (one value per 30-s epoch, §1.2): 4-stage plan 0 Wake, 1 Light, 2 Deep, 3 REM
→ canonical 0, 5, 3, 4; ``-1`` unknown → -1. The 2-stage plan codes 0 Wake, 1 Sleep, so its
``1`` cannot be told from the 4-stage ``1`` by value: both become Light (5). Sleep/wake
metrics (TST, efficiency, latency, WASO) stay right; stage percentages would be wrong for a
2-stage night, so ``upstream_stats["stage_plan"]`` says ``"4-stage"`` when the night proves it
(a Deep or REM epoch, or non-null deep/REM durations) and ``"unknown"`` otherwise, for the
analytics to withhold stage ratios. Any other code quarantines the record.

Asleep reports rate limits and quota with **403 and a message**, not 429 (§1.3):
"Rate limit exceeded" → UpstreamRateLimited (60 s unless Retry-After says otherwise),
"Quota exceeded" → UpstreamRateLimited (1 h), "Plan is expired" → UpstreamAuthFailed.
A 401 about the user id ("user_id is invalid", "x-user-id is invalid", "invalid user id")
concerns one participant, so it is UpstreamNotFound; any other 401 is a bad key → auth failed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import httpx
from pydantic import ConfigDict, Field, StringConstraints

from .base import (
    NO_DATA,
    CanonicalSession,
    Page,
    QuarantinedRecord,
    UpstreamModel,
    bad_payload_on_error,
    describe_error,
    is_iana_timezone,
    map_codes,
    parse_records,
    raw_id,
    to_utc,
    validate_as,
)
from .errors import (
    DEFAULT_RETRY_AFTER_SECONDS,
    UpstreamAuthFailed,
    UpstreamBadPayload,
    UpstreamError,
    UpstreamNotFound,
    UpstreamRejected,
)
from .transport import ProviderClient, build_client, error_for_status, json_or_none, rate_limited

PROVIDER = "asleep"
BASE_URL = "https://api.asleep.ai"
EPOCH_SECONDS = 30
MAX_PAGE_SIZE = 100  # list sessions: limit 0..100
MAX_STATS_DAYS = 100  # average stats: at most 100 days per call
# A quota is a plan allowance (daily or monthly); checking again hourly is cheap and enough.
QUOTA_RETRY_AFTER_SECONDS = 3600.0

STAGE_MAP = {-1: NO_DATA, 0: 0, 1: 5, 2: 3, 3: 4}
COMPLETE = "COMPLETE"

Number = int | float
LaxDatetime = Annotated[datetime, Field(strict=False)]
ClockTime = Annotated[str, StringConstraints(pattern=r"^\d{1,2}:[0-5]\d:[0-5]\d$")]


# --- upstream shapes --------------------------------------------------------------------------


class Envelope(UpstreamModel):
    detail: str
    result: Any = None


class CreatedUser(UpstreamModel):
    user_id: str = Field(min_length=1)


class LastSessionInfo(UpstreamModel):
    session_id: str
    state: str
    start_time: LaxDatetime
    end_time: LaxDatetime | None = None
    complete_time: LaxDatetime | None = None


class AsleepUser(UpstreamModel):
    user_id: str
    to_be_deleted: bool = False
    last_session_info: LastSessionInfo | None = None
    metadata: dict | None = None


class SessionListItem(UpstreamModel):
    session_id: str = Field(min_length=1)
    state: str
    session_start_time: LaxDatetime
    session_end_time: LaxDatetime | None = None
    created_timezone: str | None = None
    unexpected_end_time: LaxDatetime | None = None
    time_in_bed: int | None = None


class SessionList(UpstreamModel):
    timezone: str = "UTC"
    sleep_session_list: list[Any]


class SessionDetail(UpstreamModel):
    id: str = Field(min_length=1)
    state: str
    start_time: LaxDatetime
    end_time: LaxDatetime | None = None
    unexpected_end_time: LaxDatetime | None = None
    created_timezone: str | None = None
    sleep_stages: list[int] | None = None


class Stat(UpstreamModel):
    sleep_index: Number | None = None
    sleep_latency: Number | None = None
    wakeup_latency: Number | None = None
    light_latency: Number | None = None
    deep_latency: Number | None = None
    rem_latency: Number | None = None
    sleep_time: LaxDatetime | None = None
    wake_time: LaxDatetime | None = None
    time_in_bed: Number | None = None
    time_in_sleep_period: Number | None = None
    time_in_sleep: Number | None = None
    time_in_wake: Number | None = None
    time_in_light: Number | None = None
    time_in_deep: Number | None = None
    time_in_rem: Number | None = None
    time_in_stable_breath: Number | None = None
    time_in_unstable_breath: Number | None = None
    time_in_snoring: Number | None = None
    time_in_no_snoring: Number | None = None
    sleep_efficiency: Number | None = Field(None, ge=0, le=1)
    sleep_ratio: Number | None = None
    wake_ratio: Number | None = None
    light_ratio: Number | None = None
    deep_ratio: Number | None = None
    rem_ratio: Number | None = None
    stable_breath_ratio: Number | None = None
    unstable_breath_ratio: Number | None = None
    snoring_ratio: Number | None = None
    no_snoring_ratio: Number | None = None
    breathing_index: Number | None = None
    breathing_pattern: str | None = None
    waso_count: Number | None = None
    longest_waso: Number | None = None
    sleep_cycle: Number | None = None
    sleep_cycle_count: Number | None = None
    unstable_breath_count: Number | None = None
    snoring_count: Number | None = None


class Report(UpstreamModel):
    timezone: str = "UTC"
    peculiarities: list[str] = []
    missing_data_ratio: Number | None = None
    session: SessionDetail
    stat: Stat | None = None


class AverageValues(UpstreamModel):
    # Upstream adds stat keys freely; keep them (JSON came from JSON, so it is JSON-safe).
    model_config = ConfigDict(strict=True, extra="allow", frozen=True)

    start_time: ClockTime | None = None
    end_time: ClockTime | None = None
    sleep_time: ClockTime | None = None
    wake_time: ClockTime | None = None


class Period(UpstreamModel):
    timezone: str
    start_date: str
    end_date: str


class SessionRef(UpstreamModel):
    id: str


class AverageStatsResult(UpstreamModel):
    period: Period
    peculiarities: list[str] = []
    average_stats: AverageValues | None = None
    never_slept_sessions: list[SessionRef] = []
    slept_sessions: list[SessionRef] = []


# --- what callers get -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionSummary:
    session_id: str
    state: str
    start: datetime  # UTC
    end: datetime | None  # UTC
    start_date: date  # in the request's timezone: the unit of the date filters
    created_timezone: str | None
    time_in_bed: int | None

    @property
    def complete(self) -> bool:
        return self.state == COMPLETE


@dataclass(frozen=True, slots=True)
class AverageStats:
    start_date: date
    end_date: date
    timezone: str
    average_stats: dict | None  # upstream values; clock times also as *_seconds after midnight
    peculiarities: tuple[str, ...]
    slept_session_ids: tuple[str, ...]
    never_slept_session_ids: tuple[str, ...]


# --- pure mapping -----------------------------------------------------------------------------


def report_to_canonical(report: Report, *, user_id: str) -> CanonicalSession | None:
    """One v3 report → CanonicalSession; None while the session is not COMPLETE."""
    session = report.session
    if session.state != COMPLETE:
        return None
    if not session.sleep_stages:
        raise ValueError("complete session without sleep_stages")
    stages = map_codes(session.sleep_stages, STAGE_MAP, what="sleep_stages")
    response_tz = report.timezone if is_iana_timezone(report.timezone) else "UTC"
    start = to_utc(session.start_time, assume_tz=response_tz)
    end_time = session.end_time or session.unexpected_end_time
    end = (
        to_utc(end_time, assume_tz=response_tz)
        if end_time is not None
        else start + timedelta(seconds=EPOCH_SECONDS * len(stages))
    )
    # created_timezone is the participant's clock; the response timezone is just our header.
    tz = session.created_timezone if is_iana_timezone(session.created_timezone) else response_tz
    stat = report.stat
    four_stage = any(v in (2, 3) for v in session.sleep_stages) or (
        stat is not None and (stat.time_in_deep is not None or stat.time_in_rem is not None)
    )
    stats: dict[str, Any] = stat.model_dump(mode="json") if stat is not None else {}
    stats.update(
        stage_plan="4-stage" if four_stage else "unknown",
        peculiarities=list(report.peculiarities),
        missing_data_ratio=report.missing_data_ratio,
    )
    return CanonicalSession(
        provider=PROVIDER,
        upstream_id=session.id,
        upstream_user_id=user_id,
        start=start,
        end=end,
        timezone=tz,
        epoch_seconds=EPOCH_SECONDS,
        stages=stages,
        upstream_updated_at=None,  # Asleep reports carry no modification time
        upstream_stats=stats,
    )


def parse_report(payload: Any, *, user_id: str) -> CanonicalSession | None:
    """Validate a Get Session v3 ``result`` and map it; raises UpstreamBadPayload only."""
    report = validate_as(Report, payload, provider=PROVIDER, what="session report")
    with bad_payload_on_error(payload, provider=PROVIDER, what="session report"):
        return report_to_canonical(report, user_id=user_id)


def summary_from_item(
    item: SessionListItem, *, request_tz: str, response_tz: str
) -> SessionSummary:
    """A list item as a summary.

    ``request_tz`` is the header we sent (the date filters' unit); naive times are read in
    ``response_tz``.
    """
    start = to_utc(item.session_start_time, assume_tz=response_tz)
    end = item.session_end_time or item.unexpected_end_time
    return SessionSummary(
        session_id=item.session_id,
        state=item.state,
        start=start,
        end=to_utc(end, assume_tz=response_tz) if end is not None else None,
        start_date=start.astimezone(ZoneInfo(request_tz)).date(),
        created_timezone=item.created_timezone,
        time_in_bed=item.time_in_bed,
    )


def clock_seconds(value: str) -> int:
    hours, minutes, seconds = (int(p) for p in value.split(":"))
    return hours * 3600 + minutes * 60 + seconds


def average_stats_from_result(result: AverageStatsResult) -> AverageStats:
    values = None
    if result.average_stats is not None:
        values = result.average_stats.model_dump(mode="json")
        for name in ("start_time", "end_time", "sleep_time", "wake_time"):
            if values.get(name) is not None:
                values[f"{name}_seconds"] = clock_seconds(values[name])
    return AverageStats(
        start_date=date.fromisoformat(result.period.start_date),
        end_date=date.fromisoformat(result.period.end_date),
        timezone=result.period.timezone,
        average_stats=values,
        peculiarities=tuple(result.peculiarities),
        slept_session_ids=tuple(s.id for s in result.slept_sessions),
        never_slept_session_ids=tuple(s.id for s in result.never_slept_sessions),
    )


def split_date_range(
    start: date, end: date, *, max_days: int = MAX_STATS_DAYS
) -> list[tuple[date, date]]:
    """Inclusive [start, end] cut into chunks of at most ``max_days`` days each (inclusive).

    "At most 100 days apart" is read conservatively as 100 calendar days including both ends,
    which satisfies either reading of the upstream's limit.
    """
    if end < start:
        raise ValueError("end date before start date")
    chunks = []
    cursor = start
    while cursor <= end:
        chunk_end = min(end, cursor + timedelta(days=max_days - 1))
        chunks.append((cursor, chunk_end))
        cursor = chunk_end + timedelta(days=1)
    return chunks


def asleep_error(response: httpx.Response) -> UpstreamError | None:
    """Asleep's status mapping: 403 carries rate limit, quota and plan expiry in its message."""
    status = response.status_code
    if 200 <= status < 300:
        return None
    body = json_or_none(response)
    detail = body.get("detail") if isinstance(body, dict) else None
    text = " ".join(detail.lower().split()) if isinstance(detail, str) else ""
    if status == 403:
        if "rate limit" in text or "too many" in text:
            return rate_limited(response, "rate limit exceeded", default=DEFAULT_RETRY_AFTER_SECONDS, provider=PROVIDER)
        if "quota" in text:
            return rate_limited(response, "quota exceeded", default=QUOTA_RETRY_AFTER_SECONDS, provider=PROVIDER)
        if "expired" in text or "plan" in text:
            return UpstreamAuthFailed("plan is expired", provider=PROVIDER, status=status)
        if "terminated" in text:
            return UpstreamRejected("session already terminated", provider=PROVIDER, status=status)
        return UpstreamAuthFailed("forbidden", provider=PROVIDER, status=status)
    if status == 401:
        if "user" in text and "invalid" in text:
            return UpstreamNotFound("user id is invalid", provider=PROVIDER, status=status)
        return UpstreamAuthFailed("API key refused", provider=PROVIDER, status=status)
    if status == 400 and "timezone" in text:
        return UpstreamRejected("invalid timezone", provider=PROVIDER, status=status)
    if status == 400 and ("100 days" in text or "period" in text):
        return UpstreamRejected("period longer than 100 days", provider=PROVIDER, status=status)
    if status == 404:
        what = "session" if "session" in text else "user" if "user" in text else "object"
        return UpstreamNotFound(f"{what} does not exist", provider=PROVIDER, status=status)
    return error_for_status(response, provider=PROVIDER)


def _result(payload: Any, *, what: str) -> Any:
    return validate_as(Envelope, payload, provider=PROVIDER, what=what).result


# --- client -----------------------------------------------------------------------------------


class AsleepClient(ProviderClient):
    provider = PROVIDER

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = BASE_URL,
        timezone: str = "UTC",
        allow_private: bool = False,
        http: httpx.Client | None = None,
    ):
        if not is_iana_timezone(timezone):
            raise ValueError("timezone must be an IANA name")
        self.timezone = timezone
        self._pool: ThreadPoolExecutor | None = None  # report reads, made on first concurrent use
        self._pool_lock = threading.Lock()
        super().__init__(http or build_client(base_url, allow_private=allow_private))
        self.http.headers["x-api-key"] = api_key

    def _error_for(self, response: httpx.Response) -> UpstreamError | None:
        return asleep_error(response)

    def _tz(self, timezone: str | None) -> str:
        tz = timezone or self.timezone
        if not is_iana_timezone(tz):
            raise ValueError("timezone must be an IANA name")
        return tz

    # Reference: shared/upstreams.md §1.2 "Create user"
    def create_user(self, metadata: dict | None = None) -> str:
        """Create an upstream user; returns its opaque id."""
        body = {"metadata": metadata} if metadata is not None else None
        payload = self._json("POST", "/ai/v1/users", json=body)
        result = _result(payload, what="create user")
        return validate_as(CreatedUser, result, provider=PROVIDER, what="create user").user_id

    # Reference: shared/upstreams.md §1.2 "Get user"
    def get_user(self, user_id: str) -> AsleepUser:
        payload = self._json("GET", f"/ai/v1/users/{_segment(user_id)}")
        # The docs show the user bare and enveloped in different places; accept both.
        result = (
            payload.get("result") if isinstance(payload, dict) and "result" in payload else payload
        )
        return validate_as(AsleepUser, result, provider=PROVIDER, what="user")

    # Reference: shared/upstreams.md §1.2 (DELETE /ai/v1/users/{user_id} → 204)
    def delete_user(self, user_id: str) -> None:
        self._send("DELETE", f"/ai/v1/users/{_segment(user_id)}")

    # Reference: shared/upstreams.md §1.2 "List sessions"
    def list_sessions(
        self,
        user_id: str,
        *,
        date_gte: date | None = None,
        date_lte: date | None = None,
        offset: int = 0,
        limit: int = MAX_PAGE_SIZE,
        order_by: str = "ASC",
        timezone: str | None = None,
    ) -> Page[SessionSummary]:
        """One page of summaries; ``has_more`` is False once a page is shorter than ``limit``.

        ``next_cursor`` is the next offset (or None). There is no total and no next link.
        """
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise ValueError(f"limit must be 1..{MAX_PAGE_SIZE}")
        if order_by not in ("ASC", "DESC") or offset < 0:
            raise ValueError("bad order_by or offset")
        tz = self._tz(timezone)
        params: dict[str, Any] = {"offset": offset, "limit": limit, "order_by": order_by}
        if date_gte is not None:
            params["date_gte"] = date_gte.isoformat()
        if date_lte is not None:
            params["date_lte"] = date_lte.isoformat()
        payload = self._json(
            "GET",
            "/data/v1/sessions",
            params=params,
            headers={"x-user-id": user_id, "timezone": tz},
        )
        listing = validate_as(
            SessionList,
            _result(payload, what="session list"),
            provider=PROVIDER,
            what="session list",
        )
        raw_items = listing.sleep_session_list
        response_tz = listing.timezone if is_iana_timezone(listing.timezone) else tz
        items, bad = parse_records(
            raw_items,
            lambda raw: summary_from_item(
                SessionListItem.model_validate(raw), request_tz=tz, response_tz=response_tz
            ),
            provider=PROVIDER,
            id_of=lambda raw: raw_id(raw, "session_id"),
        )
        has_more = len(raw_items) >= limit
        return Page(
            tuple(items), tuple(bad), offset + len(raw_items) if has_more else None, has_more
        )

    # Reference: shared/upstreams.md §1.2 "Get session v3"
    def get_session(
        self, user_id: str, session_id: str, *, timezone: str | None = None
    ) -> CanonicalSession | None:
        """The night as a CanonicalSession, or None while it is not COMPLETE.

        Raises UpstreamBadPayload (with ``payload``) when the report fails the schema.
        """
        payload = self._json(
            "GET",
            f"/data/v3/sessions/{_segment(session_id)}",
            headers={"x-user-id": user_id, "timezone": self._tz(timezone)},
        )
        return parse_report(_result(payload, what="session report"), user_id=user_id)

    # Reference: shared/upstreams.md §1.2 (DELETE /ai/v1/sessions/{session_id} → 204)
    def delete_session(self, user_id: str, session_id: str) -> None:
        self._send(
            "DELETE", f"/ai/v1/sessions/{_segment(session_id)}", headers={"x-user-id": user_id}
        )

    # Reference: shared/upstreams.md §1.2 "List sessions" then "Get session v3" per night
    def iter_sessions(
        self,
        user_id: str,
        *,
        date_gte: date | None = None,
        date_lte: date | None = None,
        timezone: str | None = None,
        page_size: int = MAX_PAGE_SIZE,
        concurrency: int = 1,
    ) -> Iterator[Page[CanonicalSession]]:
        """Page through summaries (oldest first) and fetch each COMPLETE night's report.

        Asleep has no bulk read: one report request per night is unavoidable, so a page's
        reports are fetched ``concurrency`` at a time (sharing the client's connection pool
        and its Retry-After pause). The first failing report cancels the page's others and
        raises; results keep the summaries' order.

        Each yielded page holds the nights of one summary page plus every quarantined record.
        ``next_cursor`` is the ISO date (request timezone) to use as ``date_gte`` next time:
        the earliest start of a session not yet COMPLETE, else the latest start seen. Offset
        paging can drift when sessions appear mid-scan (reliability.md §2): ids are
        de-duplicated here, and once a page repeats an id from an earlier page (a night was
        inserted before our offset, so this scan skipped it) the cursor falls back to where
        this scan started (``date_gte``, or ``""`` for the whole history), so the next sync
        reads the range again.
        """
        tz = self._tz(timezone)
        seen: set[str] = set()
        pending_min: date | None = None
        latest: date | None = date_gte
        drifted = False
        offset = 0
        while True:
            page = self.list_sessions(
                user_id,
                date_gte=date_gte,
                date_lte=date_lte,
                offset=offset,
                limit=page_size,
                timezone=tz,
            )
            sessions: list[CanonicalSession] = []
            bad: list[QuarantinedRecord] = list(page.quarantined)
            complete: list[SessionSummary] = []
            for summary in page.items:
                if summary.session_id in seen:
                    drifted = True  # shifted by an insert before our offset
                    continue
                seen.add(summary.session_id)
                latest = max(latest, summary.start_date) if latest else summary.start_date
                if not summary.complete:
                    pending_min = (
                        min(pending_min, summary.start_date) if pending_min else summary.start_date
                    )
                    continue
                complete.append(summary)
            reports = self._reports(user_id, [s.session_id for s in complete], tz, concurrency)
            for summary, (night, error) in zip(complete, reports, strict=True):
                if isinstance(error, UpstreamBadPayload):
                    bad.append(
                        QuarantinedRecord(
                            PROVIDER, describe_error(error), error.payload, summary.session_id
                        )
                    )
                    continue
                if isinstance(error, UpstreamNotFound):
                    continue  # deleted between the list and the read
                if night is None:  # listed COMPLETE, report says otherwise: try next time
                    pending_min = (
                        min(pending_min, summary.start_date) if pending_min else summary.start_date
                    )
                    continue
                sessions.append(night)
            cursor_date = pending_min or latest
            if drifted:
                next_cursor = date_gte.isoformat() if date_gte else ""
            else:
                next_cursor = cursor_date.isoformat() if cursor_date else None
            yield Page(tuple(sessions), tuple(bad), next_cursor, page.has_more)
            if not page.has_more:
                return
            offset = page.next_cursor

    def _report(
        self, user_id: str, session_id: str, tz: str
    ) -> tuple[CanonicalSession | None, UpstreamError | None]:
        """One report; the errors that concern this night only are returned, not raised."""
        try:
            return self.get_session(user_id, session_id, timezone=tz), None
        except (UpstreamBadPayload, UpstreamNotFound) as exc:
            return None, exc

    def _reports(
        self, user_id: str, session_ids: list[str], tz: str, concurrency: int
    ) -> list[tuple[CanonicalSession | None, UpstreamError | None]]:
        if concurrency <= 1 or len(session_ids) <= 1:
            return [self._report(user_id, sid, tz) for sid in session_ids]
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="asleep-report")
        futures = [self._pool.submit(self._report, user_id, sid, tz) for sid in session_ids]
        try:
            return [future.result() for future in futures]
        finally:
            for future in futures:
                future.cancel()  # after a failure: the page is abandoned, its queued reads too

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        super().close()

    # Reference: shared/upstreams.md §1.2 "Average stats"
    def average_stats(
        self, user_id: str, *, start_date: date, end_date: date, timezone: str | None = None
    ) -> list[AverageStats]:
        """Average stats over [start_date, end_date], one snapshot per ≤100-day chunk."""
        tz = self._tz(timezone)
        snapshots = []
        for chunk_start, chunk_end in split_date_range(start_date, end_date):
            payload = self._json(
                "GET",
                f"/data/v1/users/{_segment(user_id)}/average-stats",
                params={"start_date": chunk_start.isoformat(), "end_date": chunk_end.isoformat()},
                headers={"timezone": tz},
            )
            result = validate_as(
                AverageStatsResult,
                _result(payload, what="average stats"),
                provider=PROVIDER,
                what="average stats",
            )
            try:
                snapshots.append(average_stats_from_result(result))
            except ValueError:
                raise UpstreamBadPayload(
                    "average stats: bad period dates", payload=payload, provider=PROVIDER
                ) from None
        return snapshots


def _segment(value: str) -> str:
    """An id used as one path segment: refuse anything that could change the path."""
    if not value or any(c in value for c in "/?#%\\") or value in (".", ".."):
        raise ValueError("invalid id for a URL path segment")
    return value
