"""Asleep API simulator (shared/upstreams.md §1).

Paths, headers, envelopes and errors as the real API:
- ``x-api-key`` on every call, ``x-user-id`` on session calls, optional ``timezone`` that
  re-expresses times and is used to read date filters;
- ``{"detail": "OK"|"success", "result": ...}`` on success, ``{"detail": msg}`` on error;
- session lists page by ``offset``/``limit`` (0..100, default 20) with no total and no next
  link: the last page is the first one shorter than ``limit``;
- rate limits are **403** ``{"detail": "Rate limit exceeded"}`` without Retry-After
  (upstreams.md §1.3: none documented), not 429.

Choices where upstreams.md has a gap (labelled [U] there), made here:
- bad or missing API key -> 401 ``{"detail": "Unauthorized"}``;
- ``sleep_stages`` carries ``-1`` for epochs without data (the skills pack's [I] value),
  and ``missing_data_ratio`` is their share;
- malformed records (knob ``malformed_rate``/``malformed_keys``, keyed by session id): the
  list item gets ``"time_in_bed": "NaN"``, the report gets a stage value 9 and an
  unparseable ``session.start_time``; the ids stay intact so a client can quarantine them;
- a re-scored session changes its stages and ``complete_time``/``completed_time``; the
  Asleep API exposes no ``updated_at``, so clients must re-read a lookback window.

Session reports (``GET /data/v3/sessions/{id}``) are served from their record's cache of
JSON bytes, one per request timezone (``SessionRecord.render``; memory grows with the
stored nights and the timezones asked, ~7 KB per night and timezone, see ``store``).
List items are cheap and rendered per request.

Control: ``POST /_sim/credentials {"value"?: key, "environment"?: "live"}`` provisions an
API key (data is visible only to keys of the same environment);
``POST /_sim/users {"count", "nights", "last_night"?, "environment"?, "timezone"?}``
seeds users; ``POST /_sim/warm {"timezones"?: ["UTC"]}`` renders every stored night's
report ahead -> ``{"rendered": nights, "seconds"}``; the rest of ``/_sim/users/...`` is in
``store.store_control_routes``.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import string
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from .harness import (
    JSONResponse,
    Knobs,
    Simulator,
    json_body_response,
    read_json,
    seeded,
    unit_hash,
)
from .nights import EPOCH_SECONDS, asleep_to_canonical, chronotype, rem_episodes, to_asleep
from .store import NightStore, SessionRecord, SimUser, iso, store_control_routes

MAX_LIMIT = 100
DEFAULT_LIMIT = 20
MAX_AVERAGE_DAYS = 100
GENDERS = {"male", "female", "non_binary", "other", "prefer_not_to_say"}


def _ok(result: Any, detail: str = "OK", status: int = 200) -> JSONResponse:
    return JSONResponse({"detail": detail, "result": result}, status_code=status)


def _err(status: int, message: str) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status)


def _validation_error(loc: list[str], msg: str) -> JSONResponse:
    """FastAPI-style 422 (the Asleep API answers 'Validation Error' with 422)."""
    return JSONResponse(
        {"detail": [{"loc": loc, "msg": msg, "type": "value_error"}]}, status_code=422
    )


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 4) if b else None


def session_stat(
    codes: np.ndarray, snoring: np.ndarray, start: datetime, tz: Any
) -> dict[str, Any]:
    """The 38 stat keys of a COMPLETE session from its Asleep-coded stages (upstreams.md §1.2)."""
    e = EPOCH_SECONDS
    n = int(codes.shape[0])
    sleep = codes >= 1
    idx = np.flatnonzero(sleep)
    tib = n * e
    stat: dict[str, Any] = dict.fromkeys(
        [
            "sleep_latency",
            "wakeup_latency",
            "light_latency",
            "deep_latency",
            "rem_latency",
            "sleep_time",
            "wake_time",
            "time_in_bed",
            "time_in_sleep_period",
            "time_in_sleep",
            "time_in_wake",
            "time_in_light",
            "time_in_deep",
            "time_in_rem",
            "time_in_stable_breath",
            "time_in_unstable_breath",
            "time_in_snoring",
            "time_in_no_snoring",
            "sleep_efficiency",
            "sleep_ratio",
            "wake_ratio",
            "light_ratio",
            "deep_ratio",
            "rem_ratio",
            "stable_breath_ratio",
            "unstable_breath_ratio",
            "snoring_ratio",
            "no_snoring_ratio",
            "breathing_index",
            "breathing_pattern",
            "waso_count",
            "longest_waso",
            "sleep_cycle",
            "sleep_cycle_count",
            "sleep_cycle_time",
            "unstable_breath_count",
            "snoring_count",
            "sleep_index",
        ]
    )
    stat["time_in_bed"] = tib
    if idx.size == 0:
        stat.update(
            time_in_sleep=0,
            time_in_sleep_period=0,
            time_in_wake=0,
            time_in_light=0,
            time_in_deep=0,
            time_in_rem=0,
            sleep_efficiency=0.0,
            waso_count=0,
            longest_waso=0,
            sleep_cycle_count=0,
            sleep_cycle_time=[],
            sleep_index=0,
            time_in_snoring=0,
            time_in_no_snoring=0,
            snoring_count=0,
        )
        return stat
    first, last = int(idx[0]), int(idx[-1])
    period = codes[first : last + 1]
    tisp = (last - first + 1) * e
    tis = int(sleep.sum()) * e
    tiw = int((period == 0).sum()) * e
    light, deep, rem = (int((period == k).sum()) * e for k in (1, 2, 3))

    def latency(k: int) -> int | None:
        hit = np.flatnonzero(period == k)
        return int(hit[0]) * e if hit.size else None

    wake = (period == 0).astype(np.int8)
    edges = np.diff(np.concatenate([[0], wake, [0]]))
    w_starts, w_ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    w_lengths = w_ends - w_starts
    canonical = asleep_to_canonical(codes)
    episodes = rem_episodes(canonical)
    snore_in_sleep = int((snoring.astype(bool) & sleep).sum()) * e
    s_edges = np.diff(np.concatenate([[0], snoring.astype(np.int8), [0]]))
    efficiency = tis / tib
    score = 100 * (
        0.5 * min(tis / (7.5 * 3600), 1.0) + 0.3 * efficiency + 0.2 * max(0.0, 1 - tiw / 3600)
    )
    stat.update(
        sleep_latency=first * e,
        wakeup_latency=(n - last - 1) * e,
        light_latency=latency(1),
        deep_latency=latency(2),
        rem_latency=latency(3),
        sleep_time=iso(start + timedelta(seconds=first * e), tz),
        wake_time=iso(start + timedelta(seconds=(last + 1) * e), tz),
        time_in_sleep_period=tisp,
        time_in_sleep=tis,
        time_in_wake=tiw,
        time_in_light=light,
        time_in_deep=deep,
        time_in_rem=rem,
        time_in_snoring=snore_in_sleep,
        time_in_no_snoring=tis - snore_in_sleep,
        sleep_efficiency=round(efficiency, 4),
        sleep_ratio=_ratio(tis, tisp),
        wake_ratio=_ratio(tiw, tisp),
        light_ratio=_ratio(light, tisp),
        deep_ratio=_ratio(deep, tisp),
        rem_ratio=_ratio(rem, tisp),
        snoring_ratio=_ratio(snore_in_sleep, tis),
        no_snoring_ratio=_ratio(tis - snore_in_sleep, tis),
        waso_count=int(w_lengths.size),
        longest_waso=int(w_lengths.max()) * e if w_lengths.size else 0,
        sleep_cycle=int(tisp / len(episodes)) if episodes else None,
        sleep_cycle_count=len(episodes),
        sleep_cycle_time=[iso(start + timedelta(seconds=b * e), tz) for _, b in episodes],
        snoring_count=int((s_edges == 1).sum()),
        sleep_index=int(round(score)),
    )
    return stat


def _clock_mean(times: list[datetime]) -> str:
    """Circular mean of clock times as ``hh:mm:ss`` (shared/science.md §4)."""
    angles = [2 * math.pi * (t.hour * 3600 + t.minute * 60 + t.second) / 86400 for t in times]
    a = math.atan2(sum(math.sin(x) for x in angles), sum(math.cos(x) for x in angles))
    secs = int(round((a % (2 * math.pi)) / (2 * math.pi) * 86400)) % 86400
    return f"{secs // 3600:02d}:{secs % 3600 // 60:02d}:{secs % 60:02d}"


class AsleepSimulator(Simulator):
    provider = "asleep"

    def __init__(self, knobs: Knobs | None = None, **knob_values: Any) -> None:
        super().__init__(knobs, **knob_values)
        self.store = NightStore()
        self.sync_knobs()
        self.keys: dict[str, str] = {}  # api key -> environment
        self.metadata: dict[str, dict[str, Any]] = {}
        self._created_users = 0

    # ------------------------------------------------------------------ provider hooks

    def credential_of(self, headers: Any) -> str | None:
        return headers.get("x-api-key")

    def error_response(self, status: int, message: str, *, code: str = "") -> Response:
        return _err(status, message)

    def rate_limited_response(self, retry_after: str) -> Response:
        return _err(403, "Rate limit exceeded")

    def reset_data(self) -> None:
        self.store.clear()
        self.keys.clear()
        self.metadata.clear()
        self._created_users = 0

    # ------------------------------------------------------------------ python API

    def add_key(self, key: str | None = None, environment: str = "live") -> str:
        key = key or secrets.token_hex(20)
        self.keys[key] = environment
        return key

    def new_user_id(self, rng_parts: tuple[Any, ...] = ()) -> str:
        n = self._created_users
        self._created_users += 1
        rng = seeded("asleep-user", self.knobs.seed, n, *rng_parts)
        # Deterministic for a seed (same ids, same nights on every run), shaped like the docs'
        # example ``G-20250115025029-vLErWBfQNtnfvgDccFOQ``.
        stamp = (datetime(2025, 1, 15, 2, 50, 29) + timedelta(minutes=17 * n)).strftime(
            "%Y%m%d%H%M%S"
        )
        tail = "".join(rng.choice(string.ascii_letters) for _ in range(20))
        return f"G-{stamp}-{tail}"

    def add_user(
        self,
        user_id: str | None = None,
        *,
        nights: int = 0,
        last_night: date | None = None,
        environment: str = "live",
        timezone: str | None = None,
    ) -> SimUser:
        user = self.store.add_user(
            user_id or self.new_user_id(), timezone=timezone, owner=environment
        )
        if nights:
            last = last_night or (datetime.now(UTC) - timedelta(days=1)).date()
            self.store.add_history(user, last, nights)
        return user

    def session_id(self, rec: SessionRecord) -> str:
        return _session_id(rec.user_id, rec.night_of, rec.night.start)

    def describe_session(self, rec: SessionRecord) -> dict[str, Any]:
        return {
            "user_id": rec.user_id,
            "upstream_id": self.session_id(rec),
            "night_of": rec.night_of.isoformat(),
            "state": rec.state,
            "revision": rec.revision,
            "updated": rec.updated,
        }

    def truth(self, request: Request) -> Any:
        want = request.query_params.get("user")
        with_stages = request.query_params.get("stages") in ("1", "true", "yes")
        out = []
        with self.store.lock:
            for user in self.store.users.values():
                if want and user.user_id != want:
                    continue
                for rec in self.store.sessions(user):
                    sid = self.session_id(rec)
                    canonical = asleep_to_canonical(to_asleep(rec.night.stages))
                    item = {
                        **self.describe_session(rec),
                        "start": iso(rec.night.start),
                        "end": iso(rec.night.end),
                        "timezone": rec.night.timezone,
                        "epoch_seconds": rec.night.epoch_seconds,
                        "wake_date": rec.night.wake_date.isoformat(),
                        "malformed": self.is_malformed(sid),
                        "stages_sha256": _sha(canonical),
                    }
                    if with_stages:
                        item["stages"] = rec.night.stages.tolist()
                        item["provider_stages"] = to_asleep(rec.night.stages).tolist()
                        item["canonical_stages"] = canonical.tolist()
                    out.append(item)
        return {"provider": self.provider, "sessions": out}

    # ------------------------------------------------------------------ helpers

    def _auth(self, request: Request) -> str | Response:
        key = request.headers.get("x-api-key")
        if not key or key not in self.keys:
            return _err(401, "Unauthorized")
        return self.keys[key]

    def _tz(self, request: Request) -> Any:
        name = request.headers.get("timezone", "UTC")
        try:
            return ZoneInfo(name), name
        except (ZoneInfoNotFoundError, ValueError):
            return None, name

    def _user(self, env: str, user_id: str | None) -> SimUser | None:
        user = self.store.users.get(user_id or "")
        if user is None or user.owner != env:
            return None
        return user

    def _session_user(self, request: Request) -> tuple[SimUser, Any, str] | Response:
        env = self._auth(request)
        if isinstance(env, Response):
            return env
        uid = request.headers.get("x-user-id")
        if not uid:
            return _err(401, "x-user-id is invalid")
        user = self._user(env, uid)
        if user is None:
            return _err(404, "user does not exist")
        tz, name = self._tz(request)
        if tz is None:
            return _err(400, "The invalid timezone is provided")
        return user, tz, name

    def _find(self, user: SimUser, session_id: str) -> SessionRecord | None:
        for rec in user.sessions.values():
            if self.session_id(rec) == session_id:
                return rec
        return None

    def _snoring(self, rec: SessionRecord) -> np.ndarray:
        n = rec.night.n_epochs
        if not self._is_snorer(rec.user_id):
            return np.zeros(n, dtype=np.int8)
        rng = np.random.default_rng(int(unit_hash("snore", rec.user_id, rec.night_of) * 2**32))
        bursts = rng.random(n) < 0.02
        spread = np.convolve(bursts.astype(np.int8), np.ones(12, dtype=np.int8), mode="same") > 0
        return (spread & np.isin(rec.night.stages, (2, 3))).astype(np.int8)

    @staticmethod
    def _is_snorer(user_id: str) -> bool:
        return chronotype(user_id).snorer

    def _list_item(self, rec: SessionRecord, tz: Any) -> dict[str, Any]:
        sid = self.session_id(rec)
        complete = rec.state != "OPEN"
        item = {
            "session_id": sid,
            "state": rec.state,
            "session_start_time": iso(rec.night.start, tz),
            "session_end_time": iso(rec.night.end, tz) if complete else None,
            "created_timezone": rec.night.timezone,
            "unexpected_end_time": None,
            "last_received_seq_num": rec.night.n_epochs if complete else rec.night.n_epochs // 2,
            "time_in_bed": rec.night.n_epochs * EPOCH_SECONDS if complete else None,
        }
        if self.is_malformed(sid):
            item["time_in_bed"] = "NaN"
        return item

    def _report(
        self, rec: SessionRecord, tz: Any, tz_name: str, malformed: bool | None = None
    ) -> dict[str, Any]:
        sid = self.session_id(rec)
        if malformed is None:
            malformed = self.is_malformed(sid)
        codes = to_asleep(rec.night.stages)
        snoring = self._snoring(rec)
        complete = rec.state == "COMPLETE"
        stages = codes.tolist() if rec.state != "OPEN" else codes[: codes.shape[0] // 2].tolist()
        session = {
            "id": sid,
            "state": rec.state,
            "start_time": iso(rec.night.start, tz),
            "end_time": iso(rec.night.end, tz) if rec.state != "OPEN" else None,
            "unexpected_end_time": None,
            "created_timezone": rec.night.timezone,
            "sleep_stages": stages,
            "breath_stages": None,
            "snoring_stages": snoring[: len(stages)].tolist(),
        }
        stat = self._stat(rec, tz) if complete else None
        peculiarities = ["NO_BREATHING_STABILITY"]
        if not complete:
            peculiarities.append("IN_PROGRESS")
        elif stat and stat["time_in_sleep"] == 0:
            peculiarities.append("NEVER_SLEPT")
        if malformed:
            session["sleep_stages"] = [*stages[:-1], 9]
            session["start_time"] = "not-a-time"
        return {
            "timezone": tz_name,
            "peculiarities": peculiarities,
            "missing_data_ratio": round(float((codes == -1).mean()), 4) if codes.size else 0.0,
            "session": session,
            "stat": stat,
        }

    def report_body(self, rec: SessionRecord, tz: Any, tz_name: str) -> bytes:
        """``_report(...)`` as JSON bytes, from the record's cache when still current."""
        malformed = self.is_malformed(self.session_id(rec))
        return rec.render(
            ("report", tz_name), malformed, lambda: self._report(rec, tz, tz_name, malformed)
        )

    def warm(self, timezones: Sequence[str] | None = None) -> int:
        """Render every stored night's report for each of ``timezones`` (default UTC, as a
        request without a ``timezone`` header); returns the nights rendered."""
        zones = []
        for name in timezones or ["UTC"]:
            try:
                zones.append((ZoneInfo(name), name))
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown timezone {name!r}") from None
        records = self.store.records()
        for rec in records:
            for tz, name in zones:
                self.report_body(rec, tz, name)
        return len(records)

    def _stat(self, rec: SessionRecord, tz: Any) -> dict[str, Any]:
        return session_stat(to_asleep(rec.night.stages), self._snoring(rec), rec.night.start, tz)

    # ------------------------------------------------------------------ endpoints

    async def create_user(self, request: Request) -> Response:
        env = self._auth(request)
        if isinstance(env, Response):
            return env
        try:
            body = await read_json(request)
        except ValueError:
            return _validation_error(["body"], "JSON decode error")
        meta = (body or {}).get("metadata") if isinstance(body, dict) else None
        if meta is not None:
            problem = _check_metadata(meta)
            if problem:
                return _validation_error(["body", "metadata", problem[0]], problem[1])
        user = self.add_user(environment=env)
        self.metadata[user.user_id] = meta or {}
        return _ok({"user_id": user.user_id}, "success", 201)

    async def user_detail(self, request: Request) -> Response:
        env = self._auth(request)
        if isinstance(env, Response):
            return env
        user = self._user(env, request.path_params["user_id"])
        if user is None:
            return _err(404, "user does not exist")
        if request.method == "DELETE":
            with self.store.lock:
                del self.store.users[user.user_id]
            return Response(status_code=204)
        last = None
        sessions = self.store.sessions(user)
        if sessions:
            rec = sessions[-1]
            last = {
                "session_id": self.session_id(rec),
                "inference_type": "MELSPECTROGRAM",
                "service": "NOSERVICE",
                "start_time": rec.night.start.astimezone(UTC)
                .replace(tzinfo=None, microsecond=0)
                .isoformat(),
                "end_time": None
                if rec.state == "OPEN"
                else rec.night.end.astimezone(UTC).replace(tzinfo=None, microsecond=0).isoformat(),
                "state": rec.state,
                "complete_time": None
                if rec.completed is None
                else datetime.fromtimestamp(rec.completed, UTC)
                .replace(tzinfo=None, microsecond=0)
                .isoformat(),
            }
        meta = self.metadata.get(user.user_id) or {}
        return _ok(
            {
                "user_id": user.user_id,
                "to_be_deleted": False,
                "last_session_info": last,
                "metadata": {
                    k: meta.get(k)
                    for k in (
                        "birth_year",
                        "birth_month",
                        "birth_day",
                        "gender",
                        "height",
                        "weight",
                    )
                },
            },
            "success",
        )

    async def get_session(self, request: Request) -> Response:
        ctx = self._session_user(request)
        if isinstance(ctx, Response):
            return ctx
        user, tz, name = ctx
        rec = self._find(user, request.path_params["session_id"])
        if rec is None:
            return _err(404, "session does not exist")
        # The success envelope around the cached report (what _ok(report) would serialize).
        return json_body_response(
            b'{"detail":"OK","result":' + self.report_body(rec, tz, name) + b"}"
        )

    async def delete_session(self, request: Request) -> Response:
        ctx = self._session_user(request)
        if isinstance(ctx, Response):
            return ctx
        user, _, _ = ctx
        rec = self._find(user, request.path_params["session_id"])
        if rec is None:
            return _err(404, "session does not exist")
        self.store.delete_night(user, rec.night_of)
        return Response(status_code=204)

    async def list_sessions(self, request: Request) -> Response:
        ctx = self._session_user(request)
        if isinstance(ctx, Response):
            return ctx
        user, tz, name = ctx
        q = request.query_params
        try:
            offset = int(q.get("offset", 0))
            limit = int(q.get("limit", DEFAULT_LIMIT))
        except ValueError:
            return _validation_error(["query", "limit"], "value is not a valid integer")
        if offset < 0:
            return _validation_error(
                ["query", "offset"], "ensure this value is greater than or equal to 0"
            )
        if not 0 <= limit <= MAX_LIMIT:
            return _validation_error(
                ["query", "limit"], f"ensure this value is between 0 and {MAX_LIMIT}"
            )
        order = q.get("order_by", "DESC").upper()
        if order not in ("ASC", "DESC"):
            return _validation_error(
                ["query", "order_by"], "value is not a valid enumeration member"
            )
        try:
            gte = date.fromisoformat(q["date_gte"]) if q.get("date_gte") else None
            lte = date.fromisoformat(q["date_lte"]) if q.get("date_lte") else None
        except ValueError:
            return _validation_error(["query", "date_gte"], "invalid date format")
        if self.should_drift(user.user_id):
            d = self.store.late_night_date(
                user, seeded("drift", self.knobs.seed, len(user.sessions))
            )
            if d not in user.sessions:
                self.store.add_night(user, d)
        recs = [
            r
            for r in self.store.sessions(user)
            if (gte is None or r.night.start.astimezone(tz).date() >= gte)
            and (lte is None or r.night.start.astimezone(tz).date() <= lte)
        ]
        if order == "DESC":
            recs.reverse()
        page = recs[offset : offset + self.cap_limit(limit)]
        return _ok({"timezone": name, "sleep_session_list": [self._list_item(r, tz) for r in page]})

    async def average_stats(self, request: Request) -> Response:
        env = self._auth(request)
        if isinstance(env, Response):
            return env
        user = self._user(env, request.path_params["user_id"])
        if user is None:
            return _err(404, "user does not exist")
        tz, name = self._tz(request)
        if tz is None:
            return _err(400, "The invalid timezone is provided")
        q = request.query_params
        if not q.get("start_date") or not q.get("end_date"):
            missing = "start_date" if not q.get("start_date") else "end_date"
            return _validation_error(["query", missing], "field required")
        try:
            start, end = date.fromisoformat(q["start_date"]), date.fromisoformat(q["end_date"])
        except ValueError:
            return _validation_error(["query", "start_date"], "invalid date format")
        if end < start or (end - start).days > MAX_AVERAGE_DAYS:
            return _err(400, "The period should be less than or equal to 100 days")
        recs = [
            r
            for r in self.store.sessions(user)
            if r.state == "COMPLETE" and start <= r.night.start.astimezone(tz).date() <= end
        ]
        slept, never = [], []
        stats = []
        for r in recs:
            sid = self.session_id(r)
            base = {
                "id": sid,
                "created_timezone": r.night.timezone,
                "start_time": iso(r.night.start, tz),
                "end_time": iso(r.night.end, tz),
                "completed_time": iso(r.completed or r.updated, tz),
            }
            st = self._stat(r, tz)
            if st["time_in_sleep"]:
                slept.append({**base, **st})
                stats.append((r, st))
            else:
                never.append(
                    {k: base[k] for k in ("id", "start_time", "end_time", "completed_time")}
                )
        return _ok(
            {
                "period": {
                    "timezone": name,
                    "start_date": start.isoformat(),
                    "end_date": end.isoformat(),
                },
                "peculiarities": ["NO_BREATHING_STABILITY"],
                "average_stats": _average(stats, tz) if stats else None,
                "never_slept_sessions": never,
                "slept_sessions": slept,
            }
        )

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/ai/v1/users", self.create_user, methods=["POST"]),
            Route("/ai/v1/users/{user_id}", self.user_detail, methods=["GET", "DELETE"]),
            Route("/data/v3/sessions/{session_id}", self.get_session, methods=["GET"]),
            Route("/data/v2/sessions/{session_id}", self.get_session, methods=["GET"]),
            Route("/data/v1/sessions", self.list_sessions, methods=["GET"]),
            Route("/ai/v1/sessions/{session_id}", self.delete_session, methods=["DELETE"]),
            Route("/data/v1/users/{user_id}/average-stats", self.average_stats, methods=["GET"]),
        ]

    def control_routes(self) -> list[BaseRoute]:
        async def credentials(request: Request) -> Response:
            if request.method == "GET":
                return JSONResponse(
                    {"credentials": [{"value": k, "environment": v} for k, v in self.keys.items()]}
                )
            body = await read_json(request)
            key = self.add_key(body.get("value"), body.get("environment", "live"))
            return JSONResponse({"value": key, "environment": self.keys[key]}, status_code=201)

        async def revoke(request: Request) -> Response:
            self.keys.pop(request.path_params["value"], None)
            return JSONResponse({"ok": True})

        def create(spec: dict[str, Any], i: int) -> SimUser:
            return self.add_user(
                spec.get("id"),
                environment=spec.get("environment", "live"),
                timezone=spec.get("timezone"),
            )

        def describe(user: SimUser) -> dict[str, Any]:
            return {
                "id": user.user_id,
                "timezone": user.timezone,
                "environment": user.owner,
                "nights": len(user.sessions),
            }

        return [
            *super().control_routes(),
            Route("/_sim/credentials", credentials, methods=["GET", "POST"]),
            Route("/_sim/credentials/{value}", revoke, methods=["DELETE"]),
            *store_control_routes(self, self.store, create_user=create, describe_user=describe),
        ]


