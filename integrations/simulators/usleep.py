"""U-Sleep webserver API simulator (shared/upstreams.md §2), speaking what ``usleep-api``
0.1.3 sends and reads.

- ``Authorization: Bearer <token>``; ``GET /api/v1/info/ping`` answers 200 only for a valid,
  unexpired token (tokens are HS256 JWTs with ``exp, iat, nbf, identity`` and a 12 h
  lifetime unless ``token_ttl`` says otherwise).
- Sessions ``/api/v1/sleep_stager/{name}/...`` are created on first use, at most 5 per
  identity. Upload is multipart field ``PSG``; predict takes the form
  ``data_per_prediction``, ``channels-k``, ``channel_group_idx-k``.
- The hypnogram is derived from the uploaded file only: the seed is a hash of the EDF data
  records (so header anonymization does not change the result), the length is
  ``n_records * record_duration * 128 / data_per_prediction`` periods.
- A prediction takes ``job_seconds`` (knob); ``prediction_log_stream`` hands out the log in
  pieces and ``finished`` once it is done; ``prediction_status`` then says ``Completed``
  (or ``Failed`` when the file or the channel groups were unusable).
- Every route answers JSON, errors included (``{"error": "..."}``), because the client
  calls ``.json()`` on them.

Choices where upstreams.md has a gap [U]: error statuses (401 bad token, 404 unknown
session or missing file, 400 bad input, 429 for a 6th concurrent session), status labels
before completion (``Idle``, ``In progress``), ``get_session_details`` shape.

Control: ``POST /_sim/credentials {"value"?, "identity"?, "ttl"?}`` mints a token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from .edf import EdfError, EdfHeader, data_section, infer_channel_type, read_header
from .harness import (
    JSONResponse,
    Knobs,
    Simulator,
    parse_multipart,
    parse_urlencoded,
    read_json,
)
from .nights import USLEEP_CLASSES, synthetic_hypnogram, to_usleep

MODELS = ["U-Sleep v1.0", "U-Sleep v2.0"]
MAX_SESSIONS = 5
MAX_CHANNEL_COMBINATIONS = 24
RESAMPLE_HZ = 128
TOKEN_TTL = 12 * 3600
CONFIG = {
    "MAX_CHANNEL_COMBINATIONS": MAX_CHANNEL_COMBINATIONS,
    "MAX_FILE_SIZE_MB": 2000,
    "SAMPLE_RATE": RESAMPLE_HZ,
}


def _err(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def make_token(identity: str, ttl: float = TOKEN_TTL, key: bytes = b"usleep-simulator") -> str:
    """An HS256 JWT shaped like the web UI's tokens (claims exp, iat, nbf, identity)."""
    now = int(time.time())
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(
        json.dumps(
            {
                "exp": now + int(ttl),
                "iat": now,
                "nbf": now,
                "identity": identity,
                "jti": secrets.token_hex(8),
            }
        ).encode()
    )
    sig = _b64(hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest())
    return f"{head}.{body}.{sig}"


@dataclass
class StagerSession:
    name: str
    identity: str
    model: str = MODELS[0]
    file_name: str | None = None
    file_bytes: bytes | None = None
    header: EdfHeader | None = None
    status: str = "Idle"
    started: float | None = None
    log_lines: list[str] = field(default_factory=list)
    log_sent: int = 0
    hypnogram: np.ndarray | None = None
    probabilities: np.ndarray | None = None
    period_seconds: float = 30.0
    error: str | None = None
    log_streamed: int = 0  # how much of the log prediction_log_stream has handed out


