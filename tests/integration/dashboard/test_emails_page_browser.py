"""The admin "Emails" page in headless Chromium: the preview renders inside its sandboxed
iframe with the inline chart and inline styles, under the page's CSP, with nothing external."""

from __future__ import annotations

from datetime import timedelta

import pytest

from analytics import dashboard
from tenants.roles import Role

from ...factories import ParticipantFactory
from ...unit.analytics.nights import days, store_nights
from .conftest import PASSWORD, log_in, screenshot

pytestmark = pytest.mark.integration


def test_an_admin_previews_a_participants_email(page, live_server, transactional_db, world_a):
    org = world_a.org
    person = ParticipantFactory(organization=org, name="Preview Person", email="preview@people.test")
    today = dashboard.organization_today(org)
    store_nights(org, person, days(today - timedelta(days=21), 21))
    admin = world_a.users[Role.ADMIN]
    admin.set_password(PASSWORD)
    admin.save()
    csp_errors = []
    page.on("console", lambda msg: csp_errors.append(msg.text) if "Content Security Policy" in msg.text else None)

    log_in(page, live_server, admin)
    page.goto(f"{live_server.url}/o/{org.slug}/emails/?q=Preview")
    page.click("text=Preview Person")
    page.wait_for_selector("iframe.email-preview")
    frame = page.frame_locator("iframe.email-preview")
    frame.locator("h1").wait_for()
    assert "Your sleep, week" in frame.locator("h1").inner_text()
    chart = frame.locator("img")
    chart.wait_for()
    assert chart.evaluate("img => img.complete && img.naturalWidth") == 560
    # Inline styles apply inside the preview (its own CSP allows them, and nothing else).
    button = frame.locator("a", has_text="See your nights")
    assert button.evaluate("a => getComputedStyle(a).color") == "rgb(255, 255, 255)"
    screenshot(page, "emails-preview")
    assert csp_errors == [] and page.external_requests == []

    page.click("button:has-text('Send me a test')")
    page.wait_for_selector(".messages")
    assert "A test email was sent to admin@alpha.test" in page.inner_text(".messages")
