"""Shared data for the weekly email tests: an organization with nights in ISO week 2026-W10."""

from __future__ import annotations

from datetime import date

from tenants.roles import Role

from ...factories import MembershipFactory, ParticipantFactory, UserFactory
from .nights import days, store_nights

ISO_YEAR, ISO_WEEK = 2026, 10  # Monday 2026-03-02 .. Sunday 2026-03-08
WEEK = "2026-W10"
# Receivers' nights start a week before the week: the previous week and a baseline of 7
# nights (the engine's minimum) to compare with; fewer nights keep the tests fast.
HISTORY_FROM = date(2026, 2, 23)
WEEK_FROM = date(2026, 3, 2)


class EmailWorld:
    """``world`` plus: 3 participants who get the email, and 3 who must not."""

    def __init__(self, world):
        self.world = world
        org = world.org
        self.org = org
        self.receivers = []
        for i in range(3):
            person = ParticipantFactory(organization=org, birth_year=1990, name=f"Receiver {i}",
                                        email=f"receiver{i}@people.test")
            store_nights(org, person, days(HISTORY_FROM, 14), sleep_epochs=800 + 40 * i, wake_inside=10 * i)
            self.receivers.append(person)
        self.opted_out = ParticipantFactory(organization=org, weekly_email_opt_in=False, email="out@people.test")
        store_nights(org, self.opted_out, days(WEEK_FROM, 7))
        self.no_email = ParticipantFactory(organization=org, email="")
        store_nights(org, self.no_email, days(WEEK_FROM, 7))
        # Nights only before the week: no email for this week.
        self.idle = ParticipantFactory(organization=org, email="idle@people.test")
        store_nights(org, self.idle, days(HISTORY_FROM, 7))
        # world.member_participant has no nights at all.
        self.admin_emails = {world.users[Role.OWNER].email, world.users[Role.ADMIN].email}
        # An admin without an address gets nothing.
        MembershipFactory(organization=org, user=UserFactory(username="noaddress", email=""), role=Role.ADMIN)

    @property
    def receiver_emails(self) -> set[str]:
        return {p.email for p in self.receivers}
