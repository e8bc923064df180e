"""Headless Chromium (Debian's /usr/bin/chromium, driven by Playwright) against a live server.

No browser is downloaded: Playwright launches the system Chromium by path. Screenshots
go to ``TEST_ARTIFACTS_DIR`` (default ``var/test-artifacts``) so CI keeps them.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from ...conftest import service_required

ROOT = Path(__file__).resolve().parents[3]
CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS_DIR", ROOT / "var" / "test-artifacts"))
# Without the background-networking switches Chromium keeps dialling Google's hosts,
# which this closed network refuses.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
PASSWORD = "a-long-test-password-9"


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        service_required(f"Chromium at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; Django refuses ORM calls
    # from a thread with a running loop unless told this is intended (tests only).
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, request):
    """A fresh browser context per test; a screenshot of the last page is saved after it."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    external = []
    # Every asset must come from the platform itself: record any other host the page asks for.
    page.on("request", lambda req: external.append(req.url) if not _local(req.url) else None)
    page.external_requests = external
    yield page
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid.split("::", 1)[-1])
    try:
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    finally:
        context.close()


def _local(url: str) -> bool:
    return url.startswith(("http://localhost", "http://127.0.0.1", "data:", "blob:", "about:"))


def screenshot(page, name: str) -> Path:
    """Save a named screenshot (an artifact of the run) and return its path."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def log_in(page, live_server, user, password: str = PASSWORD) -> None:
    """Log in through the real login form (the user must have `password` set)."""
    page.goto(f"{live_server.url}/login/")
    page.fill("input[name=username]", user.username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit], input[type=submit]")
    page.wait_for_load_state("networkidle")


def canvas_has_pixels(page, selector: str = "canvas") -> bool:
    """True when every matching canvas has at least one non-transparent pixel."""
    return page.evaluate(
        """(selector) => {
            const canvases = [...document.querySelectorAll(selector)];
            if (!canvases.length) return false;
            return canvases.every(c => {
                if (!c.width || !c.height) return false;
                const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                for (let i = 3; i < data.length; i += 4) if (data[i] !== 0) return true;
                return false;
            });
        }""",
        selector,
    )
