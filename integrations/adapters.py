"""One adapter per provider: build its client from a Connection and page through one link.

Every adapter yields ``Page`` objects whose ``next_cursor`` is the JSON-safe position to
store on the link once that page's data has committed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta

import httpx
from django.conf import settings

from analytics.models import Provider

from .models import Connection, ParticipantLink
from .providers.asleep import AsleepClient
from .providers.base import CanonicalSession, Page
from .providers.beddit import BedditClient, BedditCursor
from .providers.transport import RetryPolicy, build_client

# Asleep has no "updated since": each sync re-reads this many days before the cursor so
# late uploads and recent re-scores are caught (RADAR-base's Fitbit route does the same).
ASLEEP_LOOKBACK_DAYS = 2
SYNC_RETRY_POLICY = RetryPolicy()


class Adapter:
    # Requests in flight while paging one link (Asleep: report reads). 1 unless the engine
    # raises it for a connection big enough to pipeline (integrations/sync.py).
    concurrency = 1

    def pages(self, link: ParticipantLink) -> Iterator[Page[CanonicalSession]]:
        raise NotImplementedError

    @property
    def requests_made(self) -> int:
        return self.client.requests_made


def http_concurrency() -> int:
    return max(1, int(getattr(settings, "SYNC_HTTP_CONCURRENCY", 8)))


def fetch_links() -> int:
    """Links of one connection paged at once (sync_pipeline.PageFetcher threads)."""
    return max(1, int(getattr(settings, "SYNC_FETCH_LINKS", 4)))


class AsleepAdapter(Adapter):
    def __init__(self, connection: Connection):
        # One report request per night: up to http_concurrency() at a time over one pooled
        # client, beside the list requests of the links paged at once.
        sockets = http_concurrency() + fetch_links() + 2
        pool = httpx.Limits(max_connections=sockets, max_keepalive_connections=sockets, keepalive_expiry=30)
        self.client = AsleepClient(
            connection.credentials.get("api_key", ""),
            http=build_client(connection.base_url, allow_private=settings.UPSTREAM_ALLOW_PRIVATE, limits=pool),
        )
        self.client.retry_policy = SYNC_RETRY_POLICY

    def pages(self, link):
        since = None
        if link.cursor:
            since = date.fromisoformat(link.cursor) - timedelta(days=ASLEEP_LOOKBACK_DAYS)
        yield from self.client.iter_sessions(link.upstream_user_id, date_gte=since, concurrency=self.concurrency)


class BedditAdapter(Adapter):
    def __init__(self, connection: Connection):
        credentials = connection.credentials
        self.client = BedditClient(
            username=credentials.get("username"),
            password=credentials.get("password"),
            token=credentials.get("token"),
            base_url=connection.base_url,
            allow_private=settings.UPSTREAM_ALLOW_PRIVATE,
        )
        self.client.retry_policy = SYNC_RETRY_POLICY

    def pages(self, link):
        # Everything updated since the cursor, in as many answers as the upstream needs.
        yield from self.client.iter_sleeps(BedditCursor.from_json(link.cursor), user_id=int(link.upstream_user_id))


ADAPTERS = {Provider.ASLEEP: AsleepAdapter, Provider.BEDDIT: BedditAdapter}


@contextmanager
def adapter_for(connection: Connection):
    try:
        factory = ADAPTERS[connection.provider]
    except KeyError:
        raise ValueError(f"{connection.provider} connections are not synced (PSG scorers run per upload)") from None
    adapter = factory(connection)
    try:
        yield adapter
    finally:
        adapter.client.close()
