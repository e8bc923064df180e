"""Connect the demo organization to the local simulators and fill it with synced nights.

Most demo participants share one Asleep connection (an API key and one upstream user per
person); a few bring their own Beddit account (a Beddit token reads only its owner's nights,
so each of those is a connection of its own). Idempotent: running it again reuses the
connections and links and only enqueues fresh syncs.
"""

from __future__ import annotations

from datetime import timedelta

import httpx
from django.db import transaction
from django.utils import timezone

from tenants.demo import DEMO_SLUG
from tenants.models import Organization, Participant

from .models import Connection, ParticipantLink

DEMO_ASLEEP_KEY = "demo-asleep-key"  # the local simulator's key: not a secret
DEMO_NIGHTS = 60
DEMO_BEDDIT_PARTICIPANTS = 10


def _control(base_url: str, path: str, body: dict) -> dict:
    response = httpx.post(f"{base_url}{path}", json=body, timeout=120)
    response.raise_for_status()
    return response.json()


@transaction.atomic
def demo_connect(*, asleep_url: str, beddit_url: str, nights: int = DEMO_NIGHTS) -> list[int]:
    """Link every demo participant to a simulator account; returns the connections to sync."""
    organization = Organization.objects.get(slug=DEMO_SLUG)
    participants = list(Participant.objects.for_org(organization).order_by("email"))
    linked = set(ParticipantLink.objects.for_org(organization).values_list("participant_id", flat=True))
    beddit_people = participants[:DEMO_BEDDIT_PARTICIPANTS]
    asleep_people = participants[DEMO_BEDDIT_PARTICIPANTS:]

    asleep, _ = Connection.objects.get_or_create(
        organization=organization, provider="asleep", name="Asleep (simulator)",
        defaults={"base_url": asleep_url, "credentials": {"api_key": DEMO_ASLEEP_KEY},
                  "sync_interval": timedelta(hours=1)},
    )
    if asleep.base_url != asleep_url:
        asleep.base_url = asleep_url
        asleep.save(update_fields=["base_url", "updated_at"])
    _control(asleep_url, "/_sim/credentials", {"value": DEMO_ASLEEP_KEY})
    new_asleep = [p for p in asleep_people if p.pk not in linked]
    if new_asleep:
        users = _control(asleep_url, "/_sim/users", {"count": len(new_asleep), "nights": nights})["users"]
        ParticipantLink.objects.bulk_create(
            ParticipantLink(organization=organization, connection=asleep, participant=p, upstream_user_id=u["id"])
            for p, u in zip(new_asleep, users, strict=True)
        )
    connection_ids = [asleep.pk]

    new_beddit = [p for p in beddit_people if p.pk not in linked]
    if new_beddit:
        users = _control(beddit_url, "/_sim/users", {"count": len(new_beddit), "nights": nights})["users"]
        for participant, user in zip(new_beddit, users, strict=True):
            token = _control(beddit_url, "/_sim/credentials", {"user": user["id"]})["value"]
            connection = Connection.objects.create(
                organization=organization, provider="beddit", name=f"Beddit of {participant.name}",
                base_url=beddit_url, credentials={"token": token}, sync_interval=timedelta(hours=2),
            )
            ParticipantLink.objects.create(organization=organization, connection=connection,
                                           participant=participant, upstream_user_id=str(user["id"]))
    connection_ids += list(
        Connection.objects.for_org(organization).filter(provider="beddit").values_list("pk", flat=True)
    )
    # Due now: beat (or the caller) picks them up at once.
    Connection.objects.filter(pk__in=connection_ids).update(next_sync_at=timezone.now())
    return connection_ids
