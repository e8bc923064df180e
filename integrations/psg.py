"""PSG scoring: an uploaded EDF goes to U-Sleep or a Grand Challenge algorithm; the scored
hypnogram comes back as a canonical night (shared/design.md "Flow" step 4).

1. ``psg_recording_upload`` (in the request): size and EDF header are validated before
   anything else happens; the file is stored per organization; ``psg_submit_task`` is
   enqueued once the row commits.
2. ``psg_recording_submit`` (task): U-Sleep: create the session, upload the file, choose
   the channel groups, predict. Grand Challenge: upload the file, start the algorithm job.
   The recording becomes ``submitted``.
3. ``psg_recording_poll`` (task, re-run with a countdown, never sleeping): one look at the
   upstream. Pending: ``scoring``. Completed: fetch the hypnogram, store it with
   ``sleep_sessions_upsert`` and link the session: ``completed``. Failed: ``failed``.
4. ``psg_recording_cleanup``: once a recording is completed or failed, its U-Sleep session
   is deleted upstream (at most 5 may exist per account); a transient failure there is
   retried like any other step.

Every step is idempotent: re-running a finished step sends nothing upstream. A submit
attempt holds a claim (conditional UPDATE) so two deliveries of one task never both
upload; the U-Sleep session name is derived from the recording, the Grand Challenge upload
and job ids are stored as soon as they exist. Errors are recorded as short codes; logs carry
recording ids and statuses, never names, file names or hypnograms (style.md rule 36).
"""

from __future__ import annotations

import enum
import logging
import ssl
from dataclasses import dataclass
from datetime import timedelta
from typing import IO
from urllib.parse import urljoin
from zoneinfo import ZoneInfo

import certifi
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files import File
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from analytics.models import Provider, SleepSession
from analytics.services import sleep_sessions_upsert
from tenants.api.errors import ApplicationError
from tenants.models import Organization, Participant

from . import edf
from .models import PSG_PROVIDERS, PSG_TERMINAL, Connection, ConnectionStatus, PsgRecording, PsgStatus
from .providers.base import CanonicalSession, ScoringState, content_hash
from .providers.errors import (
    UnsafeUpstreamUrl,
    UpstreamAuthFailed,
    UpstreamBadPayload,
    UpstreamError,
    UpstreamNotFound,
    UpstreamRateLimited,
    UpstreamRejected,
)
from .providers.grand_challenge import Algorithm, GrandChallengeClient, JobInput
from .providers.transport import RetryPolicy, build_client
from .providers.usleep import DEFAULT_MODEL, USleepClient

logger = logging.getLogger(__name__)

# One 30-s epoch is the least a scorer can stage; two days is no longer a night's PSG.
MIN_DURATION_SECONDS = 30
MAX_DURATION_SECONDS = 48 * 3600
# Longer than the submit task's hard time limit (tasks.py), so only a dead worker's claim
# expires; a redelivered task waits for it.
SUBMIT_CLAIM_SECONDS = 960
# The Grand Challenge hypnogram socket when the connection names none (our simulator's).
DEFAULT_GC_OUTPUT_SLUG = "hypnogram"
# Short inline retries of idempotent calls (GET/PUT/DELETE); anything longer is a task retry.
PSG_RETRY_POLICY = RetryPolicy()

MESSAGES = {
    "too_large": "The recording is larger than the upload limit ({limit} bytes).",
    "not_edf": "The file is not a valid EDF recording: {reason}.",
    "empty": "The file is empty.",
    "too_short": f"The recording is shorter than one {MIN_DURATION_SECONDS}-second epoch.",
    "too_long": f"The recording is longer than {MAX_DURATION_SECONDS // 3600} hours.",
    "not_a_scorer": "This connection does not score PSG recordings: use a U-Sleep or Grand Challenge connection.",
}


class PsgStep(str, enum.Enum):
    SUBMITTED = "submitted"  # submit done: poll from now on
    PENDING = "pending"  # the upstream is still scoring: poll again later
    COMPLETED = "completed"
    FAILED = "failed"
    RETRY = "retry"  # a transient fault (or another attempt's claim): run this step again later
    GONE = "gone"  # the recording was deleted meanwhile: nothing to do


