"""Writes for connections and participant links; credential checks against the upstream."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from tenants.api.errors import ApplicationError
from tenants.models import Organization, Participant

from .models import Connection, ConnectionStatus, ParticipantLink
from .providers.asleep import AsleepClient
from .providers.beddit import BedditClient
from .providers.errors import UpstreamAuthFailed, UpstreamError, UpstreamNotFound
from .providers.grand_challenge import GrandChallengeClient
from .providers.transport import check_base_url
from .providers.usleep import USleepClient

# Which credential fields each provider needs (one of the alternatives).
REQUIRED_CREDENTIALS: dict[str, list[set[str]]] = {
    "asleep": [{"api_key"}],
    "beddit": [{"token"}, {"username", "password"}],
    "usleep": [{"token"}],
    "grand_challenge": [{"token"}],
}
PROBE_USER_ID = "credential-check"


def credentials_validate(provider: str, credentials: dict[str, Any]) -> None:
    alternatives = REQUIRED_CREDENTIALS.get(provider)
    if alternatives is None:
        raise ApplicationError(f"{provider} connections are not supported.", code="invalid", status_code=400)
    if not isinstance(credentials, dict) or not all(isinstance(v, str) for v in credentials.values()):
        raise ApplicationError("Credentials must be an object of strings.", code="invalid", status_code=400)
    if not any(names <= {k for k, v in credentials.items() if v} for names in alternatives):
        wanted = " or ".join("+".join(sorted(names)) for names in alternatives)
        raise ApplicationError(f"{provider} credentials need {wanted}.", code="invalid", status_code=400)


def base_url_validate(url: str) -> None:
    """SSRF guard (reliability.md §3): no private, loopback or metadata hosts unless allowed."""
    try:
        check_base_url(url, allow_private=settings.UPSTREAM_ALLOW_PRIVATE)
    except UpstreamError as exc:
        raise ApplicationError(f"Base URL refused: {exc}", code="unsafe_url", status_code=400) from None


@transaction.atomic
def connection_create(*, organization: Organization, **fields: Any) -> Connection:
    credentials_validate(fields["provider"], fields.get("credentials") or {})
    base_url_validate(fields["base_url"])
    connection = Connection(organization=organization, **fields)
    connection.full_clean()
    connection.save()
    return connection


@transaction.atomic
def connection_update(*, connection: Connection, **fields: Any) -> Connection:
    if "credentials" in fields:
        credentials_validate(connection.provider, fields["credentials"])
        # New credentials deserve a fresh try: the old "needs attention" was about the old ones.
        fields.setdefault("status", ConnectionStatus.ACTIVE)
        fields["last_error"] = ""
    if "base_url" in fields:
        base_url_validate(fields["base_url"])
    for name, value in fields.items():
        setattr(connection, name, value)
    connection.full_clean()
    connection.save()
    return connection


@transaction.atomic
def connection_sync_now(*, connection: Connection) -> None:
    """Enqueue a sync once this transaction commits; beat skips the connection meanwhile."""
    from .tasks import sync_connection_task

    if connection.status == ConnectionStatus.PAUSED:
        raise ApplicationError("The connection is paused.", code="paused")
    Connection.objects.filter(pk=connection.pk).update(next_sync_at=timezone.now() + timedelta(seconds=settings.SYNC_LEASE_SECONDS))
    transaction.on_commit(lambda: sync_connection_task.delay(connection.pk))


def _client(connection: Connection):
    credentials = connection.credentials
    common = {"base_url": connection.base_url, "allow_private": settings.UPSTREAM_ALLOW_PRIVATE}
    if connection.provider == "asleep":
        return AsleepClient(credentials.get("api_key", ""), **common)
    if connection.provider == "beddit":
        return BedditClient(username=credentials.get("username"), password=credentials.get("password"),
                            token=credentials.get("token"), **common)
    if connection.provider == "usleep":
        return USleepClient(credentials.get("token", ""), **common)
    if connection.provider == "grand_challenge":
        return GrandChallengeClient(credentials.get("token", ""), **common)
    raise ApplicationError("Unsupported provider.", code="invalid", status_code=400)


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    detail: str


def connection_check(*, connection: Connection) -> CheckResult:
    """Try the stored credentials with one cheap upstream call; record a refusal."""
    try:
        with _client(connection) as client:
            if connection.provider == "asleep":
                try:
                    client.get_user(PROBE_USER_ID)  # a key that works gets "user not found"
                except UpstreamNotFound:
                    pass
            elif connection.provider == "beddit":
                if connection.credentials.get("username"):
                    client.login()
            elif connection.provider == "usleep":
                client.ping()
            else:
                client.check_version()
    except UpstreamAuthFailed:
        Connection.objects.filter(pk=connection.pk).update(
            status=ConnectionStatus.NEEDS_ATTENTION, last_error="credentials refused by the upstream"
        )
        return CheckResult(False, "The upstream refused these credentials.")
    except UpstreamError as exc:
        return CheckResult(False, f"The upstream could not be reached or answered badly ({type(exc).__name__}).")
    if connection.status == ConnectionStatus.NEEDS_ATTENTION:
        Connection.objects.filter(pk=connection.pk).update(status=ConnectionStatus.ACTIVE, last_error="")
    return CheckResult(True, "Credentials accepted.")


@transaction.atomic
def participant_link(
    *, organization: Organization, connection: Connection, participant: Participant,
    upstream_user_id: str = "", create_upstream_user: bool = False,
) -> ParticipantLink:
    """Link a participant to an upstream account, creating the account where the API allows."""
    if connection.organization_id != organization.pk or participant.organization_id != organization.pk:
        raise ApplicationError("Unknown connection or participant.", code="invalid", status_code=400)
    if create_upstream_user:
        if connection.provider != "asleep":
            raise ApplicationError("Only Asleep accounts can be created from here.", code="invalid", status_code=400)
        try:
            with _client(connection) as client:
                upstream_user_id = client.create_user()
        except UpstreamError as exc:
            raise ApplicationError(f"The upstream refused to create the user ({type(exc).__name__}).",
                                   code="upstream_error", status_code=502) from None
    if not upstream_user_id:
        raise ApplicationError("Give upstream_user_id, or create_upstream_user for Asleep.", code="invalid",
                               status_code=400)
    link = ParticipantLink(organization=organization, connection=connection, participant=participant,
                           upstream_user_id=upstream_user_id)
    link.full_clean()
    link.save()
    return link
