"""Web UI tests: the real app (queue, SQLite file, image processes) on a real port via aiohttp_server, driven by
Debian's headless Chromium through Playwright's async API, all in the test's event loop.

Each scenario saves full-page screenshots to test-artifacts/screenshots/ at the repo root; the path is printed at
the end of the run.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from photoq.app import create_app
from tests.conftest import make_settings
from tests.support import REPO_ROOT, TEST_TOKEN

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = REPO_ROOT / "test-artifacts" / "screenshots"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
LAPTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}
# Console messages a scenario causes on purpose (a refused form post, a photo whose file is gone).
EXPECTED_CONSOLE = ("status of 403", "status of 404", "status of 409")

_screenshots_taken: list[Path] = []


def pytest_configure(config):
    if SCREENSHOTS.exists():
        shutil.rmtree(SCREENSHOTS, ignore_errors=True)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if _screenshots_taken:
        terminalreporter.write_sep("-", "web UI screenshots")
        terminalreporter.write_line(f"{len(_screenshots_taken)} screenshot(s) in {SCREENSHOTS}")


@pytest.fixture
async def browser():
    if not CHROMIUM.exists():
        pytest.fail(f"The web UI tests need Chromium at {CHROMIUM}; run .ci/ensure-chromium (or 'make browser').")
    from playwright.async_api import async_playwright, expect

    expect.set_options(timeout=30_000)
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


@dataclass
class UiApp:
    """A running photoq: its base URL, the app (for its services), and an API client with the bearer token."""

    server: TestServer
    api: TestClient
    console: list[str] = field(default_factory=list)

    @property
    def app(self) -> web.Application:
        return self.server.app

    def url(self, path: str = "/") -> str:
        return str(self.server.make_url(path))

    async def new_page(self, browser, viewport=None, logged_in: bool = True, **context_args):
        context = await browser.new_context(viewport=viewport or LAPTOP, **context_args)
        context.set_default_timeout(30_000)
        page = await context.new_page()
        page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda exc: self.console.append(f"pageerror: {exc}"))
        if logged_in:
            await page.goto(self.url(f"/login?token={TEST_TOKEN}"))
        return page

    def unexpected_console(self) -> list[str]:
        return [m for m in self.console if not any(ok in m for ok in EXPECTED_CONSOLE)]


@pytest.fixture
def start_ui(aiohttp_server, aiohttp_client, tmp_path):
    """Start photoq with custom settings: `ui = await start_ui(upload={"block_while_processing": True})`."""
    started: list[UiApp] = []

    async def start(**sections) -> UiApp:
        server = await aiohttp_server(create_app(make_settings(tmp_path / "data", **sections)))
        api = await aiohttp_client(server)
        ui = UiApp(server, api)
        started.append(ui)
        return ui

    yield start
    for ui in started:
        if os.environ.get("PHOTOQ_UI_CONSOLE"):
            print("\nCONSOLE:", *ui.console, sep="\n  ")
        problems = [m for m in ui.unexpected_console() if "Content Security Policy" in m or m.startswith("pageerror")]
        assert not problems, f"the pages logged errors: {problems}"


async def screenshot(page, name: str) -> Path:
    """A full-page screenshot in test-artifacts/screenshots/<name>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True, animations="disabled")
    _screenshots_taken.append(path)
    return path