@dataclass(frozen=True)
class PsgOutcome:
    step: PsgStep
    # RETRY: the code to record if retries run out; seconds the upstream asked us to wait.
    error: str = ""
    retry_after: float | None = None
    # COMPLETED/FAILED: the upstream session is still to be deleted (retry the step).
    cleanup_pending: bool = False


class Misconfigured(Exception):
    """The connection lacks what the scorer needs (e.g. the Grand Challenge algorithm)."""


# --- upload --------------------------------------------------------------------------------------


def _clean_name(name: str) -> str:
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    return "".join(ch for ch in base if ch.isprintable())[:255]


@transaction.atomic
def psg_recording_upload(
    *,
    organization: Organization,
    participant: Participant,
    connection: Connection,
    file: File,
    original_name: str = "",
) -> PsgRecording:
    """Validate (size, EDF header), store the file, and enqueue its scoring after commit.

    Raises ApplicationError (413) over ``settings.PSG_MAX_UPLOAD_BYTES`` and ValidationError
    for a file that is not a usable EDF recording: nothing is stored or sent then.
    """
    if participant.organization_id != organization.pk or connection.organization_id != organization.pk:
        raise ValidationError("The participant and the connection must belong to the organization.")
    if connection.provider not in PSG_PROVIDERS:
        raise ValidationError({"connection": [MESSAGES["not_a_scorer"]]})
    size = file.size or 0
    limit = settings.PSG_MAX_UPLOAD_BYTES
    if size > limit:
        raise ApplicationError(MESSAGES["too_large"].format(limit=limit), code="payload_too_large", status_code=413)
    if size == 0:
        raise ValidationError({"file": [MESSAGES["empty"]]})
    try:
        header = edf.read_header_from(file, file_size=size)
    except edf.EdfError as exc:
        raise ValidationError({"file": [MESSAGES["not_edf"].format(reason=exc)]}) from None
    if header.duration < MIN_DURATION_SECONDS:
        raise ValidationError({"file": [MESSAGES["too_short"]]})
    if header.duration > MAX_DURATION_SECONDS:
        raise ValidationError({"file": [MESSAGES["too_long"]]})

    # EDF holds local clock time without a zone: the participant's zone is the best reading.
    zone = participant.effective_timezone
    recording = PsgRecording(
        organization=organization,
        participant=participant,
        connection=connection,
        original_name=_clean_name(original_name or file.name or ""),
        size=size,
        edf_start=header.start.replace(tzinfo=ZoneInfo(zone)),
        edf_duration_seconds=header.duration,
        edf_channels=header.labels,
        timezone=zone,
    )
    file.seek(0)
    recording.file.save("recording.edf", file, save=False)
    try:
        recording.full_clean()
        recording.save()
    except Exception:
        recording.file.delete(save=False)  # no row, no file
        raise
    logger.info("psg recording=%s uploaded size=%d provider=%s", recording.uuid, size, connection.provider)

    from .tasks import psg_submit_task

    recording_id, organization_id = recording.pk, organization.pk
    transaction.on_commit(lambda: psg_submit_task.delay(recording_id, organization_id))
    return recording


@transaction.atomic
def psg_recording_delete(*, recording: PsgRecording) -> None:
    """Delete the row, then (after commit) its file and any upstream U-Sleep session."""
    from .tasks import psg_upstream_delete_task

    storage, name = recording.file.storage, recording.file.name
    upstream = _usleep_session_left(recording)
    connection_id = recording.connection_id
    recording.delete()
    if name:
        transaction.on_commit(lambda: storage.delete(name))
    if upstream and connection_id:
        transaction.on_commit(lambda: psg_upstream_delete_task.delay(connection_id, upstream))
    logger.info("psg recording=%s deleted", recording.uuid)


# --- clients -------------------------------------------------------------------------------------


def _verify() -> ssl.SSLContext | bool:
    bundle = settings.UPSTREAM_CA_BUNDLE
    if not bundle:
        return True
    context = ssl.create_default_context(cafile=certifi.where())
    context.load_verify_locations(cafile=bundle)
    return context


