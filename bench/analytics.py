"""Benchmark the cohort report: one frame for the whole organization vs one query per person.

    .venv/bin/python bench/analytics.py                        # 10,000 participants x 90 nights
    .venv/bin/python bench/analytics.py --participants 2000 --rebuild
    .venv/bin/python bench/analytics.py --drop                 # drop the benchmark database afterwards

Uses PostgreSQL at DATABASE_URL (default postgres://postgres@127.0.0.1:5432/bench_analytics);
creates that database if missing, migrates it, and fills it once with INSERT ... SELECT
generate_series (participants in 12 departments and 3 sites, one main sleep a night with
random metrics and scores). Later runs reuse the data unless --rebuild.

Then times, p50 over --runs runs:
  - the cohort report as the API builds it: analytics.selectors.cohort_report_frame (one
    query for the people, one over analytics_cohortnights, the nights packed a quarter per
    row; then cohorts.cohort_report_by_participant), over the 90-night period and its
    previous period (read too, and empty here), by department and by department and site;
  - the same through the HTTP endpoint (JSON), for the end-to-end figure;
  - the previous implementation side by side (selectors.cohort_frame, 900,000 NightlyMetrics
    rows into one frame, then cohorts.cohort_report), p50 over --runs / 4 runs;
  - the per-participant pattern, computing the same figures: one query per person for their
    nights of both periods (values_list), values collected per group in Python, then
    mean / median / p25 / p75 per group; over every participant (no extrapolation), p50 of
    --loop-runs runs; and the model-instance variant (the everyday N+1) on --sample people,
    extrapolated.
Ratios are computed within one run, so they hold on a busy machine too.
Prints a table; no asserts (style.md rule 40).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from collections import defaultdict
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


CPU_SECONDS: dict[str, float] = {}  # label -> p50 CPU seconds (this process + its PostgreSQL backend)


def _backend_cpu() -> float | None:
    """CPU seconds used so far by this connection's PostgreSQL backend (same machine only)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def p50(fn, runs: int, label: str | None = None) -> tuple[float, object]:
    """p50 wall time of ``fn``; with ``label`` also its p50 CPU time (process + backend), which
    a busy machine barely changes: on an idle one wall time is about that CPU time."""
    from django.db import reset_queries

    times, cpu, result = [], [], None
    for _ in range(runs):
        reset_queries()
        backend = _backend_cpu() if label else None
        started, started_cpu = time.perf_counter(), time.process_time()
        result = fn()
        times.append(time.perf_counter() - started)
        if label:
            used = time.process_time() - started_cpu
            after = _backend_cpu()
            cpu.append(used + (after - backend if backend is not None and after is not None else 0.0))
    if label:
        CPU_SECONDS[label] = statistics.median(cpu)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--participants", type=int, default=10_000)
    parser.add_argument("--nights", type=int, default=90)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--loop-runs", type=int, default=3, help="runs of the per-participant pattern")
    parser.add_argument("--sample", type=int, default=500, help="people timed in the model-instance variant")
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--drop", action="store_true", help="drop the benchmark database at the end")
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL") or DEFAULT_URL
    ensure_database(url)
    setup_django(url)

    import numpy as np
    import pandas as pd
    from django.db import connection
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
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM analytics_cohortnights WHERE organization_id = %s", [org.pk])
        packed_rows = cursor.fetchone()[0]

    def report(group_by):
        return selectors.cohort_report_frame(organization=org, period=(start, end),
                                             previous_period=(prev_start, prev_end), group_by=group_by)

    def frame_report(group_by):  # the previous implementation: every night into one pandas frame
        nights = selectors.cohort_frame(organization=org, start=prev_start, end=end, group_by=group_by)
        return cohort_report(nights, group_by=group_by, min_group_size=org.min_group_size, period=(start, end),
                             previous_period=(prev_start, prev_end))

    dept_s, result = p50(lambda: report(["department"]), args.runs, "dept")
    two_s, _ = p50(lambda: report(["department", "attr:site"]), args.runs, "two")
    nights_s, _ = p50(lambda: selectors.cohort_nights(organization=org, start=prev_start, end=end), args.runs, "nights")

    from django.contrib.auth import get_user_model

    user, _ = get_user_model().objects.get_or_create(username="hr@bench.test")
    Membership.objects.get_or_create(organization=org, user=user, defaults={"role": "hr"})
    client = APIClient()
    client.force_authenticate(user)
    api_url = f"/api/v1/orgs/{org.slug}/reports/cohort/"
    params = {"start": start.isoformat(), "end": end.isoformat(), "group_by": "department"}
    api_s, response = p50(lambda: client.get(api_url, params, HTTP_HOST="localhost"), args.runs, "api")
    assert response.status_code == 200, response.content[:300]

    old_runs = max(3, args.runs // 4)
    old_s, old_result = p50(lambda: frame_report(["department"]), old_runs, "old")
    old_two_s, _ = p50(lambda: frame_report(["department", "attr:site"]), old_runs, "old_two")
    try:  # the same report whichever path (tests prove it; the bench says so for its own data)
        pd.testing.assert_frame_equal(result, old_result, rtol=1e-12)
        same = "identical (figures to 1e-12 relative, percentiles bit for bit)"
    except AssertionError as error:
        same = f"DIFFERENT: {str(error)[:200]}"

    # Per-participant pattern: what a view looping over people would do for the same figures.
    people = list(Participant.objects.for_org(org).order_by("pk").values_list("pk", "department__name"))
    metrics = ("score", "tst_min", "se_pct", "waso_min")

    def per_participant():
        current, previous, members = defaultdict(list), defaultdict(list), defaultdict(set)
        for pk, department in people:
            nights = NightlyMetrics.objects.for_org(org).filter(
                participant_id=pk, night_date__gte=prev_start, night_date__lte=end, is_main_sleep=True, is_nap=False
            ).values_list("night_date", *metrics)
            for night_date, *values in nights:
                for group in ("(total)", department):
                    if night_date >= start:
                        current[group].append(values)
                        members[group].add(pk)
                    else:
                        previous[group].append(values)
        figures = {}
        for group, values in current.items():
            arr = np.array(values, dtype=float)
            prev = np.array(previous.get(group, []), dtype=float).reshape(-1, len(metrics))
            previous_means = np.nanmean(prev, axis=0) if len(prev) else None
            figures[group] = (len(members[group]), len(values), np.nanmean(arr, axis=0),
                              np.nanpercentile(arr, [25, 50, 75], axis=0), previous_means)
        return figures

    def per_participant_objects(sample):
        # The everyday N+1: a model instance per night, via the reverse relation.
        per_person = []
        for participant in Participant.objects.for_org(org).select_related("department").order_by("pk")[:sample]:
            nights = list(participant.nightly_metrics.filter(night_date__gte=prev_start, night_date__lte=end,
                                                              is_main_sleep=True, is_nap=False))
            if nights:
                per_person.append((participant.department.name, len(nights),
                                   statistics.fmean(n.tst_min for n in nights)))
        return pd.DataFrame(per_person).groupby(0).mean()

    loop_s, _ = p50(per_participant, args.loop_runs, "loop")
    objects_s, _ = p50(lambda: per_participant_objects(args.sample), args.loop_runs)
    objects_total = objects_s * len(people) / min(args.sample, len(people))

    print()
    print(f"cohort report, {len(people):,} participants x {args.nights} nights ({rows:,} NightlyMetrics rows, "
          f"{packed_rows:,} analytics_cohortnights rows), PostgreSQL, {len(result)} cells by department")
    print()
    cpu = CPU_SECONDS

    def row(method, label, wall):
        cpu_ratio = f"{cpu['loop'] / cpu[label]:,.0f}x" if label != "loop" else "1x"
        print(f"| {method} | {wall * 1000:,.0f} ms | {loop_s / wall:,.0f}x | {cpu[label] * 1000:,.0f} ms | {cpu_ratio} |")

    print("| method | p50 wall | faster than per-participant (wall) | p50 CPU (process + PostgreSQL backend) "
          "| faster (CPU) |")
    print("|---|---|---|---|---|")
    row("nights read only (analytics_cohortnights, one query)", "nights", nights_s)
    row("cohort report, by department", "dept", dept_s)
    row("cohort report, by department and site", "two", two_s)
    row("HTTP endpoint, JSON, by department", "api", api_s)
    row(f"previous implementation (NightlyMetrics into one pandas frame), by department (p50 of {old_runs})",
        "old", old_s)
    row("previous implementation, by department and site", "old_two", old_two_s)
    row(f"per-participant queries, values_list, same figures ({len(people):,} people, p50 of {args.loop_runs})",
        "loop", loop_s)
    print(f"| per-participant queries, model instances ({args.sample} timed, extrapolated) | "
          f"{objects_total * 1000:,.0f} ms | {loop_s / objects_total:.2f}x | | |")
    print()
    print("CPU time leaves out PostgreSQL's parallel workers (only the previous implementation's "
          "sequential scan uses them).")
    print()
    print(f"new vs previous implementation: {same}")
    print(f"targets: cohort report < 1 s p50 -> {'met' if dept_s < 1 else 'NOT met'} ({dept_s:.3f} s by department, "
          f"{two_s:.3f} s with two levels); >= 50x the per-participant pattern -> "
          f"{'met' if loop_s / dept_s >= 50 else 'NOT met'} on wall time ({loop_s / dept_s:.0f}x by department, "
          f"{loop_s / two_s:.0f}x with two levels), {cpu['loop'] / cpu['dept']:.0f}x / "
          f"{cpu['loop'] / cpu['two']:.0f}x on CPU time")

    if args.drop:
        from django.db import connections

        connections.close_all()
        ensure_database(url, drop=True)
        print("dropped the benchmark database")


if __name__ == "__main__":
    main()
