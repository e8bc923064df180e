"""The error family and Retry-After parsing (RFC 9110 §10.2.3)."""

from datetime import datetime, timezone

import pytest

from integrations.providers.errors import (
    DEFAULT_RETRY_AFTER_SECONDS,
    UnsafeUpstreamUrl,
    UpstreamAuthFailed,
    UpstreamBadPayload,
    UpstreamError,
    UpstreamNotFound,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamUnavailable,
    parse_retry_after,
)

NOW = datetime(1994, 11, 6, 8, 49, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(("value", "seconds"), [("120", 120.0), (" 5 ", 5.0), ("0", 0.0)])
def test_it_reads_delay_seconds(value, seconds):
    assert parse_retry_after(value, now=NOW) == seconds


@pytest.mark.parametrize(
    "value",
    [
        "Sun, 06 Nov 1994 08:49:37 GMT",  # IMF-fixdate
        "Sunday, 06-Nov-94 08:49:37 GMT",  # obsolete RFC 850
        "Sun Nov  6 08:49:37 1994",  # obsolete asctime
    ],
)
def test_it_reads_every_http_date_format(value):
    assert parse_retry_after(value, now=NOW) == 37.0


def test_it_reads_a_past_date_as_no_wait():
    assert parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now=NOW) == 0.0


@pytest.mark.parametrize("value", [None, "", "soon", "-5", "1.5", "Sun, 99 Foo 1994"])
def test_it_falls_back_to_the_default_for_missing_or_garbage_values(value):
    assert parse_retry_after(value, now=NOW) == DEFAULT_RETRY_AFTER_SECONDS
    assert parse_retry_after(value, default=7, now=NOW) == 7.0


@pytest.mark.parametrize(
    ("cls", "permanent"),
    [
        (UpstreamUnavailable, False),
        (UpstreamRateLimited, False),
        (UpstreamAuthFailed, True),
        (UpstreamNotFound, True),
        (UpstreamBadPayload, True),
        (UpstreamRejected, True),
        (UnsafeUpstreamUrl, True),
    ],
)
def test_it_knows_which_errors_are_permanent(cls, permanent):
    error = cls("x")
    assert isinstance(error, UpstreamError)
    assert error.permanent is permanent


def test_it_builds_a_message_from_provider_reason_and_status_only():
    error = UpstreamRateLimited("rate limit exceeded", retry_after=7, provider="asleep", status=403)
    assert str(error) == "asleep: rate limit exceeded (HTTP 403)"
    assert error.retry_after == 7.0 and error.status == 403 and error.provider == "asleep"


def test_it_keeps_a_bad_payload_out_of_the_message():
    error = UpstreamBadPayload(
        "record failed", payload={"email": "ann@example.com"}, provider="beddit"
    )
    assert "ann@example.com" not in str(error)
    assert error.payload == {"email": "ann@example.com"}
