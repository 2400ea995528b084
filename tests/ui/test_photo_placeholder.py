"""The photo page while its picture loads: the picture's box is already the size it will have, with the photo's
ThumbHash painted in it until the picture has loaded; a photo without a ThumbHash gets the box and nothing in it."""

from __future__ import annotations

import asyncio
import contextlib
import re

from playwright.async_api import expect

from tests.support import jpeg, wait_for_photos

from .conftest import api, create_album, screenshot, upload

LOADED = "() => { const img = document.getElementById('photo-img'); return img.complete && img.naturalWidth > 0; }"
BACKGROUND = "() => getComputedStyle(document.getElementById('photo-img')).backgroundImage"


@contextlib.asynccontextmanager
async def held_requests(page, pattern: str):
    """Requests matching `pattern` get no answer until the block ends (a slow network, as long as the test needs);
    the block starts once the first one was made."""
    held, arrived = [], asyncio.Event()

    async def hold(route):
        held.append(route)
        arrived.set()

    await page.route(pattern, hold)
    try:
        yield arrived
    finally:
        for route in held:
            await route.continue_()
        await page.unroute(pattern)


async def test_the_placeholder_shows_while_the_display_version_loads_and_goes_once_it_has(browser, start_ui):
    ui = await start_ui()
    page = await ui.new_page(browser)
    album_id = await create_album(page, ui, "Placeholders")
    [photo_id] = await upload(ui, album_id, ("tall.jpg", jpeg(480, 720, seed=5)))
    await wait_for_photos(ui.api, [photo_id])
    photo = await api(ui, "GET", f"/api/photos/{photo_id}")
    assert photo["thumbhash"]
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    img = page.locator("#photo-img")
    async with held_requests(page, "**/api/photos/*/file?variant=display*") as arrived:
        await page.goto(ui.url(f"/photos/{photo_id}"), wait_until="domcontentloaded")
        await asyncio.wait_for(arrived.wait(), 30)
        await expect(img).to_have_attribute("data-thumbhash", photo["thumbhash"])
        await expect(img).to_have_attribute("srcset", re.compile("display"))
        assert (await page.evaluate(BACKGROUND)).startswith('url("data:image/png')
        assert not await page.evaluate(LOADED)
        loading = await img.bounding_box()
        assert loading["height"] > 600 and abs(loading["width"] / loading["height"] - 480 / 720) < 0.01, loading
        await screenshot(page, "40-photo-placeholder")

    await page.wait_for_function(LOADED)
    assert await page.evaluate(BACKGROUND) == "none"
    loaded = await img.bounding_box()
    assert all(abs(loaded[k] - loading[k]) < 0.5 for k in loading), (loading, loaded)  # no layout shift
    assert not errors


async def test_a_photo_without_a_thumbhash_loads_without_a_placeholder_or_an_error(browser, start_ui):
    ui = await start_ui()
    page = await ui.new_page(browser)
    album_id = await create_album(page, ui, "Not yet")
    await api(ui, "POST", "/api/admin/queue/pause")  # nothing is processed: the page shows the original, no hash
    [photo_id] = await upload(ui, album_id, ("wide.jpg", jpeg(800, 500, seed=6)))
    assert (await api(ui, "GET", f"/api/photos/{photo_id}"))["thumbhash"] is None
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    img = page.locator("#photo-img")
    async with held_requests(page, "**/api/photos/*/file?variant=original*") as arrived:
        await page.goto(ui.url(f"/photos/{photo_id}"), wait_until="domcontentloaded")
        await asyncio.wait_for(arrived.wait(), 30)
        await expect(page.locator(".photo-stage .hint")).to_contain_text("Showing the original")
        await expect(img).not_to_have_attribute("data-thumbhash", re.compile(".*"))
        assert not await page.evaluate(LOADED)
        assert await page.evaluate(BACKGROUND) == "none"
        loading = await img.bounding_box()  # the original's own size, which fits the laptop viewport
        assert abs(loading["width"] - 800) < 0.5 and abs(loading["height"] - 500) < 0.5, loading

    await page.wait_for_function(LOADED)
    assert await page.evaluate(BACKGROUND) == "none"
    assert await img.bounding_box() == loading
    assert not errors


async def test_a_display_version_that_arrives_live_loads_over_the_placeholder_too(browser, start_ui):
    ui = await start_ui()
    page = await ui.new_page(browser)
    album_id = await create_album(page, ui, "Live")
    await api(ui, "POST", "/api/admin/queue/pause")
    [photo_id] = await upload(ui, album_id, ("live.jpg", jpeg(640, 480, seed=7)))
    img = page.locator("#photo-img")
    async with held_requests(page, "**/api/photos/*/file?variant=display*") as arrived:
        await page.goto(ui.url(f"/photos/{photo_id}"))
        await expect(page.locator(".photo-stage .hint")).to_contain_text("Showing the original")
        await page.wait_for_function(LOADED)
        await api(ui, "POST", "/api/admin/queue/resume")
        # Processed: the page swaps in the display version by itself, and it loads over the placeholder.
        await asyncio.wait_for(arrived.wait(), 60)
        await expect(img).to_have_attribute("srcset", re.compile("display"))
        assert not await page.evaluate(LOADED)
        assert (await page.evaluate(BACKGROUND)).startswith('url("data:image/png')
    await page.wait_for_function(LOADED)
    assert await page.evaluate(BACKGROUND) == "none"
