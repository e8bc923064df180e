"""Benchmark ingestion: sync P participants x N nights from the simulators into PostgreSQL.

    .venv/bin/python bench/ingest.py                                   # 1,000 x 90, asleep and beddit
    .venv/bin/python bench/ingest.py --participants 200 --nights 30 --providers beddit
    .venv/bin/python bench/ingest.py --keep                            # keep the database afterwards

Needs PostgreSQL (DATABASE_URL, default postgres://postgres@127.0.0.1:5432/bench_ingest;
the database is created, migrated and dropped afterwards unless --keep) and Redis
(--redis-url, default REDIS_URL or redis://127.0.0.1:6379/0; tasks go to a private queue,
nothing is flushed).

Per provider, with the simulator served by its own process (uvicorn, its CPU apart from the
worker's) and one real Celery worker (prefork, --worker-concurrency processes). Before anything
is measured the simulator renders every night once (`/_sim/warm`): a real upstream serves the
records it holds, it does not synthesize them per request (--no-warm measures the cold way):
  1. ceiling: the requests a sync makes, fired alone by a tight concurrent client (asyncio,
     raw HTTP/1.1 keep-alive, --ceiling-concurrency connections), no database: what the
     simulator can serve (httpx itself costs as much CPU per request as the simulator); the
     time counted is the time spent waiting for answers, not reading them;
  2. sync: every connection due at once and synced by the worker, from the scheduler tick
     that hands them out (as beat does) to the last committed run;
     requests counted by the simulator; peak RSS of all worker processes sampled from /proc;
  3. re-sync: the same again with nothing changed upstream;
  4. naive: one request and one ORM save() (and one metrics call) per session, in this
     process, on --naive-participants participants, extrapolated to P x N.
Asleep: one connection, one upstream user per participant, one report request per night.
Beddit: one connection per participant (a token reads its owner's nights only); the list
answer carries every night. Prints a table per provider; asserts nothing (style.md rule 40).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_DB_URL = "postgres://postgres@127.0.0.1:5432/bench_ingest"
QUEUE = "bench_ingest"
ASLEEP_KEY = "bench-asleep-key"  # the simulator's key, not a secret
ORG_SLUG = "bench-ingest"
# Settings of a production-like worker; secrets are bench-only values.
BENCH_ENV = {
    "DJANGO_SETTINGS_MODULE": "config.settings.base",
    "DJANGO_DEBUG": "false",
    "DJANGO_SECRET_KEY": "bench-ingest-secret-key-not-used-anywhere-else-0123456789",
    "FIELD_ENCRYPTION_KEYS": "YmVuY2gtaW5nZXN0LWZlcm5ldC1rZXktMzItYnl0ZSE=",
    "PLATFORM_ENV_FILE": "/nonexistent",
    "UPSTREAM_ALLOW_PRIVATE": "true",
    "LOG_LEVEL": "WARNING",
}


# --- database ---------------------------------------------------------------------------------


def _admin_url(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/postgres")), parts.path.lstrip("/")


def database_create(url: str) -> None:
    import psycopg

    admin, name = _admin_url(url)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def database_drop(url: str) -> None:
    import psycopg

    admin, name = _admin_url(url)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def setup_django(url: str) -> None:
    os.environ.update(BENCH_ENV)
    os.environ["DATABASE_URL"] = url
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


# --- worker -----------------------------------------------------------------------------------


class Worker:
    """A `celery worker` process group on a private queue, with its RSS sampled from /proc."""

    def __init__(self, *, db_url: str, redis_url: str, concurrency: int, log_path: Path):
        env = {**os.environ, **BENCH_ENV, "DATABASE_URL": db_url, "CELERY_BROKER_URL": redis_url,
               "PYTHONUNBUFFERED": "1"}
        command = [sys.executable, "-m", "celery", "-A", "config", "worker", "-P", "prefork",
                   "-c", str(concurrency), "-Q", QUEUE, "--prefetch-multiplier", "1", "--without-gossip",
                   "--without-mingle", "--without-heartbeat", "--loglevel", "INFO"]
        self.log_path = log_path
        self._log = open(log_path, "w")
        self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        self.peak_rss = 0
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited: {self.log_path.read_text()[-2000:]}")
            if " ready." in self.log_path.read_text():
                return
            time.sleep(0.2)
        raise RuntimeError("worker not ready")

    def pids(self) -> list[int]:
        found = [self.process.pid]
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = Path(f"/proc/{entry}/stat").read_text()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == self.process.pid:
                    found.append(int(entry))
        return found

    def rss(self) -> int:
        """Memory of the whole worker (main process and pool children), in bytes.

        PSS (proportional set size): a page shared by the forked children counts once, split
        between them, as the machine sees it; summed RSS would count it once per process.
        """
        total = 0
        for pid in self.pids():
            try:
                for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                    if line.startswith("Pss:"):
                        total += int(line.split()[1]) * 1024
                        break
            except OSError:
                pass
        return total

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            self.peak_rss = max(self.peak_rss, self.rss())

    def reset_peak(self) -> None:
        self.peak_rss = self.rss()

    def stop(self) -> None:
        self._stop.set()
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait(10)
        self._log.close()


# --- seeding ----------------------------------------------------------------------------------


def seed(provider: str, sim, participants: int, nights: int):
    """An organization with `participants` people linked to simulator users with `nights` nights."""
    from django.db import transaction

    from integrations.models import Connection, ParticipantLink
    from tenants.models import Organization, Participant

    last_night = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    users = []
    for start in range(0, participants, 200):  # keeps each control call short
        users += sim.add_users(count=min(200, participants - start), nights=nights, last_night=last_night)
    with transaction.atomic():
        org = Organization.objects.create(slug=f"{ORG_SLUG}-{provider}", name=f"Bench {provider}", timezone="UTC")
        people = Participant.objects.bulk_create(
            Participant(organization=org, name=f"Person {i}", email=f"p{i}@bench.test") for i in range(participants)
        )
        if provider == "asleep":
            sim.credential(value=ASLEEP_KEY)
            connection = Connection.objects.create(
                organization=org, provider="asleep", name="Asleep", base_url=sim.url,
                credentials={"api_key": ASLEEP_KEY}, sync_interval=timedelta(hours=1),
            )
            ParticipantLink.objects.bulk_create(
                ParticipantLink(organization=org, connection=connection, participant=p, upstream_user_id=u["id"])
                for p, u in zip(people, users, strict=True)
            )
            connections = [connection]
        else:
            connections = []
            for person, user in zip(people, users, strict=True):
                token = sim.credential(user=user["id"])
                connection = Connection.objects.create(
                    organization=org, provider="beddit", name=f"Beddit {user['id']}", base_url=sim.url,
                    credentials={"token": token}, sync_interval=timedelta(hours=1),
                )
                ParticipantLink.objects.create(organization=org, connection=connection, participant=person,
                                               upstream_user_id=str(user["id"]))
                connections.append(connection)
    return org, connections


def sim_requests(sim) -> int:
    return sim.call("GET", "/_sim/log", params={"since": 10**12})["requests"]


def sim_clear_log(sim) -> None:
    sim.call("DELETE", "/_sim/log")  # the simulator logs every request; keep its memory flat


# --- ceiling ----------------------------------------------------------------------------------


class RawHttp:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams, for the ceiling only.

    httpx spends about a millisecond of CPU per request on this machine, as much as the
    simulator spends answering it: on 2 cores a ceiling measured with it measures the client.
    This one writes the request line and headers and reads Content-Length bytes, nothing more.
    """

    def __init__(self, url: str):
        parts = urlsplit(url)
        self.host, self.port = parts.hostname, parts.port
        self.reader = self.writer = None

    async def get(self, path: str, headers: dict[str, str]) -> bytes:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        lines = [f"GET {path} HTTP/1.1", f"Host: {self.host}:{self.port}"] + [f"{k}: {v}" for k, v in headers.items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        status = int((await self.reader.readline()).split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
        body = await self.reader.readexactly(length)
        if status != 200:
            raise RuntimeError(f"ceiling request {path} answered {status}")
        return body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def _fire(url: str, requests: list[tuple[str, dict]], concurrency: int) -> list[bytes]:
    """Every (path, headers) request over `concurrency` keep-alive connections; bodies in order."""
    bodies: list[bytes] = [b""] * len(requests)
    next_index = iter(range(len(requests)))

    async def connection_worker():
        client = RawHttp(url)
        try:
            for i in next_index:
                bodies[i] = await client.get(*requests[i])
        finally:
            client.close()

    await asyncio.gather(*(connection_worker() for _ in range(concurrency)))
    return bodies


def _timed_fire(url: str, requests: list[tuple[str, dict]], concurrency: int) -> tuple[list[bytes], float]:
    started = time.perf_counter()
    bodies = asyncio.run(_fire(url, requests, concurrency))
    return bodies, time.perf_counter() - started


def _ceiling_requests(
    provider: str, sim, links: list[tuple[str, str]], concurrency: int
) -> tuple[int, int, float]:
    """Fire the requests a sync makes, as fast as the simulator answers.

    Returns (requests, sessions, seconds spent waiting for answers): reading the bodies
    (counting nights, finding Asleep's report ids) is the client's work, not the simulator's.
    """
    import json
    from urllib.parse import quote, urlencode

    if provider == "beddit":
        requests = [(f"/api/v1/user/{user}/sleep?updated_after=0.0", {"Authorization": f"UserToken {token}"})
                    for user, token in links]
        bodies, seconds = _timed_fire(sim.url, requests, concurrency)
        return len(requests), sum(len(json.loads(b)) for b in bodies), seconds
    headers = {user: {"x-api-key": ASLEEP_KEY, "x-user-id": user, "timezone": "UTC"} for user, _ in links}
    query = urlencode({"offset": 0, "limit": 100, "order_by": "ASC"})
    lists = [(f"/data/v1/sessions?{query}", headers[user]) for user, _ in links]
    listed, list_seconds = _timed_fire(sim.url, lists, concurrency)
    reports = [
        (f"/data/v3/sessions/{quote(item['session_id'])}", headers[user])
        for (user, _), body in zip(links, listed, strict=True)
        for item in json.loads(body)["result"]["sleep_session_list"]
        if item["state"] == "COMPLETE"
    ]
    _, report_seconds = _timed_fire(sim.url, reports, concurrency)
    return len(lists) + len(reports), len(reports), list_seconds + report_seconds


def ceiling(provider: str, sim, connections, concurrency: int) -> dict:
    from integrations.models import ParticipantLink

    links = [
        (link.upstream_user_id, link.connection.credentials.get("token", ""))
        for link in ParticipantLink.objects.filter(connection__in=connections).select_related("connection")
    ]
    requests, sessions, seconds = _ceiling_requests(provider, sim, links, concurrency)
    return {"seconds": seconds, "requests": requests, "sessions": sessions}


# --- sync through the worker ------------------------------------------------------------------


def sync_all(connections, worker: Worker, sim, *, timeout: float) -> dict:
    from django.db.models import Sum

    from django.utils import timezone

    from config.celery_app import app
    from integrations.models import Connection, SyncRun, SyncRunStatus

    ids = [c.pk for c in connections]
    sim_clear_log(sim)
    before = sim_requests(sim)
    worker.reset_peak()
    since = datetime.now(UTC)
    started = time.perf_counter()
    # As beat does: the connections fall due and one scheduler tick hands them out (small
    # ones in batches, integrations/sync_batch.py), to the queue the tick came from.
    Connection.objects.filter(pk__in=ids).update(next_sync_at=timezone.now())
    app.send_task("integrations.schedule_due_syncs", queue=QUEUE)
    runs = SyncRun.objects.filter(connection_id__in=ids, started_at__gte=since)
    deadline = time.monotonic() + timeout
    while True:
        done = runs.filter(status=SyncRunStatus.SUCCEEDED).values("connection_id").distinct().count()
        if done == len(ids):
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"sync not done after {timeout:.0f}s: {done}/{len(ids)} connections")
        time.sleep(0.1)
    last = max(runs.values_list("finished_at", flat=True))
    seconds = (last - since).total_seconds()  # to the last commit, not to our poll
    totals = runs.filter(status=SyncRunStatus.SUCCEEDED).aggregate(
        fetched=Sum("fetched"), created=Sum("created"), updated=Sum("updated"), unchanged=Sum("unchanged"),
        quarantined=Sum("quarantined"),
    )
    failed = runs.exclude(status=SyncRunStatus.SUCCEEDED).count()
    time.sleep(0.3)  # one more RSS sample after the last commit
    return {
        "seconds": max(seconds, 1e-6),
        "wall": time.perf_counter() - started,
        "requests": sim_requests(sim) - before,
        "peak_rss": worker.peak_rss,
        "failed_runs": failed,
        **{k: v or 0 for k, v in totals.items()},
    }


# --- the naive way ----------------------------------------------------------------------------


def naive(provider: str, sim, org, participants: int, nights: int) -> dict:
    """One request and one ORM save() per session (and its metrics one at a time)."""
    from analytics.models import SleepSession
    from analytics.services import nightly_metrics_compute
    from integrations.models import ParticipantLink
    from integrations.providers.asleep import AsleepClient
    from integrations.providers.base import content_hash
    from integrations.providers.beddit import BedditClient
    from tenants.models import Organization, Participant

    naive_org = Organization.objects.create(slug=f"{org.slug}-naive", name="Naive", timezone="UTC")
    links = list(ParticipantLink.objects.filter(organization=org).select_related("connection")[:participants])
    people = {link.pk: Participant.objects.create(organization=naive_org, name="Naive") for link in links}
    sim_clear_log(sim)
    before = sim_requests(sim)
    sessions = 0
    started = time.perf_counter()

    def save(participant, night):
        record = SleepSession(
            organization=naive_org, participant=participant, provider=night.provider,
            upstream_id=night.upstream_id, start=night.start, end=night.end, timezone=night.timezone,
            epoch_seconds=night.epoch_seconds, stages=night.stages, upstream_stats=night.upstream_stats,
            upstream_updated_at=night.upstream_updated_at, content_hash=content_hash(night),
        )
        record.save()
        nightly_metrics_compute(organization=naive_org, session_ids=[record.pk])

    for link in links:
        participant = people[link.pk]
        if provider == "asleep":
            with AsleepClient(ASLEEP_KEY, base_url=sim.url, allow_private=True) as client:
                for summary in client.list_sessions(link.upstream_user_id).items:
                    if summary.complete:
                        night = client.get_session(link.upstream_user_id, summary.session_id)
                        if night is not None:
                            save(participant, night)
                            sessions += 1
        else:
            token = link.connection.credentials["token"]
            with BedditClient(token=token, base_url=sim.url, allow_private=True) as client:
                last = datetime.now(UTC).date()
                for day in range(nights + 2):
                    date_ = last - timedelta(days=day)
                    for night in client.fetch_sleeps_between(date_, date_, user_id=int(link.upstream_user_id)).items:
                        save(participant, night)
                        sessions += 1
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "sessions": sessions, "requests": sim_requests(sim) - before,
            "participants": len(links)}


