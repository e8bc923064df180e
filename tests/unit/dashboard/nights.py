"""Nights with chosen figures for the dashboard tests (metrics rows written directly).

The aggregates are checked against hand-computed values, so the rows carry exactly the
figures a test names instead of figures derived from a hypnogram.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from analytics.models import NightlyMetrics

from ...factories import SleepSessionFactory


def night(participant, night_date: date, *, score=70.0, tst=420.0, se=90.0, regularity=None, nap=False,
          waso=20.0, bedtime=time(23, 0), wake=time(7, 0)) -> NightlyMetrics:
    start = datetime(night_date.year, night_date.month, night_date.day, 22, tzinfo=UTC) - timedelta(days=1)
    session = SleepSessionFactory(participant=participant, start=start, end=start + timedelta(hours=8))
    tib = max(tst / (se / 100) if se else tst, tst)
    return NightlyMetrics.objects.create(
        session=session, organization=participant.organization, participant=participant, night_date=night_date,
        is_nap=nap, is_main_sleep=not nap, tib_min=tib, spt_min=tib, tst_min=tst, se_pct=se, waso_min=waso,
        wake_min=tib - tst, n1_min=0, n2_min=tst, n3_min=0, rem_min=0, lt_min=0, light_min=tst, deep_min=0,
        nrem_min=tst, nodata_min=0, bedtime_local=bedtime, wake_time_local=wake, score=score,
        score_regularity=regularity,
    )
