from datetime import timedelta

import numpy as np
import pytest
from django.db import IntegrityError, transaction

from analytics.models import Provider, SleepSession

from ...factories import ParticipantFactory, SleepSessionFactory


@pytest.mark.django_db
class SleepSessionTests:
    def test_it_stores_the_hypnogram_as_one_byte_per_epoch(self):
        stages = np.array([0, 0, 1, 2, 3, 4, 5, -1, 0], dtype=np.int8)
        session = SleepSessionFactory(stages=stages.tobytes())
        session.refresh_from_db()
        assert np.array_equal(session.hypnogram, stages)
        assert len(bytes(session.stages)) == 9

    def test_it_refuses_a_second_copy_of_the_same_upstream_session(self):
        session = SleepSessionFactory()
        with pytest.raises(IntegrityError), transaction.atomic():
            SleepSessionFactory(participant=session.participant, provider=session.provider, upstream_id=session.upstream_id)
        # The same upstream id from another provider or person is a different session.
        SleepSessionFactory(participant=session.participant, provider=Provider.BEDDIT, upstream_id=session.upstream_id)
        SleepSessionFactory(participant=ParticipantFactory(organization=session.organization), upstream_id=session.upstream_id)
        assert SleepSession.objects.count() == 3

    def test_it_refuses_a_session_that_ends_before_it_starts(self):
        participant = ParticipantFactory()
        session = SleepSessionFactory.build(participant=participant)
        with pytest.raises(IntegrityError), transaction.atomic():
            SleepSessionFactory(participant=participant, start=session.start, end=session.start - timedelta(minutes=1))
