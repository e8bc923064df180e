"""Benchmark the cohort report: one frame for the whole organization vs one query per person.

    .venv/bin/python bench/analytics.py                        # 10,000 participants x 90 nights
    .venv/bin/python bench/analytics.py --participants 2000 --rebuild
    .venv/bin/python bench/analytics.py --drop                 # drop the benchmark database afterwards

Uses PostgreSQL at DATABASE_URL (default postgres://postgres@127.0.0.1:5432/bench_analytics);
creates that database if missing, migrates it, and fills it once with INSERT ... SELECT
generate_series (participants in 12 departments and 3 sites, one main sleep a night with
random metrics and scores). Later runs reuse the data unless --rebuild.

Then times, p50 over --runs runs:
  - the cohort report as the API builds it: analytics.selectors.cohort_frame (one query for
    the nights, one for the participants) + analytics.engine.cohorts.cohort_report, over
    the 90-night period (its previous period is read too, and is empty);
  - the same through the HTTP endpoint (JSON), for the end-to-end figure;
  - the per-participant pattern: one query per person for their nights, per-person means
    in Python, then the group means; measured on --sample people and extrapolated.
Prints a table; no asserts (style.md rule 40).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/bench_analytics"
ORG_SLUG = "bench"
DEPARTMENTS = 12
SITES = ("north", "south", "east")
FIRST_NIGHT = date(2026, 1, 1)


def _admin_url(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    return urlunsplit(parts._replace(path="/postgres")), name


def ensure_database(url: str, *, drop: bool = False) -> None:
    import psycopg

    admin, name = _admin_url(url)
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if drop and exists:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            exists = None
        if not exists and not drop:
            conn.execute(f'CREATE DATABASE "{name}"')


def setup_django(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")
    os.environ.setdefault("DJANGO_DEBUG", "true")  # local secrets; DEBUG keeps a query log, so reset it
    import django

    django.setup()


def build(participants: int, nights: int, rebuild: bool):
    from django.core.management import call_command
    from django.db import connection, transaction

    from analytics.models import NightlyMetrics
    from tenants.models import Organization

    call_command("migrate", verbosity=0)
    org = Organization.objects.filter(slug=ORG_SLUG).first()
    expected = participants * nights
    if org and not rebuild and NightlyMetrics.objects.filter(organization=org).count() == expected:
        return org, False
    if org:
        org.delete()
    started = time.perf_counter()
    with transaction.atomic():
        org = Organization.objects.create(slug=ORG_SLUG, name="Bench", timezone="UTC", min_group_size=5)
        with connection.cursor() as cursor:
            cursor.execute(
                """
                INSERT INTO tenants_department (created_at, updated_at, uuid, organization_id, name)
                SELECT now(), now(), gen_random_uuid(), %s, 'Department ' || d FROM generate_series(1, %s) d
                """,
                [org.pk, DEPARTMENTS],
            )
            cursor.execute(
                """
                INSERT INTO tenants_participant (created_at, updated_at, uuid, organization_id, department_id, name,
                    email, attributes, birth_year, timezone, enrolled_at, weekly_email_opt_in)
                SELECT now(), now(), gen_random_uuid(), %(org)s,
                    (SELECT id FROM tenants_department WHERE organization_id = %(org)s
                     ORDER BY id OFFSET (i %% %(deps)s) LIMIT 1),
                    'Person ' || i, 'person' || i || '@bench.test',
                    jsonb_build_object('site', (ARRAY['north','south','east'])[1 + i %% 3]),
                    1960 + i %% 40, '', DATE '2025-12-01', true
                FROM generate_series(1, %(n)s) i
                """,
                {"org": org.pk, "deps": DEPARTMENTS, "n": participants},
            )
            # One main sleep a night: bed 22:00-24:00 UTC, 16 epochs of stages (the report never reads them).
            cursor.execute(
                """
                INSERT INTO analytics_sleepsession (uuid, organization_id, participant_id, provider, upstream_id,
                    start, "end", timezone, epoch_seconds, stages, upstream_stats, content_hash, created_at,
                    updated_at)
                SELECT gen_random_uuid(), %(org)s, p.id, 'asleep', 'b-' || p.id || '-' || d,
                    TIMESTAMPTZ %(first)s + d * INTERVAL '1 day' + INTERVAL '22 hours',
                    TIMESTAMPTZ %(first)s + d * INTERVAL '1 day' + INTERVAL '30 hours',
                    'UTC', 30, '\\x02020202020202020202020202020202'::bytea, '{}'::jsonb, '', now(), now()
                FROM tenants_participant p CROSS JOIN generate_series(0, %(nights)s - 1) d
                WHERE p.organization_id = %(org)s
                """,
                {"org": org.pk, "first": f"{FIRST_NIGHT - timedelta(days=1)} 00:00+00", "nights": nights},
            )
            cursor.execute(
                """
                INSERT INTO analytics_nightlymetrics (session_id, organization_id, participant_id, night_date,
                    is_nap, is_main_sleep, tib_min, spt_min, tst_min, waso_min, se_pct, sme_pct, sol_min,
                    wake_min, n1_min, n2_min, n3_min, rem_min, lt_min, light_min, deep_min, nrem_min, nodata_min,
                    awakenings, awakenings_5min, bedtime_local, midsleep_local, wake_time_local, score,
                    score_duration, score_efficiency, score_continuity, score_depth, score_regularity,
                    metrics_version, computed_at)
                SELECT s.id, s.organization_id, s.participant_id, (s."end")::date, false, true,
                    m.tib, m.tst + m.waso, m.tst, m.waso, 100 * m.tst / m.tib, 100 * m.tst / (m.tst + m.waso),
                    m.tib - m.tst - m.waso, m.tib - m.tst, 0.05 * m.tst, 0.5 * m.tst, 0.2 * m.tst, 0.25 * m.tst,
                    0, 0.55 * m.tst, 0.2 * m.tst, 0.75 * m.tst, 0, 1, 0, TIME '22:00', TIME '02:00',
                    TIME '06:00', m.score, m.score, m.score, m.score, m.score, NULL, 1, now()
                FROM analytics_sleepsession s,
                -- s.id inside the subquery makes it run per row (fresh random values each night).
                LATERAL (SELECT 300 + random() * 180 + 0 * s.id AS tst, random() * 40 AS waso,
                                50 + random() * 45 AS score, 480.0 AS tib) m
                WHERE s.organization_id = %(org)s
                """,
                {"org": org.pk},
            )
        connection.cursor().execute("ANALYZE")
    print(f"built {participants:,} participants x {nights} nights in {time.perf_counter() - started:.1f} s")
    return org, True


def p50(fn, runs: int) -> tuple[float, object]:
    from django.db import reset_queries

    times, result = [], None
    for _ in range(runs):
        reset_queries()
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--participants", type=int, default=10_000)
    parser.add_argument("--nights", type=int, default=90)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--sample", type=int, default=200, help="people timed in the per-participant pattern")
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--drop", action="store_true", help="drop the benchmark database at the end")
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL") or DEFAULT_URL
    ensure_database(url)
    setup_django(url)

    import numpy as np
    import pandas as pd
    from rest_framework.test import APIClient

    from analytics import selectors
    from analytics.engine.cohorts import cohort_report
    from analytics.models import NightlyMetrics
    from tenants.models import Membership, Participant

    org, _ = build(args.participants, args.nights, args.rebuild)
    start, end = FIRST_NIGHT, FIRST_NIGHT + timedelta(days=args.nights - 1)
    length = timedelta(days=args.nights)
    prev_start, prev_end = start - length, start - timedelta(days=1)
    rows = NightlyMetrics.objects.filter(organization=org).count()

    def frame_report(group_by):
        nights = selectors.cohort_frame(organization=org, start=prev_start, end=end, group_by=group_by)
        return cohort_report(nights, group_by=group_by, min_group_size=org.min_group_size, period=(start, end),
                             previous_period=(prev_start, prev_end))

    frame_s, report = p50(lambda: frame_report(["department"]), args.runs)
    select_s, _ = p50(lambda: selectors.cohort_frame(organization=org, start=prev_start, end=end,
                                                     group_by=["department"]), args.runs)
    two_s, _ = p50(lambda: frame_report(["department", "attr:site"]), args.runs)

    from django.contrib.auth import get_user_model

    user, _ = get_user_model().objects.get_or_create(username="hr@bench.test")
    Membership.objects.get_or_create(organization=org, user=user, defaults={"role": "hr"})
    client = APIClient()
    client.force_authenticate(user)
    api_url = f"/api/v1/orgs/{org.slug}/reports/cohort/"
    params = {"start": start.isoformat(), "end": end.isoformat(), "group_by": "department"}
    api_s, response = p50(lambda: client.get(api_url, params, HTTP_HOST="localhost"), args.runs)
    assert response.status_code == 200, response.content[:300]

    # Per-participant pattern: what a view looping over people would do.
    people = list(Participant.objects.for_org(org).order_by("pk").values_list("pk", "department__name"))
    sample = people[: args.sample]

    def per_participant():
        per_person = []
        for pk, department in sample:
            values = list(
                NightlyMetrics.objects.for_org(org)
                .filter(participant_id=pk, night_date__gte=start, night_date__lte=end, is_main_sleep=True,
                        is_nap=False)
                .values_list("score", "tst_min", "se_pct", "waso_min")
            )
            if values:
                arr = np.array(values, dtype=float)
                per_person.append((department, len(values), *np.nanmean(arr, axis=0)))
        return pd.DataFrame(per_person).groupby(0).mean()

    def per_participant_objects():
        # The everyday N+1: a model instance per night, via the reverse relation.
        per_person = []
        for participant in Participant.objects.for_org(org).select_related("department").order_by("pk")[
            : args.sample
        ]:
            nights = list(participant.nightly_metrics.filter(night_date__gte=start, night_date__lte=end,
                                                              is_main_sleep=True, is_nap=False))
            if nights:
                per_person.append((participant.department.name, len(nights),
                                   statistics.fmean(n.tst_min for n in nights)))
        return pd.DataFrame(per_person).groupby(0).mean()

    loop_runs = max(3, args.runs // 5)
    loop_s, _ = p50(per_participant, loop_runs)
    loop_total = loop_s * len(people) / len(sample)
    objects_s, _ = p50(per_participant_objects, loop_runs)
    objects_total = objects_s * len(people) / len(sample)

    print()
    print(f"cohort report, {len(people):,} participants x {args.nights} nights ({rows:,} NightlyMetrics rows), "
          f"PostgreSQL, {len(report)} cells")
    print()
    print("| method | p50 | vs per-participant |")
    print("|---|---|---|")
    print(f"| selector only (2 queries into one frame) | {select_s * 1000:,.0f} ms | |")
    print(f"| selector + engine, by department | {frame_s * 1000:,.0f} ms | {loop_total / frame_s:,.0f}x faster |")
    print(f"| selector + engine, by department and site | {two_s * 1000:,.0f} ms | {loop_total / two_s:,.0f}x faster |")
    print(f"| HTTP endpoint, JSON, by department | {api_s * 1000:,.0f} ms | {loop_total / api_s:,.0f}x faster |")
    print(f"| per-participant queries, values_list ({len(sample)} timed, p50 of {loop_runs}, extrapolated) | "
          f"{loop_total * 1000:,.0f} ms | 1x |")
    print(f"| per-participant queries, model instances ({len(sample)} timed, extrapolated) | "
          f"{objects_total * 1000:,.0f} ms | {objects_total / loop_total:.1f}x slower; the report is "
          f"{objects_total / frame_s:,.0f}x faster |")
    print()
    print(f"targets: cohort report < 1 s p50 -> {'met' if frame_s < 1 else 'NOT met'} ({frame_s:.3f} s); "
          f">= 50x the per-participant pattern -> {'met' if loop_total / frame_s >= 50 else 'NOT met'} "
          f"({loop_total / frame_s:.0f}x)")

    if args.drop:
        from django.db import connections

        connections.close_all()
        ensure_database(url, drop=True)
        print("dropped the benchmark database")


if __name__ == "__main__":
    main()
