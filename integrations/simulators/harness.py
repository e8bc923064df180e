"""What every simulator shares: knobs, the fault injector, the request log, barriers and the
``/_sim/...`` control surface (the users-and-nights store is in ``store.py``).

Faults follow shared/reliability.md §7 "Shared harness": seeded fault schedules keyed by
request index (5xx, 429 + Retry-After, timeout, truncated body, malformed record,
latency), a barrier that blocks request #k until the test releases it, and a request log
with path, key used and timestamp.

Request indexes count the upstream-API requests an app has received, from 1, control
requests (``/_sim/...``) excluded. A fault is decided from ``(seed, index)`` alone, so a
schedule replays identically; ``schedule`` pins faults to chosen indexes.

Fault names (``schedule`` values and what rate draws produce):
  ``"500"``, ``"502"``, ``"503"``, ``"504"``           an error in the provider's error shape
  ``"429"``, ``"429:<seconds>"``, ``"429:http-date:<seconds>"``
                                                 rate limited (Asleep: 403 "Rate limit exceeded")
  ``"timeout"``                                  hang ``hang_seconds``, then 504
  ``"truncate"``                                 the real response, body cut in half
  ``"latency:<seconds>"``                        the real response, late
  ``"ok"``                                       no fault
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import json
import random
import re
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette import responses
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

# --------------------------------------------------------------------------- JSON

# orjson writes what starlette's ``json.dumps(..., ensure_ascii=False, separators=(",", ":"))``
# wrote, about 9x faster: compact, UTF-8, keys in insertion order, floats shortest
# round-trip (a few spelled otherwise, ``1e-9`` for ``1e-09``, ``0.00003`` for ``3e-05``:
# same values; the nights served are byte-identical). Int keys become strings as json made
# them; numpy scalars, which json took as floats, are written as numbers. The simulators
# never send NaN (a malformed record carries the string "NaN"); json refused it, orjson
# would write null.
_ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def _json_default(value: Any) -> Any:
    if isinstance(value, tuple):  # a namedtuple: json wrote a list
        return list(value)
    if isinstance(value, float):  # a float subclass json accepted
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def json_bytes(content: Any) -> bytes:
    """``content`` as compact UTF-8 JSON."""
    return orjson.dumps(content, default=_json_default, option=_ORJSON_OPTIONS)


class JSONResponse(responses.JSONResponse):
    """starlette's JSONResponse, serialized with orjson (same JSON, see ``json_bytes``)."""

    def render(self, content: Any) -> bytes:
        return json_bytes(content)


def json_body_response(body: bytes, status_code: int = 200) -> Response:
    """A JSON answer whose body is already serialized (a cached night, a joined list)."""
    return Response(body, status_code=status_code, media_type=JSONResponse.media_type)


# --------------------------------------------------------------------------- knobs


