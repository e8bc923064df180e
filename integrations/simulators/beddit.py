"""Beddit Cloud API simulator (shared/upstreams.md §4).

- Password login ``POST /api/v1/auth/authorize`` (form ``grant_type=password&username&password``,
  no auth header) -> ``{"user", "access_token", "token_type": "user"[, "expires_in"]}``;
  then ``Authorization: UserToken <token>``.
- Errors ``{"error": "<id>", "description": "<text>"}``: ``forbidden`` 403 for a bad,
  missing or expired token or another user's data, ``bad_request`` 400, ``not_found`` 404,
  ``invalid_credentials``/``no_such_user`` 400.
- ``GET /api/v1/user/:id/sleep`` and ``/session`` return bare arrays; query either
  ``updated_after=<unix float>`` (strictly greater, ordered by ``updated``) or a date /
  timestamp range; optional ``limit`` and ``reverse=yes|no``.
- Sleep objects always carry every track the giginet client indexes (empty items allowed);
  sleep-track timestamps are absolute, session-track timestamps are offsets from
  ``start_timestamp`` (§4.3).

Choices where upstreams.md has a gap [U]: rate limiting answers 429 with Retry-After and
``{"error": "rate_limited", ...}``; 5xx bodies use ``{"error": "server_error", ...}``;
malformed records (keyed ``<user>/<date>``) lose ``start_timestamp`` and get a
``"sleep_stages"`` item whose code is a string.

Sleep and session objects are served from their record's cache of JSON bytes
(``SessionRecord.render``); a list answer joins the cached bodies. Memory grows with the
stored nights and is not bounded: ~18 KB a night for its sleep object, ~4 KB more once its
session object was asked for (see ``store``). ``sleep_object``/``session_object`` render
afresh.

Control: ``POST /_sim/users {"count", "nights", "last_night"?, "email"?, "password"?,
"timezone"?}`` -> users with ids 1, 2, ... and emails ``user<id>@example.test``, password
``secret`` unless given; ``POST /_sim/credentials {"user": id, "value"?: token}`` mints a
token without a login; ``POST /_sim/warm`` renders every stored night's sleep object ahead
-> ``{"rendered": nights, "seconds"}``.
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
import time
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from .harness import (
    JSONResponse,
    Knobs,
    Simulator,
    json_body_response,
    read_form,
    read_json,
    seeded,
)
from .nights import (
    BEDDIT_AWAY,
    BEDDIT_GAP,
    BEDDIT_NO_SIGNAL,
    BEDDIT_RESTLESS,
    BEDDIT_SLEEP,
    BEDDIT_WAKE,
    EPOCH_SECONDS,
    beddit_transitions,
    chronotype,
    runs,
    to_beddit_codes,
)
from .store import NightStore, SessionRecord, SimUser, store_control_routes

SLEEP_TIME_TARGET = 28800


def _err(
    status: int, error: str, description: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": error, "description": description}, status_code=status, headers=headers
    )


def _float(text: str | None) -> float | None:
    if text is None:
        return None
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("not finite")
    return value


class BedditSimulator(Simulator):
    provider = "beddit"

    def __init__(self, knobs: Knobs | None = None, **knob_values: Any) -> None:
        super().__init__(knobs, **knob_values)
        self.store = NightStore()
        self.sync_knobs()
        self.tokens: dict[str, tuple[str, float | None]] = {}  # token -> (user id, expires at)
        self._next_id = 1

    # ------------------------------------------------------------------ provider hooks

    def credential_of(self, headers: Any) -> str | None:
        auth = headers.get("authorization", "")
        if auth.startswith("UserToken "):
            return auth[len("UserToken ") :].strip()
        return auth or None

    def error_response(self, status: int, message: str, *, code: str = "") -> Response:
        error = {404: "not_found", 400: "bad_request", 403: "forbidden", 405: "bad_request"}.get(
            status, "server_error"
        )
        return _err(status, error, message)

    def rate_limited_response(self, retry_after: str) -> Response:
        return _err(429, "rate_limited", "Too many requests", headers={"Retry-After": retry_after})

    def reset_data(self) -> None:
        self.store.clear()
        self.tokens.clear()
        self._next_id = 1

    # ------------------------------------------------------------------ python API

    def add_user(
        self,
        *,
        email: str | None = None,
        password: str = "secret",
        nights: int = 0,
        last_night: date | None = None,
        timezone: str | None = None,
        user_id: int | None = None,
    ) -> SimUser:
        uid = user_id if user_id is not None else self._next_id
        self._next_id = max(self._next_id, uid + 1)
        email = email or f"user{uid}@example.test"
        if any(u.owner == email for u in self.store.users.values()):
            raise ValueError(f"email {email} taken")
        ct = chronotype(str(uid), timezone)
        user = self.store.add_user(
            str(uid),
            timezone=ct.timezone,
            owner=email,
            password=password,
            name=f"User {uid}",
            sex=None,
            weight=None,
            height=None,
            date_of_birth=None,
            sleep_time_goal=SLEEP_TIME_TARGET,
        )
        if nights:
            last = last_night or (datetime.now(UTC) - timedelta(days=1)).date()
            self.store.add_history(user, last, nights)
        return user

    def issue_token(self, user_id: str, value: str | None = None) -> tuple[str, float | None]:
        ttl = self.knobs.token_ttl
        token = value or secrets.token_urlsafe(16)
        self.tokens[token] = (str(user_id), time.time() + ttl if ttl else None)
        return token, ttl

    def sleep_key(self, rec: SessionRecord) -> str:
        return f"{rec.user_id}/{rec.night.wake_date.isoformat()}"

    def describe_session(self, rec: SessionRecord) -> dict[str, Any]:
        return {
            "user_id": rec.user_id,
            "upstream_id": rec.night.wake_date.isoformat(),
            "session_id": int(rec.night.start_ts),
            "night_of": rec.night_of.isoformat(),
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
                    codes = to_beddit_codes(rec.night.stages)
                    item = {
                        **self.describe_session(rec),
                        "start": rec.night.start_ts,
                        "end": rec.night.end_ts,
                        "timezone": rec.night.timezone,
                        "epoch_seconds": rec.night.epoch_seconds,
                        "malformed": self.is_malformed(self.sleep_key(rec)),
                        "stages_sha256": hashlib.sha256(codes.tobytes()).hexdigest(),
                    }
                    if with_stages:
                        item["stages"] = rec.night.stages.tolist()
                        item["provider_stages"] = codes.tolist()
                    out.append(item)
        return {"provider": self.provider, "sessions": out}

    # ------------------------------------------------------------------ payloads

    def sleep_object(self, rec: SessionRecord, malformed: bool | None = None) -> dict[str, Any]:
        """The sleep object of ``rec``, rendered afresh (malformed per the knobs unless given)."""
        night = rec.night
        start = night.start_ts
        codes = to_beddit_codes(night.stages)
        ct = chronotype(rec.user_id, night.timezone)
        rng = seeded("beddit", rec.user_id, rec.night_of, rec.revision)
        e = EPOCH_SECONDS
        n = codes.shape[0]
        durations = {
            c: int((codes == v).sum()) * e
            for c, v in (
                ("A", BEDDIT_AWAY),
                ("S", BEDDIT_SLEEP),
                ("R", BEDDIT_RESTLESS),
                ("W", BEDDIT_WAKE),
                ("N", BEDDIT_NO_SIGNAL),
                ("G", BEDDIT_GAP),
            )
        }
        asleep = (codes == BEDDIT_SLEEP) | (codes == BEDDIT_RESTLESS)
        idx = np.flatnonzero(asleep)
        latency = int(idx[0]) * e if idx.size else n * e
        efficiency = (durations["S"] + durations["R"]) / (n * e) if n else 0.0
        vals, starts, lengths = runs(codes)
        away = [
            (s, ln)
            for v, s, ln in zip(vals.tolist(), starts.tolist(), lengths.tolist(), strict=True)
            if v == BEDDIT_AWAY
        ]
        rhr = round(ct.resting_hr + rng.gauss(0, 2.0), 1)
        total_sleep = durations["S"] + durations["R"]
        score = 100 * (
            0.55 * min(total_sleep / SLEEP_TIME_TARGET, 1)
            + 0.3 * efficiency
            + 0.15 * (1 if latency < 1800 else 0.5)
        )
        depth_of = np.array([0.0, 0.0, 0.35, 0.6, 1.0, 0.25, 0.5])[
            night.stages.astype(np.int64) + 1
        ]
        vec = np.random.default_rng(int(rng.getrandbits(63)))
        # Sleep-cycle depth every 2 min while asleep (mean depth of 4 epochs).
        blocks = np.arange(0, n, 4)
        depth = np.add.reduceat(depth_of, blocks) / np.minimum(4, n - blocks)
        keep = asleep[blocks]
        cycles = np.column_stack(
            [np.round(start + blocks[keep] * e, 3), np.round(depth[keep], 3)]
        ).tolist()
        # Heart rate every 5 min, lower in deep sleep.
        hr_at = np.arange(0, n, 10)
        hr_val = rhr + 6 * (1 - depth_of[hr_at]) + vec.normal(0, 1.5, hr_at.size)
        hr = np.column_stack([np.round(start + hr_at * e + 150, 3), np.round(hr_val, 1)]).tolist()
        # Moves per 60 s: many while awake, few while asleep.
        minute = np.arange(n // 2)
        awake = codes[minute * 2] == BEDDIT_WAKE
        moves = np.where(
            awake,
            vec.integers(5, 41, minute.size),
            np.maximum(0, vec.normal(2, 2, minute.size)).astype(int),
        )
        acti = np.column_stack([np.round(start + minute * 60.0, 3), moves.astype(float)]).tolist()
        snore = [
            [round(start + s * e, 3), float(ln * e)] for s, ln in _snore_episodes(night.stages, rng)
        ]
        tags = []
        if total_sleep < 6 * 3600:
            tags.append("not_enough_sleep")
        if latency > 30 * 60:
            tags.append("long_sleep_latency")
        obj = {
            "user": int(rec.user_id),
            "date": night.wake_date.isoformat(),
            "timezone": night.timezone,
            "start_timestamp": round(start, 6),
            "end_timestamp": round(night.end_ts, 6),
            "session_range_start": round(start, 6),
            "session_range_end": round(night.end_ts, 6),
            "updated": rec.updated,
            "tags": tags,
            "tips": [],
            "properties": {
                "sleep_time_target": SLEEP_TIME_TARGET,
                "resting_heart_rate": rhr,
                "short_term_resting_heart_rate": round(rhr + rng.gauss(0, 1), 1),
                "average_respiration_rate": round(rng.uniform(12, 16), 1),
                "short_term_average_respiration_rate": round(rng.uniform(12, 16), 1),
                "sleep_efficiency": round(efficiency, 7),
                "sleep_latency": latency,
                "activity_index": round(rng.uniform(5, 40), 1),
                "evening_HRV_index": round(rng.uniform(20, 70), 1),
                "morning_HRV_index": round(rng.uniform(20, 70), 1),
                "all_night_HRV_index": round(rng.uniform(20, 70), 1),
                "resting_HRV_index": round(rng.uniform(20, 70), 1),
                **{f"stage_duration_{c}": v for c, v in durations.items()},
                "total_snoring_episode_duration": float(sum(x[1] for x in snore)),
                "total_nap_duration": 0,
                "away_episode_count": len(away),
                "primary_sleep_period_away_episode_count": len(away),
                "primary_sleep_period_away_episode_duration": sum(ln for _, ln in away) * e,
                "sensor_status": 1,
                "signal_amplitude": round(rng.uniform(0.5, 3.0), 3),
                "clipping_duration": 0,
                "single_person_setup": 1,
                "total_sleep_score": int(round(score)),
                "sleep_score_version": 3,
                "score_bed_exits": max(0, 10 - 3 * len(away)),
                "score_amount_of_sleep": int(round(35 * min(total_sleep / SLEEP_TIME_TARGET, 1))),
                "score_snoring": 10 if not snore else 7,
                "score_sleep_latency": 10 if latency < 1800 else 5,
                "score_sleep_efficiency": int(round(20 * efficiency)),
                "score_awakenings": 10,
            },
            "time_value_tracks": {
                "sleep_stages": {
                    "value_data_type": "uint8",
                    "items": beddit_transitions(codes, start),
                },
                "presence": {
                    "value_data_type": "uint8",
                    "items": [[round(start, 6), 80], [round(night.end_ts, 6), 78]],
                },
                "actigram_epochwise": {"value_data_type": "float32", "items": acti},
                "heart_rate_curve": {"value_data_type": "float32", "items": hr},
                "sleep_cycles": {"value_data_type": "float32", "items": cycles},
                "snoring_episodes": {"value_data_type": "float32", "items": snore},
                "nap_periods": {"value_data_type": "uint8", "items": []},
            },
        }
        if malformed is None:
            malformed = self.is_malformed(self.sleep_key(rec))
        if malformed:
            del obj["start_timestamp"]
            items = obj["time_value_tracks"]["sleep_stages"]["items"]
            if items:
                items[0][1] = "S"
        return obj

    def sleep_body(self, rec: SessionRecord) -> bytes:
        """``sleep_object(rec)`` as JSON bytes, from the record's cache when still current."""
        malformed = self.is_malformed(self.sleep_key(rec))
        return rec.render("sleep", malformed, lambda: self.sleep_object(rec, malformed))

    def session_body(self, rec: SessionRecord) -> bytes:
        """``session_object(rec)`` as JSON bytes, from the record's cache when still current."""
        return rec.render("session", None, lambda: self.session_object(rec))

    def warm(self, timezones: Sequence[str] | None = None) -> int:
        """Render every stored night's sleep object; returns the nights rendered.

        Session objects (which a sync does not read; ~4 KB and 0.1 ms a night more) are
        cached on first request only. ``timezones`` is there for the Asleep simulator's
        signature: Beddit answers carry no request timezone.
        """
        records = self.store.records()
        for rec in records:
            self.sleep_body(rec)
        return len(records)

    def session_object(self, rec: SessionRecord) -> dict[str, Any]:
        night = rec.night
        length = night.end_ts - night.start_ts
        rng = seeded("beddit-session", rec.user_id, rec.night_of)
        ct = chronotype(rec.user_id, night.timezone)
        return {
            "id": int(night.start_ts),
            "start_timestamp": round(night.start_ts, 6),
            "end_timestamp": round(night.end_ts + 0.8, 6),
            "timezone": night.timezone,
            "hardware": "2.0/11103fb bl:1.1 hw:1",
            "software": "2.6.1 (290)",
            "frame_length": 0.2,
            "error_code": 0,
            "updated": rec.updated,
            "time_value_tracks": {
                "actigram": {
                    "value_data_type": "float32",
                    "items": [
                        [float(t), round(rng.uniform(500, 30000), 2)]
                        for t in range(0, int(length), 300)
                    ],
                },
                "heart_rate": {
                    "value_data_type": "float32",
                    "items": [
                        [float(t), round(ct.resting_hr + rng.gauss(4, 3), 2)]
                        for t in range(150, int(length), 300)
                    ],
                },
                "sensor_status": {
                    "value_data_type": "uint8",
                    "items": [[round(rng.uniform(10, 60), 2), 1]],
                },
                "events": {
                    "value_data_type": "uint8",
                    "items": [[-2.41, 10], [round(length - 1.5, 2), 11]],
                },
                "respiration_cycles": {"value_data_type": "float32", "items": []},
                "snoring_events": {"value_data_type": "float32", "items": []},
            },
        }

    # ------------------------------------------------------------------ endpoints

    def _token_user(self, request: Request) -> SimUser | Response:
        auth = request.headers.get("authorization", "")
        if not auth.startswith("UserToken "):
            return _err(403, "forbidden", "Missing or invalid authorization")
        entry = self.tokens.get(auth[len("UserToken ") :].strip())
        if entry is None:
            return _err(403, "forbidden", "Invalid access token")
        uid, expires = entry
        if expires is not None and time.time() > expires:
            return _err(403, "forbidden", "Access token expired")
        user = self.store.users.get(uid)
        if user is None:
            return _err(403, "forbidden", "Invalid access token")
        return user

    def _owner(self, request: Request) -> SimUser | Response:
        user = self._token_user(request)
        if isinstance(user, Response):
            return user
        if request.path_params["user_id"] != user.user_id:
            return _err(403, "forbidden", "Not allowed to access this user")
        return user

    async def authorize(self, request: Request) -> Response:
        form = await read_form(request)
        grant = form.get("grant_type")
        if grant != "password":
            return _err(400, "bad_request", "Unsupported grant_type")
        email, password = form.get("username", ""), form.get("password", "")
        user = next((u for u in self.store.users.values() if u.owner == email), None)
        if user is None:
            return _err(400, "no_such_user", "No user with that email")
        if user.extra.get("password") != password:
            return _err(400, "invalid_credentials", "Wrong username or password")
        token, ttl = self.issue_token(user.user_id)
        body: dict[str, Any] = {
            "user": int(user.user_id),
            "access_token": token,
            "token_type": "user",
        }
        if ttl:
            body["expires_in"] = int(ttl)
        return JSONResponse(body)

    async def token_info(self, request: Request) -> Response:
        user = self._token_user(request)
        if isinstance(user, Response):
            return user
        return JSONResponse({"user": int(user.user_id), "token_type": "user"})

    def _profile(self, user: SimUser) -> dict[str, Any]:
        x = user.extra
        return {
            "id": int(user.user_id),
            "email": user.owner,
            "name": x.get("name"),
            "date_of_birth": x.get("date_of_birth"),
            "sex": x.get("sex"),
            "weight": x.get("weight"),
            "height": x.get("height"),
            "sleep_time_goal": x.get("sleep_time_goal"),
            "tip_audiences": ["general"],
            "created": round(user.created, 6),
            "updated": round(x.get("updated", user.created), 6),
        }

    async def user_profile(self, request: Request) -> Response:
        user = self._owner(request)
        if isinstance(user, Response):
            return user
        if request.method == "PUT":
            raw = await request.body()
            try:
                changes = json.loads(raw or b"{}")
                if isinstance(changes, str):  # giginet sends json.dumps(...) as a form-less body
                    changes = json.loads(changes)
            except ValueError:
                return _err(400, "bad_request", "Body is not JSON")
            if not isinstance(changes, dict):
                return _err(400, "bad_request", "Body must be an object")
            allowed = {"name", "date_of_birth", "sex", "weight", "height", "sleep_time_goal"}
            bad = set(changes) - allowed
            if bad:
                return _err(400, "bad_request", f"Unknown fields: {sorted(bad)}")
            if changes.get("sex") not in (None, "male", "female"):
                return _err(400, "bad_request", "sex must be male, female or null")
            user.extra.update(changes)
            user.extra["updated"] = time.time()
        return JSONResponse(self._profile(user))

    def _select(
        self, request: Request, user: SimUser, *, by_date: bool
    ) -> list[SessionRecord] | Response:
        q = request.query_params
        try:
            after = _float(q.get("updated_after"))
            limit = int(q["limit"]) if q.get("limit") else None
        except ValueError:
            return _err(400, "bad_request", "Invalid query parameter")
        if limit is not None and limit < 1:
            return _err(400, "bad_request", "limit must be at least 1")
        reverse = q.get("reverse", "no")
        if reverse not in ("yes", "no"):
            return _err(400, "bad_request", "reverse must be yes or no")
        if self.should_drift(user.user_id):
            d = self.store.late_night_date(
                user, seeded("drift", self.knobs.seed, len(user.sessions))
            )
            if d not in user.sessions:
                self.store.add_night(user, d)
        recs = [r for r in self.store.sessions(user) if r.state == "COMPLETE"]
        if after is not None:
            recs = sorted(
                (r for r in recs if r.updated > after), key=lambda r: (r.updated, r.night.start)
            )
        else:
            lo_key, hi_key = (
                ("start_date", "end_date") if by_date else ("start_timestamp", "end_timestamp")
            )
            if not q.get(lo_key) or not q.get(hi_key):
                return _err(
                    400, "bad_request", f"Give updated_after, or both {lo_key} and {hi_key}"
                )
            try:
                if by_date:
                    lo, hi = date.fromisoformat(q[lo_key]), date.fromisoformat(q[hi_key])
                    recs = [r for r in recs if lo <= r.night.wake_date <= hi]
                else:
                    lo_t, hi_t = _float(q[lo_key]), _float(q[hi_key])
                    recs = [r for r in recs if lo_t <= r.night.start_ts <= hi_t]  # type: ignore[operator]
            except ValueError:
                return _err(400, "bad_request", "Invalid date or timestamp")
        if reverse == "yes":
            recs.reverse()
        cap = self.cap_limit(limit) if limit is not None else self.knobs.page_size_cap
        return recs[:cap] if cap else recs

    async def sleeps(self, request: Request) -> Response:
        user = self._owner(request)
        if isinstance(user, Response):
            return user
        recs = self._select(request, user, by_date=True)
        if isinstance(recs, Response):
            return recs
        # A bare array of the cached bodies: what json_bytes([...]) would write, unparsed.
        bodies = b",".join(self.sleep_body(r) for r in recs)
        return json_body_response(b"[" + bodies + b"]")

    async def sessions(self, request: Request) -> Response:
        user = self._owner(request)
        if isinstance(user, Response):
            return user
        recs = self._select(request, user, by_date=False)
        if isinstance(recs, Response):
            return recs
        bodies = b",".join(self.session_body(r) for r in recs)
        return json_body_response(b"[" + bodies + b"]")

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/api/v1/auth/authorize", self.authorize, methods=["POST"]),
            Route("/api/v1/auth/token_info", self.token_info, methods=["GET"]),
            Route("/api/v1/user/{user_id}", self.user_profile, methods=["GET", "PUT"]),
            Route("/api/v1/user/{user_id}/sleep", self.sleeps, methods=["GET"]),
            Route("/api/v1/user/{user_id}/session", self.sessions, methods=["GET"]),
        ]

    def control_routes(self) -> list[BaseRoute]:
        async def credentials(request: Request) -> Response:
            if request.method == "GET":
                return JSONResponse(
                    {
                        "credentials": [
                            {"value": t, "user": int(u), "expires": exp}
                            for t, (u, exp) in self.tokens.items()
                        ]
                    }
                )
            body = await read_json(request)
            if str(body.get("user")) not in self.store.users:
                return JSONResponse({"error": "give an existing user id"}, status_code=400)
            token, _ = self.issue_token(str(body["user"]), body.get("value"))
            return JSONResponse({"value": token, "user": int(body["user"])}, status_code=201)

        async def revoke(request: Request) -> Response:
            self.tokens.pop(request.path_params["value"], None)
            return JSONResponse({"ok": True})

        def create(spec: dict[str, Any], i: int) -> SimUser:
            email = spec.get("email")
            if email and int(spec.get("count", 1)) > 1:
                local, _, domain = email.partition("@")
                email = f"{local}+{i}@{domain}"
            return self.add_user(
                email=email,
                password=spec.get("password", "secret"),
                timezone=spec.get("timezone"),
                user_id=int(spec["id"]) if spec.get("id") is not None else None,
            )

        def describe(user: SimUser) -> dict[str, Any]:
            return {
                "id": int(user.user_id),
                "email": user.owner,
                "password": user.extra.get("password"),
                "timezone": user.timezone,
                "nights": len(user.sessions),
            }

        return [
            *super().control_routes(),
            Route("/_sim/credentials", credentials, methods=["GET", "POST"]),
            Route("/_sim/credentials/{value}", revoke, methods=["DELETE"]),
            *store_control_routes(self, self.store, create_user=create, describe_user=describe),
        ]


def _snore_episodes(stages: np.ndarray, rng: Any) -> list[tuple[int, int]]:
    """A few snoring episodes in N2/N3 (start epoch, length in epochs)."""
    n2 = np.flatnonzero(np.isin(stages, (2, 3)))
    if n2.size == 0 or rng.random() < 0.5:
        return []
    picks = sorted(rng.sample(list(n2), min(len(n2), rng.randint(1, 4))))
    return [(int(p), rng.randint(2, 20)) for p in picks]


def create_app(knobs: Knobs | None = None, *, users: int = 0, nights: int = 30, **knob_values: Any):
    """The Beddit simulator as an ASGI app; ``app.state.sim`` is the BedditSimulator.

    ``users`` demo users get ids 1.., emails ``user<id>@example.test`` and password ``secret``.
    """
    sim = BedditSimulator(knobs, **knob_values)
    for _ in range(users):
        sim.add_user(nights=nights)
    return sim.build_app()
