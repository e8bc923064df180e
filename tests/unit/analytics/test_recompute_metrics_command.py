from datetime import date
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from analytics.models import METRICS_VERSION, NightlyMetrics

from ...factories import OrganizationFactory, ParticipantFactory
from .nights import days, store_nights


def _run(*args) -> str:
    out = StringIO()
    call_command("recompute_metrics", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def two_orgs(db):
    orgs = []
    for slug in ("acme", "globex"):
        org = OrganizationFactory(slug=slug)
        store_nights(org, ParticipantFactory(organization=org), days(date(2026, 3, 1), 4))
        orgs.append(org)
    return orgs


@pytest.mark.django_db
class RecomputeMetricsTests:
    def test_it_recomputes_only_outdated_rows(self, two_orgs):
        acme, globex = two_orgs
        good = {m.pk: (m.tst_min, m.score) for m in NightlyMetrics.objects.all()}
        stale = NightlyMetrics.objects.filter(organization=acme).order_by("night_date")[:2]
        stale_ids = [m.pk for m in stale]
        NightlyMetrics.objects.filter(pk__in=stale_ids).update(metrics_version=0, tst_min=1.0, score=None)
        output = _run()
        assert "acme: 2 sessions selected, 2 metric rows written" in output
        assert "globex: 0 sessions selected, 0 metric rows written" in output
        assert "total: 2 sessions, 2 metric rows written" in output
        for metrics in NightlyMetrics.objects.all():
            assert metrics.metrics_version == METRICS_VERSION
            assert (metrics.tst_min, metrics.score) == pytest.approx(good[metrics.pk])

    def test_it_recomputes_everything_of_one_organization_in_batches(self, two_orgs):
        acme, globex = two_orgs
        NightlyMetrics.objects.update(tst_min=2.0)
        output = _run("--all", "--org", "acme", "--batch-size", "3")
        assert "acme: 4 sessions selected, 4 metric rows written" in output and "globex" not in output
        assert set(NightlyMetrics.objects.filter(organization=acme).values_list("tst_min", flat=True)) != {2.0}
        assert set(NightlyMetrics.objects.filter(organization=globex).values_list("tst_min", flat=True)) == {2.0}

    def test_it_computes_sessions_that_have_no_metrics_row(self, two_orgs):
        NightlyMetrics.objects.filter(organization=two_orgs[0]).delete()
        assert "acme: 4 sessions selected, 4 metric rows written" in _run("--org", "acme")
        assert NightlyMetrics.objects.filter(organization=two_orgs[0]).count() == 4

    def test_it_refuses_an_unknown_organization(self, two_orgs):
        with pytest.raises(CommandError, match="no organization with slug 'nope'"):
            _run("--org", "nope")