def scorer_client(connection: Connection) -> USleepClient | GrandChallengeClient:
    token = connection.credentials.get("token", "")
    allow_private = settings.UPSTREAM_ALLOW_PRIVATE
    if connection.provider == Provider.USLEEP:
        http = build_client(connection.base_url.rstrip("/"), allow_private=allow_private, verify=_verify())
        client = USleepClient(token, base_url=connection.base_url, allow_private=allow_private, http=http)
    elif connection.provider == Provider.GRAND_CHALLENGE:
        client = GrandChallengeClient(
            token, base_url=connection.base_url, allow_private=allow_private, verify=_verify()
        )
    else:
        raise Misconfigured("not a PSG scorer")
    client.retry_policy = PSG_RETRY_POLICY
    return client


def usleep_session_name(recording: PsgRecording) -> str:
    """Derived from the recording, so a re-run of a step talks to the same session."""
    return f"psg-{recording.uuid.hex}"


def _usleep_session_left(recording: PsgRecording) -> str:
    """The U-Sleep session this recording may have left upstream, or ""."""
    if recording.upstream_deleted_at is not None or not recording.upstream_id:
        return ""
    if recording.connection is None or recording.connection.provider != Provider.USLEEP:
        return ""
    return recording.upstream_id


# --- errors --------------------------------------------------------------------------------------

_ERROR_CODES: tuple[tuple[type[UpstreamError], str], ...] = (
    (UpstreamAuthFailed, "upstream_auth_failed"),
    (UpstreamRateLimited, "upstream_rate_limited"),
    (UpstreamNotFound, "upstream_not_found"),
    (UpstreamBadPayload, "upstream_bad_payload"),
    (UnsafeUpstreamUrl, "upstream_url_refused"),
    (UpstreamRejected, "upstream_rejected"),
)


def error_code(exc: UpstreamError) -> str:
    for kind, code in _ERROR_CODES:
        if isinstance(exc, kind):
            return code
    return "upstream_unavailable"


def _on_upstream_error(recording: PsgRecording, exc: UpstreamError, client) -> PsgOutcome:
    code = error_code(exc)
    logger.warning("psg recording=%s upstream error=%s (%s)", recording.uuid, code, type(exc).__name__)
    if isinstance(exc, UpstreamAuthFailed) and recording.connection_id:
        Connection.objects.filter(pk=recording.connection_id).update(
            status=ConnectionStatus.NEEDS_ATTENTION, last_error="credentials refused by the upstream"
        )
    if not exc.permanent:
        return PsgOutcome(PsgStep.RETRY, error=code, retry_after=getattr(exc, "retry_after", None))
    return _fail(recording, code, client)


# --- state changes -------------------------------------------------------------------------------


def _mark_failed(recording_id: int, error: str) -> bool:
    return bool(
        PsgRecording.objects.filter(pk=recording_id)
        .exclude(status__in=PSG_TERMINAL)
        .update(status=PsgStatus.FAILED, error=error[:64], finished_at=timezone.now(), claimed_until=None)
    )


def _fail(recording: PsgRecording, error: str, client=None) -> PsgOutcome:
    if _mark_failed(recording.pk, error):
        logger.info("psg recording=%s failed error=%s", recording.uuid, error)
    recording.refresh_from_db()
    return _terminal(recording, client)


def _terminal(recording: PsgRecording, client=None) -> PsgOutcome:
    """A completed or failed recording: make sure nothing is left upstream."""
    step = PsgStep.COMPLETED if recording.status == PsgStatus.COMPLETED else PsgStep.FAILED
    return PsgOutcome(step, error=recording.error, cleanup_pending=not psg_recording_cleanup(recording, client))


def psg_recording_cleanup(recording: PsgRecording, client=None) -> bool:
    """Delete the recording's U-Sleep session upstream; True once nothing is left there.

    A transient failure answers False (the caller retries); a permanent one is logged and
    given up on, since retrying cannot help.
    """
    session_name = _usleep_session_left(recording)
    if not session_name:
        return True
    try:
        if client is None:
            with scorer_client(recording.connection) as own:
                usleep_session_delete(own, session_name)
        else:
            usleep_session_delete(client, session_name)
    except UpstreamError as exc:
        if not exc.permanent:
            logger.info("psg recording=%s upstream delete deferred (%s)", recording.uuid, type(exc).__name__)
            return False
        logger.warning("psg recording=%s upstream session not deleted (%s)", recording.uuid, type(exc).__name__)
    PsgRecording.objects.filter(pk=recording.pk).update(upstream_deleted_at=timezone.now())
    recording.upstream_deleted_at = timezone.now()
    return True


