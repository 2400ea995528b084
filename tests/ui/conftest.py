"""Web UI tests: the real app (queue, SQLite file, image processes) on a real port via aiohttp_server, driven by
Debian's headless Chromium through Playwright's async API, all in the test's event loop.

Each scenario saves full-page screenshots to test-artifacts/screenshots/ at the repo root; the path is printed at
the end of the run.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from playwright.async_api import expect

from photoq.app import create_app
from tests.conftest import make_settings
from tests.support import AUTH, REPO_ROOT, TEST_TOKEN, multipart, until  # noqa: F401 (until: for the page tests)

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
    from playwright.async_api import async_playwright

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
            await page.goto(await self.login_link())
        return page

    async def login_link(self, next_path: str | None = None) -> str:
        """A one-time login link, as `photoq login-url` prints it."""
        from photoq.web.keys import SESSIONS

        code = await self.app[SESSIONS].mint_login_code()
        return self.url(f"/login?code={code}" + (f"&next={next_path}" if next_path else ""))

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


# -- helpers the scenarios share ---------------------------------------------------------------------------------


def write_files(folder: Path, files: dict[str, bytes]) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in files.items():
        path = folder / name
        path.write_bytes(data)
        paths.append(str(path))
    return paths


async def create_album(page, ui, name: str) -> int:
    """Create an album through the form on / and return its id (the page is left on the album)."""
    await page.goto(ui.url("/"))
    await page.get_by_label("New album name").fill(name)
    await page.get_by_role("button", name="Create album").click()
    await expect(page.get_by_role("heading", level=1, name=name)).to_be_visible()
    return int(re.search(r"/albums/(\d+)$", page.url).group(1))


async def api(ui, method: str, path: str, **kwargs):
    async with ui.api.request(method, path, headers=AUTH, **kwargs) as response:
        assert response.status < 300, await response.text()
        return await response.json() if response.content_type == "application/json" else None


async def upload(ui, album_id: int, *files) -> list[int]:
    """Upload (filename, bytes) pairs through the API; the new photos' ids."""
    async with ui.api.post(f"/api/albums/{album_id}/photos", data=multipart(*files), headers=AUTH) as r:
        assert r.status == 202, await r.text()
        return [p["id"] for p in (await r.json())["photos"]]


async def album_photo_ids(ui, album_id: int) -> list[int]:
    body = await api(ui, "GET", f"/api/albums/{album_id}/photos")
    return [p["id"] for p in body["photos"]]
