"""Grand Challenge REST API: run a sleep-staging algorithm job on an uploaded PSG.

Reference: shared/upstreams.md §3. Speaks the protocol of the official ``gcapi`` 0.15.1
client: ``Authorization: BEARER <token>``, ``Accept: application/json``, the unauthenticated
version gate ``GET {base}gcapi/``, ``{count, next, previous, results}`` pages stepped by
``limit``/``offset``, S3-style multipart uploads (POST ``uploads/``, PATCH
``generate-presigned-urls/`` five parts at a time, PUT each 32 MiB chunk reading its ``ETag``,
PATCH ``complete-multipart-upload/``, PATCH ``abort-multipart-upload/`` on failure), and job
inputs that always carry all eight keys. No step sleeps: the task polls ``poll_job``.

The token is sent only to the API host: presigned chunk URLs and output-file redirects (S3)
get no Authorization header. Every connection, those included, passes the SSRF guard.

Hypnogram output (the algorithm's contract, ours to define; the simulator serves it): the
output socket ``output_slug`` holds either ``{"stages": [int...], "classes": {"0": "W", ...},
"epoch_seconds": 30, "recording_start": "<ISO datetime>"}`` (``hypnogram`` is accepted for
``stages``; ``classes``, ``epoch_seconds`` and ``recording_start`` are optional) or a bare list
of ints in U-Time's classes (0 W, 1 N1, 2 N2, 3 N3, 4 REM), as a JSON value or a JSON file.
The night starts at the caller's ``start`` (the EDF header), else at ``recording_start``;
a naive start (EDF headers hold local clock time) is read in ``timezone``.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import IO, Annotated, Any
from urllib.parse import urljoin, urlsplit

import httpx
from pydantic import AliasChoices, Field

from .base import (
    UTIME_CLASSES,
    CanonicalSession,
    Page,
    ScoringPoll,
    ScoringState,
    UpstreamModel,
    bad_payload_on_error,
    map_named_hypnogram,
    parse_records,
    raw_id,
    to_utc,
    validate_as,
)
from .errors import (
    UpstreamAuthFailed,
    UpstreamBadPayload,
    UpstreamError,
    UpstreamNotFound,
    UpstreamRejected,
    UpstreamUnavailable,
)
from .transport import (
    ProviderClient,
    build_client,
    error_for_status,
    json_or_none,
    parse_json,
    rate_limited,
    send,
)

PROVIDER = "grand_challenge"
BASE_URL = "https://grand-challenge.org/api/v1/"
GCAPI_PROTOCOL_VERSION = "0.15.1"  # the gcapi release whose protocol this module speaks
PAGE_SIZE = 100  # gcapi's iterate_all step; the server's PAGE_SIZE
CHUNK_SIZE = 32 * 1024 * 1024  # gcapi UploadsAPI.chunk_size
PRESIGNED_BATCH = 5  # gcapi UploadsAPI.n_presigned_urls
TERMINAL = {
    "Succeeded": ScoringState.COMPLETED,
    "Failed": ScoringState.FAILED,
    "Cancelled": ScoringState.FAILED,
}
# "Too many active jobs" clears as jobs finish; "too many uploads" as old uploads expire.
ACTIVE_JOBS_RETRY_AFTER = 300.0
UPLOADS_RETRY_AFTER = 3600.0
MAX_REDIRECTS = 3


# --- upstream shapes --------------------------------------------------------------------------


class VersionInfo(UpstreamModel):
    latest_version: str
    lowest_supported_version: str


class ComponentInterface(UpstreamModel):
    pk: int
    slug: str
    kind: str
    super_kind: str
    relative_path: str
    title: str | None = None


class InterfaceSet(UpstreamModel):
    inputs: list[ComponentInterface]
    outputs: list[ComponentInterface]


class Algorithm(UpstreamModel):
    pk: str
    api_url: str
    slug: str
    title: str | None = None
    interfaces: list[InterfaceSet]


class ResultsPage(UpstreamModel):
    count: int | None = None
    next: str | None = None
    previous: str | None = None
    results: list[Any]


class UserUpload(UpstreamModel):
    pk: str
    filename: str
    s3_upload_id: str
    status: str
    api_url: str
    key: str | None = None


class PresignedUrls(UpstreamModel):
    presigned_urls: dict[str, str]


class JobPost(UpstreamModel):
    pk: str
    status: str


class SocketValue(UpstreamModel):
    interface: ComponentInterface
    value: Any = None
    file: str | None = None
    image: str | None = None


class Job(UpstreamModel):
    pk: str
    api_url: str | None = None
    status: str
    inputs: list[SocketValue] = []
    outputs: list[SocketValue] = []

    @property
    def state(self) -> ScoringState:
        return TERMINAL.get(self.status, ScoringState.PENDING)


class HypnogramValue(UpstreamModel):
    stages: list[int] = Field(min_length=1, validation_alias=AliasChoices("stages", "hypnogram"))
    classes: dict[str, str] = UTIME_CLASSES
    epoch_seconds: int = Field(30, gt=0, le=300)
    # EDF headers carry local clock time: a naive value is read in the participant's timezone.
    recording_start: Annotated[datetime, Field(strict=False)] | None = None


# --- requests we build ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JobInput:
    """One job input; gcapi always sends all eight keys, nulls included."""

    interface: str
    value: Any = None
    file: str | None = None
    image: str | None = None
    upload_session: str | None = None
    user_upload: str | None = None
    user_uploads: list[str] | None = None
    image_name: str | None = None

    def to_json(self) -> dict:
        sources = [
            k
            for k in ("value", "file", "image", "upload_session", "user_upload", "user_uploads")
            if getattr(self, k) is not None
        ]
        if len(sources) > 1:
            raise ValueError("a job input takes one source (user_uploads may add image_name)")
        if self.image_name is not None and self.user_uploads is None:
            raise ValueError("image_name goes with user_uploads only")
        return asdict(self)


# --- pure functions ---------------------------------------------------------------------------


def version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.strip().split("."):
        match = re.match(r"\d+", piece)
        if not match:
            break
        parts.append(int(match.group()))
    if not parts:
        raise ValueError("not a version")
    return tuple(parts)


def matching_interface(algorithm: Algorithm, input_slugs: set[str]) -> InterfaceSet:
    """The interface set whose inputs are exactly ``input_slugs`` (gcapi's client-side check)."""
    for interface in algorithm.interfaces:
        if {ci.slug for ci in interface.inputs} == input_slugs:
            return interface
    raise UpstreamRejected("inputs match none of the algorithm's interfaces", provider=PROVIDER)


def hypnogram_from_output(
    value: Any,
    *,
    upstream_id: str,
    upstream_user_id: str,
    start: datetime | None,
    timezone: str,
) -> CanonicalSession:
    """An algorithm's hypnogram output (see module docstring) → CanonicalSession."""
    data = {"stages": value} if isinstance(value, list) else value
    hypnogram = validate_as(HypnogramValue, data, provider=PROVIDER, what="hypnogram output")
    with bad_payload_on_error(value, provider=PROVIDER, what="hypnogram output"):
        stages = map_named_hypnogram(hypnogram.stages, hypnogram.classes)
        start = start or hypnogram.recording_start
        if start is None:
            raise ValueError("no recording start: pass start or send recording_start")
        start = to_utc(start, assume_tz=timezone)
        return CanonicalSession(
            provider=PROVIDER,
            upstream_id=upstream_id,
            upstream_user_id=upstream_user_id,
            start=start,
            end=start + timedelta(seconds=hypnogram.epoch_seconds * len(stages)),
            timezone=timezone,
            epoch_seconds=hypnogram.epoch_seconds,
            stages=stages,
            upstream_updated_at=None,
            upstream_stats={"classes": dict(hypnogram.classes)},
        )


def gc_error(response: httpx.Response) -> UpstreamError | None:
    """Grand Challenge's statuses; 400 bodies are DRF ``non_field_errors`` or field errors."""
    status = response.status_code
    if 200 <= status < 300:
        return None
    body = json_or_none(response)
    text = " ".join(_messages(body)).lower()
    if status == 400:
        if "too many active jobs" in text:
            return rate_limited(response, "too many active jobs", default=ACTIVE_JOBS_RETRY_AFTER, provider=PROVIDER)
        if "too many uploads" in text:
            return rate_limited(response, "too many uploads", default=UPLOADS_RETRY_AFTER, provider=PROVIDER)
        if "not ready to be used" in text:
            return UpstreamUnavailable(
                "algorithm image not ready", provider=PROVIDER, status=status
            )
        if "credits" in text:
            return UpstreamRejected("out of algorithm credits", provider=PROVIDER, status=status)
        if "already exists" in text:
            return UpstreamRejected(
                "a result for these inputs already exists", provider=PROVIDER, status=status
            )
        return UpstreamRejected("request rejected", provider=PROVIDER, status=status)
    if status == 403 and "upload limit" in text:
        return UpstreamRejected("upload limit reached", provider=PROVIDER, status=status)
    if status in (401, 403):
        return UpstreamAuthFailed(
            "token refused" if status == 401 else "forbidden", provider=PROVIDER, status=status
        )
    return error_for_status(response, provider=PROVIDER)


def _messages(body: Any) -> list[str]:
    """Every string in a DRF error body (``detail``, ``non_field_errors``, field lists)."""
    if isinstance(body, str):
        return [body]
    if isinstance(body, list):
        return [m for item in body for m in _messages(item)]
    if isinstance(body, dict):
        return [m for item in body.values() for m in _messages(item)]
    return []


# --- client -----------------------------------------------------------------------------------


class GrandChallengeClient(ProviderClient):
    provider = PROVIDER

    def __init__(
        self,
        token: str,
        *,
        base_url: str = BASE_URL,
        allow_private: bool = False,
        chunk_size: int = CHUNK_SIZE,
        verify: Any = True,
        http: httpx.Client | None = None,
    ):
        """``verify`` takes a CA bundle path for the simulator's self-signed certificate."""
        base_url = base_url if base_url.endswith("/") else base_url + "/"
        # gcapi refuses non-https; the simulators may serve http on loopback (demo only).
        if urlsplit(base_url).scheme != "https" and not allow_private:
            raise ValueError("Grand Challenge base URL must be https")
        words = " ".join(token.split()).split(" ")
        if not token.strip() or len(words) > 2:
            raise ValueError("invalid token format")
        self._auth = {"Authorization": f"BEARER {words[-1]}"}  # gcapi keeps the last word
        self.base_url = base_url
        self.chunk_size = chunk_size
        super().__init__(http or build_client(base_url, allow_private=allow_private, verify=verify))
        self.http.headers["Accept"] = "application/json"

    def _error_for(self, response: httpx.Response) -> UpstreamError | None:
        return gc_error(response)

    def _api(self, method: str, path: str, **kwargs: Any) -> Any:
        """A call to the API host with the token; relative paths join the base URL."""
        url = urljoin(self.base_url, path)
        if urlsplit(url).netloc != urlsplit(self.base_url).netloc:
            raise UpstreamBadPayload("URL points outside the API host", provider=PROVIDER)
        headers = {**self._auth, **kwargs.pop("headers", {})}
        return self._json(method, url, headers=headers, **kwargs)

    # Reference: shared/upstreams.md §3.1 "Version gate"
    def check_version(self) -> VersionInfo:
        """Raises UpstreamRejected when our protocol version is below the lowest supported."""
        payload = self._json("GET", urljoin(self.base_url, "gcapi/"))
        info = validate_as(VersionInfo, payload, provider=PROVIDER, what="version gate")
        try:
            lowest = version_tuple(info.lowest_supported_version)
        except ValueError:
            raise UpstreamBadPayload(
                "version gate: bad version", payload=payload, provider=PROVIDER
            ) from None
        if version_tuple(GCAPI_PROTOCOL_VERSION) < lowest:
            raise UpstreamRejected("client protocol version no longer supported", provider=PROVIDER)
        return info

    # Reference: shared/upstreams.md §3.2 pagination
    def iter_pages(
        self, path: str, params: dict | None = None, *, page_size: int = PAGE_SIZE
    ) -> Iterator[list[Any]]:
        """Raw ``results`` pages by limit/offset; stops on an empty or short page."""
        offset = 0
        while True:
            payload = self._api(
                "GET", path, params={**(params or {}), "offset": offset, "limit": page_size}
            )
            page = validate_as(ResultsPage, payload, provider=PROVIDER, what="page")
            if page.results:
                yield page.results
            if len(page.results) < page_size:
                return
            offset += page_size

    def _one(self, path: str, params: dict, *, what: str) -> Any:
        payload = self._api("GET", path, params={**params, "offset": 0, "limit": PAGE_SIZE})
        results = validate_as(ResultsPage, payload, provider=PROVIDER, what=what).results
        if not results:
            raise UpstreamNotFound(f"{what} not found", provider=PROVIDER)
        if len(results) > 1:
            raise UpstreamBadPayload(
                f"{what}: more than one match", payload=payload, provider=PROVIDER
            )
        return results[0]

    # Reference: shared/upstreams.md §3.3 algorithms.detail(slug=), §3.5 step 1
    def get_algorithm(self, slug: str) -> Algorithm:
        return validate_as(
            Algorithm,
            self._one("algorithms/", {"slug": slug}, what="algorithm"),
            provider=PROVIDER,
            what="algorithm",
        )

    # Reference: shared/upstreams.md §3.3 interfaces.detail(slug=), §3.5 step 3
    def get_interface(self, slug: str) -> ComponentInterface:
        raw = self._one("components/interfaces/", {"slug": slug}, what="interface")
        return validate_as(ComponentInterface, raw, provider=PROVIDER, what="interface")

    # Reference: shared/upstreams.md §3.3 uploads.*, §3.5 step 4
    def upload_file(self, filename: str, content: bytes | IO[bytes]) -> UserUpload:
        """S3-style multipart upload; aborts the upload on any failure and re-raises."""
        name = filename.replace("\\", "/").rsplit("/", 1)[-1]
        if not name:
            raise ValueError("filename required")
        stream = io.BytesIO(content) if isinstance(content, (bytes, bytearray)) else content
        upload = validate_as(
            UserUpload,
            self._api("POST", "uploads/", json={"filename": name}),
            provider=PROVIDER,
            what="upload",
        )
        prefix = f"uploads/{upload.pk}/{upload.s3_upload_id}/"
        try:
            parts = self._put_parts(stream, prefix)
            payload = self._api(
                "PATCH", prefix + "complete-multipart-upload/", json={"parts": parts}
            )
        except Exception:
            try:
                self._api("PATCH", prefix + "abort-multipart-upload/")
            except UpstreamError:
                pass  # the original error matters; an unfinished upload expires upstream
            raise
        return validate_as(UserUpload, payload, provider=PROVIDER, what="completed upload")

    def _put_parts(self, stream: IO[bytes], prefix: str) -> list[dict]:
        urls: dict[str, str] = {}
        parts = []
        part_number = 1  # S3 parts are 1-indexed
        while chunk := stream.read(self.chunk_size):
            if str(part_number) not in urls:
                numbers = list(range(part_number, part_number + PRESIGNED_BATCH))
                payload = self._api(
                    "PATCH", prefix + "generate-presigned-urls/", json={"part_numbers": numbers}
                )
                urls.update(
                    validate_as(
                        PresignedUrls, payload, provider=PROVIDER, what="presigned urls"
                    ).presigned_urls
                )
                if str(part_number) not in urls:
                    raise UpstreamBadPayload(
                        "presigned url missing", payload=payload, provider=PROVIDER
                    )
            # No token here: the presigned URL is the credential, and it points at storage.
            response = send(
                self.http, "PUT", urls[str(part_number)], provider=PROVIDER, content=chunk
            )
            error = error_for_status(response, provider=PROVIDER)
            if error is not None:
                raise error
            etag = response.headers.get("etag")
            if not etag:
                raise UpstreamBadPayload("chunk upload answered without an ETag", provider=PROVIDER)
            parts.append({"ETag": etag, "PartNumber": part_number})
            part_number += 1
        return parts

    # Reference: shared/upstreams.md §3.5 step 5 (POST algorithms/jobs/)
    def start_job(self, algorithm: Algorithm, inputs: list[JobInput]) -> JobPost:
        matching_interface(algorithm, {i.interface for i in inputs})
        body = {"algorithm": algorithm.api_url, "inputs": [i.to_json() for i in inputs]}
        return validate_as(
            JobPost, self._api("POST", "algorithms/jobs/", json=body), provider=PROVIDER, what="job"
        )

    # Reference: shared/upstreams.md §3.5 (start_algorithm_job, whole flow)
    def submit_psg(
        self,
        algorithm_slug: str,
        filename: str,
        content: bytes | IO[bytes],
        *,
        file_input: str | None = None,
        values: dict[str, Any] | None = None,
    ) -> JobPost:
        """Upload the EDF to the algorithm's File input and start the job (§3.5 end to end).

        ``file_input`` names the socket for the EDF (default: the one File input of the
        interface that the given ``values`` complete).
        """
        values = values or {}
        algorithm = self.get_algorithm(algorithm_slug)
        if file_input is None:
            candidates = [
                ci.slug
                for interface in algorithm.interfaces
                for ci in interface.inputs
                if ci.super_kind == "File"
                and {c.slug for c in interface.inputs} == set(values) | {ci.slug}
            ]
            if len(candidates) != 1:
                raise UpstreamRejected(
                    "cannot tell which input takes the recording", provider=PROVIDER
                )
            file_input = candidates[0]
        matching_interface(algorithm, set(values) | {file_input})
        if self.get_interface(file_input).super_kind != "File":
            raise UpstreamRejected("the recording input is not a File socket", provider=PROVIDER)
        upload = self.upload_file(filename, content)
        inputs = [JobInput(file_input, user_upload=upload.api_url)]
        inputs += [JobInput(slug, value=value) for slug, value in values.items()]
        return self.start_job(algorithm, inputs)

    # Reference: shared/upstreams.md §3.5 step 6 (GET algorithms/jobs/{pk}/)
    def get_job(self, pk: str) -> Job:
        if not re.fullmatch(r"[0-9a-fA-F-]{1,64}", pk):
            raise ValueError("bad job pk")
        return validate_as(
            Job, self._api("GET", f"algorithms/jobs/{pk}/"), provider=PROVIDER, what="job"
        )

    # Reference: shared/upstreams.md §3.5 "Job status labels"
    def poll_job(self, pk: str) -> ScoringPoll:
        """One non-blocking look; terminal states are Succeeded, Failed and Cancelled."""
        job = self.get_job(pk)
        return ScoringPoll(job.state, job.status)

    # Reference: shared/upstreams.md §3.3 algorithm_jobs.iterate_all
    def iter_jobs(self, *, algorithm_pk: str | None = None) -> Iterator[Page[Job]]:
        params = {"algorithm_image__algorithm": algorithm_pk} if algorithm_pk else {}
        for results in self.iter_pages("algorithms/jobs/", params):
            good, bad = parse_records(
                results, Job.model_validate, provider=PROVIDER, id_of=lambda raw: raw_id(raw, "pk")
            )
            yield Page(tuple(good), tuple(bad), None, len(results) == PAGE_SIZE)

    # Reference: shared/upstreams.md §3.4 HyperlinkedJob outputs
    def job_hypnogram(
        self,
        job: Job,
        *,
        output_slug: str,
        timezone: str,
        upstream_user_id: str,
        start: datetime | None = None,
    ) -> CanonicalSession:
        """The hypnogram of a Succeeded job (value or JSON file output) as a CanonicalSession.

        ``start`` is the recording start from the EDF header; None falls back to the output's
        ``recording_start``.
        """
        if job.state is not ScoringState.COMPLETED:
            raise UpstreamRejected("job has not succeeded", provider=PROVIDER)
        output = next((o for o in job.outputs if o.interface.slug == output_slug), None)
        if output is None:
            raise UpstreamBadPayload(
                "hypnogram output missing", payload=job.model_dump(mode="json"), provider=PROVIDER
            )
        value = output.value
        if value is None and output.file:
            value = self._download_json(output.file)
        if value is None:
            raise UpstreamBadPayload(
                "hypnogram output is empty", payload=job.model_dump(mode="json"), provider=PROVIDER
            )
        return hypnogram_from_output(
            value,
            upstream_id=job.pk,
            upstream_user_id=upstream_user_id,
            start=start,
            timezone=timezone,
        )

    # Reference: shared/upstreams.md §3.3 images.download (file URLs, redirects to storage)
    def _download_json(self, url: str) -> Any:
        """GET an output file; the token goes only to the API host; redirects are re-checked."""
        api_netloc = urlsplit(self.base_url).netloc
        for _ in range(MAX_REDIRECTS + 1):
            same_host = urlsplit(url).netloc == api_netloc
            headers = self._auth if same_host else {}
            response = send(self.http, "GET", url, provider=PROVIDER, headers=headers)
            if response.status_code in (301, 302, 303, 307, 308) and "location" in response.headers:
                url = urljoin(url, response.headers["location"])
                continue
            error = gc_error(response)
            if error is not None:
                raise error
            return parse_json(response, provider=PROVIDER)
        raise UpstreamRejected("too many redirects", provider=PROVIDER)
