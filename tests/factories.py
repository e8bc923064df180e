"""factory_boy factories: related objects are created inside one organization by construction."""

from datetime import UTC, datetime, timedelta

import factory
import numpy as np
from django.contrib.auth import get_user_model

from analytics.models import Provider, SleepSession
from integrations.models import Connection, ParticipantLink, QuarantinedRecord, SyncRun
from tenants.models import Department, Membership, Organization, Participant
from tenants.roles import Role


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}@example.test")
    email = factory.LazyAttribute(lambda o: o.username)
    password = factory.django.Password("correct horse battery staple")


class OrganizationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Organization

    slug = factory.Sequence(lambda n: f"org-{n}")
    name = factory.Sequence(lambda n: f"Organization {n}")
    timezone = "Europe/Berlin"


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    organization = factory.SubFactory(OrganizationFactory)
    user = factory.SubFactory(UserFactory)
    role = Role.MEMBER


class DepartmentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Department

    organization = factory.SubFactory(OrganizationFactory)
    name = factory.Sequence(lambda n: f"Department {n}")


class ParticipantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Participant

    organization = factory.SubFactory(OrganizationFactory)
    department = factory.SubFactory(DepartmentFactory, organization=factory.SelfAttribute("..organization"))
    name = factory.Sequence(lambda n: f"Person {n}")
    email = factory.Sequence(lambda n: f"person{n}@example.test")
    attributes = factory.LazyFunction(lambda: {"site": "Berlin"})


def _night(epochs: int = 960) -> bytes:
    stages = np.full(epochs, 2, dtype=np.int8)
    stages[:20] = 0
    stages[-10:] = 0
    return stages.tobytes()


class SleepSessionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SleepSession

    participant = factory.SubFactory(ParticipantFactory)
    organization = factory.SelfAttribute("participant.organization")
    provider = Provider.ASLEEP
    upstream_id = factory.Sequence(lambda n: f"up-{n}")
    start = factory.Sequence(lambda n: datetime(2026, 1, 1, 22, tzinfo=UTC) + timedelta(days=n))
    end = factory.LazyAttribute(lambda o: o.start + timedelta(hours=8))
    timezone = "Europe/Berlin"
    stages = factory.LazyFunction(_night)


class ConnectionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Connection

    organization = factory.SubFactory(OrganizationFactory)
    name = factory.Sequence(lambda n: f"Connection {n}")
    provider = Provider.ASLEEP
    # Loopback: the SSRF guard refuses it under test settings, so no test ever sends traffic.
    base_url = "http://127.0.0.1:9"
    credentials = factory.LazyFunction(lambda: {"api_key": "test-key"})


class ParticipantLinkFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ParticipantLink

    connection = factory.SubFactory(ConnectionFactory)
    organization = factory.SelfAttribute("connection.organization")
    participant = factory.SubFactory(ParticipantFactory, organization=factory.SelfAttribute("..organization"))
    upstream_user_id = factory.Sequence(lambda n: f"upstream-{n}")


class SyncRunFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SyncRun

    connection = factory.SubFactory(ConnectionFactory)
    organization = factory.SelfAttribute("connection.organization")


class QuarantinedRecordFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = QuarantinedRecord

    connection = factory.SubFactory(ConnectionFactory)
    organization = factory.SelfAttribute("connection.organization")
    reason = "sleep_stages: list expected"
    payload = factory.LazyFunction(lambda: {"id": "x"})
