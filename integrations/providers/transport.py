"""HTTP plumbing shared by the providers: client factory, error mapping, SSRF guard.

Named ``transport`` rather than ``http`` so it can never shadow the stdlib module (style.md 38).

- ``build_client``: explicit timeouts and pool limits, redirects never followed, no proxies or
  .netrc from the environment, and a connect-time SSRF guard (``GuardedTransport``) that checks
  every address it actually connects to, so DNS rebinding after ``check_base_url`` is caught.
- ``send``: one request; transport failures become the error family; the body is read with a
  size cap (upstream data is untrusted, OWASP API10:2023).
- ``error_for_status``: the default status → error mapping; providers refine it.
- ``check_base_url``: validate a connection's base URL when it is saved.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import logging
import random
import re
import socket
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpcore
import httpx
import orjson

from .errors import (
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

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Read may be slow on report endpoints; connect and pool waits should fail fast so a dead
# upstream does not hold a worker (reliability.md §1 "timeouts on all I/O").
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0, pool=5.0)
# A worker talks to one connection at a time; a few sockets are plenty.
DEFAULT_LIMITS = httpx.Limits(max_connections=10, max_keepalive_connections=5, keepalive_expiry=30)
# A night of Asleep/Beddit JSON is tens of KB; a Beddit full-history array a few MB.
MAX_RESPONSE_BYTES = 32 * 1024 * 1024
USER_AGENT = "sleep-platform/0.1 (+httpx)"

Resolver = Callable[[str, int], Iterable[str]]

# Cloud metadata services: never a legitimate upstream, refused even when private is allowed.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254")
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NUMERIC_HOST = re.compile(r"^[0-9a-fx.]+$", re.IGNORECASE)


# --- SSRF guard -------------------------------------------------------------------------------


def default_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [info[4][0].split("%", 1)[0] for info in infos]


def parse_numeric_host(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An IP literal in any form inet_aton accepts (0x7f000001, 2130706433, 0177.1), else None."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if not _NUMERIC_HOST.match(host) or host.endswith(".") or ".." in host:
        return None
    parts = host.split(".")
    if len(parts) > 4:
        return None
    numbers = []
    for part in parts:
        lowered = part.lower()
        try:
            if lowered.startswith("0x"):
                numbers.append(int(lowered[2:] or "x", 16))
            elif len(lowered) > 1 and lowered.startswith("0"):
                numbers.append(int(lowered, 8))
            else:
                numbers.append(int(lowered, 10))
        except ValueError:
            return None
    # inet_aton: a.b.c.d, a.b.c (c fills 16 bits), a.b (b fills 24 bits), a (32 bits).
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (4 - len(head)):
        return None
    value = last
    for i, n in enumerate(head):
        value += n << (24 - 8 * i)
    return ipaddress.IPv4Address(value)


def address_is_forbidden(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, *, allow_private: bool
) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return address_is_forbidden(embedded, allow_private=allow_private)
    if address in METADATA_ADDRESSES or address.is_unspecified or address.is_multicast:
        return True
    if allow_private:
        return False
    return not address.is_global


def resolve_checked(
    host: str, port: int, *, allow_private: bool, resolver: Resolver | None = None
) -> list[str]:
    """Addresses for ``host`` after the SSRF check; raises UnsafeUpstreamUrl if any is refused."""
    literal = parse_numeric_host(host)
    if literal is not None:
        candidates = [literal]
    else:
        try:
            resolved = list((resolver or default_resolver)(host, port))
        except (OSError, UnicodeError) as exc:
            raise UpstreamUnavailable("host does not resolve") from exc
        candidates = []
        for text in resolved:
            try:
                candidates.append(ipaddress.ip_address(str(text).split("%", 1)[0]))
            except ValueError:
                raise UnsafeUpstreamUrl("resolver returned a non-address") from None
        if not candidates:
            raise UpstreamUnavailable("host does not resolve")
    # One bad address is enough to refuse: an attacker controls which one we would get.
    for address in candidates:
        if address_is_forbidden(address, allow_private=allow_private):
            raise UnsafeUpstreamUrl(
                "base URL resolves to a loopback, private, link-local or metadata address"
            )
    return [str(a) for a in candidates]


def check_base_url(url: str, allow_private: bool, *, resolver: Resolver | None = None) -> list[str]:
    """Refuse a base URL whose host is (or resolves to) a non-public address unless allowed.

    Returns the checked addresses. Cloud metadata, unspecified and multicast addresses are
    refused even when ``allow_private`` is True (the demo allow-list only needs loopback).
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UnsafeUpstreamUrl("base URL is not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise UnsafeUpstreamUrl("base URL must be http or https")
    if parts.username is not None or parts.password is not None:
        raise UnsafeUpstreamUrl("base URL must not embed credentials")
    host = parts.hostname
    if not host:
        raise UnsafeUpstreamUrl("base URL has no host")
    port = port or (443 if parts.scheme == "https" else 80)
    return resolve_checked(host, port, allow_private=allow_private, resolver=resolver)


class GuardedNetworkBackend(httpcore.SyncBackend):
    """Resolves, checks and connects to the checked IP itself (TLS still verifies the hostname)."""

    def __init__(self, *, allow_private: bool, resolver: Resolver | None = None):
        self.allow_private = allow_private
        self.resolver = resolver

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        try:
            addresses = resolve_checked(
                host, port, allow_private=self.allow_private, resolver=self.resolver
            )
        except UpstreamUnavailable as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        last: Exception | None = None
        for address in addresses:
            try:
                return super().connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:
                last = exc
        assert last is not None
        raise last


class GuardedTransport(httpx.HTTPTransport):
    """httpx's transport with its connection pool built on ``GuardedNetworkBackend``."""

    def __init__(
        self,
        *,
        allow_private: bool,
        resolver: Resolver | None = None,
        verify: Any = True,
        limits: httpx.Limits = DEFAULT_LIMITS,
    ):
        super().__init__(verify=verify, limits=limits, trust_env=False)
        # httpx has no public hook for the network backend; rebuild its pool with ours.
        # tests/unit/providers/test_transport.py proves the guard is on the connect path.
        ssl_context = self._pool._ssl_context
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedNetworkBackend(allow_private=allow_private, resolver=resolver),
        )


