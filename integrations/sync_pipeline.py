"""Fetch a connection's pages in a background thread while the task thread commits them.

The sync engine (integrations/sync.py) is a two-stage pipeline:
- a fetcher thread walks the links in order and pages through each one (HTTP and parsing
  only, never the database), handing pages over through a bounded queue, so memory stays
  flat however many nights a connection holds;
- the task thread owns the database: it waits for a page, then takes every page already
  waiting (up to ``max_sessions`` records) and commits them together. When the upstream is
  fast, batches grow and the fixed cost of a commit (lease check, the vectorized metrics
  call, the main-sleep pass) is paid once for many links; when it is slow, each page commits
  on its own as soon as it arrives. Either way a link's cursor commits with its data.

With ``max_pages=0`` the two stages run in lockstep: the fetcher sends no request until the
page before has committed, as a plain loop would (the engine does this for connections of a
few links, where there is nothing to amortize and every page should be visible at once).

An upstream error stops the fetcher; the pages fetched before it are still handed over (and
committed) before the error is raised in the task thread. ``UpstreamNotFound`` concerns one
participant: that link is skipped and the others go on.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from .models import ParticipantLink
from .providers.base import Page
from .providers.errors import UpstreamNotFound

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.5  # how often a blocked side looks at the stop flag


@dataclass(frozen=True)
class FetchedPage:
    link: ParticipantLink
    page: Page

    @property
    def size(self) -> int:
        return len(self.page.items) + len(self.page.quarantined)


@dataclass(frozen=True)
class _Failed:
    error: BaseException


_DONE = object()


class PageFetcher:
    """``with PageFetcher(adapter, links) as fetcher: for batch in fetcher.batches(n): ...``

    ``threads`` links are paged at once (each link by one thread, so its pages stay in order):
    a link's requests wait on each other, different links' need not, and a re-sync that asks
    each link one short question is not a queue of round trips. Lockstep uses one.
    """

    def __init__(
        self, adapter, links: Iterable[ParticipantLink], *, max_pages: int = 16, threads: int = 1
    ):
        self._adapter = adapter
        self._links = iter(list(links))
        self._links_lock = threading.Lock()
        self._lockstep = max_pages <= 0
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, max_pages))
        self._committed = threading.Semaphore(0)  # lockstep: one release per committed page
        self._stop = threading.Event()
        count = 1 if self._lockstep else max(1, threads)
        self._running = count
        self._running_lock = threading.Lock()
        # Daemon threads: a fetch stuck in a read must never hold up a worker's exit.
        self._threads = [
            threading.Thread(target=self._run, name=f"sync-fetcher-{i}", daemon=True)
            for i in range(count)
        ]

    def __enter__(self) -> PageFetcher:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Ask the fetcher to end; it does after its current request (the caller closes the client)."""
        self._stop.set()

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def _next_link(self) -> ParticipantLink | None:
        with self._links_lock:
            return next(self._links, None)

    def _run(self) -> None:
        try:
            while (link := self._next_link()) is not None:
                if self._stop.is_set():
                    return
                try:
                    for page in self._adapter.pages(link):
                        if not self._put(FetchedPage(link, page)):
                            return
                        if self._lockstep and not self._wait_committed():
                            return
                except UpstreamNotFound:
                    # One participant's upstream account is gone; the others still sync.
                    logger.warning("sync link=%s: upstream user not found", link.pk)
            with self._running_lock:
                self._running -= 1
                last = self._running == 0
            if last:
                self._put(_DONE)  # every link paged, by every thread
        except BaseException as exc:  # handed to the task thread, which decides
            self._put(_Failed(exc))
            self._stop.set()  # the other threads end after their current request

    def _wait_committed(self) -> bool:
        while not self._stop.is_set():
            if self._committed.acquire(timeout=POLL_SECONDS):
                return True
        return False

    def _get(self) -> object:
        while True:
            try:
                return self._queue.get(timeout=POLL_SECONDS)
            except queue.Empty:
                alive = any(thread.is_alive() for thread in self._threads)
                if not alive and self._queue.empty():
                    raise RuntimeError("sync fetcher ended without a result") from None

    def batches(self, max_sessions: int) -> Iterator[list[FetchedPage]]:
        """Groups of fetched pages in fetch order: wait for one, then take what is ready."""
        while True:
            batch: list[FetchedPage] = []
            size = 0
            item = self._get()
            failure: BaseException | None = None
            done = False
            while True:
                if item is _DONE:
                    done = True
                    break
                if isinstance(item, _Failed):
                    failure = item.error
                    break
                batch.append(item)
                size += item.size
                if size >= max_sessions:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch:
                yield batch  # the caller commits it before asking for the next
                if self._lockstep:
                    self._committed.release()
            if failure is not None:
                raise failure
            if done:
                return
