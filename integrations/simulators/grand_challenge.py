"""Grand Challenge REST API simulator (shared/upstreams.md §3), enough of it for gcapi's
``Client(...)`` and ``start_algorithm_job(...)`` to run unchanged against it.

- Serve it over https (``server.py`` makes a self-signed certificate; clients use
  ``verify=False``): gcapi refuses any other scheme, and every absolute URL handed out
  (``api_url``, file links, presigned URLs) points at the host the request came to.
- ``Authorization: Bearer <token>`` (keyword case-insensitive, as DRF); 401
  ``{"detail": "Invalid token."}``. The version gate ``GET /api/v1/gcapi/`` needs no auth.
- Every JSON answer has ``Content-Type: application/json`` exactly (no charset), or gcapi
  would not parse it.
- DRF limit/offset pagination ``{"count", "next", "previous", "results"}``, page size 100,
  ``max_limit`` 1000; unknown filter parameters are ignored (so ``by_input_image``'s
  ``?image=`` returns every visible job, as the real server does).
- Uploads are S3-style multipart: ``POST uploads/`` -> ``PATCH .../generate-presigned-urls/``
  -> ``PUT`` each part to its presigned URL (answers an ``ETag``) -> ``PATCH
  .../complete-multipart-upload/``.
- Jobs start ``Validating inputs`` and move through Queued, Provisioning, Provisioned,
  Executing, Executed, Parsing Outputs to ``Succeeded`` over ``job_seconds`` (knob), or end
  ``Failed`` when the input is not an EDF file or ``job_failure_rate`` says so.

One algorithm is preloaded (slug ``sleep-staging``): input socket ``psg-edf-file``
(super kind File; the kind label "EDF file" is invented, Grand Challenge has no EDF kind),
output socket ``hypnogram`` (kind Anything, super kind Value) whose value is
``{"epoch_seconds", "classes", "stages", "recording_start"}`` with stages in the U-Sleep
classes 0 W .. 4 REM, derived from the uploaded EDF exactly as the U-Sleep simulator does.

Control: ``POST /_sim/credentials {"value"?, "username"?}`` provisions a token.
"""

from __future__ import annotations

import functools

import hashlib
import hmac
import secrets
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from .edf import EdfError, read_header
from .harness import JSONResponse, Knobs, Simulator, read_json
from .nights import USLEEP_CLASSES
from .usleep import expected_hypnogram

API = "/api/v1/"
PAGE_SIZE = 100
MAX_LIMIT = 1000
MAX_ACTIVE_JOBS = 16
MAX_UPLOADS = 2000
ALGORITHM_SLUG = "sleep-staging"
STATUS_STEPS = (  # (label, fraction of job_seconds elapsed)
    ("Validating inputs", 0.0),
    ("Queued", 0.1),
    ("Provisioning", 0.2),
    ("Provisioned", 0.3),
    ("Executing", 0.4),
    ("Executed", 0.8),
    ("Parsing Outputs", 0.9),
)
TERMINAL = {"Succeeded", "Failed", "Cancelled"}
SOURCES = ("value", "file", "image", "upload_session", "user_upload", "user_uploads")


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(data, status_code=status, headers=headers)


def _detail(status: int, message: str) -> JSONResponse:
    return _json({"detail": message}, status)


