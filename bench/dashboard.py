"""Benchmark the dashboard pages on a large organization (server time, in-process client).

    .venv/bin/python bench/dashboard.py                          # SQLite: 10,000 participants x 30 nights
    .venv/bin/python bench/dashboard.py --nights 90 --runs 10
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_dashboard .venv/bin/python bench/dashboard.py

Without DATABASE_URL the data lives in var/bench-dashboard.sqlite3; with it, in that
PostgreSQL database (created if missing). The organization is seeded once in bulk
(participants in 12 departments, one main sleep a night with random figures, inserted
night by night as syncs deliver them; 4 connections with sync runs) and reused by later runs unless --rebuild.

Times, p50 over --runs requests through Django's test client (whole request: middleware,
access check, queries, template), logged in as an admin:
  - the overview with its default range (last 28 days) and with the whole seeded range;
  - the participant list (first page, a search, a late page);
  - one participant's page (hypnogram, 30 nights, weekly summary).
Prints a table with the number of queries per page; no asserts (style.md rule 40).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ORG_SLUG = "bench-dashboard"
DEPARTMENTS = 12
CONNECTIONS = 4
BATCH = 5000


def ensure_postgres_database(url: str) -> None:
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def setup_django(*, rebuild: bool) -> str:
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith("postgres"):
        ensure_postgres_database(url)
    else:
        path = ROOT / "var" / "bench-dashboard.sqlite3"
        if rebuild:
            # A fresh file: deleting 600,000 rows through the ORM trips SQLite's variable limit.
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        os.environ["DATABASE_URL"] = f"sqlite:///{path}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")
    os.environ.setdefault("DJANGO_DEBUG", "true")  # local secrets; the query log is reset per request
    import django

    django.setup()
    from django.db import connection

    return connection.vendor


def _insert(cursor, table: str, columns: list[str], rows: list[tuple]) -> None:
    from django.db import connection

    if connection.vendor == "postgresql":
        # COPY: one stream instead of a round trip per row.
        with connection.connection.cursor() as raw, raw.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return
    sql = f'INSERT INTO {table} ({", ".join(columns)}) VALUES ({", ".join(["%s"] * len(columns))})'
    for i in range(0, len(rows), BATCH):
        cursor.executemany(sql, rows[i:i + BATCH])


def build(participants: int, nights: int, rebuild: bool):
    """Seed the organization in bulk (raw INSERTs, no per-row ORM work); reuse it when it matches."""
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection, transaction

    from analytics.models import NightlyMetrics
    from integrations.models import Connection, SyncRun
    from tenants.models import Department, Membership, Organization, Participant

    call_command("migrate", verbosity=0)
    org = Organization.objects.filter(slug=ORG_SLUG).first()
    User = get_user_model()
    admin, _ = User.objects.get_or_create(username="bench-admin@bench.test")
    if org and not rebuild and NightlyMetrics.objects.filter(organization=org).count() == participants * nights:
        return org, admin
    if org:
        org.delete()
    started = time.perf_counter()
    rng = random.Random(5)
    today = date.today()
    first = today - timedelta(days=nights)
    now = datetime.now(UTC)
    with transaction.atomic():
        org = Organization.objects.create(slug=ORG_SLUG, name="Bench Dashboard", timezone="UTC")
        Membership.objects.create(organization=org, user=admin, role="admin")
        departments = Department.objects.bulk_create(
            [Department(organization=org, name=f"Department {i + 1}") for i in range(DEPARTMENTS)]
        )
        people = Participant.objects.bulk_create(
            [Participant(organization=org, department=departments[i % DEPARTMENTS], name=f"Person {i:05d}",
                         email=f"person{i}@bench.test", attributes={"site": "north"}, birth_year=1960 + i % 40,
                         enrolled_at=first) for i in range(participants)],
            batch_size=BATCH,
        )
        for c in range(CONNECTIONS):
            connection_ = Connection.objects.create(organization=org, name=f"Asleep {c + 1}", provider="asleep",
                                                    base_url="https://api.example.com", credentials={"api_key": "k"})
            SyncRun.objects.bulk_create([
                SyncRun(organization=org, connection=connection_, started_at=now - timedelta(hours=h),
                        finished_at=now - timedelta(hours=h), status="succeeded" if h % 7 else "failed")
                for h in range(48)
            ])
        stages = bytes([2] * 960)
        session_rows, keys = [], []
        # Night by night, as syncs deliver them (rows of one date lie together, as in real use).
        for d in range(nights):
            for person in people:
                night = first + timedelta(days=d + 1)
                start = datetime(night.year, night.month, night.day, tzinfo=UTC) - timedelta(hours=2)
                key = str(uuid.uuid4())
                keys.append((key, person.pk, night))
                session_rows.append((key, org.pk, person.pk, "asleep", f"b-{person.pk}-{d}", start,
                                     start + timedelta(hours=8), "UTC", 30, stages, "{}", "", now, now))
        with connection.cursor() as cursor:
            _insert(cursor, "analytics_sleepsession",
                    ["uuid", "organization_id", "participant_id", "provider", "upstream_id", "start", '"end"',
                     "timezone", "epoch_seconds", "stages", "upstream_stats", "content_hash", "created_at",
                     "updated_at"],
                    [(k.replace("-", "") if connection.vendor == "sqlite" else k, *rest)
                     for k, *rest in session_rows])
            cursor.execute("SELECT id, participant_id, upstream_id FROM analytics_sleepsession "
                           "WHERE organization_id = %s", [org.pk])
            ids = {(pid, upstream): sid for sid, pid, upstream in cursor.fetchall()}
            metric_rows = []
            for d in range(nights):
                for person in people:
                    tst, waso = 300 + rng.random() * 180, rng.random() * 40
                    tib = 480.0
                    score = 50 + rng.random() * 45
                    metric_rows.append((
                        ids[(person.pk, f"b-{person.pk}-{d}")], org.pk, person.pk, first + timedelta(days=d + 1),
                        False, True, tib, tst + waso, tst, waso, 100 * tst / tib, tib - tst, 0.05 * tst, 0.5 * tst,
                        0.2 * tst, 0.25 * tst, 0, 0.55 * tst, 0.2 * tst, 0.75 * tst, 0, "22:00:00", "02:00:00",
                        "06:00:00", score, score * 0.9, 1, now,
                    ))
            _insert(cursor, "analytics_nightlymetrics",
                    ["session_id", "organization_id", "participant_id", "night_date", "is_nap", "is_main_sleep",
                     "tib_min", "spt_min", "tst_min", "waso_min", "se_pct", "wake_min", "n1_min", "n2_min",
                     "n3_min", "rem_min", "lt_min", "light_min", "deep_min", "nrem_min", "nodata_min",
                     "bedtime_local", "midsleep_local", "wake_time_local", "score", "score_regularity",
                     "metrics_version", "computed_at"],
                    metric_rows)
        Connection.objects.filter(organization=org).update(last_synced_at=now)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    print(f"built {participants:,} participants x {nights} nights in {time.perf_counter() - started:.1f} s")
    return org, admin


def p50(client, url: str, runs: int) -> tuple[float, int]:
    from django.db import connection, reset_queries

    times, queries = [], 0
    for _ in range(runs):
        reset_queries()
        started = time.perf_counter()
        response = client.get(url)
        times.append(time.perf_counter() - started)
        if response.status_code != 200:
            raise SystemExit(f"{url} answered {response.status_code}")
        queries = len(connection.queries)
    return statistics.median(times), queries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--participants", type=int, default=10_000)
    parser.add_argument("--nights", type=int, default=30)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--rebuild", action="store_true")
    args = parser.parse_args()
    vendor = setup_django(rebuild=args.rebuild)

    from django.test import Client

    from tenants.models import Participant

    org, admin = build(args.participants, args.nights, args.rebuild)
    client = Client(SERVER_NAME="localhost")
    client.force_login(admin)
    person = Participant.objects.for_org(org).order_by("pk").first()
    first = date.today() - timedelta(days=args.nights - 1)
    base = f"/o/{org.slug}/"
    pages = [
        ("overview, last 28 days", base),
        (f"overview, {args.nights} days", f"{base}?start={first}&end={date.today()}"),
        ("participant list, page 1", f"{base}participants/"),
        ("participant list, search", f"{base}participants/?q=Department+7"),
        ("participant list, last page", f"{base}participants/?page=last"),
        ("participant page", f"{base}participants/{person.uuid}/"),
    ]
    print(f"\n{vendor}: {args.participants:,} participants x {args.nights} nights, p50 of {args.runs} runs\n")
    print(f"| page | p50 ms | queries |\n|---|---:|---:|")
    for label, url in pages:
        seconds, queries = p50(client, url, args.runs)
        print(f"| {label} | {seconds * 1000:.0f} | {queries} |")


if __name__ == "__main__":
    main()