def usleep_session_delete(client: USleepClient, session_name: str) -> None:
    try:
        client.delete_session(session_name)
    except UpstreamNotFound:
        pass  # never created, or already deleted: the goal is met


def psg_recording_fail(*, recording_id: int, error: str, organization_id: int | None = None) -> PsgOutcome:
    """Final failure of a task: record ``error`` unless already finished, then clean up."""
    recording = _scoped(recording_id, organization_id).select_related("connection").first()
    if recording is None:
        return PsgOutcome(PsgStep.GONE)
    try:
        return _fail(recording, error)
    except Misconfigured:
        return PsgOutcome(PsgStep.FAILED, error=error)


def _scoped(recording_id: int, organization_id: int | None):
    """The recording, looked up inside its organization when the task names one.

    Tasks carry (recording id, organization id): a mixed-up or forged pair finds nothing and
    touches nothing. ``None`` is for messages enqueued before tasks carried the organization.
    """
    rows = PsgRecording.objects.filter(pk=recording_id)
    return rows if organization_id is None else rows.filter(organization_id=organization_id)


def _load(recording_id: int, organization_id: int | None = None) -> PsgRecording | None:
    return _scoped(recording_id, organization_id).select_related("connection", "organization", "participant").first()


# --- submit --------------------------------------------------------------------------------------


def psg_recording_submit(*, recording_id: int, organization_id: int | None = None) -> PsgOutcome:
    """Send an uploaded recording to its scorer and start the scoring (one attempt)."""
    recording = _load(recording_id, organization_id)
    if recording is None:
        return PsgOutcome(PsgStep.GONE)
    if recording.status in PSG_TERMINAL:
        return _terminal(recording)
    if recording.status != PsgStatus.UPLOADED:
        return PsgOutcome(PsgStep.SUBMITTED)  # done before: the caller (re)starts polling
    connection = recording.connection
    if connection is None or connection.provider not in PSG_PROVIDERS:
        return _fail(recording, "connection_unavailable")

    now = timezone.now()
    claim = {"claimed_until": now + timedelta(seconds=SUBMIT_CLAIM_SECONDS)}
    if connection.provider == Provider.USLEEP:
        claim["upstream_id"] = usleep_session_name(recording)  # known before it exists upstream
    claimed = (
        PsgRecording.objects.filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .filter(pk=recording_id, status=PsgStatus.UPLOADED)
        .update(**claim)
    )
    if not claimed:
        # Another attempt holds the claim (or just finished): look again when it expires.
        until = PsgRecording.objects.filter(pk=recording_id).values_list("claimed_until", flat=True).first()
        wait = (until - now).total_seconds() + 1 if until else 1.0
        return PsgOutcome(PsgStep.RETRY, error="submit_stalled", retry_after=max(1.0, wait))
    recording.refresh_from_db()

    try:
        stream = recording.file.open("rb")
    except OSError:  # the stored upload is gone
        return _fail(recording, "file_missing")
    try:
        with stream, scorer_client(connection) as client:
            try:
                if connection.provider == Provider.USLEEP:
                    upstream_id = _usleep_submit(client, recording, stream)
                else:
                    upstream_id = _gc_submit(client, recording, stream)
            except UpstreamError as exc:
                PsgRecording.objects.filter(pk=recording_id).update(claimed_until=None)
                return _on_upstream_error(recording, exc, client)
            submitted = PsgRecording.objects.filter(pk=recording_id, status=PsgStatus.UPLOADED).update(
                status=PsgStatus.SUBMITTED, upstream_id=upstream_id, submitted_at=timezone.now(),
                claimed_until=None, error="", updated_at=timezone.now(),
            )
            if not submitted:  # deleted (or failed) while we uploaded: leave nothing upstream
                if connection.provider == Provider.USLEEP:
                    try:
                        usleep_session_delete(client, upstream_id)
                    except UpstreamError:
                        logger.warning("psg recording=%s orphan upstream session", recording.uuid)
                return PsgOutcome(PsgStep.GONE)
    except Misconfigured:
        return _fail(recording, "connection_misconfigured")
    logger.info("psg recording=%s submitted provider=%s", recording.uuid, connection.provider)
    return PsgOutcome(PsgStep.SUBMITTED)


