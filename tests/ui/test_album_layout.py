"""The album and photo pages on small screens (issue: defects 3 and 6): every popover stays inside the viewport, the
destructive action sits in an overflow menu, and the drop zone shrinks to a button once the album has photos."""

from __future__ import annotations

from playwright.async_api import expect

from tests.support import jpeg

from .conftest import LAPTOP, api, screenshot, until, upload

WIDTHS = (320, 390, 1280)


async def assert_inside_viewport(page, locator, what: str) -> None:
    box = await locator.bounding_box()
    width = await page.evaluate("document.documentElement.clientWidth")
    assert box is not None, what
    assert box["x"] >= 0 and box["x"] + box["width"] <= width, (what, box, width)


async def test_delete_confirmations_stay_inside_the_viewport(browser, start_ui):
    ui = await start_ui()
    album = await api(ui, "POST", "/api/albums", json={"name": "A long album name for a narrow phone screen"})
    [photo_id] = await upload(ui, album["id"], ("sea.jpg", jpeg(seed=3)))
    for width in WIDTHS:
        viewport = {"width": width, "height": 800 if width > 400 else 700}
        page = await ui.new_page(browser, viewport=viewport, color_scheme="dark" if width < 1000 else "light")
        await page.goto(ui.url(f"/albums/{album['id']}"))
        await page.get_by_label(f"More actions for {album['name']}").click()
        body = page.locator(".head-menu .card-menu-body")
        await expect(body.get_by_role("button", name="Delete album")).to_be_visible()
        await assert_inside_viewport(page, body, f"album delete at {width}px")
        await screenshot(page, f"defect3-album-delete-{width}")

        await page.goto(ui.url(f"/photos/{photo_id}"))
        await page.locator(".actions .card-menu > summary").click()
        body = page.locator(".actions .card-menu-body")
        await expect(body.get_by_role("button", name="Delete photo")).to_be_visible()
        await assert_inside_viewport(page, body, f"photo delete at {width}px")
        await screenshot(page, f"defect3-photo-delete-{width}")
        await page.context.close()


async def test_on_a_phone_the_first_screen_shows_photos(browser, start_ui, tmp_path):
    ui = await start_ui()
    album = await api(ui, "POST", "/api/albums", json={"name": "Beach"})
    page = await ui.new_page(browser, viewport={"width": 390, "height": 844}, color_scheme="dark", is_mobile=True,
                             has_touch=True, device_scale_factor=2)
    await page.goto(ui.url(f"/albums/{album['id']}"))
    # An empty album: the big drop zone invites the first upload.
    await expect(page.locator("#upload-panel")).not_to_have_class("compact")
    await expect(page.get_by_text("Choose photos")).to_be_visible()
    # No destructive button on the first screen: it is in the overflow menu.
    await expect(page.get_by_role("button", name="Delete album")).to_be_hidden()

    ids = await upload(ui, album["id"], *[(f"{i}.jpg", jpeg(seed=30 + i)) for i in range(6)])
    await until(lambda: _all_done(ui, album["id"], len(ids)), 90, "the photos to be processed")
    await page.reload()
    await expect(page.locator("#upload-panel")).to_have_class("panel upload-panel compact")
    await expect(page.locator("label[for=file-input]")).to_have_text("Add photos")
    first = page.locator("#gallery .tile").first
    box = await first.bounding_box()
    assert box is not None and box["y"] + box["height"] / 2 < 844, f"the first photo is below the fold: {box}"
    await screenshot(page, "defect6-phone-first-screen-dark")
    laptop = await ui.new_page(browser, viewport=LAPTOP)
    await laptop.goto(ui.url(f"/albums/{album['id']}"))
    await screenshot(laptop, "defect6-laptop")


async def _all_done(ui, album_id: int, count: int) -> bool:
    stats = await api(ui, "GET", f"/api/stats?album_id={album_id}")
    return stats["complete"] == count
