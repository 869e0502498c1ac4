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

from ..conftest import REPO, RtspServer, require_service

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


@dataclass(frozen=True)
class Served:
    """The running API and dashboard as the browser tests see it."""

    url: str
    admin_token: str
    viewer_token: str
    #: the cameras the viewer token is limited to
    viewer_cameras: list[str]
    #: cameras with live feeds, which must show thumbnails
    feed_cameras: list[str]
    #: the server helper (tests/api/server.py RunningServer), to store an event with
    #: hostile text the detector would never produce
    server: Any

    def client(self, token: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=10
        )


def feed_cameras(rtsp_server: RtspServer) -> list[dict[str, Any]]:
    """Two live RTSP cameras on real footage with the demo's zones, lines and rules. The
    ampersand in a name is a small escaping check of its own."""
    from feedtag.bench.demo import BIKES_ANALYTICS, VTEST_ANALYTICS

    return [
        {"id": "vtest", "name": "Path & lawn", "url": rtsp_server.url("vtest"),
         "analysis_fps": 2.0, "analytics": VTEST_ANALYTICS},
        {"id": "bikes", "name": "Bikes", "url": rtsp_server.url("bikes"),
         "analysis_fps": 2.0, "analytics": BIKES_ANALYTICS},
    ]  # fmt: skip


@pytest.fixture(scope="session")
def served(
    rtsp_server: RtspServer, models_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """One engine + API (tests/api/server.py) for the whole browser session, with live RTSP
    feeds through the real detector, tracker and rules."""
    from ..api.server import start_api_server

    cameras = feed_cameras(rtsp_server)
    ids = [camera["id"] for camera in cameras]
    data_dir = tmp_path_factory.mktemp("web-data")
    with start_api_server(data_dir, cameras, models_dir=models_dir) as server:
        viewer = server.viewer_token(cameras=ids[:1])
        yield Served(server.base_url, server.admin_token, viewer, ids[:1], ids, server)
