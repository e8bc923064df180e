"""The one error family every provider raises.

Tasks decide what to do by type, never by string matching (style.md rule 19):

- ``UpstreamUnavailable``: transient (5xx, timeout, connection error, truncated or invalid
  JSON body). Retry with backoff.
- ``UpstreamRateLimited``: transient, carries ``retry_after`` in seconds. Retry after it.
- ``UpstreamAuthFailed``: permanent. Mark the connection as needing attention.
- ``UpstreamNotFound``: permanent for that object (deleted upstream, unknown user).
- ``UpstreamBadPayload``: permanent for that record/response. Quarantine it.
- ``UpstreamRejected``: permanent. The upstream refused the request itself (4xx that is none
  of the above: validation error, conflict, unsupported version, exhausted credits).
- ``UnsafeUpstreamUrl``: permanent. The base URL failed the SSRF guard.

Messages carry the provider, the HTTP status and a fixed reason: never credentials, tokens,
upstream free text, user ids or payloads (style.md rule 36). The raw payload of a bad record
travels in ``UpstreamBadPayload.payload`` so the caller can store it in quarantine, not in logs.
"""

from __future__ import annotations

import email.utils
import math
import re
from datetime import datetime, timezone
from typing import Any

# Used when a 429 (or Asleep's 403 "Rate limit exceeded") carries no usable Retry-After.
# RADAR-base's Fitbit connector waits an hour; a minute suits a sync that runs every few
# minutes, and the sync engine backs off further on repeats.
DEFAULT_RETRY_AFTER_SECONDS = 60.0


class UpstreamError(Exception):
    """Base of every error a provider raises."""

    permanent: bool = False

    def __init__(self, message: str, *, provider: str | None = None, status: int | None = None):
        self.provider = provider
        self.status = status
        prefix = f"{provider}: " if provider else ""
        suffix = f" (HTTP {status})" if status is not None else ""
        super().__init__(f"{prefix}{message}{suffix}")


class UpstreamUnavailable(UpstreamError):
    """5xx, timeouts, connection errors, truncated or invalid JSON: try again later.

    ``retry_after`` is set when a 503 said how long the outage lasts, else None.
    """

    permanent = False
    retry_after: float | None = None


class UpstreamRateLimited(UpstreamError):
    """The upstream asked us to slow down; ``retry_after`` is a delay in seconds (>= 0)."""

    permanent = False

    def __init__(
        self,
        message: str = "rate limited",
        *,
        retry_after: float = DEFAULT_RETRY_AFTER_SECONDS,
        provider: str | None = None,
        status: int | None = None,
    ):
        self.retry_after = float(retry_after)
        super().__init__(message, provider=provider, status=status)


class UpstreamAuthFailed(UpstreamError):
    """Credentials refused, expired or without a plan: a human must act."""

    permanent = True


class UpstreamNotFound(UpstreamError):
    """The object (user, session, job) does not exist upstream, or is not visible to us."""

    permanent = True


class UpstreamBadPayload(UpstreamError):
    """A record or response failed the schema; ``payload`` keeps the raw JSON-safe value."""

    permanent = True

    def __init__(
        self,
        message: str,
        *,
        payload: Any = None,
        provider: str | None = None,
        status: int | None = None,
    ):
        self.payload = payload
        super().__init__(message, provider=provider, status=status)


class UpstreamRejected(UpstreamError):
    """The upstream refused the request (4xx that is not auth, rate limit or not found)."""

    permanent = True


class UnsafeUpstreamUrl(UpstreamError):
    """The base URL points at a loopback, private, link-local or metadata address."""

    permanent = True


_DELAY_SECONDS = re.compile(r"^\s*(\d{1,10})\s*$")


def parse_retry_after(
    value: str | None,
    *,
    default: float = DEFAULT_RETRY_AFTER_SECONDS,
    now: datetime | None = None,
) -> float:
    """Seconds to wait from a Retry-After header: delay-seconds or HTTP-date (RFC 9110 §10.2.3).

    A missing or unparsable value gives ``default``; a date in the past gives 0.
    """
    if value is None:
        return float(default)
    match = _DELAY_SECONDS.match(value)
    if match:
        return float(int(match.group(1)))
    try:
        when = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return float(default)
    if when is None:
        return float(default)
    if when.tzinfo is None:
        # RFC 9110 HTTP-dates are always GMT; email.utils returns naive for "-0000".
        when = when.replace(tzinfo=timezone.utc)
    now = now or datetime.now(timezone.utc)
    delay = (when - now).total_seconds()
    if not math.isfinite(delay):
        return float(default)
    return max(0.0, delay)