@functools.lru_cache(maxsize=1)
def default_ssl_context() -> ssl.SSLContext:
    """The default verifying context, built once a process: loading the CA bundle costs ~20 ms,
    more than a whole incremental sync of one connection. SSLContext is safe to share."""
    return httpx.create_ssl_context(verify=True, trust_env=False)


class _NoCookies(httpx.Cookies):
    """A cookie store that keeps nothing."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None

    def set(self, name: str, value: str, domain: str = "", path: str = "/") -> None:
        return None


class StatelessClient(httpx.Client):
    """An httpx client that never stores or replays cookies.

    The upstream APIs authenticate every request by key or token; a cookie one of them set
    would otherwise ride along on later requests of the same client (another participant's,
    in a pipelined sync). Reading Set-Cookie headers also cost ~8 % of a report's CPU.
    """

    @property
    def cookies(self) -> httpx.Cookies:
        return _NoCookies()

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        if cookies:
            raise ValueError("upstream clients keep no cookies")


def build_client(
    base_url: str,
    *,
    headers: dict[str, str] | None = None,
    allow_private: bool = False,
    resolver: Resolver | None = None,
    timeout: httpx.Timeout = DEFAULT_TIMEOUT,
    limits: httpx.Limits = DEFAULT_LIMITS,
    verify: Any = True,
) -> httpx.Client:
    """A client for one upstream: explicit timeouts and limits, no redirects, SSRF-guarded, no
    cookies kept."""
    return StatelessClient(
        base_url=base_url,
        headers={"User-Agent": USER_AGENT, **(headers or {})},
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
        transport=GuardedTransport(
            allow_private=allow_private,
            resolver=resolver,
            verify=default_ssl_context() if verify is True else verify,
            limits=limits,
        ),
    )


# --- requests and error mapping ---------------------------------------------------------------


def send(
    client: httpx.Client,
    method: str,
    url: str,
    *,
    provider: str,
    max_bytes: int = MAX_RESPONSE_BYTES,
    **kwargs: Any,
) -> httpx.Response:
    """Send one request and return the fully read response (any status).

    Timeouts, connection errors and truncated bodies raise UpstreamUnavailable; a body over
    ``max_bytes`` raises UpstreamBadPayload. Status codes are left to the caller.
    """
    try:
        request = client.build_request(method, url, **kwargs)
    except httpx.InvalidURL:
        raise UpstreamRejected("invalid request URL", provider=provider) from None
    try:
        response = client.send(request, stream=True, follow_redirects=False)
        try:
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise UpstreamBadPayload(
                    "response body too large", provider=provider, status=response.status_code
                )
            chunks, total = [], 0
            for chunk in response.iter_bytes():
                total += len(chunk)
                if total > max_bytes:
                    raise UpstreamBadPayload(
                        "response body too large", provider=provider, status=response.status_code
                    )
                chunks.append(chunk)
        finally:
            response.close()
    except httpx.TimeoutException:
        raise UpstreamUnavailable("timeout", provider=provider) from None
    except httpx.UnsupportedProtocol:
        raise UpstreamRejected("unsupported URL scheme", provider=provider) from None
    except (httpx.TransportError, httpx.DecodingError) as exc:
        raise UpstreamUnavailable(
            f"transport error: {type(exc).__name__}", provider=provider
        ) from None
    logger.debug("upstream %s %s -> %s", provider, method, response.status_code)
    # Rebuild from the bytes already read: the decoded body must not be decoded twice.
    skip = {"content-encoding", "content-length", "transfer-encoding"}
    headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in skip]
    return httpx.Response(
        response.status_code, headers=headers, content=b"".join(chunks), request=request
    )


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def parse_json(response: httpx.Response, *, provider: str) -> Any:
    """The JSON body; a truncated or invalid body is UpstreamUnavailable (retry may fix it).

    NaN/Infinity are refused: they are not JSON and PostgreSQL's jsonb rejects them. Parsed
    by orjson (a quarter of the stdlib's time; it refuses NaN and Infinity itself); a body it
    refuses for a reason of its own (a number overflowing to infinity) gets the stdlib's
    reading. One difference remains: orjson reads an integer beyond 64 bits as a float.
    """
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(response.content, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise UpstreamUnavailable(
            "invalid or truncated JSON body", provider=provider, status=response.status_code
        ) from None


def json_or_none(response: httpx.Response) -> Any:
    """Best-effort JSON of an error body (None if absent or not JSON)."""
    try:
        return json.loads(response.content, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return None


def rate_limited(
    response: httpx.Response, message: str, *, default: float, provider: str
) -> UpstreamRateLimited:
    """A rate-limit error honouring the response's Retry-After, else ``default`` seconds."""
    retry_after = parse_retry_after(response.headers.get("retry-after"), default=default)
    return UpstreamRateLimited(
        message, retry_after=retry_after, provider=provider, status=response.status_code
    )


def error_for_status(response: httpx.Response, *, provider: str) -> UpstreamError | None:
    """The default mapping of a status to the error family; None for 2xx."""
    status = response.status_code
    if 200 <= status < 300:
        return None
    if 300 <= status < 400:
        # Redirects are never followed (SSRF: a 302 to loopback must not be chased).
        return UpstreamRejected("unexpected redirect", provider=provider, status=status)
    if status == 401 or status == 403:
        return UpstreamAuthFailed("credentials refused", provider=provider, status=status)
    if status in (404, 410):
        return UpstreamNotFound("not found", provider=provider, status=status)
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        return UpstreamRateLimited(
            "rate limited", retry_after=retry_after, provider=provider, status=status
        )
    if status == 408 or status >= 500:
        error = UpstreamUnavailable("upstream unavailable", provider=provider, status=status)
        if "retry-after" in response.headers:
            # A 503 with Retry-After says how long the outage lasts; keep it for the backoff.
            error.retry_after = parse_retry_after(response.headers["retry-after"])
        return error
    return UpstreamRejected("request rejected", provider=provider, status=status)


def raise_for_status(response: httpx.Response, *, provider: str) -> None:
    error = error_for_status(response, provider=provider)
    if error is not None:
        raise error


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded inline retries of idempotent calls for short transient faults.

    A brief 5xx, timeout, truncated body or a 429 whose Retry-After is short is retried here,
    so one hiccup doesn't restart a whole page walk. Anything longer is raised: the sync task
    retries with a Celery countdown, or stores ``next_sync_at`` (reliability.md §1).
    """

    tries: int = 4
    base_delay: float = 0.5
    max_delay: float = 8.0
    # A Retry-After above this is not waited out inline.
    max_inline_wait: float = 10.0

    def delay(self, attempt: int, error: UpstreamError) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or None to give up."""
        if attempt + 1 >= self.tries or error.permanent:
            return None
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None and retry_after > self.max_inline_wait:
            return None
        # Full jitter (AWS architecture blog), but never sooner than the upstream asked.
        backoff = random.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))
        return max(backoff, retry_after or 0.0)


