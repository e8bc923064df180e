"""U-Sleep webserver API (sleep.ai.ku.dk): PSG scoring as steps a Celery task calls one at a time.

Reference: shared/upstreams.md §2. Speaks the protocol of the official ``usleep-api`` 0.1.3
client (same paths, ``Authorization: Bearer``, multipart field ``PSG``, predict form
``data_per_prediction`` / ``channels-k`` / ``channel_group_idx-k``), but never sleeps: the
task calls ``poll`` and retries itself with a countdown (style.md rule 23). Unlike the
bindings it checks the status of set_model, upload and predict, so a failure surfaces at once.

Flow: ``create_session`` → ``upload_psg`` → ``choose_channel_groups`` → ``predict`` →
``poll`` until not PENDING → ``fetch_hypnogram`` → ``delete_session`` (always).

Stages: the hypnogram's ``classes`` map (``{"0": "W", "1": "N1", ...}``) names each index;
names map to canonical W 0, N1 1, N2 2, N3 3 (R&K N4 too), REM 4, UNKNOWN -1. Unknown names
or indices outside the map are a bad payload.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from itertools import product
from typing import IO, Any

import httpx
from pydantic import Field, model_validator

from .base import (
    CanonicalSession,
    ScoringPoll,
    ScoringState,
    UpstreamModel,
    bad_payload_on_error,
    map_named_hypnogram,
    to_utc,
    validate_as,
)
from .errors import UpstreamBadPayload, UpstreamRejected
from .transport import ProviderClient, build_client

PROVIDER = "usleep"
BASE_URL = "https://sleep.ai.ku.dk:443"
DEFAULT_MODEL = "U-Sleep v1.0"
SAMPLE_RATE_HZ = 128  # U-Sleep resamples every channel to 128 Hz
DATA_PER_PREDICTION = SAMPLE_RATE_HZ * 30  # 3840 samples: one label per 30-s epoch
# Labels that end a prediction without success; others count as still running until the
# log stream says it finished (the bindings' rule: finished and not "completed" = failed).
FAILED_LABELS = frozenset({"failed", "error", "errored", "cancelled", "canceled", "aborted"})
_SESSION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


# --- upstream shapes --------------------------------------------------------------------------


class ModelNames(UpstreamModel):
    models: list[str]


class FileInfo(UpstreamModel):
    channels: list[str]
    inferred_channel_types: list[str]

    @model_validator(mode="after")
    def _parallel(self) -> FileInfo:
        if len(self.channels) != len(self.inferred_channel_types):
            raise ValueError("channels and inferred_channel_types differ in length")
        return self


class ConfigurationOptions(UpstreamModel):
    # Each element is tested with ``type in element``: a list of types (or one type string).
    required_channels: list[list[str] | str]


class PredictionStatus(UpstreamModel):
    label: str


class LogStream(UpstreamModel):
    log: str | None = ""
    finished: bool


class Hypnogram(UpstreamModel):
    hypnogram: list[int] = Field(min_length=1)
    classes: dict[str, str]


# --- pure functions ---------------------------------------------------------------------------


def infer_channel_groups(
    file_info: FileInfo, required: ConfigurationOptions, max_groups: int
) -> list[tuple[str, ...]]:
    """The bindings' rule: every product of channels matching each required type, cut to max."""
    matching = [
        [
            channel
            for channel, kind in zip(
                file_info.channels, file_info.inferred_channel_types, strict=True
            )
            if kind in need
        ]
        for need in required.required_channels
    ]
    return list(product(*matching))[: max(0, max_groups)]


def predict_form(
    channel_groups: list[tuple[str, ...]] | list[list[str]], data_per_prediction: int
) -> dict[str, str]:
    """``k`` runs over every channel of every group, as in usleep-api's ``predict``."""
    form = {"data_per_prediction": str(int(data_per_prediction))}
    k = 0
    for group_idx, group in enumerate(channel_groups):
        for channel in group:
            form[f"channels-{k}"] = str(channel)
            form[f"channel_group_idx-{k}"] = str(group_idx)
            k += 1
    return form


