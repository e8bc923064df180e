"""The weekly email itself: parts, inline chart, headers, links, wording."""

from __future__ import annotations

import email
import email.policy
import io
import re

import pytest
from PIL import Image

from analytics import emails
from analytics.email_delivery import weekly_participant_emails_send
from analytics.engine import weekly
from tenants.roles import Role

from .weekly_email_setup import ISO_WEEK, ISO_YEAR, EmailWorld

SITE = "https://sleep.example.org"


@pytest.fixture
def setup(world_a, settings):
    settings.SITE_URL = SITE
    return EmailWorld(world_a)


def _message_for(setup, person):
    weeks = emails.participant_weeks(organization=setup.org, iso_year=ISO_YEAR, iso_week=ISO_WEEK,
                                     participant_ids=[person.pk])
    return emails.build_participant_message(organization=setup.org, participant=person, weeks=weeks), weeks


def _parsed(message):
    return email.message_from_bytes(message.message().as_bytes(), policy=email.policy.default)


def _urls(html: str) -> list[str]:
    return re.findall(r"""(?:href|src)\s*=\s*["']([^"']+)["']""", html) + re.findall(r"url\(([^)]+)\)", html)


class WeeklyEmailMessageTests:
    def test_it_has_text_and_html_with_the_chart_inline(self, setup):
        message, _ = _message_for(setup, setup.receivers[0])
        parsed = _parsed(message)
        assert parsed.get_content_type() == "multipart/alternative"
        text, related = parsed.get_payload()
        assert text.get_content_type() == "text/plain"
        assert related.get_content_type() == "multipart/related"
        html_part, image = related.get_payload()
        assert html_part.get_content_type() == "text/html"
        assert image.get_content_type() == "image/png"
        cid = image["Content-ID"].strip("<>")
        assert f'src="cid:{cid}"' in html_part.get_content()
        png = image.get_payload(decode=True)
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        picture = Image.open(io.BytesIO(png))
        picture.verify()
        assert picture.size == (560, 220)
        assert len(png) < 30_000

    def test_it_shows_the_weeks_figures_and_insights(self, setup):
        person = setup.receivers[1]
        message, weeks = _message_for(setup, person)
        row = weeks.summary.loc[person.pk]
        parsed = _parsed(message)
        text = parsed.get_payload()[0].get_content()
        html = parsed.get_payload()[1].get_payload()[0].get_content()
        assert message.to == [person.email]
        assert message.subject == "Your sleep this week 10 (2\u20138 March 2026)"
        for sentence in row["insights"]:
            assert sentence in text
            assert sentence.replace("'", "&#x27;") in html
        assert f"Average sleep score: {emails.whole(row['score_mean'])}" in text
        assert f"Average sleep: {emails.duration(row['tst_mean_min'])}" in text
        assert "Best night: " + emails.night_of(row["best_night_date"]) in text
        assert "Compared with the previous week" in text
        assert "It is not medical advice." in text and "It is not medical advice." in html
        assert "Hello " + person.name in text

    def test_it_links_only_to_the_platform_and_loads_nothing_external(self, setup):
        message, _ = _message_for(setup, setup.receivers[0])
        html = message.alternatives[0].content
        urls = _urls(html)
        assert urls, "the email has links"
        for url in urls:
            assert url.startswith((SITE + "/", "cid:")), url
        assert "<link" not in html and "<script" not in html and "@import" not in html
        assert f"{SITE}/o/{setup.org.slug}/" in urls
        unsubscribe = [u for u in urls if "/unsubscribe/" in u]
        assert len(unsubscribe) == 1
        assert unsubscribe[0] in message.body  # the text part carries the same links

    def test_it_carries_one_click_unsubscribe_headers_and_a_stable_message_id(self, setup):
        person = setup.receivers[0]
        message, _ = _message_for(setup, person)
        parsed = _parsed(message)
        link = parsed["List-Unsubscribe"].strip()  # a long header is folded onto its next line
        assert re.fullmatch(rf"<{re.escape(SITE)}/unsubscribe/[^/>]+/>", link)
        assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        token = link.strip("<>").rstrip("/").rsplit("/", 1)[1]
        assert emails.participant_uuid_from_token(token) == person.uuid
        again, _ = _message_for(setup, person)
        assert parsed["Message-ID"].strip() == _parsed(again)["Message-ID"].strip() == (
            f"<weekly.participant.2026-W10.{person.uuid}@sleep.example.org>"
        )

    def test_a_test_copy_has_no_working_unsubscribe(self, setup):
        person = setup.receivers[0]
        weeks = emails.participant_weeks(organization=setup.org, iso_year=ISO_YEAR, iso_week=ISO_WEEK,
                                         participant_ids=[person.pk])
        message = emails.build_participant_message(organization=setup.org, participant=person, weeks=weeks,
                                                   to="admin@alpha.test")
        parsed = _parsed(message)
        assert message.to == ["admin@alpha.test"]
        assert parsed["List-Unsubscribe"] is None and parsed["List-Unsubscribe-Post"] is None
        assert f"/unsubscribe/{emails.INERT_UNSUBSCRIBE_TOKEN}/" in message.body
        assert emails.unsubscribe_token(person.uuid) not in message.body

    def _admin_message(self, setup):
        row = emails.organization_week(organization=setup.org, iso_year=ISO_YEAR, iso_week=ISO_WEEK)
        membership = setup.world.org.memberships.get(role=Role.ADMIN, user__email="admin@alpha.test")
        return emails.build_admin_message(organization=setup.org, membership=membership,
                                          email="admin@alpha.test", row=row), row

    def test_it_sends_the_admin_digest_without_naming_anyone(self, setup):
        message, row = self._admin_message(setup)
        html = message.alternatives[0].content
        assert bool(row["suppressed"]) is False  # 5 people with nights, minimum 5
        assert "Participants with nights: 5" in message.body
        assert f"Average sleep score: {emails.whole(row['score_mean'])}" in message.body
        assert message.subject.startswith("Alpha: sleep programme summary, week 10")
        for person in setup.receivers:
            assert person.name not in html and person.email not in html and str(person.uuid) not in html
        for url in _urls(html):
            assert url.startswith(SITE + "/"), url

    def test_the_admin_digest_hides_figures_below_the_minimum_group_size(self, setup):
        setup.org.min_group_size = 6
        setup.org.save()
        message, row = self._admin_message(setup)
        assert bool(row["suppressed"]) is True
        assert "Fewer than 6 participants recorded nights" in message.body
        assert "Average sleep score" not in message.body and "Nights recorded" not in message.body

    def test_the_no_nights_fact_comes_from_the_engine(self, setup):
        weeks = emails.participant_weeks(organization=setup.org, iso_year=ISO_YEAR, iso_week=ISO_WEEK,
                                         participant_ids=[setup.idle.pk])
        assert int(weeks.summary.loc[setup.idle.pk, "nights"]) == 0
        assert weekly.NO_NIGHTS.code in weeks.summary.loc[setup.idle.pk, "insight_codes"]


class ParticipantBatchTests:
    def test_it_sends_one_email_per_receiver_with_nights(self, setup, mailoutbox):
        ids = [p.pk for p in setup.receivers] + [setup.idle.pk, setup.opted_out.pk, setup.no_email.pk]
        outcome = weekly_participant_emails_send(organization_id=setup.org.pk, iso_year=ISO_YEAR, iso_week=ISO_WEEK,
                                                 participant_ids=ids, token="t1")
        assert outcome.sent == 3
        assert sorted(m.to[0] for m in mailoutbox) == sorted(setup.receiver_emails)