# Reference: shared/upstreams.md §2.2 quick_predict steps 1-4 (as separate calls, no waiting)
def _usleep_submit(client: USleepClient, recording: PsgRecording, stream: IO[bytes]) -> str:
    name = usleep_session_name(recording)
    client.create_session(name, model=recording.connection.options.get("model") or DEFAULT_MODEL)
    client.upload_psg(name, edf.anonymized(stream), filename=f"{recording.uuid}.edf")
    groups = client.choose_channel_groups(name)
    client.predict(name, groups)
    return name


# Reference: shared/upstreams.md §3.5 start_algorithm_job (upload, then POST algorithms/jobs/)
def _gc_submit(client: GrandChallengeClient, recording: PsgRecording, stream: IO[bytes]) -> str:
    options = recording.connection.options
    slug = options.get("algorithm_slug")
    if not slug:
        raise Misconfigured("algorithm_slug missing")
    algorithm = client.get_algorithm(slug)
    file_input = options.get("input_slug") or _gc_file_input(algorithm)
    if recording.upstream_upload_id:  # uploaded by an attempt that did not get to start the job
        upload_url = urljoin(client.base_url, f"uploads/{recording.upstream_upload_id}/")
    else:
        upload = client.upload_file(f"{recording.uuid}.edf", edf.anonymized(stream))
        PsgRecording.objects.filter(pk=recording.pk).update(upstream_upload_id=upload.pk[:128])
        upload_url = upload.api_url
    job = client.start_job(algorithm, [JobInput(file_input, user_upload=upload_url)])
    return job.pk


def _gc_file_input(algorithm: Algorithm) -> str:
    """The File socket of the interface that takes the recording alone."""
    candidates = {
        interface.inputs[0].slug
        for interface in algorithm.interfaces
        if len(interface.inputs) == 1 and interface.inputs[0].super_kind == "File"
    }
    if len(candidates) != 1:
        raise Misconfigured("cannot tell which input takes the recording (set input_slug)")
    return candidates.pop()


# --- poll ----------------------------------------------------------------------------------------


def psg_recording_poll(*, recording_id: int, organization_id: int | None = None) -> PsgOutcome:
    """One non-blocking look at the scorer; store the night when it is done."""
    recording = _load(recording_id, organization_id)
    if recording is None:
        return PsgOutcome(PsgStep.GONE)
    if recording.status in PSG_TERMINAL:
        return _terminal(recording)
    if recording.status == PsgStatus.UPLOADED:
        return PsgOutcome(PsgStep.PENDING)  # the submit task is still at it
    connection = recording.connection
    if connection is None or connection.provider not in PSG_PROVIDERS:
        return _fail(recording, "connection_unavailable")
    try:
        with scorer_client(connection) as client:
            try:
                return _poll(client, recording)
            except UpstreamError as exc:
                return _on_upstream_error(recording, exc, client)
    except Misconfigured:
        return _fail(recording, "connection_misconfigured")


def _poll(client, recording: PsgRecording) -> PsgOutcome:
    if isinstance(client, USleepClient):
        state = client.poll(recording.upstream_id).state
        job = None
    else:
        job = client.get_job(recording.upstream_id)
        state = job.state
    if state is ScoringState.PENDING:
        # updated_at is the poll chain's heartbeat: the stranded sweep leaves a live chain alone.
        PsgRecording.objects.filter(pk=recording.pk, status__in=[PsgStatus.SUBMITTED, PsgStatus.SCORING]).update(
            status=PsgStatus.SCORING, updated_at=timezone.now()
        )
        return PsgOutcome(PsgStep.PENDING)
    if state is ScoringState.FAILED:
        return _fail(recording, "scoring_failed", client)

    common = {"timezone": recording.timezone, "upstream_user_id": str(recording.uuid), "start": recording.edf_start}
    if job is None:
        session = client.fetch_hypnogram(recording.upstream_id, **common)
    else:
        output_slug = recording.connection.options.get("output_slug") or DEFAULT_GC_OUTPUT_SLUG
        session = client.job_hypnogram(job, output_slug=output_slug, **common)
    if not _store(recording, session):
        return PsgOutcome(PsgStep.GONE)
    recording.refresh_from_db()
    logger.info("psg recording=%s completed epochs=%d", recording.uuid, session.epoch_count)
    return _terminal(recording, client)


