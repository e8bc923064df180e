import pytest

from analytics.models import UpstreamAverageStats
from integrations.average_stats import average_stats_pull
from integrations.simulators.server import start_in_thread

from ...factories import ConnectionFactory, ParticipantLinkFactory


@pytest.mark.django_db
def test_it_stores_one_snapshot_per_linked_participant_and_replaces_it_on_the_next_pull(settings):
    settings.UPSTREAM_ALLOW_PRIVATE = True
    with start_in_thread("asleep", keys=["k"]) as sim:
        users = sim.add_users(count=2, nights=40)
        connection = ConnectionFactory(base_url=sim.url, credentials={"api_key": "k"})
        links = [ParticipantLinkFactory(connection=connection, upstream_user_id=u["id"]) for u in users]
        assert average_stats_pull(connection_id=connection.pk) == 2
        assert average_stats_pull(connection_id=connection.pk) == 2
    snapshots = UpstreamAverageStats.objects.filter(organization=connection.organization)
    assert snapshots.count() == 2
    assert {s.participant_id for s in snapshots} == {link.participant_id for link in links}
    snapshot = snapshots.first()
    assert (snapshot.end_date - snapshot.start_date).days == 27
    assert snapshot.nights > 0
    assert 0 < snapshot.stats["sleep_efficiency"] <= 1  # the upstream's own scale, kept as sent