@dataclass
class Knobs:
    """Fault and behaviour settings; set at app creation and at runtime (``POST /_sim/config``)."""

    seed: int = 0
    latency: float | list[float] = 0.0  # seconds, or [lo, hi] drawn per request
    error_rate: float = 0.0  # 500 or 503, half each
    timeout_rate: float = 0.0  # hang past any sane client timeout
    hang_seconds: float = 30.0
    rate_limit_rate: float = 0.0  # 429 + Retry-After (Asleep: 403 "Rate limit exceeded")
    retry_after: float | list[float] = 1  # seconds, or [lo, hi] whole seconds drawn per request
    retry_after_format: str = "seconds"  # or "http-date"
    malformed_rate: float = 0.0  # share of records that fail the schema, stable per record
    malformed_keys: list[str] = field(default_factory=list)  # records always malformed
    truncate_rate: float = 0.0
    truncate_mode: str = (
        "json"  # "json": short body, honest Content-Length; "connection": drop mid-body
    )
    page_size_cap: int | None = None  # serve at most this many records per page
    artefacts: bool = True  # nights generated from now on may hold rare no-data (-1) runs
    schedule: dict[int, str] = field(default_factory=dict)  # request index -> fault name
    fault_paths: str | None = None  # regex: only matching paths get rate-drawn or scheduled faults
    drift_every: int = 0  # every n-th list page inserts a late night for that user first
    job_seconds: float = 1.0  # U-Sleep prediction / Grand Challenge job duration
    job_failure_rate: float = 0.0  # share of predictions/jobs that end Failed (stable per input)
    token_ttl: float | None = None  # Beddit token expires_in; U-Sleep token lifetime (s)
    gcapi_latest_version: str = "0.16.1"  # Grand Challenge version gate
    gcapi_lowest_supported_version: str = "0.12.0"

    def update(self, changes: dict[str, Any]) -> None:
        names = {f.name for f in fields(self)}
        unknown = set(changes) - names
        if unknown:
            raise ValueError(f"unknown knobs: {sorted(unknown)}")
        for name, value in changes.items():
            if name == "schedule" and value is not None:
                value = {int(k): str(v) for k, v in dict(value).items()}
            if name == "malformed_keys" and value is not None:
                value = [str(v) for v in value]
            setattr(self, name, value)
        if self.truncate_mode not in ("json", "connection"):
            raise ValueError("truncate_mode must be 'json' or 'connection'")
        if self.retry_after_format not in ("seconds", "http-date"):
            raise ValueError("retry_after_format must be 'seconds' or 'http-date'")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def seeded(*parts: object) -> random.Random:
    text = "|".join(str(p) for p in parts).encode()
    return random.Random(int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little"))


def unit_hash(*parts: object) -> float:
    """A stable number in [0, 1) for the parts."""
    text = "|".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") / 2**64


# --------------------------------------------------------------------------- barriers


class Barrier:
    """Holds request #index until released; thread-safe for tests in another thread."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.reached = threading.Event()
        self.released = threading.Event()

    async def wait(self, stop: threading.Event) -> None:
        self.reached.set()
        while not (self.released.is_set() or stop.is_set()):
            await asyncio.sleep(0.01)

    def state(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "reached": self.reached.is_set(),
            "released": self.released.is_set(),
        }


# --------------------------------------------------------------------------- forms


def parse_urlencoded(body: bytes) -> dict[str, str]:
    return dict(parse_qsl(body.decode("latin-1"), keep_blank_values=True))


def parse_multipart(body: bytes, content_type: str) -> dict[str, tuple[str | None, bytes]]:
    """multipart/form-data -> {field: (filename or None, bytes)} (no python-multipart needed)."""
    m = re.search(r'boundary="?([^";]+)"?', content_type)
    if not m:
        raise ValueError("multipart body without boundary")
    delimiter = b"--" + m.group(1).encode("latin-1")
    out: dict[str, tuple[str | None, bytes]] = {}
    for part in body.split(delimiter)[1:]:
        if part.startswith(b"--"):
            break
        if part.startswith(b"\r\n"):
            part = part[2:]
        head, sep, content = part.partition(b"\r\n\r\n")
        if not sep:
            continue
        if content.endswith(b"\r\n"):
            content = content[:-2]
        disposition = ""
        for line in head.decode("latin-1").split("\r\n"):
            if line.lower().startswith("content-disposition:"):
                disposition = line
        name = re.search(r'\bname="([^"]*)"', disposition)
        filename = re.search(r'\bfilename="([^"]*)"', disposition)
        if name:
            out[name.group(1)] = (filename.group(1) if filename else None, content)
    return out


async def read_form(request: Request) -> dict[str, str]:
    """Form fields of a urlencoded or multipart body (file fields as latin-1 text)."""
    body = await request.body()
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("multipart/form-data"):
        return {k: v.decode("latin-1") for k, (_, v) in parse_multipart(body, ctype).items()}
    return parse_urlencoded(body)


async def read_json(request: Request) -> Any:
    body = await request.body()
    if not body.strip():
        return {}
    return json.loads(body)


# --------------------------------------------------------------------------- simulator base

LogEntry = dict[str, Any]


class Simulator:
    """State and behaviour shared by the four upstream simulators."""

    provider = "base"

    def __init__(self, knobs: Knobs | None = None, **knob_values: Any) -> None:
        self.knobs = knobs or Knobs()
        self.knobs.update(knob_values)
        self._initial_knobs = Knobs(**self.knobs.as_dict())
        self.log: list[LogEntry] = []
        self._index = 0
        self._lock = threading.RLock()
        self.barriers: dict[int, Barrier] = {}
        self.stopping = threading.Event()  # set on shutdown/reset: ends hangs and barriers
        self._page_counter: dict[str, int] = {}

    # ------------------------------------------------------------------ hooks for providers

    def credential_of(self, request_headers: Any) -> str | None:
        """The credential a request used, for the log (API key, token)."""
        return None

    def error_response(self, status: int, message: str, *, code: str = "") -> Response:
        return JSONResponse({"detail": message}, status_code=status)

    def rate_limited_response(self, retry_after: str) -> Response:
        return JSONResponse(
            {"detail": "Rate limit exceeded"}, status_code=429, headers={"Retry-After": retry_after}
        )

    def routes(self) -> list[BaseRoute]:
        raise NotImplementedError

    def reset_data(self) -> None:
        """Forget all upstream data (users, sessions, uploads...)."""

    def truth(self, request: Request) -> Any:
        return []

    # ------------------------------------------------------------------ knobs and faults

    def configure(self, **changes: Any) -> dict[str, Any]:
        with self._lock:
            self.knobs.update(changes)
            self.sync_knobs()
            return self.knobs.as_dict()

    def sync_knobs(self) -> None:
        """Push knobs that live elsewhere (the night store's ``artefacts``) to their place."""
        store = getattr(self, "store", None)
        if store is not None:
            store.artefacts = bool(self.knobs.artefacts)

    def reset(self, *, data: bool = False) -> None:
        with self._lock:
            self.stopping.set()  # free anything hanging now
            self.knobs = Knobs(**self._initial_knobs.as_dict())
            self.log = []
            self._index = 0
            self.barriers = {}
            self._page_counter = {}
            self.stopping = threading.Event()
            if data:
                self.reset_data()
            self.sync_knobs()

    def next_index(self) -> int:
        with self._lock:
            self._index += 1
            return self._index

    @property
    def request_count(self) -> int:
        return self._index

    def fault_for(self, index: int, path: str) -> str:
        k = self.knobs
        if k.fault_paths and not re.search(k.fault_paths, path):
            return "ok"
        if index in k.schedule:
            return k.schedule[index]
        rng = seeded("fault", k.seed, index)
        r = rng.random()
        for name, rate in (
            ("error", k.error_rate),
            ("timeout", k.timeout_rate),
            ("429", k.rate_limit_rate),
            ("truncate", k.truncate_rate),
        ):
            if r < rate:
                if name == "error":
                    return "500" if rng.random() < 0.5 else "503"
                return name
            r -= rate
        return "ok"

    def retry_after_value(
        self, index: int, seconds: float | None = None, fmt: str | None = None
    ) -> str:
        k = self.knobs
        if seconds is None:
            ra = k.retry_after
            if isinstance(ra, (list, tuple)):
                seconds = seeded("retry-after", k.seed, index).randint(int(ra[0]), int(ra[1]))
            else:
                seconds = ra
        fmt = fmt or k.retry_after_format
        if fmt == "http-date":
            return email.utils.formatdate(time.time() + float(seconds), usegmt=True)
        return str(int(seconds)) if float(seconds).is_integer() else str(seconds)

    def latency_for(self, index: int) -> float:
        lat = self.knobs.latency
        if isinstance(lat, (list, tuple)):
            return seeded("latency", self.knobs.seed, index).uniform(float(lat[0]), float(lat[1]))
        return float(lat or 0.0)

    def is_malformed(self, key: str) -> bool:
        """Whether the record ``key`` is served broken (stable for a given seed)."""
        k = self.knobs
        if key in k.malformed_keys:
            return True
        return k.malformed_rate > 0 and unit_hash("malformed", k.seed, key) < k.malformed_rate

    def job_fails(self, key: str) -> bool:
        rate = self.knobs.job_failure_rate
        return rate > 0 and unit_hash("job-fails", self.knobs.seed, key) < rate

    def cap_limit(self, limit: int) -> int:
        cap = self.knobs.page_size_cap
        return min(limit, cap) if cap else limit

    def should_drift(self, scope_key: str) -> bool:
        """Count list pages per user; true on every ``drift_every``-th one."""
        every = self.knobs.drift_every
        if not every:
            return False
        with self._lock:
            n = self._page_counter.get(scope_key, 0) + 1
            self._page_counter[scope_key] = n
        return n % every == 0

    # ------------------------------------------------------------------ barriers

    def arm_barrier(self, index: int) -> Barrier:
        with self._lock:
            b = self.barriers.get(index) or Barrier(index)
            self.barriers[index] = b
            return b

    def release_barrier(self, index: int | None = None) -> None:
        with self._lock:
            for i, b in self.barriers.items():
                if index is None or i == index:
                    b.released.set()

    def wait_barrier(self, index: int, timeout: float = 10.0) -> bool:
        """Block (in a test thread) until request #index is held at its barrier."""
        return self.arm_barrier(index).reached.wait(timeout)

    # ------------------------------------------------------------------ control surface

    def control_routes(self) -> list[BaseRoute]:
        async def config(request: Request) -> Response:
            if request.method == "POST":
                try:
                    return JSONResponse(self.configure(**(await read_json(request))))
                except (ValueError, TypeError) as e:
                    return JSONResponse({"error": str(e)}, status_code=400)
            return JSONResponse(self.knobs.as_dict())

        async def reset(request: Request) -> Response:
            body = await read_json(request)
            self.reset(data=bool(body.get("data", False)))
            return JSONResponse({"ok": True})

        async def log(request: Request) -> Response:
            if request.method == "DELETE":
                with self._lock:
                    self.log = []
                return JSONResponse({"ok": True})
            since = int(request.query_params.get("since", 0))
            with self._lock:
                entries = [e for e in self.log if e["index"] > since]
            return JSONResponse({"requests": self.request_count, "entries": entries})

        async def barrier(request: Request) -> Response:
            if request.method == "POST":
                body = await read_json(request)
                self.arm_barrier(int(body["index"]))
            with self._lock:
                return JSONResponse({"barriers": [b.state() for b in self.barriers.values()]})

        async def barrier_release(request: Request) -> Response:
            body = await read_json(request)
            self.release_barrier(
                None if body.get("all") or "index" not in body else int(body["index"])
            )
            return JSONResponse({"ok": True})

        async def barrier_wait(request: Request) -> Response:
            body = await read_json(request)
            b = self.arm_barrier(int(body["index"]))
            deadline = time.monotonic() + float(body.get("timeout", 10))
            while not b.reached.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            return JSONResponse(b.state())

        async def truth(request: Request) -> Response:
            return JSONResponse(self.truth(request))

        return [
            Route("/_sim/config", config, methods=["GET", "POST"]),
            Route("/_sim/reset", reset, methods=["POST"]),
            Route("/_sim/log", log, methods=["GET", "DELETE"]),
            Route("/_sim/barrier", barrier, methods=["GET", "POST"]),
            Route("/_sim/barrier/release", barrier_release, methods=["POST"]),
            Route("/_sim/barrier/wait", barrier_wait, methods=["POST"]),
            Route("/_sim/truth", truth, methods=["GET"]),
        ]

    # ------------------------------------------------------------------ the app

    def build_app(self) -> Starlette:
        async def not_found(request: Request, exc: Exception) -> Response:
            status = getattr(exc, "status_code", 404)
            return self.error_response(
                status,
                "Not found." if status == 404 else "Method not allowed.",
                code="not_found" if status == 404 else "bad_request",
            )

        async def server_error(request: Request, exc: Exception) -> Response:
            return self.error_response(500, f"simulator error: {type(exc).__name__}: {exc}")

        app = Starlette(
            routes=[*self.control_routes(), *self.routes()],
            exception_handlers={404: not_found, 405: not_found, Exception: server_error},
        )
        app.state.sim = self
        wrapped = FaultMiddleware(app, self)
        return wrapped  # type: ignore[return-value]


# --------------------------------------------------------------------------- middleware

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class FaultMiddleware:
    """ASGI wrapper: numbers requests, injects faults, holds barriers, logs every request."""

    def __init__(self, app: Starlette, sim: Simulator) -> None:
        self.app = app
        self.sim = sim
        self.state = app.state  # so ``app.state.sim`` works on the wrapped app too

    @property
    def routes(self) -> list[BaseRoute]:
        return self.app.routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/_sim"):
            await self.app(scope, receive, send)
            return
        sim = self.sim
        index = sim.next_index()
        headers = {
            k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])
        }
        entry: LogEntry = {
            "index": index,
            "t": time.time(),
            "method": scope["method"],
            "path": scope["path"],
            "query": scope.get("query_string", b"").decode("latin-1"),
            "key": sim.credential_of(headers),
            "status": None,
            "fault": "ok",
        }
        status_box: list[int] = []

        async def send_tracking(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status_box.append(message["status"])
            await send(message)

        stopping = sim.stopping
        try:
            fault = sim.fault_for(index, scope["path"])
            entry["fault"] = fault
            barrier = sim.barriers.get(index)
            if barrier is not None:
                await barrier.wait(stopping)
            delay = sim.latency_for(index)
            if fault.startswith("latency:"):
                delay += float(fault.split(":", 1)[1])
            if delay > 0:
                await _sleep_unless(stopping, delay)

            if fault in ("500", "502", "503", "504"):
                messages = {
                    "500": "Internal Server Error",
                    "502": "Bad Gateway",
                    "503": "Service Unavailable",
                    "504": "Gateway Timeout",
                }
                resp = sim.error_response(int(fault), messages[fault], code="server_error")
                await resp(scope, receive, send_tracking)
            elif fault.startswith("429"):
                parts = fault.split(":")
                seconds = float(parts[-1]) if len(parts) > 1 else None
                fmt = "http-date" if "http-date" in parts else None
                resp = sim.rate_limited_response(sim.retry_after_value(index, seconds, fmt))
                await resp(scope, receive, send_tracking)
            elif fault == "timeout":
                await _sleep_unless(stopping, sim.knobs.hang_seconds)
                resp = sim.error_response(504, "Gateway Timeout", code="server_error")
                await resp(scope, receive, send_tracking)
            elif fault == "truncate":
                await self._truncated(scope, receive, send_tracking)
            else:
                await self.app(scope, receive, send_tracking)
        finally:
            entry["status"] = status_box[0] if status_box else None
            entry["t_end"] = time.time()
            with sim._lock:
                sim.log.append(entry)

    async def _truncated(self, scope: Scope, receive: Receive, send: Send) -> None:
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def capture(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, capture)
        body = b"".join(chunks)
        cut = body[: max(len(body) // 2, 1)] if body else b""
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        if self.sim.knobs.truncate_mode == "connection":
            headers.append((b"content-length", str(len(body)).encode()))
            await send(
                {
                    "type": "http.response.start",
                    "status": start.get("status", 200),
                    "headers": headers,
                }
            )
            await send({"type": "http.response.body", "body": cut, "more_body": True})
            raise ConnectionAbortedError(
                "simulated truncated response"
            )  # server drops the connection
        headers.append((b"content-length", str(len(cut)).encode()))
        await send(
            {"type": "http.response.start", "status": start.get("status", 200), "headers": headers}
        )
        await send({"type": "http.response.body", "body": cut})


async def _sleep_unless(stop: threading.Event, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not stop.is_set():
        left = deadline - time.monotonic()
        if left <= 0:
            return
        await asyncio.sleep(min(left, 0.05))