@transaction.atomic
def _store(recording: PsgRecording, session: CanonicalSession) -> bool:
    """Store the night and complete the recording together; False if it went meanwhile."""
    locked = (
        PsgRecording.objects.select_for_update()
        .filter(pk=recording.pk, status__in=[PsgStatus.SUBMITTED, PsgStatus.SCORING])
        .first()
    )
    if locked is None:
        return PsgRecording.objects.filter(pk=recording.pk, status=PsgStatus.COMPLETED).exists()
    organization = recording.organization
    sleep_sessions_upsert(
        organization=organization,
        records=[(recording.participant_id, session, content_hash(session))],
    )
    stored = (
        SleepSession.objects.for_org(organization)
        .filter(participant_id=recording.participant_id, provider=session.provider, upstream_id=session.upstream_id)
        .values_list("pk", flat=True)
        .first()
    )
    PsgRecording.objects.filter(pk=recording.pk).update(
        status=PsgStatus.COMPLETED, sleep_session_id=stored, finished_at=timezone.now(), error="", claimed_until=None
    )
    return True


def usleep_orphan_delete(*, connection_id: int, session_name: str) -> PsgOutcome:
    """Delete a U-Sleep session whose recording was deleted (psg_upstream_delete_task)."""
    connection = Connection.objects.filter(pk=connection_id, provider=Provider.USLEEP).first()
    if connection is None:
        return PsgOutcome(PsgStep.GONE)
    try:
        with scorer_client(connection) as client:
            usleep_session_delete(client, session_name)
    except UpstreamError as exc:
        if not exc.permanent:
            return PsgOutcome(PsgStep.RETRY, error=error_code(exc), retry_after=getattr(exc, "retry_after", None))
        logger.warning("psg upstream session not deleted connection=%s (%s)", connection_id, type(exc).__name__)
    return PsgOutcome(PsgStep.COMPLETED)


# --- stranded recordings -------------------------------------------------------------------------

# Without progress for this long, a recording's task chain is taken as lost (a flushed or
# restarted broker, a message acked by a dying worker). Far above the longest poll countdown
# (120 s) plus a poll's time limit, so a live chain is never doubled.
DEFAULT_STRANDED_SECONDS = 900


def psg_stranded_claim(*, limit: int = 200) -> list[tuple[str, int, int]]:
    """Claim recordings stranded in a non-terminal state; returns (step, recording id,
    organization id) of the task each needs: "submit" for an upload never sent (and not
    being sent: no live submit claim), "poll" for a submitted or scoring one.

    Each claim is a conditional UPDATE of ``updated_at`` (the chain's heartbeat): whichever
    sweep wins re-enqueues one task, and the recording is not stranded again before another
    full threshold passes without progress, so a recording never gets two chains at once.
    """
    threshold = getattr(settings, "PSG_STRANDED_SECONDS", DEFAULT_STRANDED_SECONDS)
    now = timezone.now()
    before = now - timedelta(seconds=threshold)
    candidates = (
        PsgRecording.objects.filter(
            status__in=[PsgStatus.UPLOADED, PsgStatus.SUBMITTED, PsgStatus.SCORING], updated_at__lt=before
        )
        .exclude(status=PsgStatus.UPLOADED, claimed_until__gte=now)
        .order_by("updated_at")
        .values_list("pk", "organization_id", "status", "updated_at")[:limit]
    )
    claimed = []
    for pk, organization_id, status, updated_at in candidates:
        if PsgRecording.objects.filter(pk=pk, status=status, updated_at=updated_at).update(updated_at=now):
            claimed.append(("submit" if status == PsgStatus.UPLOADED else "poll", pk, organization_id))
            logger.warning("psg recording=%s stranded in status=%s: step re-enqueued", pk, status)
    return claimed
