"""An organization with cohort data for the export tests: three departments, two sites.

Sales 6 people, Ops 6, Lab 2 (below the minimum group size of 5, so suppressed, and one more
department hidden with it by complementary suppression); nights in March 2026 and in the
previous two weeks (for the trend).
"""

from datetime import UTC, date, datetime, timedelta

from analytics.services import sleep_sessions_upsert
from tenants.models import Participant

from ...factories import DepartmentFactory, ParticipantFactory
from .nights import Record, days, hypnogram

PERIOD = {"start": "2026-03-01", "end": "2026-03-14"}


def _records(person, dates, *, sleep_epochs, wake_inside=0, prefix="n"):
    for d in dates:
        start = datetime(d.year, d.month, d.day, 22, tzinfo=UTC) - timedelta(days=1)
        stages = hypnogram(sleep_epochs, wake_inside=wake_inside)
        yield person.pk, Record.night(f"{prefix}-{person.pk}-{d}", start, stages), f"{prefix}{d}"


def staff_organization(world):
    org = world.org
    records = []
    for name, size, wake in (("Sales", 6, 0), ("Ops", 6, 40), ("Lab", 2, 80)):
        department = DepartmentFactory(organization=org, name=name)
        for i in range(size):
            person = ParticipantFactory(organization=org, department=department,
                                        attributes={"site": "Berlin" if i % 2 else "Lisbon"})
            records += _records(person, days(date(2026, 3, 1), 3), sleep_epochs=800 + 20 * i, wake_inside=wake)
            records += _records(person, days(date(2026, 2, 18), 2), sleep_epochs=850, prefix="prev")
    sleep_sessions_upsert(organization=org, records=records)  # one write path call: fast set-up
    return world


def person_markers(org) -> set[str]:
    """Every participant's uuid, name and email: none may reach an HR page or file."""
    markers = set()
    for uuid, name, email in Participant.objects.filter(organization=org).values_list("uuid", "name", "email"):
        markers |= {str(uuid), name, email}
    return markers