class USleepSimulator(Simulator):
    provider = "usleep"

    def __init__(self, knobs: Knobs | None = None, **knob_values: Any) -> None:
        super().__init__(knobs, **knob_values)
        self.tokens: dict[str, tuple[str, float]] = {}  # token -> (identity, expires at)
        self.sessions: dict[tuple[str, str], StagerSession] = {}

    # ------------------------------------------------------------------ hooks

    def credential_of(self, headers: Any) -> str | None:
        auth = headers.get("authorization", "")
        return auth[7:].strip() if auth.lower().startswith("bearer ") else (auth or None)

    def error_response(self, status: int, message: str, *, code: str = "") -> Response:
        return _err(status, message)

    def rate_limited_response(self, retry_after: str) -> Response:
        return JSONResponse(
            {"error": "Too many requests"}, status_code=429, headers={"Retry-After": retry_after}
        )

    def reset_data(self) -> None:
        self.tokens.clear()
        self.sessions.clear()

    def add_token(
        self,
        value: str | None = None,
        identity: str = "user@example.test",
        ttl: float | None = None,
    ) -> str:
        ttl = ttl or self.knobs.token_ttl or TOKEN_TTL
        token = value or make_token(identity, ttl)
        self.tokens[token] = (identity, time.time() + ttl)
        return token

    def truth(self, request: Request) -> Any:
        return {
            "provider": self.provider,
            "sessions": [
                {
                    "identity": s.identity,
                    "name": s.name,
                    "status": s.status,
                    "file": s.file_name,
                    "hypnogram": None if s.hypnogram is None else s.hypnogram.tolist(),
                }
                for s in self.sessions.values()
            ],
        }

    # ------------------------------------------------------------------ helpers

    def _identity(self, request: Request) -> str | Response:
        auth = request.headers.get("authorization", "")
        if not auth.lower().startswith("bearer "):
            return _err(401, "Missing authentication token.")
        entry = self.tokens.get(auth[7:].strip())
        if entry is None or entry[1] < time.time():
            return _err(401, "Invalid or expired authentication token.")
        return entry[0]

    def _session(self, request: Request, *, create: bool = True) -> StagerSession | Response:
        identity = self._identity(request)
        if isinstance(identity, Response):
            return identity
        name = request.path_params["session"]
        key = (identity, name)
        sess = self.sessions.get(key)
        if sess is None:
            if not create:
                return _err(404, f"No session named '{name}'.")
            if sum(1 for (i, _) in self.sessions if i == identity) >= MAX_SESSIONS:
                return _err(
                    429, f"Too many concurrent sessions (max {MAX_SESSIONS}). Delete one first."
                )
            sess = self.sessions[key] = StagerSession(name=name, identity=identity)
        return sess

    def _advance(self, sess: StagerSession) -> None:
        """Move a running prediction along with time."""
        if sess.status != "In progress" or sess.started is None:
            return
        frac = (
            1.0
            if self.knobs.job_seconds <= 0
            else (time.time() - sess.started) / self.knobs.job_seconds
        )
        n_total = len(sess.log_lines)
        sess.log_sent = max(sess.log_sent, min(n_total, int(frac * n_total)))
        if frac >= 1.0:
            sess.log_sent = n_total
            sess.status = "Failed" if sess.error else "Completed"

    # ------------------------------------------------------------------ endpoints

    async def ping(self, request: Request) -> Response:
        identity = self._identity(request)
        if isinstance(identity, Response):
            return identity
        return JSONResponse({"result": "pong", "identity": identity})

    async def config(self, request: Request) -> Response:
        identity = self._identity(request)
        if isinstance(identity, Response):
            return identity
        var = request.path_params["var"]
        if var not in CONFIG:
            return _err(404, f"Unknown config variable '{var}'.")
        return JSONResponse({var: CONFIG[var]})

    async def model_names(self, request: Request) -> Response:
        identity = self._identity(request)
        if isinstance(identity, Response):
            return identity
        return JSONResponse({"models": MODELS})

    async def session_names(self, request: Request) -> Response:
        identity = self._identity(request)
        if isinstance(identity, Response):
            return identity
        return JSONResponse({"session_names": [n for (i, n) in self.sessions if i == identity]})

    async def session_detail(self, request: Request) -> Response:
        sess = self._session(request, create=request.method == "GET")
        if isinstance(sess, Response):
            return sess
        if request.method == "DELETE":
            self.sessions.pop((sess.identity, sess.name), None)
            return JSONResponse({"result": f"Deleted session '{sess.name}'."})
        self._advance(sess)
        return JSONResponse(
            {
                "session_name": sess.name,
                "model": sess.model,
                "file_name": sess.file_name,
                "prediction_status": sess.status,
            }
        )

    async def set_model(self, request: Request) -> Response:
        sess = self._session(request)
        if isinstance(sess, Response):
            return sess
        model = parse_urlencoded(await request.body()).get("model")
        if model not in MODELS:
            return _err(400, f"Invalid model '{model}', must be one of {MODELS}.")
        sess.model = model
        return JSONResponse({"result": f"Model set to '{model}'."})

    async def file(self, request: Request) -> Response:
        sess = self._session(request)
        if isinstance(sess, Response):
            return sess
        if request.method == "POST":
            ctype = request.headers.get("content-type", "")
            if not ctype.startswith("multipart/form-data"):
                return _err(400, "Expected a multipart/form-data upload with field 'PSG'.")
            try:
                parts = parse_multipart(await request.body(), ctype)
            except ValueError as e:
                return _err(400, str(e))
            if "PSG" not in parts:
                return _err(400, "No file in field 'PSG'.")
            name, raw = parts["PSG"]
            try:
                header = read_header(raw)
            except EdfError as e:
                return _err(400, f"Could not read the uploaded file as EDF: {e}")
            sess.file_name, sess.file_bytes, sess.header = name or "psg.edf", raw, header
            sess.status, sess.hypnogram, sess.probabilities, sess.log_lines, sess.log_sent = (
                "Idle",
                None,
                None,
                [],
                0,
            )
            return JSONResponse(
                {"result": f"File '{sess.file_name}' uploaded.", "channels": header.labels}
            )
        if request.method == "DELETE":
            sess.file_name = sess.file_bytes = sess.header = None  # type: ignore[assignment]
            return JSONResponse({"result": "File deleted."})
        if sess.header is None:
            return _err(404, "No file uploaded to this session.")
        labels = sess.header.labels
        return JSONResponse(
            {
                "file_name": sess.file_name,
                "channels": labels,
                "inferred_channel_types": [infer_channel_type(x) for x in labels],
                "sample_rates": [
                    s.sampling_rate(sess.header.record_duration) for s in sess.header.signals
                ],
                "duration_sec": sess.header.duration,
            }
        )

    async def configuration_options(self, request: Request) -> Response:
        sess = self._session(request)
        if isinstance(sess, Response):
            return sess
        return JSONResponse(
            {"required_channels": [["EEG"], ["EOG"]], "models": MODELS, "model": sess.model}
        )

    async def predict(self, request: Request) -> Response:
        sess = self._session(request)
        if isinstance(sess, Response):
            return sess
        body = await request.body()
        ctype = request.headers.get("content-type", "")
        form = (
            {k: v.decode("latin-1") for k, (_, v) in parse_multipart(body, ctype).items()}
            if ctype.startswith("multipart/form-data")
            else parse_urlencoded(body)
        )
        if sess.header is None or sess.file_bytes is None:
            return _err(400, "Upload a file before predicting.")
        try:
            dpp = int(form.get("data_per_prediction", RESAMPLE_HZ * 30))
        except ValueError:
            return _err(400, "data_per_prediction must be an integer.")
        if dpp <= 0:
            return _err(400, "data_per_prediction must be positive.")
        groups: dict[int, list[str]] = {}
        k = 0
        while f"channels-{k}" in form:
            try:
                g = int(form.get(f"channel_group_idx-{k}", 0))
            except ValueError:
                return _err(400, f"channel_group_idx-{k} must be an integer.")
            groups.setdefault(g, []).append(form[f"channels-{k}"])
            k += 1
        labels = set(sess.header.labels)
        error = None
        if not groups:
            error = "No channel groups given."
        elif any(ch not in labels for chans in groups.values() for ch in chans):
            error = "A channel group names a channel that is not in the file."
        elif len(groups) > MAX_CHANNEL_COMBINATIONS:
            error = f"Too many channel groups (max {MAX_CHANNEL_COMBINATIONS})."
        n_periods = int(sess.header.duration * RESAMPLE_HZ // dpp)
        content = data_section(sess.file_bytes, sess.header)
        digest = hashlib.sha256(content).digest()
        stages = synthetic_hypnogram(digest, n_periods)
        hyp = to_usleep(stages)
        rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
        probs = rng.dirichlet(np.ones(5), size=n_periods) * 0.45
        probs[np.arange(n_periods), hyp] += 0.55  # argmax is the hypnogram
        sess.hypnogram, sess.probabilities = hyp, probs / probs.sum(axis=1, keepdims=True)
        sess.period_seconds = dpp / RESAMPLE_HZ
        if error is None and self.job_fails(digest.hex()):
            error = "The prediction failed (simulated failure)."
        sess.error = error
        sess.started = time.time()
        sess.status = "In progress"
        sess.log_lines = [
            f"[sim] Loading file '{sess.file_name}' ({sess.header.duration:.0f} s, "
            f"{len(sess.header.signals)} channels)\n",
            f"[sim] Resampling to {RESAMPLE_HZ} Hz\n",
            f"[sim] Model: {sess.model}; {len(groups)} channel group(s)\n",
            *[
                f"[sim] Predicting on group {g}: {'++'.join(ch)}\n"
                for g, ch in sorted(groups.items())
            ],
            f"[sim] Ensembling {len(groups)} predictions, "
            f"{n_periods} periods of {sess.period_seconds:g} s\n",
            (f"[sim] ERROR: {error}\n" if error else "[sim] Prediction completed\n"),
        ]
        sess.log_sent = sess.log_streamed = 0
        self._advance(sess)
        return JSONResponse({"result": "Prediction started."})

    async def prediction_status(self, request: Request) -> Response:
        sess = self._session(request)
        if isinstance(sess, Response):
            return sess
        self._advance(sess)
        return JSONResponse({"label": sess.status, "error": sess.error})

    async def prediction_log(self, request: Request) -> Response:
        sess = self._session(request)
        if isinstance(sess, Response):
            return sess
        self._advance(sess)
        return JSONResponse({"log": "".join(sess.log_lines[: sess.log_sent])})

    async def prediction_log_stream(self, request: Request) -> Response:
        sess = self._session(request)
        if isinstance(sess, Response):
            return sess
        self._advance(sess)
        delta = "".join(sess.log_lines[sess.log_streamed : sess.log_sent])
        sess.log_streamed = sess.log_sent
        finished = sess.status in ("Completed", "Failed", "Idle")
        return JSONResponse({"log": delta, "finished": finished})

    async def hypnogram(self, request: Request) -> Response:
        sess = self._session(request)
        if isinstance(sess, Response):
            return sess
        self._advance(sess)
        if sess.status != "Completed" or sess.hypnogram is None:
            return _err(404, "No completed prediction in this session.")
        return JSONResponse(
            {
                "hypnogram": sess.hypnogram.tolist(),
                "classes": USLEEP_CLASSES,
                "period_length_sec": sess.period_seconds,
            }
        )

    async def download(self, request: Request) -> Response:
        sess = self._session(request)
        if isinstance(sess, Response):
            return sess
        self._advance(sess)
        what = request.path_params["what"]
        if sess.status != "Completed" or sess.hypnogram is None or sess.probabilities is None:
            return _err(404, "No completed prediction in this session.")
        hyp, per = sess.hypnogram, sess.period_seconds
        names = [USLEEP_CLASSES[str(int(v))] for v in hyp]
        if what == "hypnogram_npy":
            return _npy(hyp.reshape(-1, 1).astype(np.int64))
        if what == "hypnogram_raw_npy":
            return _npy(sess.probabilities.astype(np.float32))
        if what in ("hypnogram_tsv", "hypnogram_txt"):
            sep, head = (
                ("\t", "init_sec\tduration_sec\tstage\n") if what.endswith("tsv") else (",", "")
            )
            lines, start = [head] if head else [], 0
            for i in range(1, len(names) + 1):
                if i == len(names) or names[i] != names[start]:
                    lines.append(f"{start * per:g}{sep}{(i - start) * per:g}{sep}{names[start]}\n")
                    start = i
            return Response("".join(lines), media_type="text/plain")
        return _err(404, f"Unknown download '{what}'.")

    def routes(self) -> list[BaseRoute]:
        s = "/api/v1/sleep_stager/{session}"
        return [
            Route("/api/v1/info/ping", self.ping, methods=["GET"]),
            Route("/api/v1/info/config/{var}", self.config, methods=["GET"]),
            Route("/api/v1/info/model_names", self.model_names, methods=["GET"]),
            Route("/api/v1/sleep_stager/session_names", self.session_names, methods=["GET"]),
            Route(s, self.session_detail, methods=["GET", "DELETE"]),
            Route(s + "/set_model", self.set_model, methods=["POST"]),
            Route(s + "/file", self.file, methods=["GET", "POST", "DELETE"]),
            Route(s + "/configuration_options", self.configuration_options, methods=["GET"]),
            Route(s + "/predict", self.predict, methods=["POST"]),
            Route(s + "/prediction_status", self.prediction_status, methods=["GET"]),
            Route(s + "/prediction_log", self.prediction_log, methods=["GET"]),
            Route(s + "/prediction_log_stream", self.prediction_log_stream, methods=["GET"]),
            Route(s + "/hypnogram", self.hypnogram, methods=["GET"]),
            Route(s + "/download/{what}", self.download, methods=["GET"]),
        ]

    def control_routes(self) -> list[BaseRoute]:
        async def credentials(request: Request) -> Response:
            if request.method == "GET":
                return JSONResponse(
                    {
                        "credentials": [
                            {"value": t, "identity": i, "expires": e}
                            for t, (i, e) in self.tokens.items()
                        ]
                    }
                )
            body = await read_json(request)
            token = self.add_token(
                body.get("value"), body.get("identity", "user@example.test"), body.get("ttl")
            )
            return JSONResponse(
                {"value": token, "identity": self.tokens[token][0]}, status_code=201
            )

        async def revoke(request: Request) -> Response:
            self.tokens.pop(request.path_params["value"], None)
            return JSONResponse({"ok": True})

        return [
            *super().control_routes(),
            Route("/_sim/credentials", credentials, methods=["GET", "POST"]),
            Route("/_sim/credentials/{value}", revoke, methods=["DELETE"]),
        ]


def _npy(array: np.ndarray) -> Response:
    buf = io.BytesIO()
    np.save(buf, array)
    return Response(buf.getvalue(), media_type="application/octet-stream")


def expected_hypnogram(edf_bytes: bytes, data_per_prediction: int = RESAMPLE_HZ * 30) -> list[int]:
    """What the simulator will score for this EDF (U-Sleep classes 0..4): for tests."""
    header = read_header(edf_bytes)
    digest = hashlib.sha256(data_section(edf_bytes, header)).digest()
    n = int(header.duration * RESAMPLE_HZ // data_per_prediction)
    return to_usleep(synthetic_hypnogram(digest, n)).tolist()


def create_app(knobs: Knobs | None = None, *, tokens: list[str] | None = None, **knob_values: Any):
    """The U-Sleep simulator as an ASGI app; ``app.state.sim`` is the USleepSimulator."""
    sim = USleepSimulator(knobs, **knob_values)
    for t in tokens or []:
        sim.add_token(t)
    return sim.build_app()
