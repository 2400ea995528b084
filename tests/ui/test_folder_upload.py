"""Folder upload and skipping what the album has, in a real Chromium: a picked folder's photos at every depth go up,
other files are skipped and counted, and a file whose SHA-256 the album already has is reported at once and never
sent."""

from __future__ import annotations

import hashlib

from playwright.async_api import expect

from tests.support import image_bytes, jpeg

from .conftest import PHONE, api, screenshot, upload, write_files


async def test_a_picked_folder_uploads_its_photos_and_skips_the_rest(browser, start_ui, tmp_path):
    ui = await start_ui()
    album_id = (await api(ui, "POST", "/api/albums", json={"name": "Trip"}))["id"]
    have = jpeg(800, 600, seed=40)
    [have_id] = await upload(ui, album_id, ("already.jpg", have))

    folder = tmp_path / "Trip"
    write_files(folder, {"a.jpg": jpeg(seed=41), "copy-of-already.jpg": have, "notes.txt": b"list" * 50,
                         ".DS_Store": b"\0" * 64})
    write_files(folder / "day 2" / "raw", {"b.png": image_bytes("PNG", seed=42), "clip.mov": b"\0\0\0\x18ftypqt" * 9})

    page = await ui.new_page(browser, viewport=PHONE, color_scheme="dark")
    sent: list[str] = []
    checked: list[dict] = []
    page.on("request", lambda r: sent.append(r.url) if r.method == "POST" and r.url.endswith(f"/api/albums/{album_id}/photos") else None)
    page.on("request", lambda r: checked.append(r.post_data_json) if r.url.endswith(f"/api/albums/{album_id}/hashes") else None)
    await page.goto(ui.url(f"/albums/{album_id}"))
    await expect(page.locator(".folder-pick")).to_be_visible()
    await page.locator("#folder-input").set_input_files(str(folder))

    summary = page.locator("#upload-text")
    await expect(summary).to_have_text(
        "2 photos uploaded, 1 already in the album (1 not sent), 3 other files skipped (not photos).")
    row = page.locator(".upload-row", has_text="copy-of-already.jpg")
    await expect(row).to_contain_text("Already in this album. Not sent again.")
    await expect(row.get_by_role("link", name="See the photo")).to_have_attribute("href", f"/photos/{have_id}")
    assert len(sent) == 2  # the copy's bytes never left the browser
    asked = [h for body in checked for h in body["sha256"]]
    assert hashlib.sha256(have).hexdigest() in asked and len(asked) == 3
    names = sorted(p["filename"] for p in (await api(ui, "GET", f"/api/albums/{album_id}/photos"))["photos"])
    assert names == ["a.jpg", "already.jpg", "b.png"]
    await screenshot(page, "folder-upload-phone-dark")


async def test_a_picked_file_the_album_has_is_not_sent_again(browser, start_ui, tmp_path):
    ui = await start_ui()
    album_id = (await api(ui, "POST", "/api/albums", json={"name": "Again"}))["id"]
    data = jpeg(1200, 900, seed=50)
    await upload(ui, album_id, ("first.jpg", data))
    paths = write_files(tmp_path / "pick", {"same-bytes.jpg": data, "new.jpg": jpeg(seed=51)})
    page = await ui.new_page(browser, viewport={"width": 1280, "height": 800})
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.url) if r.method == "POST" and "/photos" in r.url else None)
    await page.goto(ui.url(f"/albums/{album_id}"))
    await page.locator("#file-input").set_input_files(paths)
    await expect(page.locator("#upload-text")).to_have_text("1 photo uploaded, 1 already in the album (1 not sent).")
    assert len(sent) == 1
    await screenshot(page, "dedup-before-sending-laptop")