def _drf_time(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    return f"P0DT{s // 3600:02d}H{s % 3600 // 60:02d}M{s % 60:02d}S"


def _interface(
    pk: int, title: str, slug: str, kind: str, super_kind: str, relative_path: str, description: str
) -> dict[str, Any]:
    return {
        "title": title,
        "description": description,
        "slug": slug,
        "kind": kind,
        "pk": pk,
        "default_value": None,
        "super_kind": super_kind,
        "relative_path": relative_path,
        "overlay_segments": [],
        "look_up_table": None,
    }


PSG_SOCKET = _interface(
    1,
    "PSG EDF file",
    "psg-edf-file",
    "EDF file",
    "File",
    "psg.edf",
    "A polysomnography recording in EDF.",
)
HYPNOGRAM_SOCKET = _interface(
    2,
    "Hypnogram",
    "hypnogram",
    "Anything",
    "Value",
    "hypnogram.json",
    "Per-epoch sleep stages: 0 W, 1 N1, 2 N2, 3 N3, 4 REM.",
)
INTERFACES = [PSG_SOCKET, HYPNOGRAM_SOCKET]


def _authenticated(handler):
    """Resolve the caller from the BEARER token first; answer 401 as the real API does."""

    @functools.wraps(handler)
    async def wrapper(self, request: Request) -> Response:
        user = self._user(request)
        if isinstance(user, Response):
            return user
        return await handler(self, request, user)

    return wrapper


@dataclass
class Upload:
    pk: str
    creator: int
    filename: str
    s3_upload_id: str
    created: float
    status: str = "Initialized"
    parts: dict[int, tuple[bytes, str, float]] = field(
        default_factory=dict
    )  # n -> (bytes, etag, time)
    content: bytes | None = None


@dataclass
class Job:
    pk: str
    creator: int
    created: float
    inputs: list[dict[str, Any]]  # {"socket": CI, "pk": civ pk, "value", "file_bytes"}
    outcome: str  # "Succeeded" or "Failed"
    output_value: Any = None
    error_message: str = ""
    cancelled: bool = False


class GrandChallengeSimulator(Simulator):
    provider = "grand_challenge"

    def __init__(self, knobs: Knobs | None = None, **knob_values: Any) -> None:
        super().__init__(knobs, **knob_values)
        self.tokens: dict[str, tuple[int, str]] = {}  # token -> (user pk, username)
        self.uploads: dict[str, Upload] = {}
        self.jobs: dict[str, Job] = {}
        self._civ = 100
        self._secret = secrets.token_bytes(16)
        self.algorithm_pk = str(uuid.UUID(int=0x5_1EE9))
        self.image_pk = str(uuid.UUID(int=0x1_3A6E))

    # ------------------------------------------------------------------ hooks

    def credential_of(self, headers: Any) -> str | None:
        parts = headers.get("authorization", "").split()
        return parts[-1] if parts else None

    def error_response(self, status: int, message: str, *, code: str = "") -> Response:
        return _detail(status, message)

    def rate_limited_response(self, retry_after: str) -> Response:
        secs = retry_after if retry_after.replace(".", "", 1).isdigit() else "a few"
        return _json(
            {"detail": f"Request was throttled. Expected available in {secs} seconds."},
            429,
            headers={"Retry-After": retry_after},
        )

    def reset_data(self) -> None:
        self.tokens.clear()
        self.uploads.clear()
        self.jobs.clear()

    def add_token(self, value: str | None = None, username: str = "sleep-platform") -> str:
        token = value or secrets.token_hex(32)  # knox tokens are 64 hex characters
        pks = {pk for pk, _ in self.tokens.values()}
        existing = next((pk for pk, name in self.tokens.values() if name == username), None)
        self.tokens[token] = (existing or (max(pks, default=1000) + 1), username)
        return token

    def truth(self, request: Request) -> Any:
        return {
            "provider": self.provider,
            "jobs": [
                {
                    "pk": j.pk,
                    "status": self._status(j),
                    "outcome": j.outcome,
                    "output": j.output_value,
                }
                for j in self.jobs.values()
            ],
        }

    # ------------------------------------------------------------------ rendering

    @staticmethod
    def _base(request: Request) -> str:
        return str(request.base_url).rstrip("/")

    def _algorithm(self, request: Request) -> dict[str, Any]:
        b = self._base(request)
        return {
            "api_url": f"{b}{API}algorithms/{self.algorithm_pk}/",
            "url": f"{b}/algorithms/{ALGORITHM_SLUG}/",
            "description": "Automatic sleep staging of a PSG recording (simulated).",
            "pk": self.algorithm_pk,
            "title": "Sleep Staging",
            "logo": f"{b}/media/logos/sleep-staging.png",
            "slug": ALGORITHM_SLUG,
            "average_duration": 62.0,
            "interfaces": [{"inputs": [PSG_SOCKET], "outputs": [HYPNOGRAM_SOCKET]}],
        }

    def _image(self, request: Request) -> dict[str, Any]:
        b = self._base(request)
        return {
            "pk": self.image_pk,
            "url": f"{b}/algorithms/{ALGORITHM_SLUG}/container-images/{self.image_pk}/",
            "api_url": f"{b}{API}algorithms/images/{self.image_pk}/",
            "algorithm": f"{b}{API}algorithms/{self.algorithm_pk}/",
            "created": "2025-01-01T00:00:00Z",
            "import_status": "Active",
            "image": f"{b}/media/docker/images/algorithms/{self.image_pk}/image.tar.gz",
        }

    def _upload(self, request: Request, up: Upload) -> dict[str, Any]:
        return {
            "pk": up.pk,
            "created": _drf_time(up.created),
            "filename": up.filename,
            "key": f"uploads/{up.creator}/{up.pk}",
            "s3_upload_id": up.s3_upload_id,
            "status": up.status,
            "api_url": f"{self._base(request)}{API}uploads/{up.pk}/",
        }

    def _status(self, job: Job) -> str:
        if job.cancelled:
            return "Cancelled"
        secs = self.knobs.job_seconds
        frac = 1.0 if secs <= 0 else (time.time() - job.created) / secs
        if frac >= 1.0:
            return job.outcome
        label = STATUS_STEPS[0][0]
        for name, at in STATUS_STEPS:
            if frac >= at:
                label = name
        return label

    def _job(self, request: Request, job: Job) -> dict[str, Any]:
        b = self._base(request)
        status = self._status(job)
        inputs = [
            {
                "interface": i["socket"],
                "socket": i["socket"],
                "value": i.get("value"),
                "file": f"{b}/media/components/componentinterfacevalue/{i['pk']}/{i['socket']['relative_path']}"  # noqa: E501
                if i.get("file_bytes") is not None
                else None,
                "image": None,
                "pk": i["pk"],
            }
            for i in job.inputs
        ]
        outputs = []
        if status == "Succeeded":
            outputs = [
                {
                    "interface": HYPNOGRAM_SOCKET,
                    "socket": HYPNOGRAM_SOCKET,
                    "value": job.output_value,
                    "file": None,
                    "image": None,
                    "pk": job.inputs[0]["pk"] + 1,
                }
            ]
        done = status in TERMINAL
        return {
            "pk": job.pk,
            "url": f"{b}/algorithms/{ALGORITHM_SLUG}/jobs/{job.pk}/",
            "api_url": f"{b}{API}algorithms/jobs/{job.pk}/",
            "algorithm_image": f"{b}{API}algorithms/images/{self.image_pk}/",
            "inputs": inputs,
            "outputs": outputs,
            "status": status,
            "hanging_protocol": None,
            "optional_hanging_protocols": [],
            "view_content": {},
            "exec_duration": _duration(max(self.knobs.job_seconds * 0.4, 1))
            if done and not job.cancelled
            else None,
            "invoke_duration": None,
            "algorithm": f"{b}{API}algorithms/{self.algorithm_pk}/",
            "created": _drf_time(job.created),
            "error_message": job.error_message if status == "Failed" else "",
        }

    def _page(self, request: Request, items: list[Any]) -> Response:
        q = request.query_params
        try:
            limit = min(int(q.get("limit", PAGE_SIZE)), MAX_LIMIT)
            offset = max(int(q.get("offset", 0)), 0)
        except ValueError:
            limit, offset = PAGE_SIZE, 0
        limit = self.cap_limit(max(limit, 1))
        page = items[offset : offset + limit]
        url = str(request.url).split("?")[0]
        rest = {k: v for k, v in q.items() if k not in ("limit", "offset")}

        def link(off: int) -> str:
            return f"{url}?{urlencode({**rest, 'limit': limit, 'offset': off})}"

        return _json(
            {
                "count": len(items),
                "next": link(offset + limit) if offset + limit < len(items) else None,
                "previous": link(max(offset - limit, 0)) if offset > 0 else None,
                "results": page,
            }
        )

    # ------------------------------------------------------------------ auth

    def _user(self, request: Request) -> int | Response:
        parts = request.headers.get("authorization", "").split()
        if not parts:
            return _detail(401, "Authentication credentials were not provided.")
        if len(parts) != 2 or parts[0].lower() != "bearer":
            return _detail(401, "Invalid token header. No credentials provided.")
        entry = self.tokens.get(parts[1])
        if entry is None:
            return _detail(401, "Invalid token.")
        return entry[0]

    # ------------------------------------------------------------------ endpoints

    async def version(self, request: Request) -> Response:
        return _json(
            {
                "latest_version": self.knobs.gcapi_latest_version,
                "lowest_supported_version": self.knobs.gcapi_lowest_supported_version,
            }
        )

    @_authenticated
    async def algorithms(self, request: Request, user: int) -> Response:
        algos = [self._algorithm(request)]
        slug = request.query_params.get("slug")
        if slug is not None:
            algos = [a for a in algos if a["slug"] == slug]
        return self._page(request, algos)

    @_authenticated
    async def algorithm_detail(self, request: Request, user: int) -> Response:
        if request.path_params["pk"] != self.algorithm_pk:
            return _detail(404, "No Algorithm matches the given query.")
        return _json(self._algorithm(request))

    @_authenticated
    async def images(self, request: Request, user: int) -> Response:
        items = [self._image(request)]
        if request.query_params.get("algorithm") not in (None, self.algorithm_pk):
            items = []
        return self._page(request, items)

    @_authenticated
    async def image_detail(self, request: Request, user: int) -> Response:
        if request.path_params["pk"] != self.image_pk:
            return _detail(404, "No AlgorithmImage matches the given query.")
        return _json(self._image(request))

    @_authenticated
    async def interfaces(self, request: Request, user: int) -> Response:
        items = INTERFACES
        slug = request.query_params.get("slug")
        if slug is not None:
            items = [i for i in items if i["slug"] == slug]
        return self._page(request, items)

    @_authenticated
    async def interface_detail(self, request: Request, user: int) -> Response:
        for i in INTERFACES:
            if str(i["pk"]) == request.path_params["pk"]:
                return _json(i)
        return _detail(404, "No ComponentInterface matches the given query.")

    # uploads ------------------------------------------------------------

    def _own_upload(self, request: Request, user: int) -> Upload | Response:
        up = self.uploads.get(request.path_params["pk"])
        if up is None or up.creator != user:
            return _detail(404, "Not found.")
        s3 = request.path_params.get("s3_upload_id")
        if s3 is not None and s3 != up.s3_upload_id:
            return _detail(404, "Not found.")
        return up

    @_authenticated
    async def uploads_list(self, request: Request, user: int) -> Response:
        if request.method == "GET":
            items = [self._upload(request, u) for u in self.uploads.values() if u.creator == user]
            return self._page(request, items)
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        filename = body.get("filename") if isinstance(body, dict) else None
        if not isinstance(filename, str) or not filename or "/" in filename:
            return _json({"filename": ["This field is required."]}, 400)
        if sum(1 for u in self.uploads.values() if u.creator == user) >= MAX_UPLOADS:
            return _json(
                {
                    "non_field_errors": [
                        "You have created too many uploads. Please try again later."
                    ]
                },
                400,
            )
        up = Upload(
            pk=str(uuid.uuid4()),
            creator=user,
            filename=filename,
            s3_upload_id=secrets.token_urlsafe(24),
            created=time.time(),
        )
        self.uploads[up.pk] = up
        return _json(self._upload(request, up), 201)

    @_authenticated
    async def upload_detail(self, request: Request, user: int) -> Response:
        up = self._own_upload(request, user)
        if isinstance(up, Response):
            return up
        return _json(self._upload(request, up))

    def _signature(self, pk: str, s3: str, part: int) -> str:
        return hmac.new(self._secret, f"{pk}:{s3}:{part}".encode(), hashlib.sha256).hexdigest()

    @_authenticated
    async def presign(self, request: Request, user: int) -> Response:
        up = self._own_upload(request, user)
        if isinstance(up, Response):
            return up
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        numbers = body.get("part_numbers") if isinstance(body, dict) else None
        if not isinstance(numbers, list) or not all(
            isinstance(n, int) and 1 <= n <= 10000 for n in numbers
        ):
            return _json(
                {"part_numbers": ["A list of integers between 1 and 10000 is required."]}, 400
            )
        if up.status != "Initialized":
            return _json({"non_field_errors": ["Upload is not in the Initialized state."]}, 400)
        b = self._base(request)
        urls = {
            str(n): f"{b}/s3/uploads/{up.creator}/{up.pk}?"
            + urlencode(
                {
                    "partNumber": n,
                    "uploadId": up.s3_upload_id,
                    "X-Amz-Signature": self._signature(up.pk, up.s3_upload_id, n),
                }
            )
            for n in numbers
        }
        return _json({**self._upload(request, up), "presigned_urls": urls})

    async def s3_put(self, request: Request) -> Response:
        q = request.query_params
        up = self.uploads.get(request.path_params["pk"])
        try:
            part = int(q.get("partNumber", "0"))
        except ValueError:
            part = 0
        if (
            up is None
            or q.get("uploadId") != up.s3_upload_id
            or part < 1
            or not hmac.compare_digest(
                q.get("X-Amz-Signature", ""), self._signature(up.pk, up.s3_upload_id, part)
            )
        ):
            return Response(
                "<Error><Code>AccessDenied</Code></Error>",
                status_code=403,
                media_type="application/xml",
            )
        if up.status != "Initialized":
            return Response(
                "<Error><Code>NoSuchUpload</Code></Error>",
                status_code=404,
                media_type="application/xml",
            )
        data = await request.body()
        etag = '"' + hashlib.md5(data, usedforsecurity=False).hexdigest() + '"'
        up.parts[part] = (data, etag, time.time())
        return Response(b"", status_code=200, headers={"ETag": etag})

    @_authenticated
    async def complete(self, request: Request, user: int) -> Response:
        up = self._own_upload(request, user)
        if isinstance(up, Response):
            return up
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        parts = body.get("parts") if isinstance(body, dict) else None
        if not isinstance(parts, list) or not parts:
            return _json({"parts": ["This field is required."]}, 400)
        if up.status != "Initialized":
            return _json({"non_field_errors": ["Upload is not in the Initialized state."]}, 400)
        chunks = []
        for p in sorted(parts, key=lambda p: p.get("PartNumber", 0) if isinstance(p, dict) else 0):
            if not isinstance(p, dict) or p.get("PartNumber") not in up.parts:
                return _json({"parts": ["Unknown part."]}, 400)
            data, etag, _ = up.parts[p["PartNumber"]]
            if p.get("ETag") != etag:
                return _json({"parts": [f"ETag mismatch for part {p['PartNumber']}."]}, 400)
            chunks.append(data)
        up.content = b"".join(chunks)
        up.status = "Completed"
        return _json(self._upload(request, up))

    @_authenticated
    async def abort(self, request: Request, user: int) -> Response:
        up = self._own_upload(request, user)
        if isinstance(up, Response):
            return up
        up.status, up.parts = "Aborted", {}
        return _json(self._upload(request, up))

    @_authenticated
    async def list_parts(self, request: Request, user: int) -> Response:
        up = self._own_upload(request, user)
        if isinstance(up, Response):
            return up
        parts = [
            {"ETag": etag, "PartNumber": n, "LastModified": _drf_time(t), "Size": len(d)}
            for n, (d, etag, t) in sorted(up.parts.items())
        ]
        return _json({**self._upload(request, up), "parts": parts})

    # jobs ---------------------------------------------------------------

    @_authenticated
    async def jobs_endpoint(self, request: Request, user: int) -> Response:
        if request.method == "GET":
            q = request.query_params
            mine = [j for j in self.jobs.values() if j.creator == user]
            algo = q.get("algorithm_image__algorithm")
            if algo is not None and algo != self.algorithm_pk:
                mine = []
            if q.get("input_image") or q.get("output_image"):
                mine = []  # this algorithm takes and makes no images
            mine.sort(key=lambda j: j.created)
            return self._page(request, [self._job(request, j) for j in mine])
        return await self._create_job(request, user)

    async def _create_job(self, request: Request, user: int) -> Response:
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        if not isinstance(body, dict):
            return _json({"non_field_errors": ["Invalid data. Expected a dictionary."]}, 400)
        algo_url = body.get("algorithm")
        if (
            not isinstance(algo_url, str)
            or urlsplit(algo_url).path != f"{API}algorithms/{self.algorithm_pk}/"
        ):
            return _json({"algorithm": ["Invalid hyperlink - Object does not exist."]}, 400)
        raw_inputs = body.get("inputs")
        if not isinstance(raw_inputs, list):
            return _json({"inputs": ["This field is required."]}, 400)
        sockets = {i["slug"]: i for i in INTERFACES}
        inputs = []
        for item in raw_inputs:
            if not isinstance(item, dict) or item.get("interface") not in sockets:
                return _json(
                    {
                        "inputs": [
                            {"interface": [f"Object with slug={_slug_of(item)} does not exist."]}
                        ]
                    },
                    400,
                )
            given = [s for s in SOURCES if item.get(s) is not None]
            if len(given) != 1:
                return _json(
                    {
                        "inputs": [
                            {
                                "non_field_errors": [
                                    "You can only provide one of value, file, image, "
                                    "upload_session, user_upload or user_uploads."
                                ]
                            }
                        ]
                    },
                    400,
                )
            socket = sockets[item["interface"]]
            entry: dict[str, Any] = {"socket": socket, "pk": self._next_civ()}
            if socket["super_kind"] == "File":
                if given[0] != "user_upload":
                    return _json(
                        {
                            "inputs": [
                                {"user_upload": ["A user upload is required for file sockets."]}
                            ]
                        },
                        400,
                    )
                up_pk = urlsplit(str(item["user_upload"])).path.rstrip("/").rsplit("/", 1)[-1]
                up = self.uploads.get(up_pk)
                if (
                    up is None
                    or up.creator != user
                    or up.status != "Completed"
                    or up.content is None
                ):
                    return _json({"inputs": [{"user_upload": ["Invalid user upload."]}]}, 400)
                entry["file_bytes"] = up.content
            elif socket["super_kind"] == "Value":
                if given[0] != "value":
                    return _json(
                        {"inputs": [{"value": ["A value is required for value sockets."]}]}, 400
                    )
                entry["value"] = item["value"]
            inputs.append(entry)
        wanted = {PSG_SOCKET["slug"]}
        if {i["socket"]["slug"] for i in inputs} != wanted:
            return _json(
                {
                    "non_field_errors": [
                        "The set of inputs provided does not match any of the algorithm's "
                        "interfaces. This algorithm supports the following input combinations: "
                        f"{[sorted(wanted)]}"
                    ]
                },
                400,
            )
        active = sum(
            1 for j in self.jobs.values() if j.creator == user and self._status(j) not in TERMINAL
        )
        if active >= MAX_ACTIVE_JOBS:
            return _json(
                {
                    "non_field_errors": [
                        "You have too many active jobs, please try again after they have completed"
                    ]
                },
                400,
            )
        job = Job(
            pk=str(uuid.uuid4()),
            creator=user,
            created=time.time(),
            inputs=inputs,
            outcome="Succeeded",
        )
        self._score(job)
        self.jobs[job.pk] = job
        return _json(
            {
                "pk": job.pk,
                "inputs": [
                    {
                        "interface": i["socket"]["slug"],
                        "value": i.get("value"),
                        "file": None,
                        "image": None,
                        "pk": i["pk"],
                        "image_name": None,
                    }
                    for i in inputs
                ],
                "status": "Validating inputs",
            },
            201,
        )

    def _score(self, job: Job) -> None:
        data = job.inputs[0]["file_bytes"]
        try:
            header = read_header(data)
            stages = expected_hypnogram(data)
        except EdfError as e:
            job.outcome, job.error_message = (
                "Failed",
                f"The input file could not be read as EDF: {e}",
            )
            return
        if self.job_fails(hashlib.sha256(data).hexdigest()):
            job.outcome, job.error_message = "Failed", "Algorithm failed (simulated failure)."
            return
        job.output_value = {
            "epoch_seconds": 30,
            "classes": USLEEP_CLASSES,
            "stages": stages,
            "recording_start": header.start.isoformat(),
        }

    def _next_civ(self) -> int:
        self._civ += 2
        return self._civ

    @_authenticated
    async def job_detail(self, request: Request, user: int) -> Response:
        job = self.jobs.get(request.path_params["pk"])
        if job is None or job.creator != user:
            return _detail(404, "No Job matches the given query.")
        return _json(self._job(request, job))

    @_authenticated
    async def media(self, request: Request, user: int) -> Response:
        civ = int(request.path_params["civ"])
        for job in self.jobs.values():
            for i in job.inputs:
                if i["pk"] == civ and job.creator == user and i.get("file_bytes") is not None:
                    return Response(i["file_bytes"], media_type="application/octet-stream")
        return _detail(404, "Not found.")

    async def _body(self, request: Request) -> Any:
        ctype = request.headers.get("content-type", "")
        if not ctype.startswith("application/json"):
            return _detail(415, f'Unsupported media type "{ctype}" in request.')
        try:
            return await read_json(request)
        except ValueError as e:
            return _detail(400, f"JSON parse error - {e}")

    def routes(self) -> list[BaseRoute]:
        a = API
        up = a + "uploads/{pk}/{s3_upload_id}/"
        return [
            Route(a + "gcapi/", self.version, methods=["GET"]),
            Route(a + "algorithms/", self.algorithms, methods=["GET"]),
            Route(a + "algorithms/images/", self.images, methods=["GET"]),
            Route(a + "algorithms/images/{pk}/", self.image_detail, methods=["GET"]),
            Route(a + "algorithms/jobs/", self.jobs_endpoint, methods=["GET", "POST"]),
            Route(a + "algorithms/jobs/{pk}/", self.job_detail, methods=["GET"]),
            Route(a + "algorithms/{pk}/", self.algorithm_detail, methods=["GET"]),
            Route(a + "components/interfaces/", self.interfaces, methods=["GET"]),
            Route(a + "components/interfaces/{pk}/", self.interface_detail, methods=["GET"]),
            Route(a + "uploads/", self.uploads_list, methods=["GET", "POST"]),
            Route(a + "uploads/{pk}/", self.upload_detail, methods=["GET"]),
            Route(up + "generate-presigned-urls/", self.presign, methods=["PATCH"]),
            Route(up + "complete-multipart-upload/", self.complete, methods=["PATCH"]),
            Route(up + "abort-multipart-upload/", self.abort, methods=["PATCH"]),
            Route(up + "list-parts/", self.list_parts, methods=["GET"]),
            Route("/s3/uploads/{creator}/{pk}", self.s3_put, methods=["PUT"]),
            Route(
                "/media/components/componentinterfacevalue/{civ}/{name}",
                self.media,
                methods=["GET"],
            ),
        ]

    def control_routes(self) -> list[BaseRoute]:
        async def credentials(request: Request) -> Response:
            if request.method == "GET":
                return _json(
                    {
                        "credentials": [
                            {"value": t, "user": pk, "username": name}
                            for t, (pk, name) in self.tokens.items()
                        ]
                    }
                )
            body = await read_json(request)
            token = self.add_token(body.get("value"), body.get("username", "sleep-platform"))
            return _json({"value": token, "user": self.tokens[token][0]}, 201)

        async def revoke(request: Request) -> Response:
            self.tokens.pop(request.path_params["value"], None)
            return _json({"ok": True})

        async def cancel(request: Request) -> Response:
            job = self.jobs.get(request.path_params["pk"])
            if job is None:
                return _json({"error": "no such job"}, 404)
            job.cancelled = True
            return _json({"ok": True})

        return [
            *super().control_routes(),
            Route("/_sim/credentials", credentials, methods=["GET", "POST"]),
            Route("/_sim/credentials/{value}", revoke, methods=["DELETE"]),
            Route("/_sim/jobs/{pk}/cancel", cancel, methods=["POST"]),
        ]


def _slug_of(item: Any) -> Any:
    return item.get("interface") if isinstance(item, dict) else None


def create_app(knobs: Knobs | None = None, *, tokens: list[str] | None = None, **knob_values: Any):
    """The Grand Challenge simulator as an ASGI app; ``app.state.sim`` is the simulator."""
    sim = GrandChallengeSimulator(knobs, **knob_values)
    for t in tokens or []:
        sim.add_token(t)
    return sim.build_app()
