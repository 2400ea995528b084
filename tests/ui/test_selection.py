"""Choosing several photos in the gallery, in a real Chromium: click, Shift+click range and keyboard; then one zip
download of the originals, moving to another album, and deleting into the trash (restored from the trash page)."""

from __future__ import annotations

import io
import zipfile

from playwright.async_api import expect

from tests.support import jpeg, wait_for_photos

from .conftest import PHONE, api, screenshot, upload

LAPTOP_800 = {"width": 1280, "height": 800}


async def test_select_download_move_delete_and_restore(browser, start_ui):
    ui = await start_ui()
    album_id = (await api(ui, "POST", "/api/albums", json={"name": "Picnic"}))["id"]
    other_id = (await api(ui, "POST", "/api/albums", json={"name": "Best of"}))["id"]
    data = {f"p{i}.jpg": jpeg(640, 480, seed=60 + i) for i in range(6)}
    ids = [(await upload(ui, album_id, (name, body)))[0] for name, body in data.items()]
    await wait_for_photos(ui.api, ids)

    page = await ui.new_page(browser, viewport=LAPTOP_800)
    await page.goto(ui.url(f"/albums/{album_id}?order=uploaded"))  # newest first: p5 ... p0
    order = [await t.get_attribute("data-filename") for t in await page.locator("#gallery .tile").all()]
    assert order == [f"p{i}.jpg" for i in range(5, -1, -1)]
    bar = page.get_by_role("form", name="Selected photos")
    await expect(bar).to_be_hidden()

    await page.get_by_role("button", name="Select p5.jpg").click()
    await expect(page.locator("#selection-count")).to_have_text("1 photo selected")
    await page.locator("#gallery .tile", has=page.get_by_alt_text("p2.jpg")).click(modifiers=["Shift"])
    await expect(page.locator("#selection-count")).to_have_text("4 photos selected")
    assert not await page.evaluate("window.photoq.viewer && window.photoq.viewer.isOpen()")  # clicks select now
    # Keyboard: to the last tile with the arrows, Space adds it.
    await page.locator("#gallery .tile-link").nth(2).focus()
    await page.keyboard.press("ArrowRight")
    await page.keyboard.press("ArrowRight")
    await page.keyboard.press("ArrowRight")
    await page.keyboard.press("Space")
    await expect(page.locator("#selection-count")).to_have_text("5 photos selected")
    await page.keyboard.press("Space")
    await expect(page.locator("#selection-count")).to_have_text("4 photos selected")
    await expect(page.get_by_role("button", name="Select p3.jpg")).to_have_attribute("aria-pressed", "true")
    await screenshot(page, "selection-01-laptop")

    async with page.expect_download() as download_info:
        await bar.get_by_role("button", name="Download").click()
    download = await download_info.value
    assert download.suggested_filename == "Picnic (4 photos).zip"
    archive = zipfile.ZipFile(io.BytesIO((await download.path()).read_bytes()))
    assert archive.namelist() == ["p5.jpg", "p4.jpg", "p3.jpg", "p2.jpg"]
    assert archive.read("p3.jpg") == data["p3.jpg"]

    # Move two to the other album (the selection is still there after the download).
    await page.keyboard.press("Escape")
    await expect(bar).to_be_hidden()
    await page.get_by_role("button", name="Select p0.jpg").click()
    await page.get_by_role("button", name="Select p1.jpg").click()
    await bar.get_by_label("Move to album").select_option(label="Best of")
    await bar.get_by_role("button", name="Move").click()
    await expect(page.get_by_role("status").filter(has_text="Moved 2 photo(s) to the other album.")).to_be_visible()
    moved = await api(ui, "GET", f"/api/albums/{other_id}/photos")
    assert sorted(p["filename"] for p in moved["photos"]) == ["p0.jpg", "p1.jpg"]

    # Delete two: they go to the trash, from where one comes back.
    await page.get_by_role("button", name="Select p4.jpg").click()
    await page.get_by_role("button", name="Select p5.jpg").click()
    await bar.get_by_role("button", name="Delete").click()
    await expect(page.get_by_role("status").filter(has_text="Moved 2 photo(s) to the trash.")).to_be_visible()
    await expect(page.locator("#gallery .tile")).to_have_count(2)
    await page.get_by_role("link", name="Trash").click()
    await expect(page.get_by_role("heading", level=1, name="Trash")).to_be_visible()
    await expect(page.locator(".trash-item")).to_have_count(2)
    await screenshot(page, "trash-01-laptop")
    await page.get_by_role("button", name="Restore p4.jpg").click()
    await expect(page.get_by_role("status").filter(has_text="Restored from the trash.")).to_be_visible()
    await expect(page.locator(".trash-item")).to_have_count(1)
    body = await api(ui, "GET", f"/api/albums/{album_id}/photos")
    assert sorted(p["filename"] for p in body["photos"]) == ["p2.jpg", "p3.jpg", "p4.jpg"]
    page.on("dialog", lambda dialog: dialog.accept())
    await page.get_by_text("Empty trash now").click()
    await page.get_by_role("button", name="Empty trash", exact=True).click()
    await expect(page.get_by_role("heading", name="The trash is empty")).to_be_visible()


async def test_phone_selection_and_album_management(browser, start_ui):
    ui = await start_ui()
    album_id = (await api(ui, "POST", "/api/albums", json={"name": "Garden"}))["id"]
    ids = await upload(ui, album_id, *[(f"g{i}.jpg", jpeg(640, 480, seed=70 + i)) for i in range(4)])
    await wait_for_photos(ui.api, ids)
    page = await ui.new_page(browser, viewport=PHONE, color_scheme="dark", has_touch=True)
    await page.goto(ui.url(f"/albums/{album_id}"))
    await page.get_by_role("button", name="Select g1.jpg").click()
    await page.get_by_role("button", name="Select g2.jpg").click()
    await expect(page.locator("#selection-count")).to_have_text("2 photos selected")
    await screenshot(page, "selection-02-phone-dark")
    await page.get_by_role("button", name="Cancel").click()

    # Rename from the album page; the cover from a photo's page.
    await page.get_by_label("More actions for Garden").click()  # rename, download and delete live there
    await page.get_by_label("New name").fill("Garden 2026")
    await page.get_by_role("button", name="Rename album").click()
    await expect(page.get_by_role("heading", level=1, name="Garden 2026")).to_be_visible()
    await page.goto(ui.url(f"/photos/{ids[2]}"))
    await page.get_by_role("button", name="Use as album cover").click()
    await expect(page.get_by_role("status").filter(has_text="The album cover was changed.")).to_be_visible()
    await page.goto(ui.url("/"))
    cover = page.locator(f"#album-{album_id} .album-cover img")
    await expect(cover).to_have_attribute("src", f"/api/photos/{ids[2]}/file?variant=thumb-300&v=" + (await cover.get_attribute("src")).split("&v=")[1])
    await screenshot(page, "albums-cover-phone-dark")

    # Delete the album from its page: into the trash, and back.
    await page.goto(ui.url(f"/albums/{album_id}"))
    await page.get_by_label("More actions for Garden 2026").click()
    await page.get_by_role("button", name="Delete album").click()
    await expect(page.get_by_role("status").filter(has_text="moved to the trash")).to_be_visible()
    await page.goto(ui.url("/trash"))
    await screenshot(page, "trash-02-phone-dark")
    await page.get_by_role("button", name="Restore album Garden 2026").click()
    await expect(page.get_by_role("heading", level=1, name="Garden 2026")).to_be_visible()
    await expect(page.locator("#gallery .tile")).to_have_count(4)
