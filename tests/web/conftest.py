"""Browser tests of the dashboard: Debian's headless Chromium driven by Playwright against
the real API server with the real engine and live feeds.

One server and one browser per test session; each test gets a fresh browser context (its
own cookies). Every page's console is watched: a Content-Security-Policy violation or an
uncaught script error fails the test that caused it. Screenshots go to
``test-artifacts/screenshots/``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..conftest import REPO, require_service
from .server import Served

CHROMIUM = Path("/usr/bin/chromium")
#: ../shared/TEST-STACK.md: headless, no sandbox (root), and no lookups of outside hosts
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1",
]
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"
VIEWPORT = {"width": 1280, "height": 800}
DEFAULT_TIMEOUT_MS = 15_000

#: Runs before any page script: reports CSP violations on the console, where the test sees
#: them (Playwright injects it through the DevTools protocol, so the CSP does not apply).
CSP_REPORTER = """
document.addEventListener("securitypolicyviolation", (event) => {
  console.error(`CSP violation: ${event.violatedDirective} blocked ${event.blockedURI || "inline"}`);
});
"""


@dataclass
class PageLog:
    """What a page said on its console, and the script errors it raised."""

    console: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def csp_violations(self) -> list[str]:
        return [
            text
            for _, text in self.console
            if "Content Security Policy" in text or text.startswith("CSP violation")
        ]


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    require_service(
        CHROMIUM.exists() and importlib.util.find_spec("playwright") is not None,
        "Debian's chromium (apt-get install chromium) and playwright are needed",
    )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, timeout=60_000
        )
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


@pytest.fixture
def page_log() -> PageLog:
    return PageLog()


@pytest.fixture
def page(browser: Any, served: Served, page_log: PageLog) -> Iterator[Any]:
    """A fresh page (own cookies) on the served dashboard; fails the test on CSP violations
    and uncaught script errors."""
    context = browser.new_context(viewport=VIEWPORT, base_url=served.url)
    context.add_init_script(CSP_REPORTER)
    page = context.new_page()
    page.set_default_timeout(DEFAULT_TIMEOUT_MS)
    page.on("console", lambda message: page_log.console.append((message.type, message.text)))
    page.on("pageerror", lambda error: page_log.errors.append(str(error)))
    yield page
    context.close()
    assert not page_log.csp_violations, f"CSP violations: {page_log.csp_violations}"
    assert not page_log.errors, f"script errors on the page: {page_log.errors}"


@pytest.fixture(scope="session")
def admin_api(served: Served) -> Iterator[httpx.Client]:
    with served.client(served.admin_token) as client:
        yield client


@pytest.fixture(scope="session")
def served(
    vtest_clip: Path,
    bikes_clip: Path,
    models_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Served]:
    """One running engine + API for the whole browser session."""
    from .server import start_dashboard_server

    clips = {"vtest": vtest_clip, "bikes": bikes_clip}
    with start_dashboard_server(clips, models_dir, tmp_path_factory.mktemp("web-data")) as found:
        yield found
