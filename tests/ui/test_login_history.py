"""A printed login link leaves no admin token in the browser's history (real Chromium, with a profile on disk)."""

from __future__ import annotations

import sqlite3

from playwright.async_api import async_playwright, expect

from tests.support import TEST_TOKEN

from .conftest import CHROMIUM, CHROMIUM_ARGS


async def test_following_a_login_link_leaves_no_token_in_chromium_history(start_ui, tmp_path):
    ui = await start_ui()
    profile = tmp_path / "chromium-profile"
    link = await ui.login_link()
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = await context.new_page()
            await page.goto(link)
            await expect(page.get_by_role("heading", level=1, name="Albums")).to_be_visible()
            await page.goto(ui.url("/queue"))
            await expect(page.get_by_role("heading", level=1, name="Queue")).to_be_visible()
        finally:
            await context.close()  # Chromium writes its history database on the way out

    conn = sqlite3.connect(profile / "Default" / "History")
    try:
        urls = [row[0] for row in conn.execute("SELECT url FROM urls")]
    finally:
        conn.close()
    assert any("/queue" in url for url in urls), urls  # history was recorded
    assert not [url for url in urls if TEST_TOKEN in url or "token=" in url], urls
    # The link that is in history is spent: following it again logs nobody in.
    async with ui.api.get(link.replace(ui.url("/"), "/"), allow_redirects=False) as r:
        assert r.status == 401


async def test_end_every_session_from_the_queue_page_logs_out_every_browser(browser, start_ui):
    ui = await start_ui()
    laptop = await ui.new_page(browser)
    phone = await ui.new_page(browser)
    await phone.goto(ui.url("/"))
    await expect(phone.get_by_role("heading", level=1, name="Albums")).to_be_visible()
    await laptop.goto(ui.url("/queue"))
    laptop.once("dialog", lambda dialog: dialog.accept())
    await laptop.get_by_role("button", name="End every session").click()
    await expect(laptop.get_by_label("Admin token")).to_be_visible()
    await phone.reload()
    await expect(phone.get_by_label("Admin token")).to_be_visible()