@lru_cache(maxsize=1 << 18)
def _session_id(user_id: str, night_of: date, start: datetime) -> str:
    """``YYYYMMDDhhmmss_xxxxx`` from the UTC start (upstreams.md §1.2)."""
    rng = seeded("asleep-session", user_id, night_of)
    return (
        start.strftime("%Y%m%d%H%M%S")
        + "_"
        + "".join(rng.choice(string.ascii_lowercase) for _ in range(5))
    )


def _sha(stages: np.ndarray) -> str:
    return hashlib.sha256(np.asarray(stages, dtype=np.int8).tobytes()).hexdigest()


def _check_metadata(meta: Any) -> tuple[str, str] | None:
    if not isinstance(meta, dict):
        return "metadata", "value is not a valid dict"
    now_year = datetime.now(UTC).year
    bounds = {"birth_year": (1900, now_year), "birth_month": (1, 12), "birth_day": (1, 31)}
    for k, (lo, hi) in bounds.items():
        v = meta.get(k)
        if v is not None and (not isinstance(v, int) or not lo <= v <= hi):
            return k, f"ensure this value is between {lo} and {hi}"
    if meta.get("gender") is not None and meta["gender"] not in GENDERS:
        return "gender", "value is not a valid enumeration member"
    for k, hi in (("height", 300), ("weight", 1000)):
        v = meta.get(k)
        if v is not None and (
            not isinstance(v, (int, float)) or not 0 <= v <= hi or round(v, 1) != v
        ):
            return k, f"ensure this value is between 0 and {hi} with at most 1 decimal"
    return None