# --- report -----------------------------------------------------------------------------------


def fmt_rate(n: float) -> str:
    return f"{n:,.0f}"


def table(provider: str, args, result: dict) -> str:
    ceil, sync, resync, slow = result["ceiling"], result["sync"], result["resync"], result["naive"]
    sessions = sync["fetched"]
    sync_rate = sessions / sync["seconds"]
    ceil_rate = ceil["sessions"] / ceil["seconds"]
    naive_rate = slow["sessions"] / slow["seconds"] if slow["sessions"] else float("nan")
    naive_total = sessions / naive_rate if naive_rate else float("nan")
    rows = [
        ("simulator alone (ceiling)", f"{ceil['seconds']:.1f}", fmt_rate(ceil_rate), f"{ceil['requests']:,}", "-",
         f"{sync['seconds'] / ceil['seconds']:.2f}x the ceiling's time"),
        ("sync through the worker", f"{sync['seconds']:.1f}", fmt_rate(sync_rate), f"{sync['requests']:,}",
         f"{sync['peak_rss'] / 2**20:.0f}", f"created {sync['created']:,}, failed runs {sync['failed_runs']}"),
        ("re-sync, nothing changed", f"{resync['seconds']:.1f}", "-", f"{resync['requests']:,}",
         f"{resync['peak_rss'] / 2**20:.0f}",
         f"created {resync['created']}, updated {resync['updated']}, unchanged {resync['unchanged']:,}"),
        (f"naive (measured on {slow['participants']} participants)", f"{naive_total:.0f} (extrapolated)",
         fmt_rate(naive_rate), f"{slow['requests']:,} for {slow['sessions']:,} sessions", "-",
         f"sync is {sync_rate / naive_rate:.1f}x faster"),
    ]
    head = f"\n{provider}: {args.participants:,} participants x {args.nights} nights = {sessions:,} sessions\n\n"
    lines = ["| way | seconds | sessions/s | requests | peak worker MB (PSS) | notes |", "|---|---|---|---|---|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return head + "\n".join(lines) + "\n"


def run_provider(provider: str, args, worker: Worker) -> dict:
    from integrations.simulators.server import start_in_subprocess

    sim = start_in_subprocess(provider, seed=7, env={"PYTHONPATH": str(ROOT)})
    try:
        t = time.perf_counter()
        org, connections = seed(provider, sim, args.participants, args.nights)
        print(f"[{provider}] seeded in {time.perf_counter() - t:.1f}s", flush=True)
        if args.warm:
            # A real upstream serves records it holds; the simulator synthesizes each night the
            # first time it is asked. Render every night once, before anything is measured.
            warmed = sim.warm()
            print(f"[{provider}] simulator rendered {warmed['rendered']:,} nights in {warmed['seconds']:.1f}s",
                  flush=True)
            # A short first pass warms the interpreter and the sockets.
            ceiling(provider, sim, connections[: max(1, len(connections) // 10)], args.ceiling_concurrency)
        sim_clear_log(sim)
        ceil = ceiling(provider, sim, connections, args.ceiling_concurrency)
        print(f"[{provider}] ceiling {ceil}", flush=True)
        sync = sync_all(connections, worker, sim, timeout=args.timeout)
        print(f"[{provider}] sync {sync}", flush=True)
        resync = sync_all(connections, worker, sim, timeout=args.timeout)
        print(f"[{provider}] re-sync {resync}", flush=True)
        slow = naive(provider, sim, org, args.naive_participants, args.nights)
        print(f"[{provider}] naive {slow}", flush=True)
        return {"ceiling": ceil, "sync": sync, "resync": resync, "naive": slow}
    finally:
        sim.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--participants", type=int, default=1000)
    parser.add_argument("--nights", type=int, default=90)
    parser.add_argument("--providers", default="asleep,beddit")
    parser.add_argument("--naive-participants", type=int, default=10)
    parser.add_argument("--worker-concurrency", type=int, default=2)
    parser.add_argument("--ceiling-concurrency", type=int, default=16)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", DEFAULT_DB_URL))
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--no-warm", dest="warm", action="store_false")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    args = parser.parse_args(argv)
    if not args.database_url.startswith("postgres"):
        parser.error("the benchmark needs PostgreSQL (--database-url postgres://...)")

    os.environ["CELERY_BROKER_URL"] = args.redis_url
    database_create(args.database_url)
    setup_django(args.database_url)
    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-ingest-worker-{os.getpid()}.log"
    worker = Worker(db_url=args.database_url, redis_url=args.redis_url, concurrency=args.worker_concurrency,
                    log_path=log_path)
    tables = []
    try:
        worker.wait_ready()
        for provider in [p.strip() for p in args.providers.split(",") if p.strip()]:
            result = run_provider(provider, args, worker)
            tables.append(table(provider, args, result))
            print(tables[-1], flush=True)
    finally:
        worker.stop()
        from django.db import connections

        connections.close_all()
        if not args.keep:
            database_drop(args.database_url)
    print(f"worker log: {log_path}")
    print("".join(tables))


if __name__ == "__main__":
    main()
