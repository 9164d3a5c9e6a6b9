"""A real headless Chromium (Debian's package) driven by Playwright, pointed at a real LMX."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.lmx_server import ROOT, LMXServer

SCREENSHOTS = ROOT / "docs" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    path = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        pytest.fail("Debian's chromium is needed for the dashboard tests: apt-get install chromium")
    return path


@pytest.fixture(scope="module")
def browser():
    # Module scope: Playwright's sync API runs an event loop in this thread while it is open,
    # which Django's ORM (used by other test modules) would take for async code.
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(autouse=True)
def _orm_beside_playwright(monkeypatch):
    # Playwright's sync API keeps an event loop in this thread; the tests' own ORM reads are
    # plain synchronous code all the same.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@dataclass
class Dashboard:
    page: object
    console_errors: list[str] = field(default_factory=list)

    def shot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / name
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def open_dashboard(browser):
    """Open `/` of a server in a fresh browser context (its own sessionStorage)."""
    contexts = []

    def open_(srv: LMXServer, *, width: int = 1400, height: int = 900) -> Dashboard:
        context = browser.new_context(viewport={"width": width, "height": height})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(20_000)
        dash = Dashboard(page)
        page.on("console", lambda msg: msg.type == "error" and dash.console_errors.append(msg.text))
        page.on("pageerror", lambda exc: dash.console_errors.append(f"uncaught: {exc}"))
        page.goto(srv.url + "/")
        return dash

    yield open_
    for context in contexts:
        context.close()