def hypnogram_to_canonical(
    hypnogram: Hypnogram,
    *,
    upstream_id: str,
    upstream_user_id: str,
    start: datetime,
    timezone: str,
    epoch_seconds: int = DATA_PER_PREDICTION // SAMPLE_RATE_HZ,
) -> CanonicalSession:
    """U-Sleep's ``{hypnogram, classes}`` → CanonicalSession starting at the recording start."""
    stages = map_named_hypnogram(hypnogram.hypnogram, hypnogram.classes)
    start = to_utc(start, assume_tz=timezone)  # EDF start times are naive local clock time
    return CanonicalSession(
        provider=PROVIDER,
        upstream_id=upstream_id,
        upstream_user_id=upstream_user_id,
        start=start,
        end=start + timedelta(seconds=epoch_seconds * len(stages)),
        timezone=timezone,
        epoch_seconds=epoch_seconds,
        stages=stages,
        upstream_updated_at=None,
        upstream_stats={"classes": dict(hypnogram.classes)},
    )


def parse_hypnogram(payload: Any, **kwargs: Any) -> CanonicalSession:
    """Validate and map a hypnogram response; raises UpstreamBadPayload only."""
    hypnogram = validate_as(Hypnogram, payload, provider=PROVIDER, what="hypnogram")
    with bad_payload_on_error(payload, provider=PROVIDER, what="hypnogram"):
        return hypnogram_to_canonical(hypnogram, **kwargs)


def _stager(session_name: str, suffix: str = "") -> str:
    if not _SESSION_NAME.match(session_name):
        raise ValueError("session name must be 1-64 of [A-Za-z0-9_-]")
    return f"/api/v1/sleep_stager/{session_name}{suffix}"


# --- client -----------------------------------------------------------------------------------


