"""The upstream's data: users and their nights, with an ``updated`` clock incremental sync
can trust, and the ``/_sim/users...`` control routes that seed and change them (Asleep,
Beddit).

A real upstream serves stored records; so does a simulator: each ``SessionRecord`` keeps
the JSON bytes it was served as (``SessionRecord.render``), rendered on first request or
ahead by ``POST /_sim/warm``. The cache lives on the record, so deleting a night or a
user, or a reset with data, drops it; a body is re-rendered when its key changes (revision,
``updated``, state, malformed flag, request timezone...). Memory grows with the stored
nights and is not bounded: ~18 KB resident per Beddit night (~4 KB more once its session
object is asked for), ~7 KB per Asleep night and timezone asked. The ingest bench's 90,000
Beddit nights hold ~1.6 GB: fine on a 24 GB machine, too much for a small one (a reset
with data, or deleting the users, frees it).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from .harness import JSONResponse, json_bytes, read_json, seeded, unit_hash
from .nights import Night, chronotype, generate_night

# --------------------------------------------------------------------------- night store


@dataclass
class SessionRecord:
    """One night as the upstream holds it."""

    user_id: str
    night_of: date
    night: Night
    created: float  # unix seconds the upstream first had it
    updated: float  # unix seconds of the last change (Beddit ``updated``)
    state: str = "COMPLETE"  # Asleep: OPEN, CLOSED, COMPLETE
    completed: float | None = None  # unix seconds analysis finished
    # Served bodies: slot ("sleep", ("report", "UTC"), ...) -> (key, JSON bytes).
    rendered: dict[Hashable, tuple[Hashable, bytes]] = field(
        default_factory=dict, repr=False, compare=False
    )

    @property
    def revision(self) -> int:
        return self.night.revision

    def render(self, slot: Hashable, key: Hashable, make: Callable[[], Any]) -> bytes:
        """The JSON bytes of ``make()`` for ``slot``, rendered once while nothing changes.

        Besides ``key`` (what the caller's output depends on: the malformed flag it passes
        to ``make``...), a body is keyed on the record's revision, ``updated``, state and
        completion. The key is taken before rendering: a change made meanwhile (another
        thread) leaves a body under the old key, which the next request re-renders.
        """
        full = (self.revision, self.updated, self.state, self.completed, key)
        hit = self.rendered.get(slot)
        if hit is not None and hit[0] == full:
            return hit[1]
        # orjson >= 3.12 never trims its output buffer (home-assistant/core#181245): a 5 KB
        # body holds ~256 KB of address space and ~12 KB resident. One kept is copied to
        # its exact size (~1 us).
        body = memoryview(json_bytes(make())).tobytes()
        self.rendered[slot] = (full, body)
        return body


@dataclass
class SimUser:
    user_id: str
    timezone: str
    created: float
    owner: str = ""  # Asleep environment, Beddit email, ...
    extra: dict[str, Any] = field(default_factory=dict)
    sessions: dict[date, SessionRecord] = field(default_factory=dict)


class NightStore:
    """Users and their nights, with an ``updated`` clock that incremental sync can trust.

    - History nights are "uploaded" a little after they end: ``updated = end + 1..30 min``
      (never in the future).
    - Every later change (revision, late night, completion) gets
      ``updated = max(now, newest updated so far + 1 ms)``, so a client holding the
      previous maximum as cursor sees it; ``same_updated``/``updated`` force ties.
    """

    def __init__(self) -> None:
        self.users: dict[str, SimUser] = {}
        self.lock = threading.RLock()
        self._newest = 0.0
        self.artefacts = True  # follows the ``artefacts`` knob

    def clear(self) -> None:
        with self.lock:
            self.users.clear()
            self._newest = 0.0

    def _stamp(self, value: float) -> float:
        value = round(value, 6)
        self._newest = max(self._newest, value)
        return value

    def next_updated(self) -> float:
        return self._stamp(max(time.time(), self._newest + 0.001))

    def add_user(
        self, user_id: str, *, timezone: str | None = None, owner: str = "", **extra: Any
    ) -> SimUser:
        with self.lock:
            if user_id in self.users:
                raise ValueError(f"user {user_id} exists")
            ct = chronotype(user_id, timezone)
            user = SimUser(
                user_id=user_id, timezone=ct.timezone, created=time.time(), owner=owner, extra=extra
            )
            self.users[user_id] = user
            return user

    def add_history(self, user: SimUser, last_night: date, count: int) -> int:
        """Nights of the ``count`` evenings up to ``last_night`` (missing ones skipped)."""
        ct = chronotype(user.user_id, user.timezone)
        now = time.time()
        added = 0
        with self.lock:
            for i in range(count):
                night_of = last_night - timedelta(days=count - 1 - i)
                if night_of in user.sessions:
                    continue
                night = generate_night(user.user_id, night_of, ct=ct, artefacts=self.artefacts)
                if night is None or night.end_ts > now:
                    continue
                delay = 60 + unit_hash("upload", user.user_id, night_of) * 1740
                upd = self._stamp(min(night.end_ts + delay, now))
                user.sessions[night_of] = SessionRecord(
                    user_id=user.user_id,
                    night_of=night_of,
                    night=night,
                    created=upd,
                    updated=upd,
                    completed=upd,
                )
                added += 1
        return added

    def add_night(
        self,
        user: SimUser,
        night_of: date,
        *,
        state: str = "COMPLETE",
        updated: float | None = None,
    ) -> SessionRecord:
        """A late night: arrives now (even for an old date), ``updated`` = now."""
        ct = chronotype(user.user_id, user.timezone)
        with self.lock:
            if night_of in user.sessions:
                raise ValueError(f"night of {night_of} exists")
            night = generate_night(
                user.user_id, night_of, ct=ct, allow_missing=False, artefacts=self.artefacts
            )
            assert night is not None
            upd = self._stamp(updated) if updated is not None else self.next_updated()
            rec = SessionRecord(
                user_id=user.user_id,
                night_of=night_of,
                night=night,
                created=upd,
                updated=upd,
                state=state,
                completed=upd if state == "COMPLETE" else None,
            )
            user.sessions[night_of] = rec
            return rec

    def revise(
        self,
        user: SimUser,
        dates: Iterable[date],
        *,
        updated: float | None = None,
        same_updated: bool = False,
    ) -> list[SessionRecord]:
        """Re-score nights: new stages, same times; ``updated`` moves forward."""
        ct = chronotype(user.user_id, user.timezone)
        out = []
        with self.lock:
            shared = (
                updated if updated is not None else (self.next_updated() if same_updated else None)
            )
            for d in dates:
                rec = user.sessions[d]
                rec.night = generate_night(
                    user.user_id,
                    d,
                    ct=ct,
                    allow_missing=False,
                    artefacts=bool((rec.night.stages < 0).any()),  # a re-score keeps its gaps
                    revision=rec.revision + 1,
                )  # type: ignore[assignment]
                rec.updated = self._stamp(shared) if shared is not None else self.next_updated()
                if rec.state == "COMPLETE":
                    rec.completed = rec.updated
                out.append(rec)
        return out

    def complete(self, user: SimUser, dates: Iterable[date]) -> list[SessionRecord]:
        out = []
        with self.lock:
            for d in dates:
                rec = user.sessions[d]
                rec.state = "COMPLETE"
                rec.updated = rec.completed = self.next_updated()
                out.append(rec)
        return out

    def delete_night(self, user: SimUser, night_of: date) -> None:
        with self.lock:
            del user.sessions[night_of]

    def late_night_date(self, user: SimUser, rng: random.Random) -> date:
        """A date to insert a late night at: a gap in the history if any, else before it."""
        have = sorted(user.sessions)
        if not have:
            return (datetime.now(UTC) - timedelta(days=2)).date()
        gaps = [
            have[0] + timedelta(days=i)
            for i in range((have[-1] - have[0]).days)
            if have[0] + timedelta(days=i) not in user.sessions
        ]
        return rng.choice(gaps) if gaps else have[0] - timedelta(days=1)

    def sessions(self, user: SimUser) -> list[SessionRecord]:
        with self.lock:
            return sorted(user.sessions.values(), key=lambda r: r.night.start)

    def records(self) -> list[SessionRecord]:
        """Every stored night of every user (a snapshot)."""
        with self.lock:
            return [rec for user in self.users.values() for rec in user.sessions.values()]


def parse_dates(values: Iterable[str]) -> list[date]:
    return [date.fromisoformat(str(v)) for v in values]


# --------------------------------------------------------------------------- store control


def store_control_routes(
    sim: Any,
    store: NightStore,
    *,
    create_user: Callable[[dict[str, Any], int], SimUser],
    describe_user: Callable[[SimUser], dict[str, Any]],
) -> list[BaseRoute]:
    """``/_sim/users...``: seed users with history, add late nights, revise, complete, delete;
    ``/_sim/warm``: render every stored night ahead (``sim.warm(timezones)``)."""

    def user_or_404(uid: str) -> SimUser | Response:
        user = store.users.get(uid)
        if user is None:
            return JSONResponse({"error": f"no user {uid}"}, status_code=404)
        return user

    def pick_dates(user: SimUser, body: dict[str, Any], default_count: int = 1) -> list[date]:
        if "dates" in body:
            return parse_dates(body["dates"])
        count = int(body.get("count", default_count))
        rng = seeded(
            "pick", sim.knobs.seed, user.user_id, sum(r.revision for r in user.sessions.values())
        )
        have = sorted(user.sessions)
        return sorted(rng.sample(have, min(count, len(have))))

    async def users(request: Request) -> Response:
        if request.method == "GET":
            with store.lock:
                return JSONResponse({"users": [describe_user(u) for u in store.users.values()]})
        body = await read_json(request)
        ids = body.get("ids")
        count = len(ids) if ids else int(body.get("count", 1))
        last = (
            date.fromisoformat(body["last_night"])
            if body.get("last_night")
            else (datetime.now(UTC) - timedelta(days=1)).date()
        )
        nights = int(body.get("nights", 0))
        created = []
        try:
            for i in range(count):
                spec = dict(body)
                if ids:
                    spec["id"] = ids[i]
                user = create_user(spec, i)
                if nights:
                    store.add_history(user, last, nights)
                created.append(describe_user(user))
        except ValueError as e:
            return JSONResponse({"error": str(e)}, status_code=400)
        return JSONResponse({"users": created}, status_code=201)

    async def user_detail(request: Request) -> Response:
        user = user_or_404(request.path_params["uid"])
        if isinstance(user, Response):
            return user
        if request.method == "DELETE":
            with store.lock:
                del store.users[user.user_id]
            return JSONResponse({"ok": True})
        return JSONResponse(describe_user(user))

    async def nights(request: Request) -> Response:
        user = user_or_404(request.path_params["uid"])
        if isinstance(user, Response):
            return user
        body = await read_json(request)
        if "history" in body:  # {"history": 30, "last_night": "..."}
            last = (
                date.fromisoformat(body["last_night"])
                if body.get("last_night")
                else (datetime.now(UTC) - timedelta(days=1)).date()
            )
            return JSONResponse({"added": store.add_history(user, last, int(body["history"]))})
        if "dates" in body:
            dates = parse_dates(body["dates"])
        else:
            rng = seeded("late", sim.knobs.seed, user.user_id, len(user.sessions))
            dates = []
            for _ in range(int(body.get("count", 1))):
                d = store.late_night_date(user, rng)
                while d in user.sessions or d in dates:
                    d -= timedelta(days=1)
                dates.append(d)
        try:
            recs = [
                store.add_night(
                    user, d, state=body.get("state", "COMPLETE"), updated=body.get("updated")
                )
                for d in dates
            ]
        except ValueError as e:
            return JSONResponse({"error": str(e)}, status_code=400)
        return JSONResponse({"added": [sim.describe_session(r) for r in recs]}, status_code=201)

    async def revise(request: Request) -> Response:
        user = user_or_404(request.path_params["uid"])
        if isinstance(user, Response):
            return user
        body = await read_json(request)
        try:
            recs = store.revise(
                user,
                pick_dates(user, body),
                updated=body.get("updated"),
                same_updated=bool(body.get("same_updated")),
            )
        except KeyError as e:
            return JSONResponse({"error": f"no night {e}"}, status_code=404)
        return JSONResponse({"revised": [sim.describe_session(r) for r in recs]})

    async def complete(request: Request) -> Response:
        user = user_or_404(request.path_params["uid"])
        if isinstance(user, Response):
            return user
        body = await read_json(request)
        dates = (
            parse_dates(body["dates"])
            if "dates" in body
            else [d for d, r in user.sessions.items() if r.state != "COMPLETE"]
        )
        recs = store.complete(user, dates)
        return JSONResponse({"completed": [sim.describe_session(r) for r in recs]})

    async def delete_night(request: Request) -> Response:
        user = user_or_404(request.path_params["uid"])
        if isinstance(user, Response):
            return user
        try:
            store.delete_night(user, date.fromisoformat(request.path_params["night_of"]))
        except KeyError:
            return JSONResponse({"error": "no such night"}, status_code=404)
        return JSONResponse({"ok": True})

    async def warm(request: Request) -> Response:
        """Render every stored night into its record's cache, as an upstream holds its records."""
        body = await read_json(request)
        timezones = body.get("timezones")
        if timezones is not None and (
            not isinstance(timezones, list) or not all(isinstance(t, str) for t in timezones)
        ):
            return JSONResponse({"error": "timezones must be a list of names"}, status_code=400)
        started = time.perf_counter()
        # In a worker thread: the event loop keeps answering while thousands of nights render.
        try:
            rendered = await run_in_threadpool(sim.warm, timezones)
        except ValueError as e:
            return JSONResponse({"error": str(e)}, status_code=400)
        return JSONResponse(
            {"rendered": rendered, "seconds": round(time.perf_counter() - started, 3)}
        )

    return [
        Route("/_sim/warm", warm, methods=["POST"]),
        Route("/_sim/users", users, methods=["GET", "POST"]),
        Route("/_sim/users/{uid}", user_detail, methods=["GET", "DELETE"]),
        Route("/_sim/users/{uid}/nights", nights, methods=["POST"]),
        Route("/_sim/users/{uid}/nights/{night_of}", delete_night, methods=["DELETE"]),
        Route("/_sim/users/{uid}/revise", revise, methods=["POST"]),
        Route("/_sim/users/{uid}/complete", complete, methods=["POST"]),
    ]


def iso(ts: float | datetime, tz: Any = UTC) -> str:
    """ISO 8601 with offset, second precision: ``2025-01-15T02:50:29+00:00``."""
    dt = ts if isinstance(ts, datetime) else datetime.fromtimestamp(ts, UTC)
    return dt.astimezone(tz).replace(microsecond=0).isoformat()
