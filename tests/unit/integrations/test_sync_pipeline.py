"""The sync pipeline: pages fetched ahead by a thread, committed in groups by the task thread;
Asleep's per-night reports read with bounded concurrency; a Retry-After pause shared by every
thread of a client (integrations/sync_pipeline.py, sync.py, providers/asleep.py, transport.py)."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import httpx
import pytest

from analytics.models import NightlyMetrics, SleepSession
from integrations.models import Connection, ParticipantLink, SyncRun, SyncRunStatus
from integrations.providers.asleep import AsleepClient
from integrations.providers.base import Page
from integrations.providers.errors import UpstreamNotFound, UpstreamUnavailable
from integrations.providers.transport import ProviderClient, RetryPolicy
from integrations.simulators.server import start_in_thread
from integrations.sync import connection_sync
from integrations.sync_pipeline import PageFetcher

from ...factories import OrganizationFactory, ParticipantFactory
from .conftest import complete_nights, linked_asleep_connection, stored_nights

KEY = "pipeline-test-key"


# --- the fetcher on its own ---------------------------------------------------------------------


class Link:
    def __init__(self, pk: int):
        self.pk = pk


class FakeAdapter:
    """Pages of `size` items per link; `fail` maps a link pk to the error its second page raises."""

    def __init__(self, pages_per_link: int = 2, size: int = 10, fail: dict | None = None):
        self.pages_per_link, self.size, self.fail = pages_per_link, size, fail or {}
        self.threads: set[str] = set()

    def pages(self, link):
        self.threads.add(threading.current_thread().name)
        for n in range(self.pages_per_link):
            if n == 1 and link.pk in self.fail:
                raise self.fail[link.pk]
            yield Page(tuple(f"{link.pk}-{n}-{i}" for i in range(self.size)), (), f"{link.pk}:{n}", False)


def _wait_until_fetched(fetcher: PageFetcher) -> None:
    for thread in fetcher._threads:
        thread.join(5)  # everything queued (the queue is large enough here)
        assert not thread.is_alive()


class PageFetcherTests:
    def test_it_groups_ready_pages_up_to_the_size_limit_in_fetch_order(self):
        adapter = FakeAdapter(pages_per_link=2, size=10)
        links = [Link(pk) for pk in (1, 2, 3)]
        with PageFetcher(adapter, links, max_pages=10) as fetcher:
            _wait_until_fetched(fetcher)
            batches = [[(f.link.pk, f.page.next_cursor) for f in batch] for batch in fetcher.batches(25)]
        assert batches == [[(1, "1:0"), (1, "1:1"), (2, "2:0")], [(2, "2:1"), (3, "3:0"), (3, "3:1")]]
        assert adapter.threads == {"sync-fetcher-0"}  # never the caller's thread

    def test_it_commits_each_page_alone_when_pages_arrive_one_by_one(self):
        release = threading.Event()

        class SlowAdapter(FakeAdapter):
            def pages(self, link):
                for page in super().pages(link):
                    yield page
                    release.wait(5)

        with PageFetcher(SlowAdapter(pages_per_link=2), [Link(1)], max_pages=10) as fetcher:
            batches = fetcher.batches(1000)
            first = next(batches)  # does not wait for the second page
            release.set()
            rest = list(batches)
        assert [len(first)] + [len(b) for b in rest] == [1, 1]

    def test_it_skips_a_link_whose_upstream_user_is_gone_and_syncs_the_others(self):
        adapter = FakeAdapter(pages_per_link=2, fail={2: UpstreamNotFound("gone")})
        with PageFetcher(adapter, [Link(1), Link(2), Link(3)], max_pages=10) as fetcher:
            got = [f.page.next_cursor for batch in fetcher.batches(1000) for f in batch]
        assert got == ["1:0", "1:1", "2:0", "3:0", "3:1"]

    def test_it_hands_over_the_pages_fetched_before_an_upstream_error_then_raises_it(self):
        adapter = FakeAdapter(pages_per_link=2, fail={2: UpstreamUnavailable("down")})
        got = []
        with PageFetcher(adapter, [Link(1), Link(2), Link(3)], max_pages=10) as fetcher:
            _wait_until_fetched(fetcher)
            with pytest.raises(UpstreamUnavailable):
                for batch in fetcher.batches(1000):
                    got += [f.page.next_cursor for f in batch]
        assert got == ["1:0", "1:1", "2:0"]  # link 3 was never fetched

    def test_in_lockstep_it_fetches_no_page_before_the_one_before_is_committed(self):
        committed: list = []
        committed_when_fetched: list[int] = []

        class Watching(FakeAdapter):
            def pages(self, link):
                for page in super().pages(link):
                    committed_when_fetched.append(len(committed))
                    yield page

        with PageFetcher(Watching(pages_per_link=3), [Link(1), Link(2)], max_pages=0) as fetcher:
            for batch in fetcher.batches(1000):
                time.sleep(0.05)  # a slow commit: the fetcher must wait for it
                committed.extend(batch)
        assert committed_when_fetched == [0, 1, 2, 3, 4, 5]

    def test_it_fetches_at_most_max_pages_ahead_of_the_commits(self):
        adapter = FakeAdapter(pages_per_link=50, size=1)
        with PageFetcher(adapter, [Link(1)], max_pages=3) as fetcher:
            time.sleep(0.3)
            assert fetcher._queue.qsize() == 3 and fetcher._threads[0].is_alive()
            assert sum(len(b) for b in fetcher.batches(2)) == 50

    def test_several_threads_page_different_links_each_link_in_order(self):
        started = threading.Barrier(3, timeout=5)

        class Meeting(FakeAdapter):
            def pages(self, link):
                if link.pk <= 3:
                    started.wait()  # three links in flight at once, or this times out
                yield from super().pages(link)

        adapter = Meeting(pages_per_link=3, size=1)
        links = [Link(pk) for pk in range(1, 11)]
        with PageFetcher(adapter, links, max_pages=100, threads=3) as fetcher:
            got = [f.page.next_cursor for batch in fetcher.batches(1000) for f in batch]
        assert len(adapter.threads) == 3
        assert sorted(got) == sorted(f"{pk}:{n}" for pk in range(1, 11) for n in range(3))
        for pk in range(1, 11):  # one link's pages keep their order
            assert [c for c in got if c.split(":")[0] == str(pk)] == [f"{pk}:{n}" for n in range(3)]

    def test_an_error_in_one_thread_stops_the_others_and_is_raised(self):
        adapter = FakeAdapter(pages_per_link=2, size=1, fail={3: UpstreamUnavailable("down")})
        links = [Link(pk) for pk in range(1, 200)]
        with PageFetcher(adapter, links, max_pages=1000, threads=4) as fetcher:
            with pytest.raises(UpstreamUnavailable):
                for _ in fetcher.batches(1000):
                    pass
            _wait_until_fetched(fetcher)
            assert fetcher._queue.qsize() < 2 * 199  # the others stopped: not every link fetched

    def test_lockstep_uses_one_thread_whatever_is_asked(self):
        with PageFetcher(FakeAdapter(), [Link(1)], max_pages=0, threads=4) as fetcher:
            assert len(fetcher._threads) == 1
            list(fetcher.batches(1000))


# --- the engine with the Asleep simulator -------------------------------------------------------


@pytest.fixture
def asleep_sim():
    with start_in_thread("asleep", seed=21, keys=[KEY]) as sim:
        yield sim


@pytest.fixture
def asleep_connection(db, asleep_sim, settings):
    settings.UPSTREAM_ALLOW_PRIVATE = True
    return linked_asleep_connection(asleep_sim, KEY, users=5, nights=8)


_truth, _stored = complete_nights, stored_nights


@pytest.mark.django_db
class GroupCommitTests:
    @pytest.fixture(autouse=True)
    def pipelined(self, settings):
        settings.SYNC_PIPELINE_MIN_LINKS = 1  # fetch ahead even for these 5 links

    def test_it_stores_every_night_once_with_its_metrics_in_few_commits(
        self, asleep_sim, asleep_connection, settings, monkeypatch
    ):
        from integrations import sync

        settings.SYNC_COMMIT_SESSIONS = 10_000
        commits = []
        real = sync.sleep_sessions_upsert

        def slow_first(**kwargs):
            commits.append(len(kwargs["records"]))
            if len(commits) == 1:
                time.sleep(1.0)  # meanwhile the other four links are fetched and wait together
            return real(**kwargs)

        monkeypatch.setattr(sync, "sleep_sessions_upsert", slow_first)
        outcome = connection_sync(connection_id=asleep_connection.pk)
        assert outcome.status == "succeeded"
        assert _stored(asleep_connection) == _truth(asleep_sim)
        sessions = SleepSession.objects.filter(participant__upstream_links__connection=asleep_connection)
        assert NightlyMetrics.objects.filter(session__in=sessions).count() == sessions.count()
        run = SyncRun.objects.get(pk=outcome.run_id)
        assert run.fetched == run.created == sessions.count()
        assert all(link.cursor for link in asleep_connection.links.all())
        assert len(commits) == 2 and sum(commits) == sessions.count()  # link 1, then links 2-5 at once

        again = connection_sync(connection_id=asleep_connection.pk)
        assert (again.counts["created"], again.counts["updated"]) == (0, 0)

    def test_it_moves_a_cursor_only_with_its_committed_data_when_a_later_commit_fails(
        self, asleep_sim, asleep_connection, settings, monkeypatch
    ):
        from integrations import sync

        settings.SYNC_COMMIT_SESSIONS = 1  # one page per commit: the second commit fails
        real = sync.sleep_sessions_upsert
        calls = []

        def failing_second(**kwargs):
            calls.append(kwargs)
            if len(calls) == 2:
                raise RuntimeError("database went away")
            return real(**kwargs)

        monkeypatch.setattr(sync, "sleep_sessions_upsert", failing_second)
        with pytest.raises(RuntimeError):
            connection_sync(connection_id=asleep_connection.pk)

        links = list(asleep_connection.links.order_by("pk"))
        has_nights = {link.pk for link in links if SleepSession.objects.filter(participant_id=link.participant_id)}
        # The first commit's link (links are fetched 4 at a time: any of them) has its cursor
        # and its nights; the others, fetched ahead maybe but never committed, have neither.
        assert len(has_nights) == 1
        assert {link.pk for link in links if link.cursor is not None} == has_nights
        run = SyncRun.objects.get(connection=asleep_connection)
        assert run.status == SyncRunStatus.FAILED and run.fetched == run.created > 0
        asleep_connection.refresh_from_db()
        assert asleep_connection.lease_token is None

        monkeypatch.setattr(sync, "sleep_sessions_upsert", real)
        assert connection_sync(connection_id=asleep_connection.pk).status == "succeeded"
        assert _stored(asleep_connection) == _truth(asleep_sim)

    def test_it_reads_reports_concurrently_only_for_a_connection_big_enough_to_pipeline(
        self, asleep_sim, asleep_connection, settings
    ):
        settings.SYNC_HTTP_CONCURRENCY, settings.SYNC_FETCH_LINKS = 4, 2
        asleep_sim.configure(latency=0.03)
        settings.SYNC_PIPELINE_MIN_LINKS = 6  # 5 links: lockstep, one request at a time
        connection_sync(connection_id=asleep_connection.pk)
        assert _max_overlap(asleep_sim.log()) == 1
        asleep_sim.call("DELETE", "/_sim/log")
        settings.SYNC_PIPELINE_MIN_LINKS = 5
        connection_sync(connection_id=asleep_connection.pk)
        # Report reads of the shared pool, beside the list requests of the links paged at once.
        assert 2 <= _max_overlap(asleep_sim.log()) <= 4 + 2

    def test_it_skips_a_participant_gone_upstream_and_syncs_the_others(self, asleep_sim, asleep_connection):
        gone = asleep_connection.links.order_by("pk")[1]
        asleep_sim.call("DELETE", f"/_sim/users/{gone.upstream_user_id}")
        outcome = connection_sync(connection_id=asleep_connection.pk)
        assert outcome.status == "succeeded"
        assert _stored(asleep_connection) == _truth(asleep_sim)
        assert {u for u, _ in _stored(asleep_connection)} == set(
            asleep_connection.links.exclude(pk=gone.pk).values_list("upstream_user_id", flat=True)
        )


# --- concurrency of the HTTP side ---------------------------------------------------------------


def _max_overlap(entries: list[dict]) -> int:
    events = sorted([(e["t"], 1) for e in entries] + [(e["t_end"], -1) for e in entries])
    level = peak = 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    return peak


class AsleepReportConcurrencyTests:
    def test_it_reads_reports_concurrently_within_the_bound_and_keeps_their_order(self, asleep_sim):
        [user] = asleep_sim.add_users(count=1, nights=20)
        with AsleepClient(KEY, base_url=asleep_sim.url, allow_private=True) as client:
            sequential = list(client.iter_sessions(user["id"]))
        asleep_sim.configure(latency=0.05)
        asleep_sim.call("DELETE", "/_sim/log")
        with AsleepClient(KEY, base_url=asleep_sim.url, allow_private=True) as client:
            concurrent = list(client.iter_sessions(user["id"], concurrency=4))
        assert concurrent == sequential
        reports = [e for e in asleep_sim.log() if e["path"].startswith("/data/v3/sessions/")]
        assert len(reports) == len(sequential[0].items) >= 15
        assert 2 <= _max_overlap(reports) <= 4

    def test_a_failing_report_fails_the_page_and_cancels_the_reads_not_started(self, asleep_sim):
        [user] = asleep_sim.add_users(count=1, nights=30)
        asleep_sim.configure(latency=0.02, schedule={3: "500", 4: "500"}, fault_paths="^/data/v3/")
        asleep_sim.call("DELETE", "/_sim/log")
        with AsleepClient(KEY, base_url=asleep_sim.url, allow_private=True) as client:
            with pytest.raises(UpstreamUnavailable):
                list(client.iter_sessions(user["id"], concurrency=2))
            time.sleep(0.3)
        reports = [e for e in asleep_sim.log() if e["path"].startswith("/data/v3/")]
        assert len(reports) < 10  # not the page's ~28 reads: the rest were cancelled


class SharedPauseTests:
    def test_a_retry_after_holds_back_the_other_threads_of_the_client(self):
        times: list[tuple[str, float]] = []
        first = threading.Event()

        def handler(request: httpx.Request) -> httpx.Response:
            times.append((request.url.path, time.monotonic()))
            if request.url.path == "/a" and not first.is_set():
                first.set()
                return httpx.Response(429, headers={"Retry-After": "1"})
            return httpx.Response(200, json={})

        class Client(ProviderClient):
            provider = "test"
            retry_policy = RetryPolicy(tries=3, base_delay=0.01, max_inline_wait=5)

        client = Client(httpx.Client(base_url="http://upstream.test", transport=httpx.MockTransport(handler)))
        a = threading.Thread(target=client._json, args=("GET", "/a"))
        a.start()
        assert first.wait(2)
        deadline = time.monotonic() + 2
        while client._paused_until == 0.0 and time.monotonic() < deadline:
            time.sleep(0.005)  # until the first thread has read the 429 and set the pause
        client._json("GET", "/b")  # another thread of the same client, during the pause
        a.join(5)
        limited_at = times[0][1]
        assert [p for p, _ in times] == ["/a", "/a", "/b"] or [p for p, _ in times] == ["/a", "/b", "/a"]
        assert all(t >= limited_at + 1.0 - 0.01 for _, t in times[1:])


# --- a re-sync of unchanged data ----------------------------------------------------------------


@pytest.mark.django_db
class UnchangedResyncTests:
    def test_an_unchanged_account_writes_nothing_but_the_runs_end_and_the_links_stamp(self, settings):
        from django.db import connection as db
        from django.test.utils import CaptureQueriesContext

        settings.UPSTREAM_ALLOW_PRIVATE = True
        with start_in_thread("beddit", seed=5) as sim:
            organization = OrganizationFactory()
            (user,) = sim.add_users(count=1, nights=6)
            connection = Connection.objects.create(
                organization=organization, name="Beddit", provider="beddit", base_url=sim.url,
                credentials={"token": sim.credential(user=user["id"])}, sync_interval=timedelta(hours=1),
            )
            link = ParticipantLink.objects.create(
                organization=organization, connection=connection,
                participant=ParticipantFactory(organization=organization), upstream_user_id=str(user["id"]),
            )
            first = connection_sync(connection_id=connection.pk)
            assert first.status == "succeeded" and first.counts["created"] > 0
            link.refresh_from_db()
            cursor, stamped = link.cursor, link.last_synced_at

            with CaptureQueriesContext(db) as queries:
                again = connection_sync(connection_id=connection.pk)
            assert again.status == "succeeded" and again.counts["fetched"] == 0
            link.refresh_from_db()
            assert link.cursor == cursor and link.last_synced_at > stamped
            page_commits = [q["sql"] for q in queries if '"fetched" = (' in q["sql"] and "syncrun" in q["sql"]]
            assert page_commits == []  # no page transaction: nothing to write
            connection.refresh_from_db()
            assert connection.lease_token is None and connection.last_synced_at is not None
            assert SyncRun.objects.get(pk=again.run_id).status == SyncRunStatus.SUCCEEDED

            # Something new upstream: the page commits again.
            added = sim.call("POST", f"/_sim/users/{user['id']}/nights", json={"count": 1})["added"]
            third = connection_sync(connection_id=connection.pk)
            assert third.counts["created"] == len(added) == 1

    def test_an_unchanged_lookback_is_read_but_not_written(self, asleep_sim, asleep_connection):
        from django.db import connection as db
        from django.test.utils import CaptureQueriesContext

        assert connection_sync(connection_id=asleep_connection.pk).status == "succeeded"
        stamps = dict(asleep_connection.links.values_list("pk", "last_synced_at"))
        with CaptureQueriesContext(db) as queries:
            again = connection_sync(connection_id=asleep_connection.pk)
        run = SyncRun.objects.get(pk=again.run_id)
        # Asleep re-reads its 2-day lookback: those nights count as fetched and unchanged.
        assert run.fetched == run.unchanged > 0 and (run.created, run.updated) == (0, 0)
        assert not [q for q in queries if "INSERT" in q["sql"] and "sleepsession" in q["sql"]]
        assert not [q for q in queries if '"fetched" = (' in q["sql"]]  # no page commit
        assert all(link.last_synced_at > stamps[link.pk] for link in asleep_connection.links.all())

        # A re-scored night in the lookback is a change: its page commits.
        user = asleep_connection.links.order_by("pk").first().upstream_user_id
        newest = max(t["night_of"] for t in asleep_sim.truth(user=user)["sessions"])
        asleep_sim.call("POST", f"/_sim/users/{user}/revise", json={"dates": [newest]})
        third = SyncRun.objects.get(pk=connection_sync(connection_id=asleep_connection.pk).run_id)
        assert third.updated == 1