NO_RETRY = RetryPolicy(tries=1)
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


class ProviderClient:
    """Common shape of a provider client: one httpx.Client, calls mapped to the error family.

    A client may be used from several threads at once (httpx.Client is thread-safe): a
    Retry-After or backoff wait one call decides holds back every call of the client, so
    concurrent requests never hammer an upstream that asked for a pause.
    """

    provider: str = ""
    retry_policy: RetryPolicy = NO_RETRY
    _paused_until: float = 0.0  # time.monotonic() before which no call of this client starts

    def __init__(self, http: httpx.Client):
        self.http = http
        self.requests_made = 0

    def close(self) -> None:
        self.http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _error_for(self, response: httpx.Response) -> UpstreamError | None:
        return error_for_status(response, provider=self.provider)

    def _send_once(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        self.requests_made += 1
        response = send(self.http, method, url, provider=self.provider, **kwargs)
        error = self._error_for(response)
        if error is not None:
            raise error
        return response

    def _with_retries(self, method: str, call: Callable[[], Any]) -> Any:
        policy = self.retry_policy if method.upper() in IDEMPOTENT_METHODS else NO_RETRY
        attempt = 0
        while True:
            self._wait_while_paused()
            try:
                return call()
            except UpstreamError as error:
                wait = policy.delay(attempt, error)
                if wait is None:
                    raise
                logger.info("retrying %s call after %s in %.1fs", self.provider, type(error).__name__, wait)
                if getattr(error, "retry_after", None) is not None:
                    # The upstream asked for a pause: it holds for the client's other calls too.
                    self._paused_until = max(self._paused_until, time.monotonic() + wait)
                time.sleep(wait)
                attempt += 1

    def _wait_while_paused(self) -> None:
        while (left := self._paused_until - time.monotonic()) > 0:
            time.sleep(left)

    def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return self._with_retries(method, lambda: self._send_once(method, url, **kwargs))

    def _json(self, method: str, url: str, **kwargs: Any) -> Any:
        return self._parsed(method, url, lambda r: parse_json(r, provider=self.provider), **kwargs)

    def _parsed(
        self, method: str, url: str, parse: Callable[[httpx.Response], T], **kwargs: Any
    ) -> T:
        """A call whose body ``parse`` reads; retried as a whole, so a truncated body (a
        transient fault of the same request) is asked for again."""
        return self._with_retries(method, lambda: parse(self._send_once(method, url, **kwargs)))