def _average(stats: list[tuple[SessionRecord, dict[str, Any]]], tz: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "start_time": _clock_mean([r.night.start.astimezone(tz) for r, _ in stats]),
        "end_time": _clock_mean([r.night.end.astimezone(tz) for r, _ in stats]),
        "sleep_time": _clock_mean([datetime.fromisoformat(s["sleep_time"]) for _, s in stats]),
        "wake_time": _clock_mean([datetime.fromisoformat(s["wake_time"]) for _, s in stats]),
    }
    keys = [k for k, v in stats[0][1].items() if k not in out and not isinstance(v, (list, str))]
    for k in keys:
        vals = [s[k] for _, s in stats if isinstance(s.get(k), (int, float))]
        if not vals:
            out[k] = None
        elif all(isinstance(v, int) for v in vals):
            out[k] = int(round(sum(vals) / len(vals)))
        else:
            out[k] = round(sum(vals) / len(vals), 4)
    return out


def create_app(
    knobs: Knobs | None = None,
    *,
    keys: list[str] | None = None,
    users: int = 0,
    nights: int = 30,
    **knob_values: Any,
):
    """The Asleep simulator as an ASGI app; ``app.state.sim`` is the AsleepSimulator.

    ``keys`` are provisioned (environment "live"); ``users`` users with ``nights`` nights
    of history each are created for the demo.
    """
    sim = AsleepSimulator(knobs, **knob_values)
    for k in keys or []:
        sim.add_key(k)
    for _ in range(users):
        sim.add_user(nights=nights)
    return sim.build_app()