class USleepClient(ProviderClient):
    provider = PROVIDER

    def __init__(
        self,
        token: str,
        *,
        base_url: str = BASE_URL,
        allow_private: bool = False,
        http: httpx.Client | None = None,
    ):
        # The bindings strip a trailing "/" and join "/api/v1/..." onto it.
        super().__init__(http or build_client(base_url.rstrip("/"), allow_private=allow_private))
        self.http.headers["Authorization"] = f"Bearer {token}"

    # Reference: shared/upstreams.md §2.2 validate_token (GET /api/v1/info/ping, 200 only)
    def ping(self) -> None:
        """Raises UpstreamAuthFailed for a refused token (tokens last 12 h)."""
        self._send("GET", "/api/v1/info/ping")

    # Reference: shared/upstreams.md §2.2 get_model_names
    def model_names(self) -> list[str]:
        return validate_as(
            ModelNames,
            self._json("GET", "/api/v1/info/model_names"),
            provider=PROVIDER,
            what="model names",
        ).models

    # Reference: shared/upstreams.md §2.2 get_config_variable
    def config_variable(self, name: str) -> Any:
        if not re.fullmatch(r"[A-Z0-9_]{1,64}", name):
            raise ValueError("bad config variable name")
        payload = self._json("GET", f"/api/v1/info/config/{name}")
        if not isinstance(payload, dict) or name not in payload:
            raise UpstreamBadPayload("config variable missing", payload=payload, provider=PROVIDER)
        return payload[name]

    # Reference: shared/upstreams.md §2.2 set_model (sessions are created on first use)
    def create_session(self, session_name: str, *, model: str = DEFAULT_MODEL) -> None:
        """Check the model exists, then set it on the (implicitly created) session."""
        if model not in self.model_names():
            raise UpstreamRejected("model not offered by the server", provider=PROVIDER)
        self._send("POST", _stager(session_name, "/set_model"), data={"model": model})

    # Reference: shared/upstreams.md §2.2 upload_file (multipart field PSG)
    def upload_psg(
        self, session_name: str, content: bytes | IO[bytes], *, filename: str = "recording.edf"
    ) -> None:
        self._send(
            "POST",
            _stager(session_name, "/file"),
            files={"PSG": (filename, content, "application/octet-stream")},
        )

    # Reference: shared/upstreams.md §2.2 get_file_info, §2.3 file
    def file_info(self, session_name: str) -> FileInfo:
        return validate_as(
            FileInfo,
            self._json("GET", _stager(session_name, "/file")),
            provider=PROVIDER,
            what="file info",
        )

    # Reference: shared/upstreams.md §2.2 get_configuration_options, §2.3
    def configuration_options(self, session_name: str) -> ConfigurationOptions:
        payload = self._json("GET", _stager(session_name, "/configuration_options"))
        return validate_as(
            ConfigurationOptions, payload, provider=PROVIDER, what="configuration options"
        )

    # Reference: shared/upstreams.md §2.2 quick_predict step 3 (_infer_channel_groups)
    def choose_channel_groups(self, session_name: str) -> list[tuple[str, ...]]:
        """Channel groups for ``predict``, inferred from the uploaded file as the bindings do."""
        info = self.file_info(session_name)
        options = self.configuration_options(session_name)
        max_groups = self.config_variable("MAX_CHANNEL_COMBINATIONS")
        if isinstance(max_groups, bool) or not isinstance(max_groups, int):
            raise UpstreamBadPayload(
                "MAX_CHANNEL_COMBINATIONS is not an int", payload=max_groups, provider=PROVIDER
            )
        groups = infer_channel_groups(info, options, max_groups)
        if not groups:
            raise UpstreamRejected(
                "no channels match the model's required channel types", provider=PROVIDER
            )
        return groups

    # Reference: shared/upstreams.md §2.2 predict
    def predict(
        self,
        session_name: str,
        channel_groups: list[tuple[str, ...]] | list[list[str]],
        *,
        data_per_prediction: int = DATA_PER_PREDICTION,
    ) -> None:
        if not channel_groups:
            raise ValueError("at least one channel group is required")
        self._send(
            "POST",
            _stager(session_name, "/predict"),
            data=predict_form(channel_groups, data_per_prediction),
        )

    # Reference: shared/upstreams.md §2.2 get_status, stream_prediction_log
    def poll(self, session_name: str) -> ScoringPoll:
        """One non-blocking look: COMPLETED, FAILED, or PENDING (ask again later)."""
        label = self._status_label(session_name)
        if label.lower() == "completed":
            return ScoringPoll(ScoringState.COMPLETED, label)
        if label.lower() in FAILED_LABELS:
            return ScoringPoll(ScoringState.FAILED, label)
        stream = validate_as(
            LogStream,
            self._json("GET", _stager(session_name, "/prediction_log_stream")),
            provider=PROVIDER,
            what="log stream",
        )
        if not stream.finished:
            return ScoringPoll(ScoringState.PENDING, label)
        label = self._status_label(session_name)
        state = ScoringState.COMPLETED if label.lower() == "completed" else ScoringState.FAILED
        return ScoringPoll(state, label)

    # Reference: shared/upstreams.md §2.3 prediction_status
    def _status_label(self, session_name: str) -> str:
        payload = self._json("GET", _stager(session_name, "/prediction_status"))
        return validate_as(
            PredictionStatus, payload, provider=PROVIDER, what="prediction status"
        ).label

    # Reference: shared/upstreams.md §2.2 get_prediction_log
    def prediction_log(self, session_name: str) -> str:
        payload = self._json("GET", _stager(session_name, "/prediction_log"))
        if not isinstance(payload, dict) or not isinstance(payload.get("log"), str):
            raise UpstreamBadPayload("prediction log missing", payload=payload, provider=PROVIDER)
        return payload["log"]

    # Reference: shared/upstreams.md §2.2 get_hypnogram, §2.3 hypnogram
    def fetch_hypnogram(
        self,
        session_name: str,
        *,
        start: datetime,
        timezone: str,
        upstream_user_id: str,
        data_per_prediction: int = DATA_PER_PREDICTION,
    ) -> CanonicalSession:
        """The scored night; ``start`` is the recording start from the EDF header.

        A naive ``start`` (EDF headers hold local clock time) is read in ``timezone``.
        """
        if data_per_prediction % SAMPLE_RATE_HZ:
            raise ValueError("data_per_prediction must be a whole number of seconds at 128 Hz")
        payload = self._json("GET", _stager(session_name, "/hypnogram"))
        return parse_hypnogram(
            payload,
            upstream_id=session_name,
            upstream_user_id=upstream_user_id,
            start=start,
            timezone=timezone,
            epoch_seconds=data_per_prediction // SAMPLE_RATE_HZ,
        )

    # Reference: shared/upstreams.md §2.2 delete_session
    def delete_session(self, session_name: str) -> None:
        self._send("DELETE", _stager(session_name))
